// host/backend.hpp: the narrow interface between the runtime and a machine that runs the
// persistent kernel. Two implementations: CpuBackend (host/cpu_backend.cpp: worker threads
// run the same kernel source) and CudaBackend (cuda/cuda_backend.cpp: cooperative launch).
//
// Contract
// - Memory: alloc_host_visible returns memory both the host and the kernel address (mapped
//   pinned host memory on CUDA; the two pointers may differ). alloc_device returns memory
//   only the kernel addresses (device memory on CUDA); the host reaches it through copies.
// - Copies and fills are synchronous for the caller and legal while the kernel runs only on
//   memory the kernel is not touching (a parked grid). They never implicitly synchronise the
//   device: CUDA uses a dedicated non-blocking copy stream and pre-allocated pinned buffers.
// - All allocation happens before launch(); nothing here allocates while a kernel runs.
// - Thread safety: one runtime drives one backend from one thread at a time, except
//   kernel_finished()/poll_fault(), which the pump thread calls concurrently.
#pragma once

#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/program.hpp>
#include <pkrt/runtime.hpp>
#include <pkrt/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace pkrt::host {

// An allocation that frees itself. `host` is null for device-only memory.
class Buffer {
 public:
  Buffer() = default;
  Buffer(void* host, void* device, std::size_t bytes, std::function<void()> release)
      : host_(host), device_(device), bytes_(bytes), release_(std::move(release)) {}
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      reset();
      host_ = other.host_;
      device_ = other.device_;
      bytes_ = other.bytes_;
      release_ = std::move(other.release_);
      other.host_ = other.device_ = nullptr;
      other.bytes_ = 0;
      other.release_ = nullptr;
    }
    return *this;
  }
  ~Buffer() { reset(); }

  void* host() const { return host_; }
  void* device() const { return device_; }
  std::size_t bytes() const { return bytes_; }
  // Gives up ownership without freeing (used when a stuck kernel may still touch it).
  void leak() { release_ = nullptr; }

 private:
  void reset() {
    if (release_) release_();
    release_ = nullptr;
  }
  void* host_ = nullptr;
  void* device_ = nullptr;
  std::size_t bytes_ = 0;
  std::function<void()> release_;
};

// One device-to-host region of a gather (Backend::gather_to_host).
struct HostCopy {
  void* host_dst;
  const void* device_src;
  std::size_t bytes;
};

// One host-to-device region of a scatter (Backend::scatter_to_device).
struct DeviceCopy {
  void* device_dst;
  const void* host_src;
  std::size_t bytes;
};

// What the user asked of the grid's size (RuntimeOptions); each backend reads its own field.
struct LaunchLimits {
  std::uint32_t cpu_threads = 0;         // CPU: worker threads (= blocks); 0: hardware concurrency
  std::uint32_t cuda_blocks_per_sm = 1;  // CUDA: resident blocks per SM at most
};

struct LaunchPlan {
  std::uint32_t blocks = 0;
  std::uint32_t threads_per_block = 0;
  std::string description;  // e.g. "cuda: NVIDIA H100 (sm_90), 132 blocks x 128 threads"
  bool chaos = false;       // CPU only (the runtime refuses it for CUDA): pkrt/detail/chaos.hpp
  std::uint64_t chaos_seed = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual BackendKind kind() const = 0;
  virtual Result<Buffer> alloc_host_visible(std::size_t bytes) = 0;  // zero-filled
  virtual Result<Buffer> alloc_device(std::size_t bytes) = 0;        // zero-filled
  // Copies every region; on CUDA all of them share one stream synchronisation per bounce
  // buffer's worth, instead of one round trip per region (the K2K delivery of many messages).
  virtual Status scatter_to_device(std::span<const DeviceCopy> copies) = 0;
  Status copy_to_device(void* device_dst, const void* host_src, std::size_t bytes) {
    const DeviceCopy one{device_dst, host_src, bytes};
    return scatter_to_device(std::span<const DeviceCopy>(&one, 1));
  }
  // Copies every region; on CUDA all of them share one stream synchronisation per bounce
  // buffer's worth (4 MiB), instead of one round trip per region.
  virtual Status gather_to_host(std::span<const HostCopy> copies) = 0;
  Status copy_to_host(void* host_dst, const void* device_src, std::size_t bytes) {
    const HostCopy one{host_dst, device_src, bytes};
    return gather_to_host(std::span<const HostCopy>(&one, 1));
  }

  // How many blocks (all co-resident) and threads per block this program gets.
  virtual Result<LaunchPlan> plan(const Program& program, std::uint32_t num_actors,
                                  const LaunchLimits& limits) = 0;
  virtual Status launch(const Program& program, const detail::KernelArgs& args,
                        const LaunchPlan& plan) = 0;
  // True once every block has returned (or the kernel failed).
  virtual bool kernel_finished() = 0;
  // Waits up to `timeout` for kernel_finished(); kTimeout if blocks are still running.
  virtual Status wait_finished(std::chrono::milliseconds timeout) = 0;
  // An asynchronous device error, if one happened (CUDA: sticky faults); ok otherwise.
  virtual Status poll_fault() = 0;
  // Called instead of destruction when the kernel would not stop and everything it may touch
  // is leaked for the rest of the process: the backend must not free anything later, and
  // the CUDA backend refuses further runtimes on that device (freeing or launching there
  // would wait on the stuck grid for ever).
  virtual void abandon() {}
  // Called once by each thread the runtime owns (the pump) before it uses the backend: CUDA
  // makes the device current for good there, so the per-call device switch of the entry
  // points is a no-op on that thread instead of a switch to and from device 0 every poll.
  virtual void bind_this_thread() {}
  // Bytes alloc_device() can still hand out (CPU: the memory the kernel reports available;
  // CUDA: the device's free memory), so a run too large for the machine is refused before
  // anything is allocated. nullopt when unknown.
  virtual std::optional<std::uint64_t> device_memory_available() const { return std::nullopt; }
};

// CPU backend: worker threads, one per block.
std::unique_ptr<Backend> make_cpu_backend();

// CUDA backend on `device`. kDeviceUnavailable (with the driver's words and the fix) when
// there is no usable GPU or pkrt was built without CUDA.
Result<std::unique_ptr<Backend>> make_cuda_backend(int device);

// Whether this build contains the CUDA backend.
bool cuda_backend_compiled();

}  // namespace pkrt::host
