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
#include "bench/bench_util.hpp"
#include "bench/latency_histogram.hpp"
#include "examples/echo/echo.hpp"

#include <pkrt/replay_log.hpp>
#include <pkrt/ring.hpp>
#include <pkrt/runtime.hpp>

#include <benchmark/benchmark.h>
#include <boost/lockfree/spsc_queue.hpp>

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

void BM_RingRoundTrip_Boost(benchmark::State& state, const std::string& name) {
  auto ping = std::make_unique<BoostQueue>();
  auto pong = std::make_unique<BoostQueue>();
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    Msg64 m;
    SpinWait idle;
    // Relaxed: a stop flag, set once by the benchmark thread; the queues carry their own ordering.
    while (!stop.load(std::memory_order_relaxed)) {
      if (ping->pop(m)) {
        SpinWait w;
        while (!pong->push(m)) w();
      } else {
        idle();
      }
    }
  });
  LatencyHistogram histogram;
  Msg64 m{};
  Msg64 r{};
  const auto switches = process_context_switches();
  for (auto _ : state) {
    ++m.seq;
    const auto t0 = Clock::now();
    SpinWait w;
    while (!ping->push(m)) w();
    while (!pong->pop(r)) w();
    histogram.record(Clock::now() - t0);
    benchmark::DoNotOptimize(r);
  }
  publish_switches(state, switches, static_cast<double>(state.iterations()));
  stop.store(true, std::memory_order_relaxed);  // Relaxed: pairs with the echo thread's stop load.
  echo.join();
  state.SetItemsProcessed(state.iterations());
  publish_latency(state, histogram, name);
}

void BM_RingThroughput_Boost(benchmark::State& state) {
  auto q = std::make_unique<BoostQueue>();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> consumed{0};
  std::thread consumer([&] {
    std::uint64_t n = 0;
    SpinWait idle;
    // Relaxed (stop with the benchmark thread's store, consumed with its drain loads): a flag
    // and a counter; the queue orders the messages.
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t got = q->consume_all([&](const Msg64& x) {
        benchmark::DoNotOptimize(x);
        ++n;
      });
      if (got == 0) idle();
      consumed.store(n, std::memory_order_relaxed);
    }
  });
  Msg64 m{};
  SpinWait full;
  const auto switches = process_context_switches();
  for (auto _ : state) {
    ++m.seq;
    while (!q->push(m)) full();
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

// Feeds kBatch-command batches (or single posts) to one echo actor as fast as the H2K ring
// takes them. The last commands are still in flight when the timed loop ends (at most a ring's
// worth, as in the baselines' untimed drain); the final kEchoCount round trip waits for them.
void BM_RingThroughput_Echo(benchmark::State& state, BackendKind backend, Feed feed, bool with_log,
                            const std::string& name) {
  if (backend == BackendKind::kCuda && skip_without_cuda(state)) return;
  std::shared_ptr<ReplayLogWriter> log;
  if (with_log) {
    std::string dir = "ring-" + name.substr(name.find('/') + 1);
    for (char& c : dir)
      if (c == '/') c = '-';
    // The product's default capacity (2^20 records, 128 MiB): it wraps in a long run, which
    // costs nothing more.
    auto made = ReplayLogWriter::create((scratch_dir(dir) / "run.pkrl").string());
    if (!made.ok()) {
      state.SkipWithError(made.status().to_string().c_str());
      return;
    }
    log = std::move(made.value());
  }
  auto rt = start_echo(state, backend, PollPolicy::kAuto, log);
  if (!rt) return;
  if (Status st = warm_up(*rt); !st.ok()) {
    state.SkipWithError(st.to_string().c_str());
    rt->shutdown().ignore();
    return;
  }
  std::uint64_t pings = 100;  // the warm-up's
  const std::vector<Command> batch(kBatch, Command::make(0, kEchoPing, Ping{}));
  // send_batch: one batch is queued while the previous one's replies are collected.
  std::array<std::array<ReplyFuture, kBatch>, 2> in_flight;
  std::size_t current = 0;
  bool previous_pending = false;
  const auto switches = process_context_switches();
  for (auto _ : state) {
    Status failure;
    switch (feed) {
    case Feed::kPostBatch:
      failure = rt->post_batch(batch);
      pings += kBatch;
      break;
    case Feed::kSendBatch:
      rt->send_batch(batch, in_flight[current]);
      pings += kBatch;
      if (previous_pending) failure = collect(in_flight[current ^ 1]);
      previous_pending = true;
      current ^= 1;
      break;
    case Feed::kPostSingle:
      failure = rt->post(0, kEchoPing, Ping{});
      pings += 1;
      break;
    }
    if (!failure.ok()) {
      state.SkipWithError(failure.to_string().c_str());
      break;
    }
  }
  if (!state.error_occurred()) {
    Status failure = previous_pending ? collect(in_flight[current ^ 1]) : Status();
    Reply count = rt->send(0, kEchoCount, std::uint64_t{0}).get();
    if (failure.ok() && !count.status.ok()) failure = count.status;
    if (failure.ok() && count.event.as<std::uint64_t>() != pings) {
      failure =
          Status(StatusCode::kInternal, "the echo actor answered " + std::to_string(count.event.as<std::uint64_t>()) +
                                            " pings of " + std::to_string(pings) + " sent");
    }
    if (!failure.ok()) state.SkipWithError(failure.to_string().c_str());
  }
  const std::int64_t per_iteration = feed == Feed::kPostSingle ? 1 : static_cast<std::int64_t>(kBatch);
  publish_switches(state, switches, static_cast<double>(state.iterations() * per_iteration));
  state.SetItemsProcessed(state.iterations() * per_iteration);
  state.SetBytesProcessed(state.iterations() * per_iteration * static_cast<std::int64_t>(sizeof(Slot)));
  rt->shutdown().ignore();
  if (log) log->close().ignore();
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
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
