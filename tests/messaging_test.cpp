// tests/messaging_test.cpp: the messaging fast path. Posts and batches deliver every command
// exactly once, in order per sender; coalesced acknowledgements complete every future; a
// thread that drains K2H while it waits completes only what it may, and never mixes replies
// up; every future completes, also across shutdown and after its runtime is gone.
#include "examples/echo/echo.hpp"
#include "tests/ledger_actor.hpp"
#include "tests/test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <future>
#include <cstdio>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace pkrt::testing {
namespace {

void print_seed(std::uint64_t seed) { std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed)); }

std::unique_ptr<Runtime> make_ledger(std::uint32_t actors, std::uint32_t threads, RuntimeOptions o = {}) {
  const RuntimeOptions base = cpu_runtime(actors, threads);
  o.backend = base.backend;
  o.num_actors = base.num_actors;
  o.threads = base.threads;
  o.snapshots = false;
  auto rt = Runtime::create(ledger_program(), Ledger::Params{}, o);
  EXPECT_TRUE(rt.ok()) << rt.status().to_string();
  return rt.ok() ? std::move(rt.value()) : nullptr;
}

// A started ledger runtime (one block per actor) with rings of 16 and the given ring-full
// timeout: sends soon wait for room, and a wait that is never answered fails fast.
std::unique_ptr<Runtime> start_small_ring_ledger(std::uint32_t actors, std::chrono::milliseconds ring_full_timeout,
                                                 RuntimeOptions o = {}) {
  o.ring_capacity = 16;
  o.ring_full_timeout = ring_full_timeout;
  auto rt = make_ledger(actors, actors, o);
  if (rt) EXPECT_TRUE(rt->start().ok());
  return rt;
}

LedgerTotals totals_of(Runtime& rt, std::uint32_t actor) {
  Reply r = rt.send(actor, kLedgerQuery, std::uint64_t{0}).get();
  EXPECT_TRUE(r.status.ok()) << r.status.to_string();
  return r.event.as<LedgerTotals>();
}

Command append(std::uint32_t actor, std::uint32_t sender, std::uint64_t seq) {
  return Command::make(actor, kLedgerAppend, LedgerEntry{sender, 0, seq});
}

TEST(Messaging, PostsAndPostBatchesDeliverEveryCommandOnceInOrderPerSender) {
  const std::uint64_t seed = 1101;
  print_seed(seed);
  constexpr std::uint32_t kActors = 5, kSenders = 4, kPerSender = 3000;
  RuntimeOptions o;
  o.ring_capacity = 64;  // small: batches wrap the ring and wait for room
  auto rt = make_ledger(kActors, 2, o);
  ASSERT_TRUE(rt->start().ok());
  std::vector<std::thread> senders;
  std::vector<std::vector<std::uint64_t>> sent(kSenders, std::vector<std::uint64_t>(kActors, 0));
  for (std::uint32_t s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      std::mt19937_64 rng(seed + s);
      std::vector<Command> batch;
      std::uint32_t posted = 0;
      while (posted < kPerSender) {
        const std::uint32_t n = std::min<std::uint32_t>(kPerSender - posted, 1 + rng() % 100);
        batch.clear();
        for (std::uint32_t i = 0; i < n; ++i) {
          const auto actor = static_cast<std::uint32_t>(rng() % kActors);
          batch.push_back(append(actor, s, ++sent[s][actor]));
        }
        if (n == 1 && rng() % 2 == 0) {
          const LedgerEntry e{s, 0, sent[s][batch[0].actor]};
          const Status st = rt->post(batch[0].actor, kLedgerAppend, e);
          ASSERT_TRUE(st.ok()) << st.to_string();
        } else {
          const Status st = rt->post_batch(batch);
          ASSERT_TRUE(st.ok()) << st.to_string();
        }
        posted += n;
      }
    });
  }
  for (auto& t : senders) t.join();
  std::uint64_t expected_total = 0;
  for (std::uint32_t a = 0; a < kActors; ++a) {
    std::uint64_t expected = 0;
    for (std::uint32_t s = 0; s < kSenders; ++s) expected += sent[s][a];
    expected_total += expected;
    // A query sent after the posts applies after them: commands to one actor keep their order.
    const LedgerTotals t = totals_of(*rt, a);
    EXPECT_EQ(t.count, expected) << "actor " << a;
    EXPECT_EQ(t.violations, 0u) << "actor " << a;
  }
  EXPECT_EQ(expected_total, std::uint64_t{kSenders} * kPerSender);
  EXPECT_EQ(rt->stats().posts, expected_total);
  EXPECT_TRUE(rt->shutdown().ok());
}

// A run of commands stages its K2H slots and publishes them every kK2HPublishBatch
// applications: a reply must not wait for the end of a long run. The run here is one reply,
// kK2HPublishBatch - 1 quick posts, then a post whose handler holds the block until the reply
// is seen (or 20 s).
TEST(Messaging, AReplyIsVisibleWhileItsRunOfCommandsIsStillBeingApplied) {
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt);
  ASSERT_TRUE(rt->start().ok());
  // Relaxed: no held handler runs yet; the publishes below order it before the hold.
  ledger_hold_released().store(false, std::memory_order_relaxed);
  // Parked, so that everything below is published before the block applies any of it.
  ASSERT_TRUE(rt->pause().ok());
  ASSERT_TRUE(rt->wait_parked(10s).ok());
  std::array<std::byte, kEnvelopeDataBytes> payload{};
  payload[0] = std::byte{42};
  ReplyFuture reply = rt->send(0, kLedgerEcho, payload.data(), payload.size());
  std::vector<Command> run;
  for (std::uint64_t seq = 1; seq < detail::kK2HPublishBatch; ++seq) run.push_back(append(0, 0, seq));
  run.push_back(Command::make(0, kLedgerHold, std::uint64_t{0}));
  ASSERT_TRUE(rt->post_batch(run).ok());
  ASSERT_TRUE(rt->resume().ok());
  const bool seen_during_run = reply.wait_for(5s) == std::future_status::ready;
  // Release: pairs with the held handler's acquire load.
  ledger_hold_released().store(true, std::memory_order_release);
  EXPECT_TRUE(seen_during_run) << "the reply stayed invisible while the block held its run of commands";
  const Reply r = reply.get();
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.event.as<std::uint8_t>(), 42u);
  EXPECT_EQ(totals_of(*rt, 0).count, detail::kK2HPublishBatch - 1);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, BatchesLongerThanTheRingWaitForRoomAndLoseNothing) {
  RuntimeOptions o;
  o.ring_capacity = 16;
  auto rt = make_ledger(1, 1, o);
  ASSERT_TRUE(rt->start().ok());
  std::vector<Command> batch;
  for (std::uint64_t i = 1; i <= 1000; ++i) batch.push_back(append(0, 0, i));
  ASSERT_TRUE(rt->post_batch(batch).ok());
  batch.clear();
  for (std::uint64_t i = 1001; i <= 1500; ++i) batch.push_back(append(0, 0, i));
  std::vector<ReplyFuture> futures = rt->send_batch(batch);
  ASSERT_EQ(futures.size(), 500u);
  for (auto& f : futures) EXPECT_TRUE(f.get().status.ok());
  const LedgerTotals t = totals_of(*rt, 0);
  EXPECT_EQ(t.count, 1500u);
  EXPECT_EQ(t.violations, 0u);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, SendBatchFuturesCompleteWithTheirOwnAcknowledgementOrReply) {
  const std::uint64_t seed = 1202;
  print_seed(seed);
  std::mt19937_64 rng(seed);
  auto rt = make_ledger(3, 2);
  ASSERT_TRUE(rt->start().ok());
  std::vector<Command> batch;
  std::vector<std::uint64_t> next(3, 0);
  for (int i = 0; i < 300; ++i) {
    const auto actor = static_cast<std::uint32_t>(rng() % 3);
    if (rng() % 5 == 0) {
      batch.push_back(Command::make(actor, kLedgerEcho, std::uint64_t{rng()}));
    } else {
      batch.push_back(append(actor, 0, ++next[actor]));
    }
  }
  std::vector<ReplyFuture> futures = rt->send_batch(batch);
  std::set<std::uint64_t> requests;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    SCOPED_TRACE("command " + std::to_string(i));
    Reply r = futures[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    EXPECT_EQ(r.event.actor, batch[i].actor);
    EXPECT_GT(r.event.epoch, 0u);
    EXPECT_TRUE(requests.insert(r.event.request).second) << "every command has its own request id";
    if (batch[i].opcode == kLedgerEcho) {
      EXPECT_EQ(r.event.opcode, kLedgerEcho);
      std::uint64_t sent_value;
      std::memcpy(&sent_value, batch[i].data.data(), sizeof sent_value);
      EXPECT_EQ(r.event.as<std::uint64_t>(), sent_value);
    } else {
      EXPECT_EQ(r.event.opcode, kOpAck);
      EXPECT_EQ(r.event.flags, kFlagReply);
      EXPECT_EQ(r.event.as<AckData>().opcode, kLedgerAppend);
    }
  }
  for (std::uint32_t a = 0; a < 3; ++a) EXPECT_EQ(totals_of(*rt, a).violations, 0u);
  EXPECT_GE(rt->stats().replies, batch.size());
  EXPECT_TRUE(rt->shutdown().ok());
}

// send_batch takes its request records from the free list several at a time while other
// threads free theirs one by one: no record may be handed out twice.
TEST(Messaging, ConcurrentBatchesNeverShareARequestRecord) {
  const std::uint64_t seed = 4711;
  print_seed(seed);
  auto rt = make_ledger(4, 2);
  ASSERT_TRUE(rt->start().ok());
  constexpr std::uint32_t kThreads = 4, kBatches = 40;
  std::atomic<std::uint64_t> wrong{0};
  std::vector<std::thread> senders;
  for (std::uint32_t t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      for (std::uint32_t b = 0; b < kBatches; ++b) {
        std::vector<Command> batch;
        std::vector<std::uint64_t> values;
        const std::size_t n = 1 + rng() % 200;
        for (std::size_t i = 0; i < n; ++i) {
          values.push_back(rng());
          batch.push_back(Command::make(static_cast<std::uint32_t>(rng() % 4), kLedgerEcho, values.back()));
        }
        std::vector<ReplyFuture> futures = rt->send_batch(batch);
        for (std::size_t i = 0; i < n; ++i) {
          Reply r = futures[i].get();
          if (!r.status.ok() || r.event.as<std::uint64_t>() != values[i]) wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(wrong.load(), 0u) << "a reply reached another command's future";
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, CoalescedAcknowledgementsCompleteEveryFutureWaitedOnFromManyThreads) {
  auto rt = make_ledger(4, 2);
  ASSERT_TRUE(rt->start().ok());
  constexpr std::uint32_t kSenders = 4, kPerSender = 800;
  std::atomic<std::uint32_t> failures{0};
  std::vector<std::thread> senders;
  for (std::uint32_t s = 0; s < kSenders; ++s) {
    senders.emplace_back([&, s] {
      std::vector<ReplyFuture> mine;
      for (std::uint64_t i = 1; i <= kPerSender; ++i) mine.push_back(rt->send(s, kLedgerAppend, LedgerEntry{s, 0, i}));
      for (auto& f : mine) {
        const Reply r = f.get();
        // Relaxed: a counter read after the joins.
        if (!r.status.ok() || r.event.opcode != kOpAck || r.event.actor != s) failures.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : senders) t.join();
  EXPECT_EQ(failures.load(std::memory_order_relaxed), 0u);  // Relaxed: the joins ordered it.
  for (std::uint32_t a = 0; a < kSenders; ++a) {
    const LedgerTotals t = totals_of(*rt, a);
    EXPECT_EQ(t.count, kPerSender);
    EXPECT_EQ(t.violations, 0u);
  }
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, WaitersDrainingOneRingNeverTakeOrReorderEachOthersReplies) {
  const std::uint64_t seed = 1303;
  print_seed(seed);
  // One block: every reply of every thread comes through the same K2H ring.
  RuntimeOptions o;
  o.poll = PollPolicy::kLatency;
  auto rt = make_ledger(3, 1, o);
  ASSERT_TRUE(rt->start().ok());
  constexpr std::uint32_t kWaiters = 4, kRoundTrips = 1500;
  std::atomic<std::uint32_t> wrong{0};
  std::mutex ids_mu;
  std::set<std::thread::id> sender_ids;
  std::vector<std::thread::id> callback_ids;
  std::vector<std::thread> threads;
  for (std::uint32_t w = 0; w < kWaiters; ++w) {
    threads.emplace_back([&, w] {
      {
        std::lock_guard lock(ids_mu);
        sender_ids.insert(std::this_thread::get_id());
      }
      std::mt19937_64 rng(seed + w);
      for (std::uint32_t i = 0; i < kRoundTrips; ++i) {
        const std::array<std::uint64_t, 4> payload{w, i, rng(), rng()};
        const auto actor = static_cast<std::uint32_t>(rng() % 3);
        if (w == 0 && i % 3 == 0) {
          // Callbacks are the pump's: a draining waiter must leave them alone.
          std::atomic<bool> done{false};
          rt->send(actor, kLedgerEcho, &payload, sizeof payload, 0, [&](const Reply& r) {
            if (!r.status.ok() || std::memcmp(r.event.data.data(), &payload, sizeof payload) != 0)
              wrong.fetch_add(1, std::memory_order_relaxed);  // Relaxed: read after the joins.
            {
              std::lock_guard lock(ids_mu);
              callback_ids.push_back(std::this_thread::get_id());
            }
            done.store(true, std::memory_order_release);  // Release: pairs with the acquire below.
            done.notify_one();
          });
          done.wait(false, std::memory_order_acquire);  // Acquire: the callback is finished with `payload`.
          continue;
        }
        ReplyFuture f = rt->send(actor, kLedgerEcho, &payload, sizeof payload);
        const Reply r = f.get();
        if (!r.status.ok() || r.event.actor != actor ||
            std::memcmp(r.event.data.data(), payload.data(), sizeof payload) != 0)
          wrong.fetch_add(1, std::memory_order_relaxed);  // Relaxed: read after the joins.
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(std::memory_order_relaxed), 0u);  // Relaxed: the joins ordered it.
  ASSERT_EQ(callback_ids.size(), kRoundTrips / 3);
  for (const auto& id : callback_ids) EXPECT_EQ(sender_ids.count(id), 0u) << "a callback ran on a waiting thread";
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, ShutdownCompletesOutstandingRequestsWithAnErrorAndWakesBlockedWaiters) {
  auto rt = make_ledger(2, 2);
  ASSERT_TRUE(rt->start().ok());
  constexpr std::uint64_t kNever = std::uint64_t{1} << 40;
  std::vector<ReplyFuture> pending;
  for (int i = 0; i < 20; ++i) pending.push_back(rt->send(i % 2, kLedgerEcho, std::uint64_t(i), kNever));
  std::atomic<std::uint32_t> callbacks{0};
  for (int i = 0; i < 5; ++i) {
    rt->send(1, kLedgerEcho, std::uint64_t(i), kNever, [&](const Reply& r) {
      EXPECT_EQ(r.status.code(), StatusCode::kAborted);
      callbacks.fetch_add(1, std::memory_order_relaxed);  // Relaxed: read after shutdown returned.
    });
  }
  // Threads already asleep in get() when shutdown comes.
  std::vector<std::thread> waiters;
  std::atomic<std::uint32_t> aborted{0};
  for (int w = 0; w < 4; ++w) {
    waiters.emplace_back([&, w] {
      ReplyFuture f = std::move(pending[w]);
      const Reply r = f.get();
      if (r.status.code() == StatusCode::kAborted) aborted.fetch_add(1, std::memory_order_relaxed);  // Relaxed: joined.
    });
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(rt->shutdown().ok());
  for (auto& t : waiters) t.join();
  EXPECT_EQ(aborted.load(std::memory_order_relaxed), 4u);     // Relaxed: joined.
  EXPECT_EQ(callbacks.load(std::memory_order_relaxed), 5u);   // Relaxed: shutdown ran them.
  for (std::size_t i = 4; i < pending.size(); ++i) {
    const Reply r = pending[i].get();
    EXPECT_EQ(r.status.code(), StatusCode::kAborted);
    EXPECT_NE(r.status.message().find("was not answered"), std::string::npos) << r.status.message();
  }
  // After shutdown, sends fail at once with the reason.
  const Reply late = rt->send(0, kLedgerEcho, std::uint64_t{1}).get();
  EXPECT_EQ(late.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(rt->post(0, kLedgerEcho, std::uint64_t{1}).code(), StatusCode::kFailedPrecondition);
}

TEST(Messaging, AReplyWaitedForInsideACallbackArrivesWithoutDeadlock) {
  auto rt = make_ledger(2, 2);
  ASSERT_TRUE(rt->start().ok());
  std::promise<Reply> inner;
  rt->send(0, kLedgerEcho, std::uint64_t{1}, 0, [&](const Reply&) {
    // On the pump thread: the waiter drains the ring itself instead of parking on the pump.
    inner.set_value(rt->send(1, kLedgerEcho, std::uint64_t{2}).get());
  });
  auto f = inner.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  const Reply r = f.get();
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.event.as<std::uint64_t>(), 2u);
}

// A callback runs on the pump thread, the only drainer of replies nobody waits on. A callback
// that posts while the main thread streams sends into a small ring used to stall on the
// lane's mutex (held by the main thread, waiting for room the blocks make only once the pump
// drains K2H) until ring_full_timeout, then fail both sides with kRingFull.
TEST(Messaging, CallbacksThatPostWhileAnotherThreadStreamsSendsWaitForNoTimeout) {
  constexpr std::uint64_t kSends = 2000;
  // Before the runtime: its destructor may still run callbacks that count here.
  std::atomic<std::uint64_t> callbacks{0}, failed{0};
  auto rt = start_small_ring_ledger(1, 1s);
  ASSERT_TRUE(rt);
  // Bounded, so that the stalls this guards against fail the test in seconds, not minutes.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  for (std::uint64_t i = 0; i < kSends && std::chrono::steady_clock::now() < deadline; ++i) {
    rt->send(0, kLedgerEcho, i, 0, [&, i](const Reply& r) {
      // Replies of one actor come back in sending order, so the posts' sequence is in order.
      // Release (both): the main thread's acquire loads see the failure count with the total.
      if (!r.status.ok() || !rt->post(0, kLedgerAppend, LedgerEntry{1, 0, i + 1}).ok())
        failed.fetch_add(1, std::memory_order_release);
      callbacks.fetch_add(1, std::memory_order_release);
    });
  }
  // Acquire (all three loads): pair with the callbacks' release increments.
  while (callbacks.load(std::memory_order_acquire) < kSends && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(callbacks.load(std::memory_order_acquire), kSends) << "the sends did not all complete within 10 s";
  EXPECT_EQ(failed.load(std::memory_order_acquire), 0u) << "a send or a callback's post ran into ring_full_timeout";
  const LedgerTotals t = totals_of(*rt, 0);
  EXPECT_EQ(t.count, kSends);
  EXPECT_EQ(t.violations, 0u);
  EXPECT_TRUE(rt->shutdown().ok());
}

// A callback's own batch, larger than the ring: the room it waits for comes from the replies
// it cannot hand to anyone else, so it drains them while it waits (and handles them after).
TEST(Messaging, ACallbackSendingMoreThanTheRingHoldsGetsEveryReply) {
  std::vector<Command> batch;
  for (std::uint64_t i = 0; i < 200; ++i) batch.push_back(Command::make(0, kLedgerEcho, i));
  std::promise<std::vector<Reply>> inner;  // before the runtime, which may still run the callback
  auto rt = start_small_ring_ledger(1, 1s);
  ASSERT_TRUE(rt);
  rt->send(0, kLedgerEcho, std::uint64_t{0}, 0, [&](const Reply&) {
    std::vector<ReplyFuture> futures = rt->send_batch(batch);
    std::vector<Reply> replies;
    for (ReplyFuture& f : futures) replies.push_back(f.get());
    inner.set_value(std::move(replies));
  });
  auto f = inner.get_future();
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  const std::vector<Reply> replies = f.get();
  ASSERT_EQ(replies.size(), batch.size());
  for (std::uint64_t i = 0; i < replies.size(); ++i) {
    ASSERT_TRUE(replies[i].status.ok()) << "command " << i << ": " << replies[i].status.to_string();
    EXPECT_EQ(replies[i].event.as<std::uint64_t>(), i);
  }
  EXPECT_TRUE(rt->shutdown().ok());
}

// shutdown() from a callback joined the pump thread from itself (std::terminate), and
// run_until()/wait_parked() waited for park reports only that thread applies.
// A callback's send that waits for room drains K2H meanwhile and still gives up after
// ring_full_timeout, drained or not: here block 0's ring is held full by commands due far
// ahead while digests of every epoch keep K2H busy. (The deadline used to be skipped on a
// round that drained something; rounds that drain nothing come between digests here, so
// this checks the timeout on the pump thread, not that round-by-round detail.)
TEST(Messaging, ACallbackWaitingForRoomStillFailsAfterTheRingTimeoutWhileAnswersFlow) {
  std::promise<Status> inner;  // before the runtime, which may still run the callback
  RuntimeOptions o;
  o.digest_period = 1;
  auto rt = start_small_ring_ledger(2, 500ms, o);  // a deferred list of 16 too
  ASSERT_TRUE(rt);
  const std::uint64_t far = std::uint64_t{1} << 50;
  std::vector<Command> held;
  for (std::uint64_t i = 0; i < 32; ++i) held.push_back(Command::make(0, kLedgerEcho, i, far));
  ASSERT_TRUE(rt->post_batch(held).ok());  // 16 deferred, 16 backed up in the ring
  const auto sent = std::chrono::steady_clock::now();
  rt->send(1, kLedgerEcho, std::uint64_t{1}, 0,
           [&](const Reply&) { inner.set_value(rt->post(0, kLedgerEcho, std::uint64_t{2})); });
  auto f = inner.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << "the callback's post waited past its timeout";
  EXPECT_EQ(f.get().code(), StatusCode::kRingFull);
  EXPECT_LT(std::chrono::steady_clock::now() - sent, 5s);
  EXPECT_TRUE(rt->shutdown().ok());
}

// Before start() nothing consumes the H2K rings: a send that finds its ring full fails at
// once, naming start(), instead of waiting out ring_full_timeout (30 s here: without the
// check this test takes that long and fails on the message). What was queued stays queued
// and is applied, answered and counted once the grid runs.
TEST(Messaging, SendsBeforeStartBeyondTheRingFailAtOnceAndKeepWhatWasQueued) {
  RuntimeOptions o;
  o.ring_capacity = 16;
  o.ring_full_timeout = 30s;
  auto rt = make_ledger(1, 1, o);
  ASSERT_TRUE(rt);
  std::vector<ReplyFuture> queued;
  for (std::uint64_t i = 0; i < 8; ++i) queued.push_back(rt->send(0, kLedgerEcho, i));
  for (std::uint64_t i = 1; i <= 8; ++i) ASSERT_TRUE(rt->post(0, kLedgerAppend, LedgerEntry{1, 0, i}).ok());
  const Status posted = rt->post(0, kLedgerAppend, LedgerEntry{1, 0, 9});
  EXPECT_EQ(posted.code(), StatusCode::kRingFull) << posted.to_string();
  EXPECT_NE(posted.message().find("not started"), std::string::npos) << posted.to_string();
  EXPECT_NE(posted.message().find("start()"), std::string::npos) << posted.to_string();
  const Reply refused = rt->send(0, kLedgerEcho, std::uint64_t{99}).get();
  EXPECT_EQ(refused.status.code(), StatusCode::kRingFull) << refused.status.to_string();
  std::vector<Command> batch(4, append(0, 2, 1));
  const Status batched = rt->post_batch(batch);
  EXPECT_EQ(batched.code(), StatusCode::kRingFull) << batched.to_string();
  EXPECT_TRUE(rt->health().ok()) << "a refused send is not a runtime failure";

  ASSERT_TRUE(rt->start().ok());
  for (std::uint64_t i = 0; i < queued.size(); ++i) {
    ASSERT_EQ(queued[i].wait_for(10s), std::future_status::ready);
    const Reply r = queued[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    EXPECT_EQ(r.event.as<std::uint64_t>(), i);
  }
  const LedgerTotals t = totals_of(*rt, 0);
  EXPECT_EQ(t.count, 8u) << "the eight queued appends, and none of the refused ones";
  EXPECT_EQ(t.violations, 0u);
  EXPECT_TRUE(rt->post(0, kLedgerAppend, LedgerEntry{1, 0, 9}).ok()) << "sending works once started";
  EXPECT_EQ(totals_of(*rt, 0).count, 9u);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, CallsThatWaitForThePumpAreRefusedInsideACallbackAndChangeNothing) {
  std::promise<std::array<Status, 3>> inner;  // before the runtime, which may still run the callback
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt);
  ASSERT_TRUE(rt->start().ok());
  rt->send(0, kLedgerEcho, std::uint64_t{1}, 0, [&](const Reply&) {
    inner.set_value({rt->shutdown(), rt->run_until(rt->epoch() + 2, 10s), rt->wait_parked(10s)});
  });
  auto f = inner.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready) << "a call inside the callback waited";
  const std::array<Status, 3> calls = f.get();
  for (const Status& st : calls) {
    EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.to_string();
    EXPECT_NE(st.message().find("pump thread"), std::string::npos) << st.to_string();
  }
  // Still running and answering; the run_until's target was never set.
  ReplyFuture after = rt->send(0, kLedgerEcho, std::uint64_t{7});
  ASSERT_EQ(after.wait_for(10s), std::future_status::ready);
  const Reply r = after.get();
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.event.as<std::uint64_t>(), 7u);
  EXPECT_TRUE(rt->health().ok());
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, ACallbackWaitingOnAReplyTheSamePumpPassHoldsGetsIt) {
  // A (callback) and B (future) apply in one epoch on one actor, so one pump pass takes both
  // replies; A's callback waits on B, whose reply the pump has taken but not yet handled.
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt->set_target_epoch(8).ok());
  std::promise<Reply> inner;
  ReplyFuture b;
  rt->send(0, kLedgerEcho, std::uint64_t{1}, 5, [&](const Reply&) { inner.set_value(b.get()); });
  b = rt->send(0, kLedgerEcho, std::uint64_t{2}, 5);
  auto f = inner.get_future();
  ASSERT_TRUE(rt->start().ok());
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready) << "the pump thread waited on itself";
  const Reply r = f.get();
  ASSERT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.event.as<std::uint64_t>(), 2u);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Messaging, ShutdownFailsFuturesBeforeCallbacksSoACallbackMayWaitOnOne) {
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt->start().ok());
  constexpr std::uint64_t kNever = std::uint64_t{1} << 40;
  ReplyFuture later;
  StatusCode seen = StatusCode::kOk;
  rt->send(0, kLedgerEcho, std::uint64_t{1}, kNever, [&](const Reply&) { seen = later.get().status.code(); });
  later = rt->send(0, kLedgerEcho, std::uint64_t{2}, kNever);
  EXPECT_TRUE(rt->shutdown().ok());  // returns: the callback found `later` already failed
  EXPECT_EQ(seen, StatusCode::kAborted);
}

TEST(Messaging, AFutureMayOutliveItsRuntime) {
  ReplyFuture f;
  {
    auto rt = make_ledger(1, 1);
    ASSERT_TRUE(rt->start().ok());
    f = rt->send(0, kLedgerEcho, std::uint64_t{7}, std::uint64_t{1} << 40);
  }
  ASSERT_TRUE(f.valid());
  EXPECT_EQ(f.wait_for(0s), std::future_status::ready);
  const Reply r = f.get();
  EXPECT_EQ(r.status.code(), StatusCode::kAborted);
  EXPECT_FALSE(f.valid());
}

TEST(Messaging, PostedCommandErrorsGoToTheErrorCallbackAndTheRuntimeKeepsRunning) {
  auto rt = make_ledger(2, 1);
  std::mutex mu;
  std::vector<Status> reported;
  rt->set_error_callback([&](const Status& st) {
    std::lock_guard lock(mu);
    reported.push_back(st);
  });
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->post(1, kLedgerReject, std::uint64_t{0}).ok());
  ASSERT_TRUE(rt->post(0, kUserOpcodeBase + 0x77, std::uint64_t{0}).ok());
  // Applied before the query that follows them on the same actors.
  EXPECT_EQ(totals_of(*rt, 1).count, 0u);
  EXPECT_EQ(totals_of(*rt, 0).count, 0u);
  EXPECT_TRUE(rt->health().ok()) << "a failed post is not fatal";
  // The pump reports errors after it handles them; wait until both are in.
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(mu);
      if (reported.size() >= 2) break;
    }
    std::this_thread::sleep_for(2ms);
  }
  std::lock_guard lock(mu);
  ASSERT_EQ(reported.size(), 2u);
  std::set<StatusCode> codes{reported[0].code(), reported[1].code()};
  EXPECT_EQ(codes, (std::set<StatusCode>{StatusCode::kInvalidArgument, StatusCode::kUnknownOpcode}));
  for (const Status& st : reported) EXPECT_NE(st.message().find("a posted command"), std::string::npos) << st.message();
  EXPECT_EQ(rt->stats().errors, 2u);
}

TEST(Messaging, PostToAnActorTheRuntimeDoesNotHaveIsRefusedAtOnceAndPostsNothing) {
  auto rt = make_ledger(2, 1);
  ASSERT_TRUE(rt->start().ok());
  const Status one = rt->post(2, kLedgerAppend, LedgerEntry{0, 0, 1});
  EXPECT_EQ(one.code(), StatusCode::kOutOfRange);
  EXPECT_NE(one.message().find("actor 2"), std::string::npos) << one.message();
  const std::vector<Command> batch{append(0, 0, 1), append(7, 0, 1), append(1, 0, 1)};
  const Status many = rt->post_batch(batch);
  EXPECT_EQ(many.code(), StatusCode::kOutOfRange);
  EXPECT_NE(many.message().find("command 1"), std::string::npos) << many.message();
  EXPECT_EQ(totals_of(*rt, 0).count, 0u);
  EXPECT_EQ(totals_of(*rt, 1).count, 0u);
  EXPECT_EQ(rt->stats().posts, 0u);
}

TEST(Messaging, ACommandDueFarInTheFutureNeverHoldsBackTheThousandsSentAfterIt) {
  RuntimeOptions o;
  o.ring_capacity = 64;  // request windows of 1024: the later ids lap the far one's slot
  auto rt = make_ledger(1, 1, o);
  ASSERT_TRUE(rt->start().ok());
  ReplyFuture far = rt->send(0, kLedgerEcho, std::uint64_t{1}, std::uint64_t{1} << 40);
  for (std::uint64_t i = 1; i <= 5000; ++i) {
    const Reply r = rt->send(0, kLedgerAppend, LedgerEntry{0, 0, i}).get();
    ASSERT_TRUE(r.status.ok()) << "send " << i << ": " << r.status.to_string();
  }
  EXPECT_EQ(far.wait_for(0s), std::future_status::timeout);
  EXPECT_EQ(totals_of(*rt, 0).count, 5000u);
  EXPECT_TRUE(rt->shutdown().ok());
  EXPECT_EQ(far.get().status.code(), StatusCode::kAborted);
}

TEST(Messaging, SendBatchWithAShortReplySpanSendsNothingAndSaysSo) {
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt->start().ok());
  const std::vector<Command> batch{append(0, 0, 1), append(0, 0, 2)};
  std::vector<ReplyFuture> one(1);
  rt->send_batch(batch, one);
  const Reply r = one[0].get();
  EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(totals_of(*rt, 0).count, 0u);
}

TEST(Messaging, ABufferAndItsSizeSendTheBytesNotThePointer) {
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt->set_target_epoch(3).ok());
  std::byte buffer[kEnvelopeDataBytes];
  for (std::size_t i = 0; i < sizeof buffer; ++i) buffer[i] = static_cast<std::byte>(i * 7 + 1);
  const std::array<std::byte, kEnvelopeDataBytes> as_array = std::to_array(buffer);
  // Arrays and pointers take the (data, bytes) overloads: the size is not an apply epoch.
  ReplyFuture from_array = rt->send(0, kLedgerEcho, buffer, sizeof buffer);
  ReplyFuture from_pointer = rt->send(0, kLedgerEcho, &as_array, sizeof as_array);
  ASSERT_TRUE(rt->start().ok());  // sent before the launch: they apply at epoch 1
  ASSERT_TRUE(rt->run_until(3, 10s).ok());
  for (ReplyFuture* f : {&from_array, &from_pointer}) {
    const Reply r = f->get();
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    EXPECT_EQ(r.event.epoch, 1u) << "applied at the next epoch, not at epoch " << sizeof buffer;
    EXPECT_EQ(std::memcmp(r.event.data.data(), buffer, sizeof buffer), 0);
  }
}

TEST(Messaging, MoreThan32BytesOrNoDataPointerIsRefusedNotTruncated) {
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt->start().ok());
  const std::byte big[40] = {};
  const Reply r = rt->send(0, kLedgerEcho, big, sizeof big).get();
  EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status.message().find("at most 32 bytes"), std::string::npos) << r.status.message();
  EXPECT_EQ(rt->post(0, kLedgerEcho, big, sizeof big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rt->post(0, kLedgerEcho, nullptr, 8).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(rt->send(0, kLedgerEcho, nullptr, 0).get().status.ok()) << "no data at all is fine";
  EXPECT_EQ(rt->stats().commands_sent, 1u);
}

// The runtime's own opcodes drive its protocols: sent by an application, kOpRestoreActor
// overwrote an actor with a staging slot's image and kOpSnapshotActor left a future that never
// completed. Every send path refuses them (kOpPing, a no-op, stays allowed) and sends nothing.
TEST(Messaging, TheRuntimesOwnOpcodesAreRefusedOnEverySendPathAndNothingIsSent) {
  auto rt = make_ledger(2, 1);
  ASSERT_TRUE(rt->start().ok());
  for (const std::uint16_t op : {std::uint16_t{kOpRestoreActor}, std::uint16_t{kOpSnapshotActor},
                                 std::uint16_t{kOpReleaseStaging}, std::uint16_t{0}, std::uint16_t{kUserOpcodeBase - 1}}) {
    SCOPED_TRACE("opcode " + std::to_string(op));
    const Reply r = rt->send(0, op, std::uint64_t{0}).get();
    EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status.message().find("kUserOpcodeBase"), std::string::npos) << r.status.message();
    Status via_callback;
    rt->send(0, op, nullptr, 0, 0, [&](const Reply& reply) { via_callback = reply.status; });
    EXPECT_EQ(via_callback.code(), StatusCode::kInvalidArgument) << "the callback ran at once with the refusal";
    EXPECT_EQ(rt->post(1, op, std::uint64_t{0}).code(), StatusCode::kInvalidArgument);
    std::vector<Command> batch{append(0, 0, 1), append(1, 0, 1)};
    batch[1].opcode = op;
    const Status posted = rt->post_batch(batch);
    EXPECT_EQ(posted.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(posted.message().find("command 1 of the batch"), std::string::npos) << posted.message();
    for (ReplyFuture& f : rt->send_batch(batch)) EXPECT_EQ(f.get().status.code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(rt->stats().commands_sent, 0u);
  EXPECT_EQ(totals_of(*rt, 0).count, 0u) << "no command of a refused batch was sent";
  EXPECT_TRUE(rt->send(0, kOpPing, nullptr, 0).get().status.ok()) << "a ping is still the application's to send";
}

TEST(ReplyFuture, WaitForZeroAndReadyPollWithoutBlocking) {
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->pause().ok());
  ASSERT_TRUE(rt->wait_parked(10s).ok());
  ReplyFuture f = rt->send(0, kLedgerEcho, std::uint64_t{5});
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(f.wait_for(0s), std::future_status::timeout);
  EXPECT_FALSE(f.ready());
  EXPECT_EQ(f.wait_until(std::chrono::steady_clock::now() + 2ms), std::future_status::timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << "polling must not block";
  ASSERT_TRUE(rt->resume().ok());
  f.wait();
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(f.get().event.as<std::uint64_t>(), 5u);
}

TEST(ReplyFuture, GetOnAnEmptyFutureReturnsAnErrorSayingWhy) {
  ReplyFuture f;
  EXPECT_FALSE(f.valid());
  const Reply r = f.get();
  EXPECT_EQ(r.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status.message().find("holds no reply"), std::string::npos);
}

TEST(ReplyFuture, DroppedFuturesDoNotLoseLaterReplies) {
  auto rt = make_ledger(1, 1);
  ASSERT_TRUE(rt->start().ok());
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 20; ++i) (void)rt->send(0, kLedgerEcho, std::uint64_t(i));  // dropped at once
    const Reply r = rt->send(0, kLedgerEcho, static_cast<std::uint64_t>(1000 + round)).get();
    ASSERT_TRUE(r.status.ok());
    ASSERT_EQ(r.event.as<std::uint64_t>(), static_cast<std::uint64_t>(1000 + round));
  }
}

TEST(PollPolicy, EveryPolicyAnswersAfterIdleGaps) {
  for (PollPolicy p : {PollPolicy::kAuto, PollPolicy::kLatency, PollPolicy::kBalanced, PollPolicy::kLowPower}) {
    SCOPED_TRACE(poll_policy_name(p));
    RuntimeOptions o = cpu_runtime(2, 2);
    o.poll = p;
    auto created = Runtime::create(examples::echo_program(), examples::Echo::Params{}, o);
    ASSERT_TRUE(created.ok());
    Runtime& rt = *created.value();
    EXPECT_EQ(rt.poll_policy(), p == PollPolicy::kAuto ? PollPolicy::kBalanced : p) << "auto is balanced on the CPU";
    ASSERT_TRUE(rt.start().ok());
    for (auto gap : {0ms, 2ms, 30ms}) {
      std::this_thread::sleep_for(gap);
      const Reply r = rt.send(1, examples::kEchoPing, std::uint64_t{42}).get();
      ASSERT_TRUE(r.status.ok()) << r.status.to_string();
      EXPECT_EQ(r.event.as<std::uint64_t>(), 42u);
    }
    EXPECT_TRUE(rt.shutdown().ok());
  }
  EXPECT_EQ(parse_poll_policy("low_power").value(), PollPolicy::kLowPower);
  EXPECT_EQ(parse_poll_policy("fast").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pkrt::testing
