// bench/ring_bench.cpp: ring round trip and throughput, end to end through the runtime
// (host -> echo actor -> host), against a Boost.Lockfree spsc_queue ping-pong between two
// threads with 64-byte elements measured in the same binary. pkrt's bare SPSC ring (the same
// data structure the runtime uses, driven by two host threads) is measured alongside, so the
// report can tell the ring's cost from the runtime's hand-offs.
//
//   BM_RingRoundTrip/boost_spsc          baseline: ping-pong over two spsc_queues
//   BM_RingRoundTrip/pkrt_ring           pkrt::RingProducer/RingConsumer, same ping-pong
//   BM_RingRoundTrip/echo_cpu/future     Runtime::send(...).get(): what an application sees
//   BM_RingRoundTrip/echo_cpu/poll       the same, but the sender polls its future (spin +
//                                        yield) instead of sleeping in get(); the block polls
//                                        longer before it sleeps
//   BM_RingRoundTrip/echo_cpu/callback   chained reply callbacks on the pump, same block
//   BM_RingRoundTrip/echo_cuda/...       the same on the CUDA backend (skipped without a GPU)
//   BM_RingThroughput/{boost_spsc,pkrt_ring,echo_cpu,echo_cuda}: one producer, one consumer
#include "bench/bench_util.hpp"
#include "examples/echo/echo.hpp"

#include <pkrt/ring.hpp>
#include <pkrt/runtime.hpp>

#include <benchmark/benchmark.h>
#include <boost/lockfree/spsc_queue.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pkrt::bench {
namespace {

using examples::echo_program;
using examples::kEchoPing;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// How every host-side poll loop in this file waits (baselines and pkrt alike): spin with a
// pause, and yield every 256 polls, so a peer that the scheduler took off its core (these
// machines are shared) gets it back within a yield, not a time slice.
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

constexpr std::size_t kQueueCapacity = 1024;
using BoostQueue = boost::lockfree::spsc_queue<Msg64, boost::lockfree::capacity<kQueueCapacity>>;

// ---- Baseline: Boost.Lockfree ---------------------------------------------------------------

void BM_RingRoundTrip_Boost(benchmark::State& state) {
  auto ping = std::make_unique<BoostQueue>();
  auto pong = std::make_unique<BoostQueue>();
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    Msg64 m;
    SpinWait idle;
    // Relaxed: a stop flag; the queues carry their own ordering.
    while (!stop.load(std::memory_order_relaxed)) {
      if (ping->pop(m)) {
        SpinWait w;
        while (!pong->push(m)) w();
      } else {
        idle();
      }
    }
  });
  Msg64 m{};
  Msg64 r{};
  for (auto _ : state) {
    ++m.seq;
    SpinWait w;
    while (!ping->push(m)) w();
    while (!pong->pop(r)) w();
    benchmark::DoNotOptimize(r);
  }
  stop.store(true, std::memory_order_relaxed);  // Relaxed: see above.
  echo.join();
  state.SetItemsProcessed(state.iterations());
}

void BM_RingThroughput_Boost(benchmark::State& state) {
  auto q = std::make_unique<BoostQueue>();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> consumed{0};
  std::thread consumer([&] {
    Msg64 m;
    std::uint64_t n = 0;
    SpinWait idle;
    // Relaxed (stop, consumed): flags and counters; the queue orders the messages.
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t got = q->consume_all([&](const Msg64& x) { benchmark::DoNotOptimize(x); ++n; });
      if (got == 0) idle();
      consumed.store(n, std::memory_order_relaxed);
    }
    (void)m;
  });
  Msg64 m{};
  SpinWait full;
  for (auto _ : state) {
    ++m.seq;
    while (!q->push(m)) full();
  }
  const auto want = static_cast<std::uint64_t>(state.iterations());
  SpinWait drain;
  while (consumed.load(std::memory_order_relaxed) < want) drain();  // Relaxed: counter.
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 64);
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

void BM_RingRoundTrip_PkrtRing(benchmark::State& state) {
  HostRing ping(kQueueCapacity), pong(kQueueCapacity);
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    RingConsumer in(ping.mem);
    RingProducer out(pong.mem);
    Slot s;
    SpinWait idle;
    while (!stop.load(std::memory_order_relaxed)) {  // Relaxed: stop flag only.
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
  Envelope env{};
  Slot r;
  for (auto _ : state) {
    ++env.request;
    SpinWait w;
    while (!out.try_publish(kEchoPing, 0, 0, env)) w();
    while (!in.try_consume(r)) w();
    benchmark::DoNotOptimize(r);
  }
  stop.store(true, std::memory_order_relaxed);  // Relaxed: stop flag only.
  echo.join();
  state.SetItemsProcessed(state.iterations());
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
    // Relaxed (stop, consumed): flags and counters; the ring orders the slots.
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
  for (auto _ : state) {
    ++env.request;
    while (!out.try_publish(kEchoPing, 0, 0, env)) full();
  }
  const auto want = static_cast<std::uint64_t>(state.iterations());
  SpinWait drain;
  while (consumed.load(std::memory_order_relaxed) < want) drain();  // Relaxed: counter.
  stop.store(true, std::memory_order_relaxed);
  consumer.join();
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 64);
}

// ---- End to end through the runtime: host -> echo actor -> host ------------------------------

RuntimeOptions echo_options(BackendKind backend, bool spin) {
  RuntimeOptions o;
  o.backend = backend;
  o.num_actors = 1;
  o.threads = 1;
  o.snapshots = false;
  // Low-latency mode: the idle block polls ~16k times (tens of microseconds) before it falls
  // back to a futex wait. Spinning forever starves the pump on a loaded 2-core machine.
  if (spin) o.idle_spin = 1u << 14;
  return o;
}

std::unique_ptr<Runtime> start_echo(benchmark::State& state, BackendKind backend, bool spin) {
  if (backend == BackendKind::kCuda && skip_without_cuda(state)) return nullptr;
  auto rt = Runtime::create(echo_program(), examples::Echo::Params{}, echo_options(backend, spin));
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

// Round trip as an application sees it: send, then block on the future.
void BM_RingRoundTrip_EchoFuture(benchmark::State& state, BackendKind backend) {
  auto rt = start_echo(state, backend, false);
  if (!rt) return;
  std::byte payload[kEnvelopeDataBytes] = {};
  for (int i = 0; i < 100; ++i) (void)rt->send(0, kEchoPing, payload, sizeof payload).get();  // warm-up
  for (auto _ : state) {
    Reply r = rt->send(0, kEchoPing, payload, sizeof payload).get();
    if (!r.status.ok()) {
      state.SkipWithError(r.status.to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  rt->shutdown().ignore();
}

// Round trip with a sender that polls for its reply (what a polling completion API would
// give): no futex wait on the sender's side.
void BM_RingRoundTrip_EchoPoll(benchmark::State& state, BackendKind backend) {
  auto rt = start_echo(state, backend, true);
  if (!rt) return;
  std::byte payload[kEnvelopeDataBytes] = {};
  for (int i = 0; i < 100; ++i) (void)rt->send(0, kEchoPing, payload, sizeof payload).get();  // warm-up
  for (auto _ : state) {
    auto fut = rt->send(0, kEchoPing, payload, sizeof payload);
    SpinWait w;
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready) w();
    Reply r = fut.get();
    if (!r.status.ok()) {
      state.SkipWithError(r.status.to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  rt->shutdown().ignore();
}

// Round trip without the sender's wake-up: each reply callback (on the pump thread) sends the
// next ping, and the block polls longer before it sleeps. Two threads hand off, as in the
// baselines. One iteration is a chain of kChain round trips; the counter round_trip_ns is
// the time per round trip (the report uses it).
void BM_RingRoundTrip_EchoCallback(benchmark::State& state, BackendKind backend) {
  auto rt = start_echo(state, backend, true);
  if (!rt) return;
  constexpr int kChain = 1000;
  struct Chain {
    Runtime* rt;
    std::byte payload[kEnvelopeDataBytes] = {};
    int left = 0;
    std::atomic<std::uint32_t> done{0};
    Status failure;
    void next() {
      rt->send(0, kEchoPing, payload, sizeof payload, 0, [this](const Reply& r) {
        if (!r.status.ok()) failure = r.status;
        if (--left > 0 && r.status.ok()) {
          next();
        } else {
          // Release: publishes `failure` to the benchmark thread's acquire below.
          done.store(1, std::memory_order_release);
          done.notify_one();
        }
      });
    }
    void run(int n) {
      left = n;
      done.store(0, std::memory_order_relaxed);  // Relaxed: no chain is running now.
      next();
      done.wait(0, std::memory_order_acquire);  // Acquire: pairs with the release above.
    }
  } chain;
  chain.rt = rt.get();
  chain.run(200);  // warm-up
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    chain.run(kChain);
    seconds += seconds_since(t0);
    if (!chain.failure.ok()) {
      state.SkipWithError(chain.failure.to_string().c_str());
      break;
    }
  }
  const double trips = static_cast<double>(state.iterations()) * kChain;
  state.counters["round_trip_ns"] = trips > 0 ? seconds / trips * 1e9 : 0.0;
  state.SetItemsProcessed(state.iterations() * kChain);
  rt->shutdown().ignore();
}

// Host producer to actor consumer: sends as fast as the ring takes them (replies complete
// through callbacks on the pump thread, counted, never waited for one by one).
void BM_RingThroughput_Echo(benchmark::State& state, BackendKind backend) {
  auto rt = start_echo(state, backend, true);
  if (!rt) return;
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> failed{0};
  std::byte payload[kEnvelopeDataBytes] = {};
  auto on_reply = [&](const Reply& r) {
    // Relaxed (both): counters read after the loop, once they reach the sent count.
    if (!r.status.ok()) failed.fetch_add(1, std::memory_order_relaxed);
    completed.fetch_add(1, std::memory_order_relaxed);
  };
  for (auto _ : state) rt->send(0, kEchoPing, payload, sizeof payload, 0, on_reply);
  const auto want = static_cast<std::uint64_t>(state.iterations());
  while (completed.load(std::memory_order_relaxed) < want) std::this_thread::yield();  // Relaxed: counter.
  if (failed.load(std::memory_order_relaxed) != 0) state.SkipWithError("some sends failed (ring full?)");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 64);
  rt->shutdown().ignore();
}

void register_all() {
  benchmark::RegisterBenchmark("BM_RingRoundTrip/boost_spsc", BM_RingRoundTrip_Boost);
  benchmark::RegisterBenchmark("BM_RingRoundTrip/pkrt_ring", BM_RingRoundTrip_PkrtRing);
  for (BackendKind b : {BackendKind::kCpu, BackendKind::kCuda}) {
    const std::string be = std::string("echo_") + backend_label(b);
    benchmark::RegisterBenchmark(("BM_RingRoundTrip/" + be + "/future").c_str(), BM_RingRoundTrip_EchoFuture, b);
    benchmark::RegisterBenchmark(("BM_RingRoundTrip/" + be + "/poll").c_str(), BM_RingRoundTrip_EchoPoll, b);
    benchmark::RegisterBenchmark(("BM_RingRoundTrip/" + be + "/callback").c_str(), BM_RingRoundTrip_EchoCallback, b)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_RingThroughput/boost_spsc", BM_RingThroughput_Boost);
  benchmark::RegisterBenchmark("BM_RingThroughput/pkrt_ring", BM_RingThroughput_PkrtRing);
  for (BackendKind b : {BackendKind::kCpu, BackendKind::kCuda})
    benchmark::RegisterBenchmark(("BM_RingThroughput/echo_" + std::string(backend_label(b))).c_str(),
                                 BM_RingThroughput_Echo, b);
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
