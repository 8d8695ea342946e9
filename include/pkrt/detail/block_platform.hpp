// pkrt/detail/block_platform.hpp: the narrow interface between the persistent loop and the
// machine that runs a block. The loop is compiled twice from one source: by nvcc's device
// pass (a block is a CUDA thread block of a cooperative launch) and by a host compiler (a
// block is one CPU worker thread, num_threads() == 1). Every backend difference the kernels
// see is in this file; logic elsewhere never branches on the backend.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/control.hpp>
#include <pkrt/detail/grid_barrier.hpp>
#include <pkrt/detail/system_atomic.hpp>

#include <cstdint>

#if !PKRT_DEVICE_PASS
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstring>
#include <thread>

#include <pkrt/detail/chaos.hpp>
#include <pkrt/detail/futex.hpp>
#endif

namespace pkrt::detail {

// Per-block environment handed to the loop by the backend.
struct BlockEnv {
  std::uint32_t block;    // this block's index
  void* host_barrier;     // CPU backend: std::barrier<>* shared by all workers, null with one
                          // block (nothing to wait for); unused on CUDA
  void* host_chaos;       // CPU backend with chaos mode: ChaosTurn* (pkrt/detail/chaos.hpp); else null
  GridBarrierWord* grid_barrier;       // CUDA: the grid barrier's word (in GridScratch); null on the CPU
  std::uint32_t barrier_spin;          // CUDA: polls before a barrier's waiters start to sleep
  std::uint32_t barrier_sleep_cap_ns;  // CUDA: their longest __nanosleep
};

#if !PKRT_DEVICE_PASS
using HostEpochBarrier = std::barrier<>;
#endif

PKRT_HD inline std::uint32_t block_index(const BlockEnv& env) {
#if PKRT_DEVICE_PASS
  (void)env;
  return blockIdx.x;
#else
  return env.block;
#endif
}

PKRT_HD inline std::uint32_t thread_rank() {
#if PKRT_DEVICE_PASS
  return threadIdx.x;
#else
  return 0;
#endif
}

PKRT_HD inline std::uint32_t threads_per_block() {
#if PKRT_DEVICE_PASS
  return blockDim.x;
#else
  return 1;
#endif
}

// Barrier among the threads of one block; also orders their shared and global memory.
PKRT_HD inline void sync_block() {
#if PKRT_DEVICE_PASS
  __syncthreads();
#endif
}

// Nanoseconds from a monotonic clock of the agent running the block (stall measurements).
PKRT_HD inline std::uint64_t now_ns() {
#if PKRT_DEVICE_PASS
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
#else
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
#endif
}

// Copies `bytes` bytes with every thread of the block (call from all of them).
PKRT_HD inline void block_copy(std::byte* dst, const std::byte* src, std::uint64_t bytes) {
  const std::uint32_t rank = thread_rank(), n = threads_per_block();
#if PKRT_DEVICE_PASS
  // 16-byte words where both sides allow it (staging and arenas are 256-byte aligned).
  if (((reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src)) & 15u) == 0) {
    const std::uint64_t words = bytes / 16;
    auto* d = reinterpret_cast<uint4*>(dst);
    const auto* s = reinterpret_cast<const uint4*>(src);
    for (std::uint64_t i = rank; i < words; i += n) d[i] = s[i];
    for (std::uint64_t i = words * 16 + rank; i < bytes; i += n) dst[i] = src[i];
    return;
  }
  for (std::uint64_t i = rank; i < bytes; i += n) dst[i] = src[i];
#else
  (void)rank;
  (void)n;
  if (bytes > 0) std::memcpy(dst, src, bytes);
#endif
}

// How a block fills a snapshot's staging slot. A CPU worker copies one chunk and CRCs it
// while it is still in cache (one pass over memory). A GPU block copies the whole image with
// every thread first (coalesced), then splits the chunk CRCs over its threads.
inline constexpr bool kSnapshotCopiesChunkByChunk = !PKRT_DEVICE_PASS;

// Leader's value, delivered to every thread of the block. Call from all threads.
PKRT_HD inline std::uint32_t block_broadcast(std::uint32_t value) {
#if PKRT_DEVICE_PASS
  __shared__ std::uint32_t cell;
  if (threadIdx.x == 0) cell = value;
  __syncthreads();
  value = cell;
  __syncthreads();  // nobody overwrites the cell before every thread has read it
#endif
  return value;
}

#if !PKRT_DEVICE_PASS
// Chaos mode: a seeded yield or short sleep at the worker's n-th chaos point.
inline void chaos_delay(const ChaosTurn& chaos, std::uint32_t block) {
  thread_local std::uint64_t points = 0;  // one worker thread per block
  const std::uint64_t h = chaos_hash(chaos.seed, block, ++points);
  const std::uint64_t pick = h % 64;
  if (pick < 2) {
    std::this_thread::sleep_for(std::chrono::microseconds(20 + (h >> 8) % 200));
  } else if (pick < 10) {
    std::this_thread::yield();
  }
}
#endif

// Chaos mode only (CPU): waits until it is this block's turn to apply commands and step its
// actors in `epoch` (the seeded order of pkrt/detail/chaos.hpp). No-op otherwise and on
// the device. Every block takes exactly one turn per run epoch, between two grid barriers.
PKRT_HD inline void begin_step_turn(const BlockEnv& env, std::uint64_t epoch) {
#if PKRT_DEVICE_PASS
  (void)env;
  (void)epoch;
#else
  auto* chaos = static_cast<ChaosTurn*>(env.host_chaos);
  if (chaos == nullptr) return;
  chaos_delay(*chaos, env.block);
  const std::vector<std::uint32_t> order = chaos_block_order(chaos->seed, epoch, chaos->blocks);
  std::uint64_t position = 0;
  while (order[position] != env.block) ++position;
  const std::uint64_t mine = (epoch - chaos->start_epoch - 1) * chaos->blocks + position;
  for (;;) {
    // Acquire: pairs with the previous block's release in end_step_turn, so what it wrote
    // in its turn (app-wide region, its K2K sends) happens before ours.
    const std::uint64_t turn = chaos->turns.load(std::memory_order_acquire);
    if (turn == mine) return;
    chaos->turns.wait(turn, std::memory_order_acquire);
  }
#endif
}

// Chaos mode only (CPU): hands the step turn to the next block of the epoch's order.
PKRT_HD inline void end_step_turn(const BlockEnv& env) {
#if PKRT_DEVICE_PASS
  (void)env;
#else
  auto* chaos = static_cast<ChaosTurn*>(env.host_chaos);
  if (chaos == nullptr) return;
  // Release: our turn's writes happen before the next block's acquire of the count; only
  // the block holding the turn increments, so this RMW never races with another writer.
  chaos->turns.fetch_add(1, std::memory_order_release);
  chaos->turns.notify_all();
#endif
}

// One iteration of a busy-wait: tells the core we are spinning (x86 `pause`), so the sibling
// hyperthread and the memory system are not flooded. Host pass only; the device pass
// backs off with __nanosleep instead.
PKRT_HD inline void cpu_relax() {
#if !PKRT_DEVICE_PASS
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
#endif
}

// Device polling: the longest __nanosleep between two polls of mapped host memory, per poll
// policy (pkrt::PollPolicy; the runtime puts the value in KernelArgs::poll_sleep_cap_ns).
// Why these numbers: one poll of mapped memory is one PCIe read, about 1 us round trip
// (0.7-1.5 us on Gen4/Gen5 x86 hosts). A poller that sleeps about as long as a poll costs
// issues half the reads of one that polls back to back and adds at most one poll time to the
// pickup of a new command; sleeping longer saves nothing that matters (one outstanding
// 64-byte read per microsecond is ~64 MB/s, under 0.2% of a Gen5 x16 link) and only adds
// latency. So: latency 256 ns (polls back to back: pickup <= ~1.3 us), balanced 2 us (pickup
// <= ~3 us), low_power 16 us (pickup <= ~17 us, still under the 20 us bound pkrt keeps for
// any path while a request is outstanding).
inline constexpr std::uint32_t kDevicePollCapLatencyNs = 256;
inline constexpr std::uint32_t kDevicePollCapBalancedNs = 2000;
inline constexpr std::uint32_t kDevicePollCapLowPowerNs = 16000;

// Escalating wait for polling loops: spin, then yield and sleep (host: 1 us doubling) or
// __nanosleep (device: 32 ns doubling), each capped at `sleep_cap_ns` (at least 1 us on the
// host), so an idle poller neither saturates PCIe nor starves a 2-core machine, and a waiter
// never oversleeps the event it waits for by more than the cap.
class Backoff {
 public:
  PKRT_HD explicit Backoff(std::uint32_t spin_limit = 64,
                           std::uint32_t sleep_cap_ns = kDevicePollCapLowPowerNs)
      : spin_limit_(spin_limit), sleep_cap_ns_(sleep_cap_ns) {}

  PKRT_HD void pause() {
#if PKRT_DEVICE_PASS
    const std::uint32_t shift = n_ < 9 ? n_ : 9;
    const std::uint32_t ns = 32u << shift;
    __nanosleep(ns < sleep_cap_ns_ ? ns : sleep_cap_ns_);
#else
    if (n_ < spin_limit_) {
      cpu_relax();  // a publish usually lands within a few hundred nanoseconds
    } else if (n_ < spin_limit_ + 64) {
      std::this_thread::yield();
    } else {
      const std::uint32_t k = std::min<std::uint32_t>(n_ - spin_limit_ - 64, 20);
      const std::uint32_t cap_us = std::max<std::uint32_t>(sleep_cap_ns_ / 1000, 1);
      std::this_thread::sleep_for(std::chrono::microseconds(std::min<std::uint32_t>(1u << k, cap_us)));
    }
#endif
    ++n_;
  }

  PKRT_HD void reset() { n_ = 0; }
  PKRT_HD std::uint32_t count() const { return n_; }

 private:
  std::uint32_t spin_limit_;
  std::uint32_t sleep_cap_ns_;
  std::uint32_t n_ = 0;
};

// Barrier among all blocks of the grid. Orders every block's writes before it with every
// block's reads after it (the device barrier's release/acquire at device scope, see
// grid_barrier.hpp; std::barrier's completion synchronises-with every arrival). On the
// device a waiter polls, then sleeps: while block 0 waits for the host, the other blocks do
// not keep the GPU busy.
PKRT_HD inline void sync_grid(const BlockEnv& env) {
#if PKRT_DEVICE_PASS
  __syncthreads();  // the block's writes are its thread 0's before it arrives
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    Backoff backoff(0, env.barrier_sleep_cap_ns);
    const bool master = blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0;
    grid_barrier_arrive_and_wait(*env.grid_barrier, gridDim.x * gridDim.y * gridDim.z, master, env.barrier_spin,
                                 [&backoff] { backoff.pause(); });
  }
  __syncthreads();  // the other threads read after thread 0's acquire
#else
  if (env.host_chaos != nullptr) chaos_delay(*static_cast<const ChaosTurn*>(env.host_chaos), env.block);
  if (env.host_barrier != nullptr) static_cast<HostEpochBarrier*>(env.host_barrier)->arrive_and_wait();
#endif
}

// Host busy-waits on a machine that may have fewer cores than busy threads: the first
// kHostPureSpins polls only pause; after that every poll yields the core, so a thread the
// scheduler put on the same core (the one that will answer us) runs at once instead of
// after our time slice. Measured on a 2-core VM: a block 0 that spun with pause for ~100 us
// before sleeping made the round trip after an idle gap 2x slower than one that yields.
inline constexpr std::uint32_t kHostPureSpins = 64;

// Block 0's leader waits until the host doorbell `word` differs from `seen`. Polls first
// (`spin_limit` polls: on the host the first kHostPureSpins pause, the rest yield); then the
// device pass polls with __nanosleep capped at `sleep_cap_ns`, and the host pass sleeps in a
// futex, announced through `sleeper` (see DoorbellSleeper in pkrt/control.hpp) so that hosts
// wake it only when it sleeps. Returns the new value.
PKRT_HD inline std::uint32_t wait_for_change(const std::uint32_t& word, std::uint32_t seen,
                                             std::uint32_t spin_limit, std::uint32_t sleep_cap_ns,
                                             DoorbellSleeper& sleeper) {
#if PKRT_DEVICE_PASS
  (void)sleeper;
  Backoff backoff(spin_limit, sleep_cap_ns);
  for (;;) {
    // Acquire: pairs with the host's release of the doorbell, which follows its publishes;
    // what the host published before ringing is visible after this load.
    const std::uint32_t now = load_acquire(word);
    if (now != seen) return now;
    backoff.pause();
  }
#else
  (void)sleep_cap_ns;
  for (std::uint32_t polls = 0;; ++polls) {
    // Acquire: as in the device pass.
    const std::uint32_t now = load_acquire(word);
    if (now != seen) return now;
    if (polls < spin_limit) {
      if (polls < kHostPureSpins) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
      continue;
    }
    std::atomic_ref<std::uint32_t> word_ref(const_cast<std::uint32_t&>(word));
    std::atomic_ref<std::uint32_t> flag(sleeper.sleeping);
    // Seq_cst store and load: pairs with the host's seq_cst doorbell bump and its seq_cst load
    // of `sleeping` (ring_doorbell): either it sees us asleep, or we see its new value here.
    flag.store(1, std::memory_order_seq_cst);
    if (word_ref.load(std::memory_order_seq_cst) == seen) {
      // The 1 s bound is a safety net only; hosts wake this futex whenever they ring.
      futex_wait_for(const_cast<std::uint32_t*>(&word), seen, std::chrono::seconds(1));
    }
    // Relaxed: a host that still sees 1 makes one spare wake-up.
    flag.store(0, std::memory_order_relaxed);
  }
#endif
}

// After a K2H publish: wake the host pump if it sleeps and no draining waiter is about to
// consume the slot itself (CPU backend; see PumpDoorbell). A no-op in the device pass.
PKRT_HD inline void wake_host_pump(PumpDoorbell& pump) {
#if !PKRT_DEVICE_PASS
  // Seq_cst fence: orders the slot's publication before the loads below, pairing with the
  // pump's fence between its store of `sleeping` and its ring checks, and with a leaving
  // drainer's fence between its decrement of `drainers` and its ring checks.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Relaxed (both): the fences above and in the pump and drainers provide the ordering.
  if (std::atomic_ref<std::uint32_t>(pump.sleeping).load(std::memory_order_relaxed) != 0 &&
      std::atomic_ref<std::uint32_t>(pump.drainers).load(std::memory_order_relaxed) == 0) {
    // Relaxed RMW on host memory by host threads only: the value just has to change.
    std::atomic_ref<std::uint32_t>(pump.bell).fetch_add(1, std::memory_order_relaxed);
    futex_wake_all(&pump.bell);
  }
#else
  (void)pump;
#endif
}

}  // namespace pkrt::detail
