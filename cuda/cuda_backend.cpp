// cuda/cuda_backend.cpp: the CUDA backend. Host code only (the kernel itself is instantiated
// in the application's program TU, see cuda/persistent_kernel.cuh).
//
// Persistent-kernel hygiene (../shared/DESIGN.md), each point where it is done:
//  1. Eager module loading: CUDA_MODULE_LOADING=EAGER is set before the first CUDA call
//     (make_cuda_backend), and launch() calls cudaFuncGetAttributes on the kernel, which
//     loads its module, before the persistent launch. Lazy loading would try to load a module
//     while the resident kernel occupies the device and deadlock.
//  2. Streams, events and buffers are all created in make_cuda_backend/alloc_* before
//     launch(); nothing is allocated or freed while the kernel runs.
//  3. No implicitly synchronising call while it runs: copies use cudaMemcpyAsync on a
//     created non-blocking copy stream through pre-allocated pinned bounce memory, then
//     cudaStreamSynchronize on that stream only; progress is polled with cudaStreamQuery.
//  4. The kernel is launched on a created non-blocking stream, never the legacy stream.
//  5. The grid is sized with cudaOccupancyMaxActiveBlocksPerMultiprocessor times the SM
//     count and launched with cudaLaunchCooperativeKernel, so all blocks are co-resident (the
//     grid barrier of pkrt/detail/grid_barrier.hpp relies on it).
//  6. Device-side polling backs off with __nanosleep (pkrt/detail/block_platform.hpp).
//  7. The host watchdog (host/pump.cpp) turns a missing heartbeat, or blocks that never
//     start (a grid that is not resident), into an error.
//  8. One resident grid per device per process (cuda/device_registry.hpp): a second runtime's
//     cooperative grid could never be scheduled beside the first, and its cudaFree would wait
//     on the first's persistent kernel for ever. After a grid is leaked (it would not stop),
//     the device is refused for the rest of the process.
//  9. Every entry point makes the runtime's device current for its duration (DeviceScope:
//     cudaSetDevice is per host thread) and then restores the caller's context, or none if it
//     had none: the pump and user threads would otherwise work in a stray context on device
//     0, lose their own device, or gain a context on GPU 0 they never asked for. Only the
//     pump thread keeps the device current (bind_this_thread): it is the runtime's own.
//     One trace is left on a thread that had no context: the runtime API's selected device
//     stays the runtime's (undoing it would need a context on the old one), so that thread's
//     next runtime call without a cudaSetDevice of its own works on the runtime's GPU.
#include "cuda/cuda_check.hpp"
#include "cuda/device_registry.hpp"
#include "host/backend.hpp"

#include <cuda.h>  // CUcontext and CUresult only: the calls come through the runtime
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace pkrt::host {
namespace {

using cuda_detail::cuda_status;

constexpr std::size_t kBounceBytes = std::size_t{4} << 20;

// The driver's context calls, fetched through the runtime (cudaGetDriverEntryPoint[ByVersion])
// rather than linked: a binary built with CUDA must still start where no driver is installed.
// Null when the driver does not offer them.
struct ContextCalls {
  CUresult(CUDAAPI* get_current)(CUcontext*) = nullptr;
  CUresult(CUDAAPI* set_current)(CUcontext) = nullptr;
};

const ContextCalls& context_calls() {
  static const ContextCalls calls = [] {
    ContextCalls c;
    void* get = nullptr;
    void* set = nullptr;
    cudaDriverEntryPointQueryResult found_get = cudaDriverEntryPointSymbolNotFound;
    cudaDriverEntryPointQueryResult found_set = cudaDriverEntryPointSymbolNotFound;
    auto lookup = [](const char* symbol, void** fn, cudaDriverEntryPointQueryResult* found) {
#if CUDART_VERSION >= 12050
      // 12000: the signatures as of CUDA 12.0 (unchanged since 4.0), the ones declared here.
      return cudaGetDriverEntryPointByVersion(symbol, fn, 12000, cudaEnableDefault, found);
#else
      return cudaGetDriverEntryPoint(symbol, fn, cudaEnableDefault, found);  // before 12.5
#endif
    };
    if (lookup("cuCtxGetCurrent", &get, &found_get) == cudaSuccess &&
        lookup("cuCtxSetCurrent", &set, &found_set) == cudaSuccess && found_get == cudaDriverEntryPointSuccess &&
        found_set == cudaDriverEntryPointSuccess) {
      c.get_current = reinterpret_cast<CUresult(CUDAAPI*)(CUcontext*)>(get);
      c.set_current = reinterpret_cast<CUresult(CUDAAPI*)(CUcontext)>(set);
    } else {
      (void)cudaGetLastError();  // a failed lookup must not look like a later call's error
    }
    return c;
  }();
  return calls;
}

// Makes `device` current on this thread for the scope, then gives the thread back exactly the
// context it had, none included: pkrt is called from application threads that may be working
// on another GPU, or on none. Restoring by device number instead (cudaGetDevice says 0 on a
// thread without a context, and cudaSetDevice creates the primary context since CUDA 12)
// would create a context on GPU 0 in every process that uses another GPU: ~0.3-0.5 GiB of its
// memory per process, and under EXCLUSIVE_PROCESS compute mode a rank of a multi-GPU job
// could take GPU 0 away from the rank that owns it.
class DeviceScope {
 public:
  // `primary`: the device's primary context, the one the runtime's streams and buffers live
  // in, once init() has recorded it (null before: the device is then made current by number).
  DeviceScope(int device, CUcontext primary) {
    const ContextCalls& ctx = context_calls();
    if (ctx.get_current != nullptr && ctx.get_current(&previous_context_) == CUDA_SUCCESS) {
      // Already in the runtime's context (the pump thread; a user thread working on this GPU
      // through the runtime API): nothing to switch. Any other context, one of the user's own
      // on this same GPU included (cuCtxCreate, a green context), is switched away from.
      if (previous_context_ != nullptr && previous_context_ == primary) return;
      if (primary != nullptr && ctx.set_current(primary) == CUDA_SUCCESS) {
        restore_context_ = true;
        return;
      }
      status_ = cudaSetDevice(device);
      restore_context_ = status_ == cudaSuccess;
      return;
    }
    // Without the driver's context calls: by device number (the old behaviour).
    if (cudaGetDevice(&previous_device_) != cudaSuccess) previous_device_ = device;
    if (previous_device_ == device) return;
    status_ = cudaSetDevice(device);
    restore_device_ = status_ == cudaSuccess;
  }
  ~DeviceScope() {
    if (restore_context_) {
      (void)context_calls().set_current(previous_context_);
    } else if (restore_device_) {
      (void)cudaSetDevice(previous_device_);
    }
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  cudaError_t status() const { return status_; }

 private:
  CUcontext previous_context_ = nullptr;
  bool restore_context_ = false;
  int previous_device_ = 0;
  bool restore_device_ = false;
  cudaError_t status_ = cudaSuccess;
};

class CudaBackend final : public Backend {
 public:
  // The device must have been claimed in the DeviceRegistry; the backend releases it.
  explicit CudaBackend(int device) : device_(device) {}

  ~CudaBackend() override {
    // Only reached once the kernel finished (a backend whose kernel is stuck is abandoned,
    // never destroyed), and the registry kept every other grid off this device: nothing here
    // can wait on a resident kernel.
    const DeviceScope on_device(device_, primary_);
    if (bounce_ != nullptr) (void)cudaFreeHost(bounce_);
    if (copy_stream_ != nullptr) (void)cudaStreamDestroy(copy_stream_);
    if (kernel_stream_ != nullptr) (void)cudaStreamDestroy(kernel_stream_);
    DeviceRegistry::instance().release(device_);
  }

  void abandon() override { DeviceRegistry::instance().mark_leaked(device_); }

  void bind_this_thread() override { (void)cudaSetDevice(device_); }

  Status init() {
    // primary_ is still null, so the scope makes the device current with cudaSetDevice, which
    // binds its primary context (even over a user's own context on this device): that is the
    // runtime's context from here on.
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    if (context_calls().get_current != nullptr && context_calls().get_current(&primary_) != CUDA_SUCCESS)
      primary_ = nullptr;
    PKRT_CUDA_CHECK(cudaGetDeviceProperties(&props_, device_));
    int exec_timeout = 0;
    PKRT_CUDA_CHECK(cudaDeviceGetAttribute(&exec_timeout, cudaDevAttrKernelExecTimeout, device_));
    if (exec_timeout != 0) {
      // A display GPU's driver watchdog kills any kernel after a few seconds with a sticky
      // error; a persistent kernel would die mid-run and take the context with it.
      return Status(StatusCode::kDeviceUnavailable,
                    std::string("GPU ") + std::to_string(device_) + " (" + props_.name +
                        ") has a kernel run-time limit (it drives a display), which kills a persistent "
                        "kernel after a few seconds. Fix: use a GPU without a display (compute mode), "
                        "disable the display watchdog, or run with --backend cpu");
    }
    int coop = 0;
    PKRT_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device_));
    if (coop == 0) {
      return Status(StatusCode::kDeviceUnavailable,
                    std::string("GPU ") + std::to_string(device_) + " (" + props_.name +
                        ") does not support cooperative launch, which the persistent kernel "
                        "needs. Fix: use a GPU of compute capability 7.0+ outside MPS/vGPU "
                        "restrictions, or run with --backend cpu");
    }
    int map_host = 0;
    PKRT_CUDA_CHECK(cudaDeviceGetAttribute(&map_host, cudaDevAttrCanMapHostMemory, device_));
    if (map_host == 0) {
      return Status(StatusCode::kDeviceUnavailable,
                    std::string("GPU ") + props_.name +
                        " cannot map host memory, which the H2K/K2H rings need. Fix: run "
                        "with --backend cpu");
    }
    PKRT_CUDA_CHECK(cudaStreamCreateWithFlags(&kernel_stream_, cudaStreamNonBlocking));
    PKRT_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    PKRT_CUDA_CHECK(cudaHostAlloc(&bounce_, kBounceBytes, cudaHostAllocDefault));
    return Status();
  }

  BackendKind kind() const override { return BackendKind::kCuda; }

  Result<Buffer> alloc_host_visible(std::size_t bytes) override {
    if (launched_) return late_alloc_error();
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    void* host = nullptr;
    const std::size_t size = std::max<std::size_t>(bytes, 64);
    const cudaError_t err = cudaHostAlloc(&host, size, cudaHostAllocMapped | cudaHostAllocPortable);
    if (err != cudaSuccess) return cuda_status(err, "cudaHostAlloc(mapped)", __FILE__, __LINE__);
    std::memset(host, 0, size);
    void* device = nullptr;
    const cudaError_t err2 = cudaHostGetDevicePointer(&device, host, 0);
    if (err2 != cudaSuccess) {
      (void)cudaFreeHost(host);
      return cuda_status(err2, "cudaHostGetDevicePointer", __FILE__, __LINE__);
    }
    return Buffer(host, device, bytes, [host, device = device_, primary = primary_] {
      const DeviceScope on_device(device, primary);
      (void)cudaFreeHost(host);
    });
  }

  std::optional<std::uint64_t> device_memory_available() const override {
    const DeviceScope on_device(device_, primary_);
    if (on_device.status() != cudaSuccess) return std::nullopt;
    std::size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) return std::nullopt;
    return free_bytes;
  }

  Result<Buffer> alloc_device(std::size_t bytes) override {
    if (launched_) return late_alloc_error();
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    void* device = nullptr;
    const std::size_t size = std::max<std::size_t>(bytes, 64);
    cudaError_t err = cudaMalloc(&device, size);
    if (err != cudaSuccess) return cuda_status(err, "cudaMalloc", __FILE__, __LINE__);
    err = cudaMemsetAsync(device, 0, size, copy_stream_);
    if (err == cudaSuccess) err = cudaStreamSynchronize(copy_stream_);
    if (err != cudaSuccess) {
      (void)cudaFree(device);
      return cuda_status(err, "cudaMemsetAsync", __FILE__, __LINE__);
    }
    return Buffer(nullptr, device, bytes, [device, ordinal = device_, primary = primary_] {
      const DeviceScope on_device(ordinal, primary);
      (void)cudaFree(device);
    });
  }

  Status scatter_to_device(std::span<const DeviceCopy> copies) override {
    std::lock_guard<std::mutex> lock(copy_mu_);  // one bounce buffer, callers on several threads
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    // Bytes of the bounce buffer that copies enqueued since the last synchronisation read. On
    // an error return they may still be reading it, and the next caller refills it: wait first.
    std::size_t used = 0;
    struct SettleQueued {
      cudaStream_t stream;
      const std::size_t& used;
      ~SettleQueued() {
        if (used != 0) (void)cudaStreamSynchronize(stream);
      }
    } settle{copy_stream_, used};
    for (const DeviceCopy& c : copies) {
      auto* d = static_cast<std::byte*>(c.device_dst);
      const auto* s = static_cast<const std::byte*>(c.host_src);
      for (std::size_t off = 0; off < c.bytes;) {
        if (used == kBounceBytes) {
          // The queued copies read the whole buffer: let them finish before refilling it.
          PKRT_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
          used = 0;
        }
        const std::size_t n = std::min(kBounceBytes - used, c.bytes - off);
        std::memcpy(static_cast<std::byte*>(bounce_) + used, s + off, n);
        PKRT_CUDA_CHECK(cudaMemcpyAsync(d + off, static_cast<std::byte*>(bounce_) + used, n, cudaMemcpyHostToDevice,
                                        copy_stream_));
        // Each piece starts 256-byte aligned in the bounce buffer (full-speed DMA).
        used = std::min(kBounceBytes, (used + n + 255) / 256 * 256);
        off += n;
      }
    }
    if (used != 0) PKRT_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
    used = 0;
    return Status();
  }

  Status gather_to_host(std::span<const HostCopy> copies) override {
    std::lock_guard<std::mutex> lock(copy_mu_);  // one bounce buffer, callers on several threads
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    // Pieces enqueued into the bounce buffer since the last synchronisation.
    struct Piece {
      std::byte* dst;
      std::size_t at;
      std::size_t bytes;
    };
    std::vector<Piece> pieces;
    // On an error return, copies already queued may still write the bounce buffer, which the
    // next caller reuses: wait for them first.
    struct SettleQueued {
      cudaStream_t stream;
      const std::vector<Piece>& queued;
      ~SettleQueued() {
        if (!queued.empty()) (void)cudaStreamSynchronize(stream);
      }
    } settle{copy_stream_, pieces};
    std::size_t used = 0;
    auto drain = [&]() -> Status {
      if (pieces.empty()) return Status();
      PKRT_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
      for (const Piece& p : pieces) std::memcpy(p.dst, static_cast<std::byte*>(bounce_) + p.at, p.bytes);
      pieces.clear();
      used = 0;
      return Status();
    };
    for (const HostCopy& c : copies) {
      auto* d = static_cast<std::byte*>(c.host_dst);
      const auto* s = static_cast<const std::byte*>(c.device_src);
      for (std::size_t off = 0; off < c.bytes;) {
        if (used == kBounceBytes) PKRT_RETURN_IF_ERROR(drain());
        const std::size_t n = std::min(kBounceBytes - used, c.bytes - off);
        PKRT_CUDA_CHECK(cudaMemcpyAsync(static_cast<std::byte*>(bounce_) + used, s + off, n, cudaMemcpyDeviceToHost,
                                        copy_stream_));
        pieces.push_back({d + off, used, n});
        // Each piece starts 256-byte aligned in the bounce buffer (full-speed DMA).
        used = std::min(kBounceBytes, (used + n + 255) / 256 * 256);
        off += n;
      }
    }
    return drain();
  }

  Result<LaunchPlan> plan(const Program& program, std::uint32_t num_actors, const LaunchLimits& limits) override {
    if (program.cuda_kernel == nullptr) {
      return Status(StatusCode::kUnsupported,
                    std::string("program '") + program.name +
                        "' was compiled without nvcc, so it has no CUDA kernel. Fix: compile "
                        "the translation unit that calls pkrt::make_program as CUDA "
                        "(set_source_files_properties(... LANGUAGE CUDA)), or run with "
                        "--backend cpu");
    }
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    // Loads the kernel's module now (eager), before anything is resident.
    cudaFuncAttributes attrs{};
    PKRT_CUDA_CHECK(cudaFuncGetAttributes(&attrs, program.cuda_kernel));
    const int threads = static_cast<int>(program.cuda_block_threads);
    if (threads > attrs.maxThreadsPerBlock) {
      return Status(StatusCode::kUnsupported,
                    std::string("program '") + program.name + "' asks for " + std::to_string(threads) +
                        " threads per block, but its kernel can launch at most " +
                        std::to_string(attrs.maxThreadsPerBlock) + " (" + std::to_string(attrs.numRegs) +
                        " registers per thread). Fix: lower kCudaBlockThreads");
    }
    // Local memory above the stack limit makes the driver grow it at launch, which
    // synchronises the device; raise the limit now, while nothing of ours is resident.
    std::size_t stack = 0;
    PKRT_CUDA_CHECK(cudaDeviceGetLimit(&stack, cudaLimitStackSize));
    const std::size_t wanted_stack = (attrs.localSizeBytes + 1023) / 1024 * 1024;
    if (wanted_stack > stack) PKRT_CUDA_CHECK(cudaDeviceSetLimit(cudaLimitStackSize, wanted_stack));
    int per_sm = 0;
    PKRT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, program.cuda_kernel,
                                                                  threads, 0));
    if (per_sm == 0) {
      return Status(StatusCode::kUnsupported,
                    std::string("program '") + program.name + "' cannot fit one block of " +
                        std::to_string(threads) + " threads on " + props_.name + " (" +
                        std::to_string(attrs.numRegs) + " registers per thread, " +
                        std::to_string(attrs.sharedSizeBytes) + " B shared). Fix: lower kCudaBlockThreads");
    }
    // Capped: a persistent grid that takes every block slot leaves the GPU nothing else, and
    // blocks beyond one or two per SM only add polling and grid-barrier cost.
    per_sm = std::min<int>(per_sm, static_cast<int>(limits.cuda_blocks_per_sm));
    const std::uint64_t co_resident = std::uint64_t(per_sm) * props_.multiProcessorCount;
    LaunchPlan plan;
    plan.blocks = static_cast<std::uint32_t>(std::min<std::uint64_t>(co_resident, num_actors));
    plan.threads_per_block = program.cuda_block_threads;
    plan.description = std::string("cuda (") + props_.name + ", sm_" +
                       std::to_string(props_.major) + std::to_string(props_.minor) + ", " +
                       std::to_string(plan.blocks) + " blocks x " + std::to_string(threads) +
                       " threads, " + std::to_string(attrs.numRegs) + " regs, " +
                       std::to_string(attrs.localSizeBytes) + " B local)";
    return plan;
  }

  Status launch(const Program& program, const detail::KernelArgs& args,
                const LaunchPlan& plan) override {
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    args_ = args;
    void* kernel_args[] = {&args_};
    const cudaError_t err = cudaLaunchCooperativeKernel(program.cuda_kernel, dim3(plan.blocks),
                                                        dim3(plan.threads_per_block), kernel_args, 0,
                                                        kernel_stream_);
    if (err == cudaErrorCooperativeLaunchTooLarge) {
      (void)cudaGetLastError();  // not sticky: clear it so the context stays usable
      return Status(StatusCode::kDeviceUnavailable,
                    "the cooperative grid of " + std::to_string(plan.blocks) + " blocks does not fit on " +
                        props_.name + " now: other work holds its SMs (another process's kernels, MPS "
                        "client limits, or a green context). Fix: stop the other work on this GPU, or run "
                        "with fewer actors per device");
    }
    if (err != cudaSuccess) return cuda_status(err, "cudaLaunchCooperativeKernel", __FILE__, __LINE__);
    // Only after a launch that took: a failed one leaves nothing resident, so later
    // allocations (and the teardown) stay legal.
    launched_ = true;
    return Status();
  }

  bool kernel_finished() override {
    if (!launched_) return true;
    const DeviceScope on_device(device_, primary_);
    return cudaStreamQuery(kernel_stream_) != cudaErrorNotReady;
  }

  Status wait_finished(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!kernel_finished()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status(StatusCode::kTimeout,
                      "the persistent kernel is still running " + std::to_string(timeout.count()) +
                          " ms after the stop request: an actor's step or handler does not "
                          "return. Fix: make long loops check ctx.abort_requested()");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return poll_fault();
  }

  Status poll_fault() override {
    if (!launched_) return Status();
    const DeviceScope on_device(device_, primary_);
    PKRT_CUDA_CHECK(on_device.status());
    const cudaError_t err = cudaStreamQuery(kernel_stream_);
    if (err == cudaSuccess || err == cudaErrorNotReady) return Status();
    return cuda_status(err, "persistent kernel", __FILE__, __LINE__);
  }

 private:
  static Status late_alloc_error() {
    return Status(StatusCode::kInternal,
                  "CUDA allocation requested while the persistent kernel runs (would "
                  "synchronise the device); pkrt allocates everything before launch");
  }

  int device_;
  CUcontext primary_ = nullptr;  // the device's primary context, recorded by init()
  cudaDeviceProp props_{};
  cudaStream_t kernel_stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;
  void* bounce_ = nullptr;
  std::mutex copy_mu_;
  detail::KernelArgs args_{};
  bool launched_ = false;
};

}  // namespace

bool cuda_backend_compiled() { return true; }

Result<std::unique_ptr<Backend>> make_cuda_backend(int device) {
  // Before the first CUDA call: load every module at context creation (see point 1 above).
  // A user who set the variable explicitly keeps their choice.
  setenv("CUDA_MODULE_LOADING", "EAGER", 0);
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return Status(StatusCode::kDeviceUnavailable,
                  "CUDA backend unavailable for device " + std::to_string(device) +
                      ": cudaGetDeviceCount failed with " +
                      cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                      "). No usable NVIDIA GPU/driver on this machine. Fix: install the NVIDIA "
                      "driver and check `nvidia-smi`, or run with --backend cpu");
  }
  if (device < 0 || device >= count) {
    return Status(StatusCode::kDeviceUnavailable,
                  "CUDA device " + std::to_string(device) + " does not exist (" +
                      std::to_string(count) + " visible). Fix: pick a device in 0.." +
                      std::to_string(count - 1) + " or check CUDA_VISIBLE_DEVICES");
  }
  PKRT_RETURN_IF_ERROR(DeviceRegistry::instance().claim(device));
  auto backend = std::make_unique<CudaBackend>(device);  // releases the claim when destroyed
  Status st = backend->init();
  if (!st.ok()) {
    return Status(st.code(), "CUDA device " + std::to_string(device) + ": " + st.message());
  }
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace pkrt::host

namespace pkrt {
int cuda_device_count() {
  setenv("CUDA_MODULE_LOADING", "EAGER", 0);  // before the first CUDA call, as in make_cuda_backend
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}
}  // namespace pkrt
