// host/runtime.cpp: the Runtime's lifecycle: create (options, backend, memory layout),
// start, shutdown, reading actor state, statistics. The other responsibilities live beside
// it (host/runtime_impl.hpp lists them): control, the send path, the pump, snapshots.
//
// Shutdown order: close admission (no sender is left between its check and its publish),
// stop the kernel at an epoch boundary, join the pump after its final drain, fail every
// request still pending (kAborted), close the drain gate (no waiting thread touches the
// runtime after this), then the destructor frees memory. A fatal error (watchdog, device
// fault) closes admission and fails the pending requests at once (record_error).
#include "host/runtime_impl.hpp"

#include <pkrt/replay.hpp>

#include <algorithm>
#include <cstring>

namespace pkrt {
namespace {

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Runtime::~Runtime() { shutdown().ignore(); }

Runtime::Impl::~Impl() {
  if (requests != nullptr) requests->release_runtime_reference();
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
  requests->fail_all(Status(st.code(), "runtime failed: " + st.message()), program->name);
  if (cb) cb(st);
  cv.notify_all();
}

Result<std::unique_ptr<Runtime>> Runtime::create(const Program& program, const void* params,
                                                 std::size_t params_bytes,
                                                 const RuntimeOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->program = &program;
  impl->options = options;
  if (params_bytes != program.params_bytes) {
    return Status(StatusCode::kInvalidArgument,
                  "params of " + std::to_string(params_bytes) + " bytes given to app '" +
                      program.name + "', which expects " + std::to_string(program.params_bytes) +
                      ". Fix: pass the app's own Params struct");
  }
  if (options.num_actors == 0 || options.num_actors > (1u << 24)) {
    return Status(StatusCode::kInvalidArgument,
                  "actor count " + std::to_string(options.num_actors) +
                      " is out of range. Fix: use 1..16777216 actors");
  }
  if (!ring_capacity_valid(options.ring_capacity)) {
    return Status(StatusCode::kInvalidArgument,
                  "ring capacity " + std::to_string(options.ring_capacity) +
                      " is invalid. Fix: use a power of two between 2 and 1048576");
  }
  impl->params.assign(static_cast<const std::byte*>(params),
                      static_cast<const std::byte*>(params) + params_bytes);
  if (program.check_params != nullptr) {
    if (const char* problem = program.check_params(impl->params.data(), options.num_actors)) {
      return Status(StatusCode::kInvalidArgument,
                    std::string("params rejected by app '") + program.name + "': " + problem);
    }
  }
  impl->layout = program.layout(impl->params.data(), options.num_actors);

  // Backend selection. Chaos mode perturbs CPU worker threads; a GPU schedules on its own.
  std::string note;
  if (options.chaos && options.backend == BackendKind::kCuda) {
    return Status(StatusCode::kInvalidArgument,
                  "chaos mode perturbs the CPU backend's worker threads and cannot run on the "
                  "CUDA backend. Fix: drop --chaos, or use --backend cpu");
  }
  if (options.chaos && options.backend == BackendKind::kAuto) {
    note = "; chaos mode runs on the CPU";
  } else if (options.backend == BackendKind::kCuda) {
    auto cuda = host::make_cuda_backend(options.cuda_device);
    if (!cuda.ok()) return cuda.status();
    impl->backend = std::move(cuda.value());
  } else if (options.backend == BackendKind::kAuto) {
    if (!host::cuda_backend_compiled()) {
      note = "; CUDA backend not built";
    } else if (program.cuda_kernel == nullptr) {
      note = "; app not compiled for CUDA";
    } else {
      auto cuda = host::make_cuda_backend(options.cuda_device);
      if (cuda.ok()) {
        impl->backend = std::move(cuda.value());
      } else {
        note = "; no usable GPU";
      }
    }
  }
  if (!impl->backend) impl->backend = host::make_cpu_backend();
  impl->backend_kind = impl->backend->kind();

  auto plan = impl->backend->plan(program, options.num_actors, options.threads);
  if (!plan.ok()) return plan.status();
  impl->plan = plan.value();
  impl->plan.chaos = options.chaos;
  impl->plan.chaos_seed = options.chaos_seed;
  if (options.chaos) impl->plan.description += ", chaos seed " + std::to_string(options.chaos_seed);
  impl->description = impl->plan.description +
                      (options.backend == BackendKind::kAuto ? ", picked by --backend auto" + note : "");

  host::Backend& be = *impl->backend;
  const std::uint32_t blocks = impl->plan.blocks;
  const ProgramLayout& lay = impl->layout;

  // State arenas: [State][region 0][region 1]..., each 256-byte aligned.
  detail::KernelArgs& a = impl->args;
  std::uint64_t offset = align_up(std::max<std::uint64_t>(lay.state_bytes, 1), detail::kRegionAlign);
  a.region_count = lay.region_count;
  for (std::uint32_t r = 0; r < lay.region_count; ++r) {
    a.region_offset[r] = offset;
    a.region_bytes[r] = lay.region_bytes[r];
    offset += align_up(std::max<std::uint64_t>(lay.region_bytes[r], 1), detail::kRegionAlign);
  }
  impl->state_stride = offset;
  impl->ring_stride = align_up(ring_bytes(options.ring_capacity), 4096);

  auto alloc_hv = [&](host::Buffer& buf, std::size_t bytes) -> Status {
    auto r = be.alloc_host_visible(bytes);
    if (!r.ok()) return r.status();
    buf = std::move(r.value());
    return Status();
  };
  auto alloc_dev = [&](host::Buffer& buf, std::size_t bytes) -> Status {
    auto r = be.alloc_device(bytes);
    if (!r.ok()) return r.status();
    buf = std::move(r.value());
    return Status();
  };
  const std::uint64_t k2k_stride =
      lay.k2k_channels == 0 ? 0 : align_up(detail::kK2KHeaderBytes + lay.k2k_payload_bytes, 64);
  const std::uint64_t k2k_bytes = 2ull * options.num_actors * lay.k2k_channels * k2k_stride;
  if (options.snapshots &&
      (options.chunk_bytes < 256 || (options.chunk_bytes & (options.chunk_bytes - 1)) != 0)) {
    return Status(StatusCode::kInvalidArgument,
                  "chunk size " + std::to_string(options.chunk_bytes) +
                      " is invalid. Fix: use a power of two of at least 256 bytes (default 65536)");
  }
  ImageLayout& img = impl->image;
  img.arena_bytes = impl->state_stride;
  img.inbox_bytes = std::uint64_t{lay.k2k_channels} * k2k_stride;
  img.image_bytes = img.arena_bytes + img.inbox_bytes;
  img.chunk_bytes = options.chunk_bytes;
  img.chunks = static_cast<std::uint32_t>((img.image_bytes + img.chunk_bytes - 1) / img.chunk_bytes);
  img.regions.push_back({"state", 0, lay.state_bytes});
  for (std::uint32_t r = 0; r < lay.region_count; ++r)
    img.regions.push_back({lay.region_names[r], a.region_offset[r], lay.region_bytes[r]});
  if (img.inbox_bytes > 0) img.regions.push_back({"k2k_inbox", img.arena_bytes, img.inbox_bytes});

  PKRT_RETURN_IF_ERROR(alloc_hv(impl->control_buf, sizeof(ControlBlock)));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->heartbeat_buf, sizeof(BlockHeartbeat) * blocks));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->h2k_buf, impl->ring_stride * blocks));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->k2h_buf, impl->ring_stride * blocks));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->state_buf, impl->state_stride * options.num_actors));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->k2k_buf, std::max<std::uint64_t>(k2k_bytes, 64)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->global_buf, std::max<std::uint64_t>(lay.global_bytes, 64)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->grid_buf, sizeof(detail::GridScratch)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->lines_buf, sizeof(detail::BlockLine) * blocks));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->params_buf, std::max<std::size_t>(params_bytes, 1)));
  // Deferred commands: as many per block as its ring holds, so deferring never loses one.
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->deferred_buf, sizeof(Slot) * options.ring_capacity * blocks));
  a.deferred = static_cast<Slot*>(impl->deferred_buf.device());
  a.deferred_capacity = options.ring_capacity;
  if (options.snapshots) {
    a.image_bytes = img.image_bytes;
    a.chunk_bytes = img.chunk_bytes;
    a.chunks = img.chunks;
    a.crc_offset = align_up(img.image_bytes, detail::kRegionAlign);
    a.changed_offset = a.crc_offset + align_up(std::uint64_t{img.chunks} * 4, detail::kRegionAlign);
    a.staging_stride = a.changed_offset + align_up(img.chunks, detail::kRegionAlign);
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->staging_buf, a.staging_stride * options.num_actors));
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->prev_crc_buf, std::uint64_t{img.chunks} * 4 * options.num_actors));
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->actor_flag_buf, 4ull * options.num_actors));
    a.staging = static_cast<std::byte*>(impl->staging_buf.device());
    a.prev_crcs = static_cast<std::uint32_t*>(impl->prev_crc_buf.device());
    a.actor_flags = static_cast<std::uint32_t*>(impl->actor_flag_buf.device());
    impl->mirror.resize(options.num_actors);
  }

  impl->control = static_cast<ControlBlock*>(impl->control_buf.host());
  impl->heartbeats = static_cast<BlockHeartbeat*>(impl->heartbeat_buf.host());
  // Plain store: the kernel is not running yet; the launch orders it.
  impl->control->host.target_epoch = kNoTargetEpoch;
  for (std::uint32_t b = 0; b < blocks; ++b) {
    ring_init(detail::ring_at(static_cast<std::byte*>(impl->h2k_buf.host()), impl->ring_stride, b),
              options.ring_capacity);
    ring_init(detail::ring_at(static_cast<std::byte*>(impl->k2h_buf.host()), impl->ring_stride, b),
              options.ring_capacity);
  }
  if (k2k_bytes > 0) {
    // Every mailbox starts stale (epoch ~0), so an epoch-1 read of a slot nobody wrote in
    // init is empty rather than a zero-length message from actor 0.
    std::vector<std::byte> image(k2k_bytes);
    for (std::uint64_t off = 0; off < k2k_bytes; off += k2k_stride) {
      detail::K2KSlotHeader h{~0ull, 0, 0};
      std::memcpy(image.data() + off, &h, sizeof h);
    }
    PKRT_RETURN_IF_ERROR(be.copy_to_device(impl->k2k_buf.device(), image.data(), k2k_bytes));
  }
  if (params_bytes > 0) {
    PKRT_RETURN_IF_ERROR(be.copy_to_device(impl->params_buf.device(), params, params_bytes));
  }

  a.control = static_cast<ControlBlock*>(impl->control_buf.device());
  a.heartbeats = static_cast<BlockHeartbeat*>(impl->heartbeat_buf.device());
  a.h2k = static_cast<std::byte*>(impl->h2k_buf.device());
  a.k2h = static_cast<std::byte*>(impl->k2h_buf.device());
  a.ring_stride = impl->ring_stride;
  a.state = static_cast<std::byte*>(impl->state_buf.device());
  a.state_stride = impl->state_stride;
  a.k2k = static_cast<std::byte*>(impl->k2k_buf.device());
  a.k2k_channels = lay.k2k_channels;
  a.k2k_slot_stride = k2k_stride;
  a.k2k_payload_bytes = lay.k2k_payload_bytes;
  a.global = static_cast<std::byte*>(impl->global_buf.device());
  a.global_bytes = lay.global_bytes;
  a.grid = static_cast<detail::GridScratch*>(impl->grid_buf.device());
  a.block_lines = static_cast<detail::BlockLine*>(impl->lines_buf.device());
  a.params = impl->params_buf.device();
  a.num_actors = options.num_actors;
  a.num_blocks = blocks;
  a.start_epoch = 0;
  a.run_init = 1;
  a.digest_period = options.digest_period;
  impl->log = options.replay_log;
  impl->poll = poll_settings(options.poll, impl->backend_kind);
  a.idle_spin = options.idle_spin != 0 ? options.idle_spin : impl->poll.block_idle_spin;
  a.poll_sleep_cap_ns = impl->poll.device_sleep_cap_ns;
  // Posts are acknowledged only when someone keeps their applied epochs: the replay log.
  a.ack_posts = impl->log ? 1u : 0u;

  impl->h2k = std::make_unique<Impl::H2KLane[]>(blocks);
  impl->k2h = std::make_unique<Impl::K2HLane[]>(blocks);
  for (std::uint32_t b = 0; b < blocks; ++b) {
    impl->h2k[b].producer =
        RingProducer(detail::ring_at(static_cast<std::byte*>(impl->h2k_buf.host()), impl->ring_stride, b));
    impl->k2h[b].consumer =
        RingConsumer(detail::ring_at(static_cast<std::byte*>(impl->k2h_buf.host()), impl->ring_stride, b));
  }
  // Request windows: a block has at most a ring of commands queued, a deferred list of them
  // and a K2H ring of answers in flight; twice that again before an id reuses its window slot.
  std::uint32_t window = 1024;
  while (window < 4ull * options.ring_capacity && window < 65536) window *= 2;  // larger: the overflow map
  impl->requests = detail::RequestTable::create(blocks, window);
  impl->requests->open_drain(impl.get(), detail::WaitPolicy{impl->poll.waiter_spin});
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

Status Runtime::start() {
  Impl& m = *impl_;
  if (m.phase != RuntimePhase::kCreated) {
    return Status(StatusCode::kFailedPrecondition,
                  "start() called twice; a Runtime launches its kernel once. Fix: create a new "
                  "Runtime to run again");
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
    info.chaos = m.options.chaos;
    info.chaos_seed = m.options.chaos_seed;
    info.start_epoch = m.args.start_epoch;
    info.config_hash = replay_config_hash(*m.program, m.params, m.options.num_actors, m.options.digest_period);
    info.pkrt_version = version();
    info.created_unix_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    std::lock_guard<std::mutex> lock(m.log_mu);
    PKRT_RETURN_IF_ERROR(m.log->begin_run(info));
    // Relaxed: a label for records (see complete_epoch).
    m.complete_epoch.store(m.args.start_epoch, std::memory_order_relaxed);
    m.log->set_complete_epoch(m.args.start_epoch);
    for (ReplayRecord& r : m.prestart_h2k) r.epoch_observed = m.args.start_epoch;
    m.log->append_batch(std::span<ReplayRecord>(m.prestart_h2k));
    m.prestart_h2k.clear();
    // Release: senders that acquire it append directly, after the records above.
    m.log_begun.store(true, std::memory_order_release);
  }
  PKRT_RETURN_IF_ERROR(m.backend->launch(*m.program, m.args, m.plan));
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
                              &m.global_buf, &m.grid_buf, &m.lines_buf, &m.params_buf, &m.staging_buf,
                              &m.prev_crc_buf, &m.actor_flag_buf, &m.deferred_buf})
        b->leak();
      (void)m.backend.release();
    }
  }
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.phase = RuntimePhase::kStopped;
    m.kernel_done = true;
  }
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
