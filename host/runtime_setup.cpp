// host/runtime_setup.cpp: Runtime::create: validates the options, picks and initialises the
// backend, lays out and allocates everything the kernel needs (control block, rings, state
// arenas, K2K mailboxes, snapshot staging, deferred lists), fills KernelArgs, and sets up
// the send and reply paths (lanes, request table, poll policy). Nothing runs until start().
#include "host/runtime_impl.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace pkrt {
namespace {

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }


}  // namespace

std::uint32_t staging_pool_slots(std::uint64_t staging_bytes, std::uint64_t slot_bytes, std::uint32_t actors) {
  if (actors == 0 || slot_bytes == 0) return 1;
  if (staging_bytes != 0) return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(staging_bytes / slot_bytes, 1, actors));
  // A quarter of the images, in at most kDefaultStagingCapBytes; but a run whose images fit
  // in kDefaultStagingFloorBytes stages them all (one pass, concurrent single-actor
  // snapshots), and a larger one gets at least that much.
  const std::uint64_t quarter = std::min<std::uint64_t>(actors / 4, kDefaultStagingCapBytes / slot_bytes);
  const std::uint64_t floor = kDefaultStagingFloorBytes / slot_bytes;
  return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(std::max(quarter, floor), 1, actors));
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
  if (params == nullptr && params_bytes != 0) {
    return Status(StatusCode::kInvalidArgument,
                  "params of app '" + std::string(program.name) + "' given as a null pointer with " +
                      std::to_string(params_bytes) + " bytes. Fix: pass the address of the app's Params struct");
  }
  if (options.backend != BackendKind::kAuto && options.backend != BackendKind::kCpu &&
      options.backend != BackendKind::kCuda) {
    return Status(StatusCode::kInvalidArgument,
                  "backend " + std::to_string(static_cast<int>(options.backend)) +
                      " is not a BackendKind. Fix: kAuto, kCpu or kCuda (parse_backend reads them from text)");
  }
  if (options.poll != PollPolicy::kAuto && options.poll != PollPolicy::kLatency && options.poll != PollPolicy::kBalanced &&
      options.poll != PollPolicy::kLowPower) {
    return Status(StatusCode::kInvalidArgument,
                  "poll policy " + std::to_string(static_cast<int>(options.poll)) +
                      " is not a PollPolicy. Fix: kAuto, kLatency, kBalanced or kLowPower (parse_poll_policy reads "
                      "them from text)");
  }
  // The watchdog and both waits are bounds: zero or a negative time would fail every run (or,
  // for stop_timeout, leak the backend at every shutdown) for a typo.
  for (const auto& [name, value] : {std::pair{"watchdog_timeout", options.watchdog_timeout},
                                    std::pair{"ring_full_timeout", options.ring_full_timeout},
                                    std::pair{"stop_timeout", options.stop_timeout}}) {
    if (value.count() <= 0) {
      return Status(StatusCode::kInvalidArgument,
                    std::string(name) + " of " + std::to_string(value.count()) +
                        " ms. Fix: a positive time (the defaults: 10000, 5000 and 10000 ms)");
    }
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
  if (options.cuda_blocks_per_sm == 0 || options.cuda_blocks_per_sm > 32) {
    return Status(StatusCode::kInvalidArgument,
                  "cuda_blocks_per_sm " + std::to_string(options.cuda_blocks_per_sm) +
                      " is out of range. Fix: use 1..32 (1 suits most apps)");
  }
  if (options.k2k_delay == 0 || options.k2k_delay > kMaxK2KDelay) {
    return Status(StatusCode::kInvalidArgument,
                  "K2K delay " + std::to_string(options.k2k_delay) + " is out of range. Fix: use 1.." +
                      std::to_string(kMaxK2KDelay) + " (1: messages are read the next epoch)");
  }
  // The program's actor count, of which this runtime runs num_actors (scale-out shards).
  const std::uint32_t global_actors = options.global_actors == 0 ? options.num_actors : options.global_actors;
  if (global_actors > (1u << 24) || global_actors < options.num_actors) {
    return Status(StatusCode::kInvalidArgument,
                  "global actor count " + std::to_string(global_actors) + " cannot hold this runtime's " +
                      std::to_string(options.num_actors) + " actors. Fix: global_actors >= num_actors, at most 16777216");
  }
  if (options.global_ids.empty() ? global_actors != options.num_actors
                                 : options.global_ids.size() != options.num_actors) {
    return Status(StatusCode::kInvalidArgument,
                  "a shard of " + std::to_string(global_actors) + " actors running " + std::to_string(options.num_actors) +
                      " needs num_actors global ids, got " + std::to_string(options.global_ids.size()) +
                      ". Fix: global_ids = the partition's actors of this rank (ActorPartition::actors_of)");
  }
  for (std::size_t i = 0; i < options.global_ids.size(); ++i) {
    if (options.global_ids[i] >= global_actors || (i > 0 && options.global_ids[i] <= options.global_ids[i - 1])) {
      return Status(StatusCode::kInvalidArgument,
                    "global id " + std::to_string(options.global_ids[i]) + " at index " + std::to_string(i) +
                        " is out of range or out of order. Fix: ascending ids below " + std::to_string(global_actors));
    }
  }
  impl->global_ids = options.global_ids;
  impl->params.assign(static_cast<const std::byte*>(params),
                      static_cast<const std::byte*>(params) + params_bytes);
  if (program.check_params != nullptr) {
    if (const char* problem = program.check_params(impl->params.data(), global_actors)) {
      return Status(StatusCode::kInvalidArgument,
                    std::string("params rejected by app '") + program.name + "': " + problem);
    }
  }
  // Over every global actor: arenas are sized for the largest, wherever it runs, so a
  // checkpoint's images fit any partition.
  impl->layout = program.layout(impl->params.data(), global_actors);

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
        note = std::string("; no usable GPU (") + status_code_name(cuda.status().code()) + ")";
      }
    }
  }
  if (!impl->backend) impl->backend = host::make_cpu_backend();
  impl->backend_kind = impl->backend->kind();

  host::LaunchLimits limits;
  limits.cpu_threads = options.threads;
  limits.cuda_blocks_per_sm = options.cuda_blocks_per_sm;
  auto plan = impl->backend->plan(program, options.num_actors, limits);
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
    // Bounded so the offsets cannot wrap (the image's total is checked against 2^48 below).
    if (lay.region_bytes[r] > (std::uint64_t{1} << 48))
      return Status(StatusCode::kOutOfRange, std::string("region '") + lay.region_names[r] + "' of app '" +
                                                 program.name + "' is " + std::to_string(lay.region_bytes[r]) +
                                                 " bytes per actor (at most 2^48). Fix: smaller regions per actor");
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
  // D + 1 buffers of every global actor's mailboxes: this runtime's actors read theirs; the
  // rows of actors other runtimes run are the outbound K2K the host collects.
  const std::uint64_t k2k_buffers = std::uint64_t{options.k2k_delay} + 1;
  const std::uint64_t k2k_bytes = k2k_buffers * global_actors * lay.k2k_channels * k2k_stride;
  if (options.snapshots &&
      (options.chunk_bytes < 256 || (options.chunk_bytes & (options.chunk_bytes - 1)) != 0)) {
    return Status(StatusCode::kInvalidArgument,
                  "chunk size " + std::to_string(options.chunk_bytes) +
                      " is invalid. Fix: use a power of two of at least 256 bytes (default 65536)");
  }
  ImageLayout& img = impl->image;
  img.arena_bytes = impl->state_stride;
  img.inbox_bytes = std::uint64_t{options.k2k_delay} * lay.k2k_channels * k2k_stride;
  img.image_bytes = img.arena_bytes + img.inbox_bytes;
  img.chunk_bytes = options.chunk_bytes;
  // An image of more chunks than a u32 counts is no image any machine holds; refusing it
  // here also keeps the sizes below from wrapping.
  if (img.image_bytes > (std::uint64_t{1} << 48) || (img.image_bytes + img.chunk_bytes - 1) / img.chunk_bytes > 0xFFFFFFFFull) {
    return Status(StatusCode::kOutOfRange, "one actor's image would be " + std::to_string(img.image_bytes) +
                                               " bytes (at most 2^48). Fix: smaller regions per actor (e.g. more "
                                               "actors for the same field)");
  }
  img.chunks = static_cast<std::uint32_t>((img.image_bytes + img.chunk_bytes - 1) / img.chunk_bytes);
  img.regions.push_back({"state", 0, lay.state_bytes});
  for (std::uint32_t r = 0; r < lay.region_count; ++r)
    img.regions.push_back({lay.region_names[r], a.region_offset[r], lay.region_bytes[r]});
  if (img.inbox_bytes > 0) img.regions.push_back({"k2k_inbox", img.arena_bytes, img.inbox_bytes});
  if (lay.global_bytes > (std::uint64_t{1} << 48))
    return Status(StatusCode::kOutOfRange, std::string("the global region of app '") + program.name + "' is " +
                                               std::to_string(lay.global_bytes) +
                                               " bytes (at most 2^48). Fix: a smaller global region");
  img.global_bytes = lay.global_bytes;
  img.global_chunks = static_cast<std::uint32_t>((lay.global_bytes + img.chunk_bytes - 1) / img.chunk_bytes);
  if (options.snapshots) {
    // One staging slot: [image][chunk CRCs][changed flags], each part aligned.
    a.crc_offset = align_up(img.image_bytes, detail::kRegionAlign);
    a.changed_offset = a.crc_offset + align_up(std::uint64_t{img.chunks} * 4, detail::kRegionAlign);
    a.staging_stride = a.changed_offset + align_up(img.chunks, detail::kRegionAlign);
    a.staging_slots = staging_pool_slots(options.staging_bytes, a.staging_stride, options.num_actors);
    img.staging_slots = a.staging_slots;
    img.staging_slot_bytes = a.staging_stride;
  }

  // Refuse a run the machine cannot hold before allocating any of it: allocating first
  // takes minutes of page faults and ends in bad_alloc or the OOM killer.
  {
    // Per actor at most 2^48 image bytes (checked above) times at most 2^24 actors: the sums
    // below stay under 2^75 only in theory, so every step is overflow-checked.
    bool wrapped = false;
    auto times = [&](std::uint64_t x, std::uint64_t n) {
      std::uint64_t r = 0;
      wrapped = wrapped || __builtin_mul_overflow(x, n, &r);
      return r;
    };
    auto plus = [&](std::uint64_t x, std::uint64_t y) {
      std::uint64_t r = 0;
      wrapped = wrapped || __builtin_add_overflow(x, y, &r);
      return r;
    };
    const std::uint64_t state = times(impl->state_stride, options.num_actors);
    // The staging pool, and per actor its previous chunk CRCs and its flags word.
    const std::uint64_t staging =
        options.snapshots ? plus(times(a.staging_stride, a.staging_slots),
                                 times(std::uint64_t{img.chunks} * 4 + 4, options.num_actors))
                          : 0;
    // On the CPU backend the host mirror of every image (filled at the first snapshot) comes
    // out of the same memory.
    const std::uint64_t mirror =
        options.snapshots && be.kind() == BackendKind::kCpu ? times(img.image_bytes, options.num_actors) : 0;
    // The global region's staging slot (and, on the CPU backend, its mirror): like an actor's.
    const std::uint64_t global_snapshot =
        options.snapshots && lay.global_bytes > 0
            ? plus(align_up(lay.global_bytes, detail::kRegionAlign) +
                       2 * align_up(std::uint64_t{img.global_chunks} * 4, detail::kRegionAlign) +
                       align_up(img.global_chunks, detail::kRegionAlign) + detail::kRegionAlign,
                   be.kind() == BackendKind::kCpu ? lay.global_bytes : 0)
            : 0;
    // The queued-commands areas: per block, its deferred list and its ring.
    const std::uint64_t queued =
        options.snapshots ? times(2 * sizeof(Slot) * std::uint64_t{options.ring_capacity} + 4, blocks) : 0;
    const std::uint64_t rest = plus(plus(plus(plus(k2k_bytes, lay.global_bytes), global_snapshot), queued),
                                    sizeof(Slot) * options.ring_capacity * blocks + 2 * impl->ring_stride * blocks);
    const std::uint64_t need = plus(plus(plus(state, staging), mirror), rest);
    const auto available = be.device_memory_available();
    if (wrapped || (available && need > *available)) {
      auto gib = [](std::uint64_t b) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
        return std::string(buf);
      };
      if (wrapped)
        return Status(StatusCode::kOutOfRange, "the run needs more than 2^64 bytes (" + std::to_string(options.num_actors) +
                                                   " actors of " + std::to_string(impl->state_stride) +
                                                   " bytes each). Fix: fewer or smaller actors");
      return Status(StatusCode::kOutOfRange,
                    std::string("the run needs ") + gib(need) + " of " +
                        (be.kind() == BackendKind::kCuda ? "GPU" : "host") + " memory (actor state " + gib(state) +
                        ", snapshot staging " + gib(staging) + " (" + std::to_string(a.staging_slots) +
                        " actor images)" + (mirror != 0 ? ", host image mirror " + gib(mirror) : "") +
                        ", rings and mailboxes " + gib(rest) + ") but only " + gib(*available) + " is available. Fix: fewer or smaller actors (e.g. a smaller --grid)" +
                        (options.snapshots ? ", a smaller staging pool (RuntimeOptions::staging_bytes, --staging-mib), "
                                             "or RuntimeOptions::snapshots = false to drop snapshots"
                                           : ""));
    }
  }
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->control_buf, sizeof(ControlBlock)));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->heartbeat_buf, sizeof(BlockHeartbeat) * blocks));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->h2k_buf, impl->ring_stride * blocks));
  PKRT_RETURN_IF_ERROR(alloc_hv(impl->k2h_buf, impl->ring_stride * blocks));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->state_buf, impl->state_stride * options.num_actors));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->k2k_buf, std::max<std::uint64_t>(k2k_bytes, 64)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->global_buf, std::max<std::uint64_t>(lay.global_bytes, 64)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->grid_buf, sizeof(detail::GridScratch)));
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->params_buf, std::max<std::size_t>(params_bytes, 1)));
  // Deferred commands: as many per block as its ring holds, so deferring never loses one.
  PKRT_RETURN_IF_ERROR(alloc_dev(impl->deferred_buf, sizeof(Slot) * options.ring_capacity * blocks));
  a.deferred = static_cast<Slot*>(impl->deferred_buf.device());
  a.deferred_capacity = options.ring_capacity;
  if (options.snapshots) {
    a.image_bytes = img.image_bytes;
    a.chunk_bytes = img.chunk_bytes;
    a.chunks = img.chunks;
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->staging_buf, a.staging_stride * a.staging_slots));
    {
      // No other thread exists yet; the lock keeps reset_pool_locked's contract.
      std::lock_guard<std::mutex> lock(impl->mu);
      impl->reset_pool_locked();
    }
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->prev_crc_buf, std::uint64_t{img.chunks} * 4 * options.num_actors));
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->actor_flag_buf, 4ull * options.num_actors));
    a.staging = static_cast<std::byte*>(impl->staging_buf.device());
    a.prev_crcs = static_cast<std::uint32_t*>(impl->prev_crc_buf.device());
    a.actor_flags = static_cast<std::uint32_t*>(impl->actor_flag_buf.device());
    impl->mirror.resize(options.num_actors);
    if (lay.global_bytes > 0) {
      // [image][chunk CRCs][changed flags][previous CRCs][flags word], each part aligned.
      a.global_chunks = img.global_chunks;
      a.global_crc_offset = align_up(lay.global_bytes, detail::kRegionAlign);
      a.global_changed_offset = a.global_crc_offset + align_up(std::uint64_t{img.global_chunks} * 4, detail::kRegionAlign);
      const std::uint64_t prev_offset = a.global_changed_offset + align_up(img.global_chunks, detail::kRegionAlign);
      const std::uint64_t flags_offset = prev_offset + align_up(std::uint64_t{img.global_chunks} * 4, detail::kRegionAlign);
      PKRT_RETURN_IF_ERROR(alloc_dev(impl->global_staging_buf, flags_offset + detail::kRegionAlign));
      a.global_staging = static_cast<std::byte*>(impl->global_staging_buf.device());
      a.global_prev_crcs = reinterpret_cast<std::uint32_t*>(a.global_staging + prev_offset);
      a.global_flags = reinterpret_cast<std::uint32_t*>(a.global_staging + flags_offset);
      impl->mirror.resize(options.num_actors + 1);  // the last one is the global region's
    }
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->queued_buf, 2 * sizeof(Slot) * std::uint64_t{options.ring_capacity} * blocks));
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->queued_flag_buf, 4ull * blocks));
    a.queued = static_cast<Slot*>(impl->queued_buf.device());
    a.queued_flags = static_cast<std::uint32_t*>(impl->queued_flag_buf.device());
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
  if (!impl->global_ids.empty()) {
    PKRT_RETURN_IF_ERROR(alloc_dev(impl->global_id_buf, 4ull * options.num_actors));
    PKRT_RETURN_IF_ERROR(be.copy_to_device(impl->global_id_buf.device(), impl->global_ids.data(), 4ull * options.num_actors));
    a.global_ids = static_cast<const std::uint32_t*>(impl->global_id_buf.device());
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
  a.k2k_delay = options.k2k_delay;
  a.k2k_buffers = static_cast<std::uint32_t>(k2k_buffers);
  a.global_actors = global_actors;
  // Every shard is gated, with or without K2K: its host's exchange also carries host commands
  // forwarded from other ranks, which must arrive before the epochs they apply in.
  a.k2k_gated = global_actors != options.num_actors ? 1u : 0u;
  a.global = static_cast<std::byte*>(impl->global_buf.device());
  a.global_bytes = lay.global_bytes;
  a.grid = static_cast<detail::GridScratch*>(impl->grid_buf.device());
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
  // Only a pump that cannot be woken by the blocks (CUDA) needs to know whether a request
  // is outstanding; on the CPU backend counting would cost every send two shared RMWs.
  impl->requests = detail::RequestTable::create(blocks, window, impl->backend_kind == BackendKind::kCuda);
  impl->requests->open_drain(impl.get(), detail::WaitPolicy{impl->poll.waiter_spin});
  return std::unique_ptr<Runtime>(new Runtime(std::move(impl)));
}

}  // namespace pkrt
