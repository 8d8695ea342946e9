// host/runtime_control.cpp: host control of the whole grid (target epoch, pause/resume,
// waiting for parks), the doorbell every publish rings, and the poll policies.
//
// Contract: control changes store their HostControl words, then a new generation, then ring
// the doorbell (pkrt/control.hpp), serialised by control_mu so the generation only grows.
// The doorbell itself is lock-free: senders on any thread bump it with host RMWs (the device
// only loads it) and make a system call only when block 0 (CPU backend) or the pump (CUDA
// backend) announced that it sleeps.
#include "host/runtime_impl.hpp"

#include <pkrt/detail/futex.hpp>

#include <functional>

namespace pkrt {

const char* version() { return PKRT_VERSION_STRING; }

const char* backend_name(BackendKind kind) {
  switch (kind) {
    case BackendKind::kAuto: return "auto";
    case BackendKind::kCpu: return "cpu";
    case BackendKind::kCuda: return "cuda";
  }
  return "unknown";
}

Result<BackendKind> parse_backend(const std::string& text) {
  if (text == "auto") return BackendKind::kAuto;
  if (text == "cpu") return BackendKind::kCpu;
  if (text == "cuda") return BackendKind::kCuda;
  return Status(StatusCode::kInvalidArgument,
                "unknown backend '" + text + "'. Fix: use auto, cpu or cuda");
}

const char* poll_policy_name(PollPolicy policy) {
  switch (policy) {
    case PollPolicy::kAuto: return "auto";
    case PollPolicy::kLatency: return "latency";
    case PollPolicy::kBalanced: return "balanced";
    case PollPolicy::kLowPower: return "low_power";
  }
  return "unknown";
}

Result<PollPolicy> parse_poll_policy(const std::string& text) {
  if (text == "auto") return PollPolicy::kAuto;
  if (text == "latency") return PollPolicy::kLatency;
  if (text == "balanced") return PollPolicy::kBalanced;
  if (text == "low_power" || text == "low-power") return PollPolicy::kLowPower;
  return Status(StatusCode::kInvalidArgument,
                "unknown poll policy '" + text + "'. Fix: use auto, latency, balanced or low_power");
}

PollSettings poll_settings(PollPolicy policy, BackendKind backend) {
  if (policy == PollPolicy::kAuto)
    policy = backend == BackendKind::kCuda ? PollPolicy::kLatency : PollPolicy::kBalanced;
  const bool cpu = backend != BackendKind::kCuda;
  PollSettings s;
  s.policy = policy;
  // The CPU backend's blocks wake a sleeping pump when they answer, so there the pump needs
  // only a short spin (a second answer often follows the first); on CUDA it must poll.
  switch (policy) {
    case PollPolicy::kLatency:
      s.pump_spins = cpu ? 64 : 1024;
      s.pump_yields = cpu ? 16 : 64;
      // Only a GPU needs a polling pump: a pump spinning beside CPU blocks and the waiting
      // thread only takes a core away from them.
      s.pump_spins_while_outstanding = !cpu;
      s.waiter_spin = std::chrono::microseconds(100);
      // Longer only on paper: past a few hundred polls a yielding block 0 made the round
      // trip after an idle gap slower here (it shares a core with the thread that wakes it).
      s.block_idle_spin = 512;
      s.device_sleep_cap_ns = detail::kDevicePollCapLatencyNs;
      break;
    case PollPolicy::kLowPower:
      s.pump_spins = 16;
      s.pump_yields = 8;
      s.pump_sleep_cap = std::chrono::microseconds(1000);
      s.waiter_spin = std::chrono::microseconds(2);
      s.block_idle_spin = 64;
      s.device_sleep_cap_ns = detail::kDevicePollCapLowPowerNs;
      break;
    case PollPolicy::kAuto:
    case PollPolicy::kBalanced:
      s.pump_spins = cpu ? 64 : 256;
      s.pump_yields = cpu ? 16 : 64;
      s.block_idle_spin = 256;
      break;
  }
  return s;
}

void Runtime::Impl::ring_doorbell(std::uint64_t published) {
  // Seq_cst RMW: releases every publish and control word before it to block 0's acquire of
  // the doorbell, and orders it before our load of `sleeping` below against block 0's
  // seq_cst store of `sleeping` and load of the doorbell (wait_for_change): either block 0
  // sees the new value, or we see it asleep. (The slots themselves were counted in
  // HostControl::published when they were published: publish_locked.)
  std::atomic_ref<std::uint32_t>(control->host.doorbell).fetch_add(1, std::memory_order_seq_cst);
  // Seq_cst: see above.
  if (std::atomic_ref<std::uint32_t>(control->doorbell_sleeper.sleeping).load(std::memory_order_seq_cst) != 0)
    detail::futex_wake_all(&control->host.doorbell);
  // A GPU cannot wake the pump when it answers: a send resets the pump's back-off instead.
  if (backend_kind == BackendKind::kCuda && published != 0) wake_pump();
}

void Runtime::Impl::wake_pump() {
  PumpDoorbell& pd = control->pump;
  // Seq_cst fence: pairs with the pump's fence between its store of `sleeping` and its last
  // checks (sleep_until_k2h): either it sees our change, or we see it asleep.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Relaxed: ordered by the fences.
  if (std::atomic_ref<std::uint32_t>(pd.sleeping).load(std::memory_order_relaxed) != 0) {
    // Relaxed RMW on host memory by host threads only: the value just has to change.
    std::atomic_ref<std::uint32_t>(pd.bell).fetch_add(1, std::memory_order_relaxed);
    detail::futex_wake_all(&pd.bell);
  }
}

void Runtime::Impl::abort_kernel() { set_control(&HostControl::abort, 1u); }

namespace {

// Control of a runtime that was shut down changes nothing: say so rather than report success.
Status stopped_control(const char* call) {
  return Status(StatusCode::kFailedPrecondition,
                std::string(call) + " after shutdown(): the grid no longer runs. Fix: create a new Runtime to run again");
}

}  // namespace

// Refused after shutdown() (with the sticky error, if the run failed first): a caller that
// drives the grid (ShardedRuntime::run_until) would otherwise wait its whole deadline for an
// epoch a stopped grid never reaches.
Status Runtime::set_target_epoch(std::uint64_t epoch) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->phase == RuntimePhase::kStopped) {
      if (!impl_->sticky.ok()) return impl_->sticky;
      return stopped_control("set_target_epoch()");
    }
  }
  impl_->set_control(&HostControl::target_epoch, epoch);
  return Status();
}

Status Runtime::pause() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->phase == RuntimePhase::kStopped) return stopped_control("pause()");
    impl_->pause_requested = true;
  }
  impl_->set_control(&HostControl::pause, 1u);
  return Status();
}

Status Runtime::resume() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->phase == RuntimePhase::kStopped) return stopped_control("resume()");
    impl_->pause_requested = false;
  }
  impl_->set_control(&HostControl::pause, 0u);
  return Status();
}

Status Runtime::Impl::refused_on_pump_thread(const char* call) const {
  if (!requests->on_pump_thread()) return Status();
  return Status(StatusCode::kFailedPrecondition,
                std::string(call) + " was called from a callback, on the pump thread, and waits for what only "
                "that thread does (park reports, the kernel's last answers); nothing was done. Fix: call it "
                "from another thread (e.g. have the callback notify the thread that drives the run)");
}

namespace {

Status wait_for(Runtime::Impl& m, std::unique_lock<std::mutex>& lock,
                std::chrono::milliseconds timeout, const std::function<bool()>& done,
                const std::string& what) {
  m.cv.wait_for(lock, timeout, [&] { return done() || !m.sticky.ok() || m.kernel_done || m.stopped_event; });
  if (done()) return Status();
  if (!m.sticky.ok()) return m.sticky;
  if (m.kernel_done || m.stopped_event) {
    return Status(StatusCode::kAborted, "the kernel stopped at epoch " + std::to_string(m.parked_epoch) +
                                            " while waiting for " + what);
  }
  return Status(StatusCode::kTimeout, "timed out after " + std::to_string(timeout.count()) +
                                          " ms waiting for " + what);
}

}  // namespace

Status Runtime::run_until(std::uint64_t epoch, std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  PKRT_RETURN_IF_ERROR(m.refused_on_pump_thread("run_until()"));
  if (m.phase != RuntimePhase::kRunning)
    return Status(StatusCode::kFailedPrecondition, "run_until() needs a started runtime");
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.pause_requested) {
      return Status(StatusCode::kFailedPrecondition,
                    "run_until(" + std::to_string(epoch) + ") on a paused runtime would wait forever. "
                    "Fix: call resume() first");
    }
  }
  PKRT_RETURN_IF_ERROR(set_target_epoch(epoch));
  std::unique_lock<std::mutex> lock(m.mu);
  PKRT_RETURN_IF_ERROR(wait_for(m, lock, timeout, [&] { return m.parked_now() && m.parked_epoch >= epoch; },
                                "the grid to reach epoch " + std::to_string(epoch)));
  if (m.parked_epoch > epoch) {
    return Status(StatusCode::kFailedPrecondition,
                  "run_until(" + std::to_string(epoch) + "): the grid had already completed epoch " +
                      std::to_string(m.parked_epoch) + " and is parked there. Fix: call "
                      "set_target_epoch() before start() (or before the grid passes the epoch)");
  }
  return Status();
}

Status Runtime::wait_parked(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  PKRT_RETURN_IF_ERROR(m.refused_on_pump_thread("wait_parked()"));
  std::unique_lock<std::mutex> lock(m.mu);
  return wait_for(m, lock, timeout, [&] { return m.parked_now(); }, "the grid to park");
}

}  // namespace pkrt
