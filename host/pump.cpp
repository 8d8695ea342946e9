// host/pump.cpp: the host pump thread. It owns everything on K2H that is not a reply a waiting
// thread completes itself: events and their callback, reply callbacks, kernel errors,
// snapshots, park/resume/stop reports; it keeps the replay log's horizon, runs the watchdog,
// and releases snapshot staging.
//
// One pass: read the smallest heartbeat (acquire), then for every ring that may hold a slot,
// take its K2H lane try-lock and consume what it holds (up to kPumpDrainPerRing); log the
// whole pass as one batch (one lock, one clock read, one counters update), hand the slots
// back, then handle them. If every ring was empty or drained, every K2H slot of epochs up to
// that heartbeat is in the log: the horizon (complete_epoch) moves there. A ring held by a
// waiting thread is skipped; the horizon then waits for the next pass.
//
// Idle: after a pass with nothing, the pump waits as its poll policy says (PollSettings):
// spin, yield, then sleep. On the CPU backend it sleeps in a futex that blocks wake after a
// K2H publish (unless a waiting thread is draining); on CUDA a GPU cannot wake it, so it
// sleeps in bounded steps (<= 16 us while a request is outstanding, <= the policy's cap
// otherwise), and a send wakes it.
#include "host/runtime_impl.hpp"
#include "host/nvtx.hpp"

#include <pkrt/detail/futex.hpp>

#include <algorithm>
#include <optional>

namespace pkrt {
namespace {

// Slots the pump takes from one ring in one pass: bounds the pass (and its log batch) so
// that the other rings and the watchdog are served between busy passes.
constexpr std::uint32_t kPumpDrainPerRing = 256;

// The pump's wait after empty passes, per poll policy.
class PumpIdle {
 public:
  // Work came, or a send (CUDA) or a block (CPU) rang while we slept: start over spinning.
  void reset() { empty_passes_ = 0; }

  void wait(Runtime::Impl& m) {
    const PollSettings& p = m.poll;
    const bool outstanding = m.requests->outstanding() > 0;
    if (p.pump_spins_while_outstanding && outstanding) {
      detail::cpu_relax();
      return;
    }
    ++empty_passes_;
    if (empty_passes_ <= p.pump_spins) {
      detail::cpu_relax();
      return;
    }
    if (empty_passes_ <= p.pump_spins + p.pump_yields) {
      std::this_thread::yield();
      return;
    }
    std::chrono::microseconds sleep{5000};  // CPU: blocks wake us; this is the watchdog tick
    if (m.backend_kind != BackendKind::kCpu) {
      const std::uint32_t k = std::min<std::uint32_t>(empty_passes_ - p.pump_spins - p.pump_yields - 1, 20);
      sleep = std::min(std::chrono::microseconds(std::uint64_t{1} << k),
                       outstanding ? p.pump_sleep_cap_outstanding : p.pump_sleep_cap);
    }
    m.sleep_until_k2h(sleep);
  }

 private:
  std::uint32_t empty_passes_ = 0;
};

}  // namespace

void Runtime::Impl::sleep_until_k2h(std::chrono::microseconds timeout) {
  PumpDoorbell& pd = control->pump;
  std::atomic_ref<std::uint32_t> bell(pd.bell);
  std::atomic_ref<std::uint32_t> sleeping(pd.sleeping);
  // Relaxed: the value only needs to be the one the futex compares against.
  const std::uint32_t seen = bell.load(std::memory_order_relaxed);
  // Relaxed store, then a seq_cst fence: pairs with the fence of whoever wakes us (a block's
  // wake_host_pump, a sender's or a drainer's wake_pump).
  sleeping.store(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool ready = backend->kernel_finished();
  for (std::uint32_t b = 0; b < plan.blocks && !ready; ++b) ready = k2h_maybe_ready(b);
  if (!ready) detail::futex_wait_for(&pd.bell, seen, timeout);
  // Relaxed: a waker that still sees 1 only makes one spare wake-up.
  sleeping.store(0, std::memory_order_relaxed);
}

std::pair<std::uint64_t, std::uint64_t> Runtime::Impl::heartbeat_range() const {
  std::uint64_t lo = ~0ull, hi = 0;
  for (std::uint32_t b = 0; b < plan.blocks; ++b) {
    // Relaxed: a progress counter; the watchdog needs no ordering with other data.
    const std::uint64_t e = detail::load_relaxed(heartbeats[b].epoch);
    lo = std::min(lo, e);
    hi = std::max(hi, e);
  }
  return {lo, hi};
}

std::uint64_t Runtime::Impl::acquire_min_heartbeat() const {
  std::uint64_t lo = ~0ull;
  for (std::uint32_t b = 0; b < plan.blocks; ++b) {
    // Acquire: pairs with the block's store_release of its heartbeat epoch; every K2H slot
    // of epochs up to it is visible now.
    lo = std::min(lo, detail::load_acquire(heartbeats[b].epoch));
  }
  return lo;
}

std::string Runtime::Impl::stalled_blocks(std::uint64_t lo) const {
  std::string out;
  for (std::uint32_t b = 0; b < plan.blocks; ++b) {
    // Relaxed: diagnostics only.
    if (detail::load_relaxed(heartbeats[b].epoch) == lo) {
      if (!out.empty()) out += ",";
      out += std::to_string(b);
    }
  }
  return out;
}

void Runtime::Impl::advance_horizon(std::uint64_t horizon) {
  // Relaxed (load and store): a label for later records, written by the pump alone; see
  // complete_epoch.
  if (horizon <= complete_epoch.load(std::memory_order_relaxed)) return;
  complete_epoch.store(horizon, std::memory_order_relaxed);
  if (log) log->set_complete_epoch(horizon);
}

void Runtime::Impl::apply_reports() {
  if (deferred_reports.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const Event& ev : deferred_reports) {
      if (ev.opcode == kOpPaused) {
        parked = true;
        parked_epoch = ev.epoch;
        parked_generation = ev.as<std::uint32_t>();
      } else if (ev.opcode == kOpResumed) {
        parked = false;
      } else {
        stopped_event = true;
        parked = false;
        parked_epoch = ev.as<StopData>().final_epoch;
      }
    }
  }
  deferred_reports.clear();
  cv.notify_all();
}

void Runtime::Impl::handle(const Slot& slot, std::uint32_t block) {
  const std::uint16_t opcode = slot.header.opcode;
  const std::uint64_t request = slot.payload.request;
  if (opcode == kOpAck && request == 0) return;  // runtime-internal command (ReleaseStaging)
  const bool snapshot_refused = opcode == kOpError && [&] {
    ErrorData err;
    std::memcpy(&err, slot.payload.data, sizeof err);
    return err.opcode == kOpSnapshotActor;
  }();
  if (!snapshot_refused &&
      (opcode == kOpAckRange || ((slot.header.flags & kFlagReply) != 0 && is_command_request(request)))) {
    replies.fetch_add(complete_commands(slot, block), std::memory_order_relaxed);  // Relaxed: statistics only.
    return;
  }
  if (opcode == kOpError) errors.fetch_add(1, std::memory_order_relaxed);  // Relaxed: statistics only.
  const Event ev = to_event(slot, block);
  if (opcode == kOpSnapshotReady) {
    handle_snapshot(ev);
  } else if (opcode == kOpQueuedCommands) {
    handle_queued_commands(ev, Status());
  } else if (snapshot_refused && ev.actor == kQueuedCommandsActor) {
    handle_queued_commands(ev, Status(StatusCode::kFailedPrecondition,
                                      "block " + std::to_string(block) +
                                          "'s queued-commands area still holds an unreleased copy"));
  } else if (snapshot_refused) {
    handle_snapshot_refusal(ev);
  } else if ((slot.header.flags & kFlagReply) != 0) {
    if (opcode == kOpError)
      report_error(Status(StatusCode::kInternal, "error event for unknown request " + std::to_string(request) +
                                                     ": " + error_status(ev).to_string()));
  } else if (opcode == kOpPaused || opcode == kOpResumed || opcode == kOpStopped) {
    deferred_reports.push_back(ev);
  } else {
    EventCallback cb;
    {
      std::lock_guard<std::mutex> lock(mu);
      cb = on_event;
    }
    if (cb) cb(ev);
  }
}

Runtime::Impl::PassResult Runtime::Impl::pump_pass() {
  PassResult result;
  // Read before the pass: the pass drains every slot published up to this epoch.
  const std::uint64_t horizon = acquire_min_heartbeat();
  // Relaxed: a label for the records (see complete_epoch).
  const std::uint64_t observed = complete_epoch.load(std::memory_order_relaxed);
  // Records a callback's send drained outside a pass (one run from the watchdog's error
  // callback, say) are handled first: a pass never drops what is in the log.
  handle_pass();
  pass_records.clear();
  pass_next = 0;
  result.all_drained = consume_into_pass(observed);
  // Traced only when it consumed something: an idle pump would bury the timeline in
  // empty passes.
  static const host::NvtxName kPassName("pump pass");
  std::optional<host::NvtxRange> traced;
  if (!pass_records.empty()) traced.emplace(kPassName);
  log_and_hand_back(0);
  if (!pass_records.empty()) {
    result.any = true;
    handle_pass();
  }
  if (result.all_drained) advance_horizon(horizon);
  apply_reports();
  retry_releases();
  return result;
}

bool Runtime::Impl::consume_into_pass(std::uint64_t observed) {
  bool all_drained = true;
  pass_locked.clear();
  for (std::uint32_t b = 0; b < plan.blocks; ++b) {
    if (!k2h_maybe_ready(b)) continue;
    K2HLane& lane = k2h[b];
    if (!lane.try_lock()) {
      all_drained = false;  // a waiting thread drains it right now
      continue;
    }
    pass_locked.push_back(b);
    std::uint32_t n = 0;
    while (n < kPumpDrainPerRing) {
      // Read straight into its record (see fill_replay_header).
      ReplayRecord& record = pass_records.emplace_back();
      if (!lane.consumer.peek(record.slot)) {
        pass_records.pop_back();
        break;
      }
      fill_replay_header(record, ReplayDirection::kK2H, b, observed);
      lane.consumer.advance();
      ++n;
    }
    if (n == kPumpDrainPerRing) all_drained = false;
  }
  return all_drained;
}

void Runtime::Impl::log_and_hand_back(std::size_t first) {
  const std::size_t n = pass_records.size() - first;
  // Logged before handed back: see k2h_maybe_ready.
  if (log && n != 0) log->append_batch(std::span<ReplayRecord>(pass_records.data() + first, n));
  for (std::uint32_t b : pass_locked) {
    k2h[b].consumer.commit();
    k2h[b].unlock();
  }
  pass_locked.clear();
  if (n != 0) events_received.fetch_add(n, std::memory_order_relaxed);  // Relaxed: statistics only.
}

bool Runtime::Impl::pump_drain_without_handling() {
  const std::size_t first = pass_records.size();
  // Relaxed: a label for the records (see complete_epoch).
  (void)consume_into_pass(complete_epoch.load(std::memory_order_relaxed));
  log_and_hand_back(first);
  return pass_records.size() != first;
}

bool Runtime::Impl::handle_next_pass_record() {
  if (pass_next == pass_records.size()) return false;
  // A copy: a callback waiting on the pump thread may run a new pass (pump_step), which
  // refills pass_records under us; it handles every record of its own pass before it
  // returns, so the caller's loop then simply ends.
  const Slot slot = pass_records[pass_next].slot;
  const std::uint32_t block = pass_records[pass_next].block;
  ++pass_next;
  handle(slot, block);
  return true;
}

void Runtime::Impl::handle_pass() {
  while (handle_next_pass_record()) {
  }
}

bool Runtime::Impl::pump_step() {
  watchdog_tick(false);
  if (handle_next_pass_record() || pump_pass().any) return true;
  // A callback waiting on the pump thread keeps pump_loop from its end-of-kernel checks, so
  // they are made here too: else a kernel that ended unasked, or a shutdown (which fails the
  // pending requests only after joining this thread), would leave the callback waiting.
  if (backend->kernel_finished()) {
    report_unrequested_exit();
    // Acquire: pairs with shutdown()'s release store, made once the kernel finished.
    if (!stop_failed_waits && pump_stop.load(std::memory_order_acquire)) {
      stop_failed_waits = true;
      requests->fail_all(Status(StatusCode::kAborted, "runtime shut down while a callback waited for this answer"),
                         program->name);
    }
  }
  return false;
}

void Runtime::Impl::report_unrequested_exit() {
  if (exit_reported) return;
  exit_reported = true;
  // Acquire (both): pair with set_control's release stores; a kernel that ends after a stop
  // or abort request was asked to (shutdown and the watchdog report those themselves).
  if (detail::load_acquire(control->host.shutdown) != 0 || detail::load_acquire(control->host.abort) != 0) return;
  // A kernel that died of a device error also ends "finished": its fault is the cause.
  Status fault = backend->poll_fault();
  if (fault.ok()) {
    fault = Status(StatusCode::kInternal,
                   "the persistent kernel of app '" + std::string(program->name) + "' exited after epoch " +
                       std::to_string(heartbeat_range().first) +
                       " without a stop request; no command will be applied or answered any more. Fix: "
                       "this is a pkrt bug, please report it with this message");
  }
  fault_reported = true;
  record_error(fault);
}

void Runtime::Impl::check_grid_start(std::chrono::steady_clock::time_point now) {
  std::string waiting;
  std::uint32_t count = 0;
  for (std::uint32_t b = 0; b < plan.blocks; ++b) {
    // Relaxed: diagnostics only; a block that has started stays past kGridStarting.
    if (detail::load_relaxed(heartbeats[b].state) != kGridStarting) continue;
    if (++count > 8) continue;
    if (!waiting.empty()) waiting += ',';
    waiting += std::to_string(b);
  }
  if (count == 0) {
    grid_started = true;
    return;
  }
  // A block reports running before it initialises its actors, so a block still starting
  // this late was never scheduled: on a GPU, a cooperative grid whose blocks cannot all be
  // resident (another persistent kernel, MPS or other work on the SMs) waits for ever.
  if (now - launched_at <= options.watchdog_timeout) return;
  grid_started = true;  // reported once
  record_error(Status(StatusCode::kWatchdogTimeout,
                      std::to_string(count) + " of " + std::to_string(plan.blocks) + " blocks (" + waiting +
                          (count > 8 ? ",..." : "") + ") of app '" + program->name + "' never started within " +
                          std::to_string(options.watchdog_timeout.count()) + " ms of the launch on " +
                          plan.description +
                          ": the grid is not resident. Fix: stop other work on the device (another pkrt "
                          "runtime, MPS clients, other kernels), or run fewer actors per device"));
  abort_kernel();
}

void Runtime::Impl::watchdog_tick(bool finished) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_check < std::chrono::milliseconds(5)) return;
  last_check = now;
  if (!fault_reported) {
    Status fault = backend->poll_fault();
    if (!fault.ok()) {
      fault_reported = true;
      record_error(fault);
    }
  }
  if (!grid_started && !finished) check_grid_start(now);
  // Acquire: pairs with block 0's store_release of the grid state.
  const auto state = detail::load_acquire(control->grid.state);
  const auto [lo, hi] = heartbeat_range();
  const std::uint64_t sum = lo * 1000003u + hi;
  // Parked, idle, not yet started (init may be long) or stopped grids owe no heartbeat. A
  // grid held at a snapshot_all's cut shows progress through its waves' images instead
  // (pool_image_copied moves last_progress). Neither does a shard waiting for the host's K2K
  // exchange with other shards (its caller times that out: pkrt/mpi.hpp).
  // Relaxed: a host-written word read on the host; only its value matters here.
  const bool exchange_wait = args.k2k_gated != 0 && lo >= detail::load_relaxed(control->host.k2k_open_epoch);
  if (finished || state != kGridRunning || exchange_wait || sum != last_sum) {
    last_sum = sum;
    last_progress = now;
  } else if (now - last_progress > options.watchdog_timeout) {
    record_error(Status(StatusCode::kWatchdogTimeout,
                        "no heartbeat for " + std::to_string(options.watchdog_timeout.count()) + " ms from block(s) " +
                            stalled_blocks(lo) + " of app '" + program->name + "' (stuck in epoch " +
                            std::to_string(lo + 1) + "; grid completed epoch " + std::to_string(lo) +
                            "). An actor's step or message handler is not returning; the runtime is stopping. "
                            "Fix: look for an infinite loop or a wait on a message that never comes, or raise "
                            "the watchdog timeout for long epochs"));
    abort_kernel();
    last_progress = now;
  }
}

void Runtime::Impl::pump_loop() {
  PumpIdle idle;
  last_progress = std::chrono::steady_clock::now();
  last_check = last_progress;
  launched_at = last_progress;
  pass_records.reserve(std::size_t{plan.blocks} * kPumpDrainPerRing);
  pass_locked.reserve(plan.blocks);
  requests->mark_pump_thread();
  backend->bind_this_thread();
  for (;;) {
    const PassResult pass = pump_pass();
    // Acquire: pairs with shutdown()'s release store, made after the kernel finished (or
    // after it gave up waiting for a stuck one).
    const bool stop = pump_stop.load(std::memory_order_acquire);
    const bool kernel_exited = (!pass.any || stop) && backend->kernel_finished();
    bool finished = false;
    if (kernel_exited && !pass.any && pass.all_drained) {
      // Drain once more: slots published right before the kernel returned.
      const PassResult more = pump_pass();
      if (!more.any && more.all_drained) {
        finished = true;
        {
          std::lock_guard<std::mutex> lock(mu);
          kernel_done = true;
        }
        cv.notify_all();
        if (stop) break;
        report_unrequested_exit();
      }
    } else if (stop && !kernel_exited) {
      // Shutdown gave up waiting on a stuck kernel; nothing more will be drained.
      break;
    }
    watchdog_tick(finished);
    pool_housekeeping();
    if (pass.any) {
      idle.reset();
      continue;
    }
    if (finished) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    // Relaxed: compared only to notice that a waker rang while we slept.
    const std::uint32_t bell = std::atomic_ref<std::uint32_t>(control->pump.bell).load(std::memory_order_relaxed);
    idle.wait(*this);
    // Relaxed: as above.
    if (std::atomic_ref<std::uint32_t>(control->pump.bell).load(std::memory_order_relaxed) != bell) idle.reset();
  }
}

}  // namespace pkrt
