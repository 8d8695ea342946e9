// bench/ring_bench.cpp: messaging cost end to end through the runtime (host -> echo actor ->
// host), against a Boost.Lockfree spsc_queue ping-pong between two threads with 64-byte
// elements measured in the same binary. pkrt's bare SPSC ring (the data structure the runtime
// uses, driven by two host threads) is measured alongside, so the report can tell the ring's
// cost from the runtime's hand-offs.
//
// Round trips. Every iteration times one round trip (two steady_clock reads, the same in every
// variant) into a LatencyHistogram: counters p50_ns, p99_ns, p999_ns, samples; the CDF goes to
// $PKRT_BENCH_CDF_DIR when set (bench/report.sh plots it). switches_per_op: context switches of
// the whole process per round trip (0 when every hand-off is a spinning thread's).
//   BM_RingRoundTrip/boost_spsc           baseline: ping-pong over two spsc_queues
//   BM_RingRoundTrip/pkrt_ring            pkrt::RingProducer/RingConsumer, same ping-pong
//   BM_RingRoundTrip/futex_wake/gap:<g>   baseline of the gap variants: a round trip to a
//                                         thread asleep in a futex, after <g> idle
//   .../echo_cpu/future                   Runtime::send(...).get(), back to back: what an
//                                         application sees (default poll policy)
//   .../echo_cpu/future/policy:<p>        the same under PollPolicy latency, balanced, low_power
//   .../echo_cpu/future/gap:<g>           one send().get() after the sender slept <g> (100us,
//                                         10ms; the sleep is not timed): back-off sleeps show
//   .../echo_cpu/future/gap:10ms/policy:<p>
//   .../echo_cpu/callback                 chained reply callbacks: each reply's callback (on
//                                         the pump) sends the next ping
//   .../echo_cuda/...                     the same on the CUDA backend (skipped without a GPU);
//                                         its baseline, an empty kernel launch +
//                                         cudaStreamSynchronize, is BM_CudaLaunchSync/empty
//                                         (bench/cuda_bench.cu)
// Throughput, one host producer (items = messages, 64-byte slots; switches_per_op: context
// switches of the process per message):
//   BM_RingThroughput/boost_spsc          baseline: a consumer thread drains the queue
//   BM_RingThroughput/pkrt_ring           the bare ring, the same way
//   .../echo_cpu/post                     post_batch() of 64 commands per call
//   .../echo_cpu/send_batch               send_batch() of 64 with futures, get() each (the
//                                         previous batch's, while this one is queued)
//   .../echo_cpu/post_single              post() one command at a time
//   .../echo_cpu/<feed>/log               the same with a replay log recording every slot
//   .../echo_cuda/{post,send_batch}       the batched feeds on the CUDA backend
// Each echo throughput run ends by asking the actor how many pings it answered (kEchoCount,
// applied after every earlier command to the actor) and fails unless every message arrived.
// Paired throughput (the report's targets; one iteration of 9 alternating windows, A B
// then B A; counters ratio_median/min/max, rate and baseline_rate, the medians):
//   BM_RingThroughputPaired/echo_cpu/{post,send_batch}/vs_boost     the feed vs the Boost queue
//   BM_RingThroughputPaired/echo_cpu/{post,send_batch}/log_vs_none  with a replay log vs without
//   BM_RingRoundTripPaired/echo_cpu/future/vs_boost   send().get() vs the Boost ping-pong
//                                         (p50 and p99 ratios to Boost's p50, per pair)
#include "bench/bench_util.hpp"
#include "bench/latency_histogram.hpp"
#include "examples/echo/echo.hpp"

#include <pkrt/replay_log.hpp>
#include <pkrt/ring.hpp>
#include <pkrt/runtime.hpp>

#include <benchmark/benchmark.h>
#include <boost/lockfree/spsc_queue.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pkrt::bench {
namespace {

using Clock = std::chrono::steady_clock;
using examples::echo_program;
using examples::kEchoCount;
using examples::kEchoPing;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// How every host-side poll loop of the baselines waits: spin with a pause, and yield every 256
// polls, so a peer that the scheduler took off its core (these machines are shared) gets it
// back within a yield, not a time slice.
class SpinWait {
 public:
  void operator()() {
    if (++n_ % 256 == 0) {
      std::this_thread::yield();
    } else {
      cpu_relax();
    }
  }

 private:
  std::uint32_t n_ = 0;
};

struct alignas(64) Msg64 {
  std::uint64_t seq;
  std::byte pad[56];
};
static_assert(sizeof(Msg64) == 64, "the baseline moves 64-byte elements, like a ring slot");

// An echo ping's 32 bytes of data.
struct Ping {
  std::uint64_t words[4];
};
static_assert(sizeof(Ping) == kEnvelopeDataBytes, "a ping fills the slot's data");

constexpr std::size_t kQueueCapacity = 1024;
using BoostQueue = boost::lockfree::spsc_queue<Msg64, boost::lockfree::capacity<kQueueCapacity>>;

// Commands per post_batch / send_batch call in the throughput benchmarks.
constexpr std::size_t kBatch = 64;

// ---- Baseline: Boost.Lockfree ---------------------------------------------------------------

// An echo thread answering 64-byte pings over two Boost spsc queues: the round-trip baseline.
class BoostEcho {
 public:
  BoostEcho() : thread_([this] { run(); }) {}
  ~BoostEcho() {
    stop_.store(true, std::memory_order_relaxed);  // Relaxed: pairs with run()'s stop load.
    thread_.join();
  }
  BoostEcho(const BoostEcho&) = delete;
  BoostEcho& operator=(const BoostEcho&) = delete;

  // One ping and its answer; returns how long it took.
  Clock::duration round_trip() {
    ++out_.seq;
    const auto t0 = Clock::now();
    SpinWait w;
    while (!ping_->push(out_)) w();
    while (!pong_->pop(in_)) w();
    const auto elapsed = Clock::now() - t0;
    benchmark::DoNotOptimize(in_);
    return elapsed;
  }

 private:
  void run() {
    Msg64 m;
    SpinWait idle;
    // Relaxed: a stop flag, set once by the destructor; the queues carry their own ordering.
    while (!stop_.load(std::memory_order_relaxed)) {
      if (ping_->pop(m)) {
        SpinWait w;
        while (!pong_->push(m)) w();
      } else {
        idle();
      }
    }
  }

  std::unique_ptr<BoostQueue> ping_ = std::make_unique<BoostQueue>();
  std::unique_ptr<BoostQueue> pong_ = std::make_unique<BoostQueue>();
  std::atomic<bool> stop_{false};
  Msg64 out_{};
  Msg64 in_{};
  std::thread thread_;  // last: started once every other member is constructed
};

// A consumer thread draining 64-byte messages from a Boost spsc queue: the throughput baseline.
class BoostSink {
 public:
  BoostSink() : thread_([this] { run(); }) {}
  ~BoostSink() {
    stop_.store(true, std::memory_order_relaxed);  // Relaxed: pairs with run()'s stop load.
    thread_.join();
  }
  BoostSink(const BoostSink&) = delete;
  BoostSink& operator=(const BoostSink&) = delete;

  void push() {
    ++msg_.seq;
    while (!queue_->push(msg_)) full_();
  }
  // Waits until the consumer has taken `pushed` messages.
  void drain(std::uint64_t pushed) {
    SpinWait w;
    // Relaxed: a counter, paired with the consumer's store; nothing else is read through it.
    while (consumed_.load(std::memory_order_relaxed) < pushed) w();
  }

 private:
  void run() {
    std::uint64_t n = 0;
    SpinWait idle;
    // Relaxed (stop, consumed): a flag and a counter; the queue orders the messages.
    while (!stop_.load(std::memory_order_relaxed)) {
      const std::size_t got = queue_->consume_all([&](const Msg64& x) {
        benchmark::DoNotOptimize(x);
        ++n;
      });
      if (got == 0) idle();
      consumed_.store(n, std::memory_order_relaxed);
    }
  }

  std::unique_ptr<BoostQueue> queue_ = std::make_unique<BoostQueue>();
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> consumed_{0};
  Msg64 msg_{};
  SpinWait full_;
  std::thread thread_;  // last: started once every other member is constructed
};

void BM_RingRoundTrip_Boost(benchmark::State& state, const std::string& name) {
  BoostEcho echo;
  LatencyHistogram histogram;
  const auto switches = process_context_switches();
  for (auto _ : state) histogram.record(echo.round_trip());
  publish_switches(state, switches, static_cast<double>(state.iterations()));
  state.SetItemsProcessed(state.iterations());
  publish_latency(state, histogram, name);
}

void BM_RingThroughput_Boost(benchmark::State& state) {
  BoostSink sink;
  const auto switches = process_context_switches();
  for (auto _ : state) sink.push();
  const auto want = static_cast<std::uint64_t>(state.iterations());
  sink.drain(want);
  publish_switches(state, switches, static_cast<double>(want));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 64);
}

// Baseline of the idle-gap variants: the cheapest round trip to a thread that sleeps. The echo
// thread blocks in std::atomic::wait (a futex once its short spin is over); the sender sleeps the
// gap (not timed), then stores, notifies, and spins for the answer: one futex wake-up after
// idle plus two cache-line hand-offs, what this machine charges before any runtime work.
void BM_RingRoundTrip_FutexWake(benchmark::State& state, std::chrono::microseconds gap, const std::string& name) {
  constexpr std::uint64_t kStop = ~std::uint64_t{0};
  std::atomic<std::uint64_t> request{0};
  std::atomic<std::uint64_t> answer{0};
  std::thread echo([&] {
    std::uint64_t seen = 0;
    for (;;) {
      // Acquire (wait and load): pairs with the sender's release store of the request.
      request.wait(seen, std::memory_order_acquire);
      seen = request.load(std::memory_order_acquire);
      if (seen == kStop) return;
      // Release: pairs with the sender's acquire spin on the answer.
      answer.store(seen, std::memory_order_release);
    }
  });
  LatencyHistogram histogram;
  std::uint64_t n = 0;
  const auto switches = process_context_switches();
  for (auto _ : state) {
    std::this_thread::sleep_for(gap);
    const auto t0 = Clock::now();
    request.store(++n, std::memory_order_release);  // Release: pairs with the echo thread's acquire.
    request.notify_one();
    SpinWait w;
    // Acquire: pairs with the echo thread's release store of the answer.
    while (answer.load(std::memory_order_acquire) != n) w();
    const auto elapsed = Clock::now() - t0;
    histogram.record(elapsed);
    state.SetIterationTime(std::chrono::duration<double>(elapsed).count());
  }
  publish_switches(state, switches, static_cast<double>(state.iterations()));
  request.store(kStop, std::memory_order_release);  // Release: as above; the echo thread returns.
  request.notify_one();
  echo.join();
  state.SetItemsProcessed(state.iterations());
  publish_latency(state, histogram, name);
}

// ---- pkrt's SPSC ring, bare (two host threads) ----------------------------------------------

struct HostRing {
  explicit HostRing(std::uint32_t capacity) {
    const std::size_t bytes = (ring_bytes(capacity) + 63) / 64 * 64;
    mem = static_cast<RingHeader*>(std::aligned_alloc(64, bytes));
    std::memset(static_cast<void*>(mem), 0, bytes);
    ring_init(mem, capacity);
  }
  ~HostRing() { std::free(mem); }
  HostRing(const HostRing&) = delete;
  HostRing& operator=(const HostRing&) = delete;
  RingHeader* mem;
};

void BM_RingRoundTrip_PkrtRing(benchmark::State& state, const std::string& name) {
  HostRing ping(kQueueCapacity), pong(kQueueCapacity);
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    RingConsumer in(ping.mem);
    RingProducer out(pong.mem);
    Slot s;
    SpinWait idle;
    // Relaxed: a stop flag, set once by the benchmark thread; the rings order the slots.
    while (!stop.load(std::memory_order_relaxed)) {
      if (in.try_consume(s)) {
        SpinWait w;
        while (!out.try_publish(s.header.opcode, s.header.flags, s.header.actor, s.payload)) w();
      } else {
        idle();
      }
    }
  });
  RingProducer out(ping.mem);
  RingConsumer in(pong.mem);
  LatencyHistogram histogram;
  Envelope env{};
  Slot r;
  const auto switches = process_context_switches();
  for (auto _ : state) {
    ++env.request;
    const auto t0 = Clock::now();
    SpinWait w;
    while (!out.try_publish(kEchoPing, 0, 0, env)) w();
    while (!in.try_consume(r)) w();
    histogram.record(Clock::now() - t0);
    benchmark::DoNotOptimize(r);
  }
  publish_switches(state, switches, static_cast<double>(state.iterations()));
  stop.store(true, std::memory_order_relaxed);  // Relaxed: pairs with the echo thread's stop load.
  echo.join();
  state.SetItemsProcessed(state.iterations());
  publish_latency(state, histogram, name);
}

void BM_RingThroughput_PkrtRing(benchmark::State& state) {
  HostRing ring(kQueueCapacity);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> consumed{0};
  std::thread consumer([&] {
    RingConsumer in(ring.mem);
    Slot s;
    std::uint64_t n = 0;
    SpinWait idle;
    // Relaxed (stop with the benchmark thread's store, consumed with its drain loads): a flag
    // and a counter; the ring orders the slots.
    while (!stop.load(std::memory_order_relaxed)) {
      bool any = false;
      while (in.try_consume(s)) {
        benchmark::DoNotOptimize(s);
        ++n;
        any = true;
      }
      if (!any) idle();
      consumed.store(n, std::memory_order_relaxed);
    }
  });
  RingProducer out(ring.mem);
  Envelope env{};
  SpinWait full;
  const auto switches = process_context_switches();
  for (auto _ : state) {
    ++env.request;
    while (!out.try_publish(kEchoPing, 0, 0, env)) full();
  }
  const auto want = static_cast<std::uint64_t>(state.iterations());
  SpinWait drain;
  // Relaxed: a counter, paired with the consumer's store; nothing else is read through it.
  while (consumed.load(std::memory_order_relaxed) < want) drain();
  publish_switches(state, switches, static_cast<double>(want));
  stop.store(true, std::memory_order_relaxed);  // Relaxed: pairs with the consumer's stop load.
  consumer.join();
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 64);
}

// ---- End to end through the runtime: host -> echo actor -> host ------------------------------

// One echo actor on one block; nothing but the poll policy (and the replay log) changes
// between variants. idle_spin stays 0: each policy's own block spin is what is measured.
std::unique_ptr<Runtime> start_echo(benchmark::State& state, BackendKind backend, PollPolicy policy,
                                    std::shared_ptr<ReplayLogWriter> log = nullptr) {
  if (backend == BackendKind::kCuda && skip_without_cuda(state)) return nullptr;
  RuntimeOptions o;
  o.backend = backend;
  o.num_actors = 1;
  o.threads = 1;
  o.snapshots = false;
  o.poll = policy;
  o.replay_log = std::move(log);
  auto rt = Runtime::create(echo_program(), examples::Echo::Params{}, o);
  if (!rt.ok()) {
    state.SkipWithError(rt.status().to_string().c_str());
    return nullptr;
  }
  Status st = rt.value()->start();
  if (!st.ok()) {
    state.SkipWithError(st.to_string().c_str());
    return nullptr;
  }
  return std::move(rt.value());
}

// Round trips before any timed one: the first sends pay for page faults and the request
// pool's first block.
Status warm_up(Runtime& rt) {
  const Ping ping{};
  for (int i = 0; i < 100; ++i) {
    Reply r = rt.send(0, kEchoPing, ping).get();
    if (!r.status.ok()) return r.status;
  }
  return Status();
}

// Round trip as an application sees it: send, then block on the future. With a gap, the
// sender first sleeps `gap` (untimed: manual time) so that every poller has backed off.
void BM_RingRoundTrip_EchoFuture(benchmark::State& state, BackendKind backend, PollPolicy policy,
                                 std::chrono::microseconds gap, const std::string& name) {
  auto rt = start_echo(state, backend, policy);
  if (!rt) return;
  if (Status st = warm_up(*rt); !st.ok()) {
    state.SkipWithError(st.to_string().c_str());
    rt->shutdown().ignore();
    return;
  }
  LatencyHistogram histogram;
  Ping ping{};
  const auto switches = process_context_switches();
  for (auto _ : state) {
    if (gap.count() > 0) std::this_thread::sleep_for(gap);
    ++ping.words[0];
    const auto t0 = Clock::now();
    Reply r = rt->send(0, kEchoPing, ping).get();
    const auto elapsed = Clock::now() - t0;
    histogram.record(elapsed);
    if (gap.count() > 0) state.SetIterationTime(std::chrono::duration<double>(elapsed).count());
    if (!r.status.ok()) {
      state.SkipWithError(r.status.to_string().c_str());
      break;
    }
  }
  // With a gap, the sender's own sleep counts too (one switch per iteration at least).
  publish_switches(state, switches, static_cast<double>(state.iterations()));
  state.SetItemsProcessed(state.iterations());
  publish_latency(state, histogram, name);
  rt->shutdown().ignore();
}

// Round trip without the sender's wake-up: each reply callback (on the pump thread) sends the
// next ping. One iteration is a chain of kChain round trips; round_trip_ns is the mean time
// per round trip and the histogram holds each one (send to its callback).
void BM_RingRoundTrip_EchoCallback(benchmark::State& state, BackendKind backend, const std::string& name) {
  auto rt = start_echo(state, backend, PollPolicy::kAuto);
  if (!rt) return;
  constexpr int kChain = 1000;
  // Runs on the benchmark thread (the first send) and then on the pump thread (every
  // callback); run() hands it back through `done`.
  struct Chain {
    Runtime* rt = nullptr;
    Ping ping{};
    int left = 0;
    Clock::time_point sent;
    LatencyHistogram histogram;
    std::atomic<std::uint32_t> done{0};
    Status failure;
    void next() {
      ++ping.words[0];
      sent = Clock::now();
      rt->send(0, kEchoPing, ping, 0, [this](const Reply& r) {
        histogram.record(Clock::now() - sent);
        if (!r.status.ok()) failure = r.status;
        if (--left > 0 && r.status.ok()) {
          next();
        } else {
          // Release: publishes histogram and failure to run()'s acquire on the benchmark thread.
          done.store(1, std::memory_order_release);
          done.notify_one();
        }
      });
    }
    void run(int n) {
      left = n;
      done.store(0, std::memory_order_relaxed);  // Relaxed: no chain is running, nobody reads it.
      next();
      done.wait(0, std::memory_order_acquire);  // Acquire: pairs with the callback's release.
    }
  } chain;
  chain.rt = rt.get();
  chain.run(200);  // warm-up; its round trips are dropped from the histogram here:
  chain.histogram = LatencyHistogram();
  double seconds = 0;
  const auto switches = process_context_switches();
  for (auto _ : state) {
    const auto t0 = Clock::now();
    chain.run(kChain);
    seconds += seconds_since(t0);
    if (!chain.failure.ok()) {
      state.SkipWithError(chain.failure.to_string().c_str());
      break;
    }
  }
  const double trips = static_cast<double>(state.iterations()) * kChain;
  publish_switches(state, switches, trips);
  state.counters["round_trip_ns"] = trips > 0 ? seconds / trips * 1e9 : 0.0;
  state.SetItemsProcessed(state.iterations() * kChain);
  publish_latency(state, chain.histogram, name);
  rt->shutdown().ignore();
}

enum class Feed {
  kPostBatch,   // post_batch(): kBatch commands, one reservation, one doorbell
  kSendBatch,   // send_batch() with a future per command
  kPostSingle,  // post(): one command per call
};

// The first error among a batch's replies (every future is waited for).
Status collect(std::span<ReplyFuture> replies) {
  Status first;
  for (ReplyFuture& f : replies) {
    Reply r = f.get();
    if (!r.status.ok() && first.ok()) first = r.status;
  }
  return first;
}

// Feeds kBatch-command batches (or single posts) to one echo actor, one step per call, and
// checks at the end that the actor answered every ping (kEchoCount, applied after every earlier
// command to the actor).
class EchoFeeder {
 public:
  // `pings`: what the actor already counted (the warm-up's).
  EchoFeeder(Runtime& rt, Feed feed, std::uint64_t pings)
      : rt_(rt), feed_(feed), pings_(pings), batch_(kBatch, Command::make(0, kEchoPing, Ping{})) {}

  std::int64_t messages_per_step() const { return feed_ == Feed::kPostSingle ? 1 : static_cast<std::int64_t>(kBatch); }

  Status step() {
    switch (feed_) {
    case Feed::kPostBatch:
      pings_ += kBatch;
      return rt_.post_batch(batch_);
    case Feed::kSendBatch: {
      // One batch is queued while the previous one's replies are collected.
      rt_.send_batch(batch_, in_flight_[current_]);
      pings_ += kBatch;
      Status failure = previous_pending_ ? collect(in_flight_[current_ ^ 1]) : Status();
      previous_pending_ = true;
      current_ ^= 1;
      return failure;
    }
    case Feed::kPostSingle:
      pings_ += 1;
      return rt_.post(0, kEchoPing, Ping{});
    }
    return Status();
  }

  // Collects what is still in flight (at most a ring's worth, as in the baselines' untimed
  // drain) and asks the actor for its count.
  Status finish() {
    Status failure = previous_pending_ ? collect(in_flight_[current_ ^ 1]) : Status();
    previous_pending_ = false;
    Reply count = rt_.send(0, kEchoCount, std::uint64_t{0}).get();
    if (failure.ok() && !count.status.ok()) failure = count.status;
    if (failure.ok() && count.event.as<std::uint64_t>() != pings_) {
      failure =
          Status(StatusCode::kInternal, "the echo actor answered " + std::to_string(count.event.as<std::uint64_t>()) +
                                            " pings of " + std::to_string(pings_) + " sent");
    }
    return failure;
  }

 private:
  Runtime& rt_;
  Feed feed_;
  std::uint64_t pings_;
  std::vector<Command> batch_;
  std::array<std::array<ReplyFuture, kBatch>, 2> in_flight_;
  std::size_t current_ = 0;
  bool previous_pending_ = false;
};

// A replay log in the benchmark's scratch directory, named after the benchmark (and `tag`).
// The product's default capacity (2^20 records, 128 MiB): it wraps in a long run, which costs
// nothing more.
Result<std::shared_ptr<ReplayLogWriter>> scratch_log(const std::string& name, const std::string& tag = "") {
  std::string dir = "ring-" + name.substr(name.find('/') + 1) + tag;
  for (char& c : dir)
    if (c == '/' || c == ':') c = '-';
  auto made = ReplayLogWriter::create((scratch_dir(dir) / "run.pkrl").string());
  if (!made.ok()) return made.status();
  return std::shared_ptr<ReplayLogWriter>(std::move(made.value()));
}

// An echo runtime ready for a throughput run (warmed up); null after reporting the error.
std::unique_ptr<Runtime> start_warm_echo(benchmark::State& state, BackendKind backend,
                                         std::shared_ptr<ReplayLogWriter> log) {
  auto rt = start_echo(state, backend, PollPolicy::kAuto, std::move(log));
  if (!rt) return nullptr;
  if (Status st = warm_up(*rt); !st.ok()) {
    state.SkipWithError(st.to_string().c_str());
    rt->shutdown().ignore();
    return nullptr;
  }
  return rt;
}

constexpr std::uint64_t kWarmUpPings = 100;  // warm_up()'s round trips

// Feeds one echo actor as fast as the H2K ring takes the commands.
void BM_RingThroughput_Echo(benchmark::State& state, BackendKind backend, Feed feed, bool with_log,
                            const std::string& name) {
  if (backend == BackendKind::kCuda && skip_without_cuda(state)) return;
  std::shared_ptr<ReplayLogWriter> log;
  if (with_log) {
    auto made = scratch_log(name);
    if (!made.ok()) {
      state.SkipWithError(made.status().to_string().c_str());
      return;
    }
    log = std::move(made.value());
  }
  auto rt = start_warm_echo(state, backend, log);
  if (!rt) return;
  EchoFeeder feeder(*rt, feed, kWarmUpPings);
  const auto switches = process_context_switches();
  for (auto _ : state) {
    if (Status failure = feeder.step(); !failure.ok()) {
      state.SkipWithError(failure.to_string().c_str());
      break;
    }
  }
  if (!state.error_occurred()) {
    if (Status failure = feeder.finish(); !failure.ok()) state.SkipWithError(failure.to_string().c_str());
  }
  const std::int64_t per_iteration = feeder.messages_per_step();
  publish_switches(state, switches, static_cast<double>(state.iterations() * per_iteration));
  state.SetItemsProcessed(state.iterations() * per_iteration);
  state.SetBytesProcessed(state.iterations() * per_iteration * static_cast<std::int64_t>(sizeof(Slot)));
  rt->shutdown().ignore();
  if (log) log->close().ignore();
}

// ---- Paired throughput: the targets' ratios -------------------------------------------------
// On a shared 2-vCPU guest the machine switches between a fast and a slow mode for seconds at a
// time (docs/performance.md, "Two modes"), so two benchmarks run a minute apart can compare
// different machines. These alternate the measured feed and its baseline in short windows
// (A B, then B A) and report the median of the pairs' ratios (counter ratio_median) with the
// median rates (rate, baseline_rate), as heat2d's paired benchmarks do.

// Pairs and window per pair: 9 x 80 ms in the report's short mode, 2 x 10 ms in the smoke test.
int pair_count() { return short_level() >= 2 ? 2 : 9; }
std::chrono::milliseconds pair_window() {
  return std::chrono::milliseconds(short_level() >= 2 ? 10 : short_level() == 1 ? 80 : 250);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Messages per second through a Boost spsc queue drained by a consumer thread, over `window`.
double boost_rate(std::chrono::milliseconds window) {
  BoostSink sink;
  std::uint64_t pushed = 0;
  const auto t0 = Clock::now();
  const auto end = t0 + window;
  do {
    for (int i = 0; i < 256; ++i) sink.push();
    pushed += 256;
  } while (Clock::now() < end);
  sink.drain(pushed);
  return static_cast<double>(pushed) / seconds_since(t0);
}

// Messages per second of `feeder` over `window`, including the collection of what it left in
// flight (so a feed cannot bank unanswered messages across windows).
Result<double> feed_rate(EchoFeeder& feeder, std::chrono::milliseconds window) {
  std::int64_t messages = 0;
  const auto t0 = Clock::now();
  const auto end = t0 + window;
  do {
    PKRT_RETURN_IF_ERROR(feeder.step());
    messages += feeder.messages_per_step();
  } while (Clock::now() < end);
  PKRT_RETURN_IF_ERROR(feeder.finish());
  return static_cast<double>(messages) / seconds_since(t0);
}

void publish_pairs(benchmark::State& state, const std::vector<double>& rates, const std::vector<double>& baselines) {
  std::vector<double> ratios;
  for (std::size_t i = 0; i < rates.size(); ++i) ratios.push_back(baselines[i] > 0 ? rates[i] / baselines[i] : 0.0);
  state.counters["ratio_median"] = median(ratios);
  state.counters["ratio_min"] = ratios.empty() ? 0.0 : *std::min_element(ratios.begin(), ratios.end());
  state.counters["ratio_max"] = ratios.empty() ? 0.0 : *std::max_element(ratios.begin(), ratios.end());
  state.counters["rate"] = median(rates);
  state.counters["baseline_rate"] = median(baselines);
}

// Round trips through two Boost spsc queues (ping-pong with an echo thread) over `window`.
LatencyHistogram boost_round_trips(std::chrono::milliseconds window) {
  BoostEcho echo;
  LatencyHistogram histogram;
  const auto end = Clock::now() + window;
  while (Clock::now() < end) histogram.record(echo.round_trip());
  return histogram;
}

// send().get() round trips to the echo actor over `window`.
Result<LatencyHistogram> echo_round_trips(Runtime& rt, std::chrono::milliseconds window) {
  LatencyHistogram histogram;
  Ping ping{};
  const auto end = Clock::now() + window;
  while (Clock::now() < end) {
    ++ping.words[0];
    const auto t0 = Clock::now();
    Reply reply = rt.send(0, kEchoPing, ping).get();
    histogram.record(Clock::now() - t0);
    if (!reply.status.ok()) return reply.status;
  }
  return histogram;
}

// BM_RingRoundTripPaired/echo_cpu/future/vs_boost: send().get() (default poll policy) against
// the Boost ping-pong, in alternating windows. Counters: p50_ratio_median (echo p50 / Boost
// p50 of the same pair), p99_ratio_median (echo p99 / Boost p50), their min and max, and the
// medians p50_ns, p99_ns, boost_p50_ns.
void BM_RingRoundTripPaired_VsBoost(benchmark::State& state) {
  auto rt = start_warm_echo(state, BackendKind::kCpu, nullptr);
  if (!rt) return;
  std::vector<double> p50, p99, boost_p50, r50, r99;
  for (auto _ : state) {
    for (int pair = 0; pair < pair_count(); ++pair) {
      const bool boost_first = pair % 2 == 1;
      LatencyHistogram boost;
      if (boost_first) boost = boost_round_trips(pair_window());
      auto echo = echo_round_trips(*rt, pair_window());
      if (!echo.ok()) {
        state.SkipWithError(echo.status().to_string().c_str());
        break;
      }
      if (!boost_first) boost = boost_round_trips(pair_window());
      const double b = boost.percentile(50);
      p50.push_back(echo->percentile(50));
      p99.push_back(echo->percentile(99));
      boost_p50.push_back(b);
      r50.push_back(b > 0 ? p50.back() / b : 0.0);
      r99.push_back(b > 0 ? p99.back() / b : 0.0);
    }
  }
  if (!state.error_occurred()) {
    state.counters["p50_ratio_median"] = median(r50);
    state.counters["p50_ratio_min"] = *std::min_element(r50.begin(), r50.end());
    state.counters["p50_ratio_max"] = *std::max_element(r50.begin(), r50.end());
    state.counters["p99_ratio_median"] = median(r99);
    state.counters["p99_ratio_min"] = *std::min_element(r99.begin(), r99.end());
    state.counters["p99_ratio_max"] = *std::max_element(r99.begin(), r99.end());
    state.counters["p50_ns"] = median(p50);
    state.counters["p99_ns"] = median(p99);
    state.counters["boost_p50_ns"] = median(boost_p50);
  }
  rt->shutdown().ignore();
}

// BM_RingThroughputPaired/<feed>/vs_boost: the feed against the Boost queue.
void BM_RingThroughputPaired_VsBoost(benchmark::State& state, Feed feed) {
  auto rt = start_warm_echo(state, BackendKind::kCpu, nullptr);
  if (!rt) return;
  EchoFeeder feeder(*rt, feed, kWarmUpPings);
  std::vector<double> rates, baselines;
  for (auto _ : state) {
    for (int pair = 0; pair < pair_count(); ++pair) {
      const bool boost_first = pair % 2 == 1;
      if (boost_first) baselines.push_back(boost_rate(pair_window()));
      auto rate = feed_rate(feeder, pair_window());
      if (!rate.ok()) {
        state.SkipWithError(rate.status().to_string().c_str());
        break;
      }
      rates.push_back(rate.value());
      if (!boost_first) baselines.push_back(boost_rate(pair_window()));
    }
  }
  if (!state.error_occurred()) publish_pairs(state, rates, baselines);
  rt->shutdown().ignore();
}

// BM_RingThroughputPaired/<feed>/log_vs_none: the feed with a replay log against the same feed
// without one (two runtimes, alternating).
void BM_RingThroughputPaired_LogVsNone(benchmark::State& state, Feed feed, const std::string& name) {
  auto log = scratch_log(name);
  if (!log.ok()) {
    state.SkipWithError(log.status().to_string().c_str());
    return;
  }
  auto logged = start_warm_echo(state, BackendKind::kCpu, log.value());
  if (!logged) return;
  auto plain = start_warm_echo(state, BackendKind::kCpu, nullptr);
  if (!plain) {
    logged->shutdown().ignore();
    return;
  }
  EchoFeeder with_log(*logged, feed, kWarmUpPings);
  EchoFeeder without(*plain, feed, kWarmUpPings);
  std::vector<double> rates, baselines;
  for (auto _ : state) {
    for (int pair = 0; pair < pair_count(); ++pair) {
      const bool plain_first = pair % 2 == 1;
      Result<double> base = 0.0;
      if (plain_first) base = feed_rate(without, pair_window());
      auto rate = feed_rate(with_log, pair_window());
      if (!plain_first) base = feed_rate(without, pair_window());
      const Status failure = !rate.ok() ? rate.status() : base.status();
      if (!failure.ok()) {
        state.SkipWithError(failure.to_string().c_str());
        break;
      }
      rates.push_back(rate.value());
      baselines.push_back(base.value());
    }
  }
  if (!state.error_occurred()) publish_pairs(state, rates, baselines);
  logged->shutdown().ignore();
  plain->shutdown().ignore();
  log.value()->close().ignore();
}

// The idle gaps of the gap variants, with their labels.
constexpr std::array<std::pair<std::chrono::microseconds, const char*>, 2> kGaps = {
    {{std::chrono::microseconds(100), "100us"}, {std::chrono::milliseconds(10), "10ms"}}};

// Iterations of an idle-gap variant: fixed, so that a 10 ms gap costs a known few seconds.
benchmark::IterationCount gap_iterations(std::chrono::microseconds gap) {
  const bool long_gap = gap >= std::chrono::milliseconds(1);
  switch (short_level()) {
  case 2:
    return 3;
  case 1:
    return long_gap ? 300 : 2000;
  default:
    return long_gap ? 1000 : 5000;
  }
}

template <class Fn>
benchmark::internal::Benchmark* register_named(const std::string& name, Fn fn) {
  return benchmark::RegisterBenchmark(name.c_str(), [fn, name](benchmark::State& state) { fn(state, name); });
}

void register_round_trips(BackendKind b) {
  using namespace std::chrono_literals;
  const std::string echo = std::string("BM_RingRoundTrip/echo_") + backend_label(b);
  register_named(echo + "/future", [b](benchmark::State& s, const std::string& n) {
    BM_RingRoundTrip_EchoFuture(s, b, PollPolicy::kAuto, 0us, n);
  });
  for (const auto& [gap, label] : kGaps) {
    register_named(echo + "/future/gap:" + label,
                   [b, gap](benchmark::State& s, const std::string& n) {
                     BM_RingRoundTrip_EchoFuture(s, b, PollPolicy::kAuto, gap, n);
                   })
        ->UseManualTime()
        ->Iterations(gap_iterations(gap));
  }
  for (PollPolicy p : {PollPolicy::kLatency, PollPolicy::kBalanced, PollPolicy::kLowPower}) {
    const std::string policy = std::string("/policy:") + poll_policy_name(p);
    register_named(echo + "/future" + policy,
                   [b, p](benchmark::State& s, const std::string& n) { BM_RingRoundTrip_EchoFuture(s, b, p, 0us, n); });
    register_named(echo + "/future/gap:10ms" + policy,
                   [b, p](benchmark::State& s, const std::string& n) { BM_RingRoundTrip_EchoFuture(s, b, p, 10ms, n); })
        ->UseManualTime()
        ->Iterations(gap_iterations(10ms));
  }
  register_named(echo + "/callback", [b](benchmark::State& s, const std::string& n) {
    BM_RingRoundTrip_EchoCallback(s, b, n);
  })->UseRealTime();
}

void register_throughput(BackendKind b) {
  const std::string echo = std::string("BM_RingThroughput/echo_") + backend_label(b);
  const std::array<std::pair<Feed, const char*>, 3> feeds = {
      {{Feed::kPostBatch, "post"}, {Feed::kSendBatch, "send_batch"}, {Feed::kPostSingle, "post_single"}}};
  for (bool with_log : {false, true}) {
    for (const auto& [feed, label] : feeds) {
      // On the CUDA backend: the batched feeds, without the log (the log's cost is host-side).
      if (b == BackendKind::kCuda && (with_log || feed == Feed::kPostSingle)) continue;
      register_named(echo + "/" + label + (with_log ? "/log" : ""), [b, feed, with_log](benchmark::State& s,
                                                                                        const std::string& n) {
        BM_RingThroughput_Echo(s, b, feed, with_log, n);
      })->UseRealTime();
    }
  }
}

void register_all() {
  register_named("BM_RingRoundTrip/boost_spsc", BM_RingRoundTrip_Boost);
  register_named("BM_RingRoundTrip/pkrt_ring", BM_RingRoundTrip_PkrtRing);
  for (const auto& [gap, label] : kGaps) {
    register_named(std::string("BM_RingRoundTrip/futex_wake/gap:") + label,
                   [gap](benchmark::State& s, const std::string& n) { BM_RingRoundTrip_FutexWake(s, gap, n); })
        ->UseManualTime()
        ->Iterations(gap_iterations(gap));
  }
  for (BackendKind b : {BackendKind::kCpu, BackendKind::kCuda}) register_round_trips(b);
  // Real time, like the echo feeds: a producer that waits for room is not idle time to drop.
  benchmark::RegisterBenchmark("BM_RingThroughput/boost_spsc", BM_RingThroughput_Boost)->UseRealTime();
  benchmark::RegisterBenchmark("BM_RingThroughput/pkrt_ring", BM_RingThroughput_PkrtRing)->UseRealTime();
  for (BackendKind b : {BackendKind::kCpu, BackendKind::kCuda}) register_throughput(b);
  // One iteration each: the pairs are the repetitions.
  register_named("BM_RingRoundTripPaired/echo_cpu/future/vs_boost",
                 [](benchmark::State& s, const std::string&) { BM_RingRoundTripPaired_VsBoost(s); })
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  for (const auto& [feed, label] : {std::pair{Feed::kPostBatch, "post"}, std::pair{Feed::kSendBatch, "send_batch"}}) {
    const std::string base = std::string("BM_RingThroughputPaired/echo_cpu/") + label;
    register_named(base + "/vs_boost", [feed](benchmark::State& s, const std::string&) {
      BM_RingThroughputPaired_VsBoost(s, feed);
    })->Iterations(1)->Unit(benchmark::kMillisecond);
    register_named(base + "/log_vs_none", [feed](benchmark::State& s, const std::string& n) {
      BM_RingThroughputPaired_LogVsNone(s, feed, n);
    })->Iterations(1)->Unit(benchmark::kMillisecond);
  }
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
