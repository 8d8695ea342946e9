// host/runtime.cpp: the Runtime's lifecycle: start, shutdown, reading actor state,
// statistics. Creation (options, backend, memory layout) is host/runtime_setup.cpp; the
// other responsibilities live beside it (host/runtime_impl.hpp lists them).
//
// Shutdown order: close admission (no sender is left between its check and its publish),
// stop the kernel at an epoch boundary, join the pump after its final drain, fail every
// request still pending (kAborted), close the drain gate (no waiting thread touches the
// runtime after this), then the destructor frees memory. A fatal error (watchdog, device
// fault) closes admission and fails the pending requests and open snapshots at once
// (record_error); so does a kernel that exits without being asked to (pump_loop).
#include "host/runtime_impl.hpp"

#include <pkrt/replay.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pkrt {
Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Runtime::~Runtime() {
  // From a callback the pump thread would have to join itself, and the frames below this one
  // still use the runtime: no way on that is safe. Say so instead of a bare std::terminate.
  if (impl_->requests->on_pump_thread()) {
    std::fprintf(stderr,
                 "pkrt: a Runtime of app '%s' was destroyed inside one of its own callbacks (on its pump "
                 "thread); the process cannot continue safely and aborts. Fix: destroy the Runtime from "
                 "another thread, after the callback returned (e.g. have the callback notify that thread)\n",
                 impl_->program->name);
    std::abort();
  }
  shutdown().ignore();
}

Runtime::Impl::~Impl() {
  if (requests != nullptr) requests->release_runtime_reference();
}

void Runtime::Impl::report_error(const Status& st) {
  ErrorCallback cb;
  {
    std::lock_guard<std::mutex> lock(mu);
    cb = on_error;
  }
  if (cb) cb(st);
}

void Runtime::Impl::record_error(const Status& st) {
  ErrorCallback cb;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!sticky.ok()) return;
    sticky = st;
    cb = on_error;
  }
  // Nothing pending will be answered now (the kernel is aborting or faulted), and nothing
  // new may be sent: fail them with the cause instead of letting them wait for ever.
  close_admission(Status(st.code(), "runtime failed earlier: " + st.message()));
  // Snapshots first: a thread woken by its failed future then already sees them failed too.
  fail_open_snapshots(Status(st.code(), "runtime failed: " + st.message()));
  requests->fail_all(Status(st.code(), "runtime failed: " + st.message()), program->name);
  if (cb) cb(st);
  cv.notify_all();
}

Status Runtime::start() {
  Impl& m = *impl_;
  if (m.phase == RuntimePhase::kStopped) {
    return Status(StatusCode::kFailedPrecondition,
                  "start() after shutdown(); a Runtime launches its kernel once. Fix: create a new Runtime to run again");
  }
  if (m.phase != RuntimePhase::kCreated) {
    return Status(StatusCode::kFailedPrecondition,
                  "start() called twice; a Runtime launches its kernel once. Fix: create a new "
                  "Runtime to run again");
  }
  if (Status earlier = health(); !earlier.ok()) {
    return Status(StatusCode::kFailedPrecondition,
                  "start() after a failed start (" + earlier.message() + "). Fix: create a new Runtime to run again");
  }
  // Relaxed: only tells a sender facing a full ring whether anything may drain it; nothing is
  // read through it (a sender that misses it waits for room as usual).
  m.start_begun.store(true, std::memory_order_relaxed);
  // A start that fails leaves nothing waiting: the error is sticky (health()), every command
  // queued before start() fails with it, and later sends are refused.
  auto failed = [&m](const Status& st) {
    m.record_error(Status(st.code(), "start() failed: " + st.message()));
    return st;
  };
  // The grid starts only the epochs whose K2K messages from other shards are in: those the
  // first exchange delivers (a fresh run's init sends) or, restored, what its images hold.
  // Relaxed: the kernel is not running yet; the launch orders it.
  detail::store_relaxed(m.control->host.k2k_open_epoch, m.args.start_epoch + m.args.k2k_delay - (m.args.run_init != 0 ? 1 : 0));
  {
    std::lock_guard<std::mutex> lock(m.exchange_mu);
    m.next_delivery = first_exchange_epoch();
  }
  if (m.log) {
    ReplayRunInfo info;
    info.app = m.program->name;
    info.params = m.params;
    info.backend = backend_name(m.backend_kind);
    info.num_actors = m.options.num_actors;
    info.blocks = m.plan.blocks;
    info.threads_per_block = m.plan.threads_per_block;
    info.ring_capacity = m.options.ring_capacity;
    info.digest_period = m.options.digest_period;
    info.k2k_delay = m.options.k2k_delay;
    // A shard's log: its inbound K2K goes to the companion .k2k file (pkrt::mpi writes it).
    info.global_actors = m.args.k2k_gated != 0 ? m.args.global_actors : 0;
    info.chaos = m.options.chaos;
    info.chaos_seed = m.options.chaos_seed;
    info.start_epoch = m.args.start_epoch;
    info.config_hash = replay_config_hash(*m.program, m.params, m.options.num_actors, m.options.digest_period,
                                          m.options.k2k_delay);
    info.pkrt_version = version();
    info.created_unix_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    std::unique_lock<std::mutex> lock(m.log_mu);
    if (Status begun = m.log->begin_run(info); !begun.ok()) {
      lock.unlock();
      return failed(begun);
    }
    // Relaxed: a label for records (see complete_epoch).
    m.complete_epoch.store(m.args.start_epoch, std::memory_order_relaxed);
    m.log->set_complete_epoch(m.args.start_epoch);
    for (ReplayRecord& r : m.prestart_h2k) r.epoch_observed = m.args.start_epoch;
    m.log->append_batch(std::span<ReplayRecord>(m.prestart_h2k));
    m.prestart_h2k.clear();
    // Release: senders that acquire it append directly, after the records above.
    m.log_begun.store(true, std::memory_order_release);
  }
  if (Status launched = m.backend->launch(*m.program, m.args, m.plan); !launched.ok()) return failed(launched);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.phase = RuntimePhase::kRunning;
  }
  m.pump = std::thread([&m] { m.pump_loop(); });
  return Status();
}

std::uint64_t Runtime::region_bytes(int region) const {
  if (region < 0) return impl_->layout.state_bytes;
  if (static_cast<std::uint32_t>(region) >= impl_->layout.region_count) return 0;
  return impl_->layout.region_bytes[region];
}

Status Runtime::read_region(std::uint32_t actor, int region, void* out, std::size_t bytes) {
  Impl& m = *impl_;
  if (actor >= m.options.num_actors) {
    return Status(StatusCode::kOutOfRange,
                  "actor " + std::to_string(actor) + " is out of range (app '" + m.program->name +
                      "' has " + std::to_string(m.options.num_actors) + " actors)");
  }
  if (region >= static_cast<int>(m.layout.region_count) || region < -1) {
    return Status(StatusCode::kOutOfRange,
                  "region " + std::to_string(region) + " does not exist (app '" +
                      m.program->name + "' has " + std::to_string(m.layout.region_count) +
                      " named regions; -1 is the State struct)");
  }
  if (bytes > region_bytes(region)) {
    return Status(StatusCode::kInvalidArgument,
                  "asked for " + std::to_string(bytes) + " bytes of a " +
                      std::to_string(region_bytes(region)) + "-byte region");
  }
  // Held through the copy: resume() and set_target_epoch() cannot release the grid mid-copy.
  std::lock_guard<std::mutex> control_lock(m.control_mu);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    const bool quiet = m.phase == RuntimePhase::kCreated || m.kernel_done || m.parked_now();
    if (!quiet || m.leaked) {
      return Status(StatusCode::kFailedPrecondition,
                    "actor state can only be read while the grid is parked or stopped. Fix: "
                    "call run_until(epoch) or pause() + wait_parked() first");
    }
  }
  const std::uint64_t off = m.state_stride * actor + (region < 0 ? 0 : m.args.region_offset[region]);
  return m.backend->copy_to_host(out, static_cast<std::byte*>(m.state_buf.device()) + off, bytes);
}

Status Runtime::shutdown() {
  Impl& m = *impl_;
  // It joins the pump thread: from a callback it would wait for itself.
  PKRT_RETURN_IF_ERROR(m.refused_on_pump_thread("shutdown()"));
  if (m.phase == RuntimePhase::kStopped) return health();
  const bool launched = m.phase == RuntimePhase::kRunning;
  m.close_admission(Status(StatusCode::kFailedPrecondition,
                           "runtime was shut down; commands can no longer be sent"));
  if (launched) m.set_control(&HostControl::shutdown, 1u);
  // Never started: nothing runs; commands queued before start() are failed below.
  Status waited = launched ? m.backend->wait_finished(m.options.stop_timeout) : Status();
  if (!waited.ok() && waited.code() == StatusCode::kTimeout) {
    m.abort_kernel();
    waited = m.backend->wait_finished(m.options.stop_timeout);
  }
  // Release: pairs with the pump's acquire load; it exits after a final drain.
  m.pump_stop.store(true, std::memory_order_release);
  if (m.pump.joinable()) m.pump.join();
  if (!waited.ok()) {
    m.record_error(waited);
    if (waited.code() == StatusCode::kTimeout) {
      // Blocks are still running user code: freeing their memory would turn a hang into a
      // crash. Keep everything alive for the rest of the process.
      std::lock_guard<std::mutex> lock(m.mu);
      m.leaked = true;
      for (host::Buffer* b : {&m.control_buf, &m.heartbeat_buf, &m.h2k_buf, &m.k2h_buf, &m.state_buf, &m.k2k_buf,
                              &m.global_buf, &m.grid_buf, &m.params_buf, &m.staging_buf,
                              &m.prev_crc_buf, &m.actor_flag_buf, &m.deferred_buf})
        b->leak();
      m.backend->abandon();
      (void)m.backend.release();
    }
  }
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.phase = RuntimePhase::kStopped;
    m.kernel_done = true;
  }
  // Snapshots first, as in record_error.
  m.fail_open_snapshots(Status(StatusCode::kAborted, "the runtime shut down before the snapshot's epoch was served"));
  m.requests->fail_all(Status(StatusCode::kAborted,
                              "runtime shut down before the command's apply epoch was reached or its answer arrived"),
                       m.program->name);
  m.requests->close_drain();
  m.cv.notify_all();
  return health();
}

void Runtime::set_event_callback(EventCallback callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->on_event = std::move(callback);
}

void Runtime::set_error_callback(ErrorCallback callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->on_error = std::move(callback);
}

RuntimeStats Runtime::stats() const {
  RuntimeStats s;
  s.epoch = epoch();
  // Relaxed (all five): statistics counters, see Impl.
  s.commands_sent = impl_->commands_sent.load(std::memory_order_relaxed);
  s.events_received = impl_->events_received.load(std::memory_order_relaxed);
  s.replies = impl_->replies.load(std::memory_order_relaxed);
  s.errors = impl_->errors.load(std::memory_order_relaxed);
  s.posts = impl_->posts.load(std::memory_order_relaxed);
  s.blocks = impl_->plan.blocks;
  s.threads_per_block = impl_->plan.threads_per_block;
  return s;
}

std::uint64_t Runtime::epoch() const {
  // Relaxed: a progress value; callers that need the state behind it wait on a park.
  return detail::load_relaxed(impl_->control->grid.epoch);
}

BackendKind Runtime::backend() const { return impl_->backend_kind; }
const std::string& Runtime::backend_description() const { return impl_->description; }
const Program& Runtime::program() const { return *impl_->program; }
const RuntimeOptions& Runtime::options() const { return impl_->options; }
const ProgramLayout& Runtime::layout() const { return impl_->layout; }
const std::vector<std::byte>& Runtime::params() const { return impl_->params; }
PollPolicy Runtime::poll_policy() const { return impl_->poll.policy; }

Status Runtime::health() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->sticky;
}

}  // namespace pkrt
