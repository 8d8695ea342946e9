// host/cpu_backend.cpp: the CPU backend. A "block" is a worker thread running the same
// kernel source (kernels/persistent_loop.hpp) compiled by the host compiler, with
// num_threads() == 1 and a std::barrier as the grid barrier.
#include "host/backend.hpp"

#include <algorithm>
#include <barrier>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <vector>

namespace pkrt::host {
namespace {

class CpuBackend final : public Backend {
 public:
  // The runtime destroys a backend only after wait_finished() succeeded; a backend whose
  // workers are stuck in user code is deliberately leaked instead (see host/runtime.cpp).
  ~CpuBackend() override {
    for (auto& t : workers_) {
      if (t.joinable()) t.join();
    }
  }

  BackendKind kind() const override { return BackendKind::kCpu; }

  Result<Buffer> alloc_host_visible(std::size_t bytes) override { return alloc(bytes); }
  Result<Buffer> alloc_device(std::size_t bytes) override { return alloc(bytes); }

  // MemAvailable: what the kernel can give without swapping (free + reclaimable cache).
  std::optional<std::uint64_t> device_memory_available() const override {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    if (f == nullptr) return std::nullopt;
    char line[256];
    std::optional<std::uint64_t> kib;
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long long v = 0;
      if (std::sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
        kib = v;
        break;
      }
    }
    std::fclose(f);
    if (!kib) return std::nullopt;
    return *kib * 1024;
  }

  Status scatter_to_device(std::span<const DeviceCopy> copies) override {
    for (const DeviceCopy& c : copies)
      if (c.bytes > 0) std::memcpy(c.device_dst, c.host_src, c.bytes);
    return Status();
  }
  Status gather_to_host(std::span<const HostCopy> copies) override {
    for (const HostCopy& c : copies)
      if (c.bytes > 0) std::memcpy(c.host_dst, c.device_src, c.bytes);
    return Status();
  }

  Result<LaunchPlan> plan(const Program&, std::uint32_t num_actors, const LaunchLimits& limits) override {
    std::uint32_t threads = limits.cpu_threads;
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    LaunchPlan plan;
    plan.blocks = std::min(threads, num_actors);
    plan.threads_per_block = 1;
    plan.description = "cpu (" + std::to_string(plan.blocks) + " worker thread" +
                       (plan.blocks == 1 ? "" : "s") + ")";
    return plan;
  }

  Status launch(const Program& program, const detail::KernelArgs& args,
                const LaunchPlan& plan) override {
    // One block needs no grid barrier (its worker's program order is the grid's), and
    // libstdc++'s std::barrier hashes the thread id on every arrival: a few percent of a
    // one-block run's messaging throughput.
    barrier_ = plan.blocks > 1 ? std::make_unique<detail::HostEpochBarrier>(plan.blocks) : nullptr;
    if (plan.chaos) {
      chaos_ = std::make_unique<detail::ChaosTurn>();
      chaos_->seed = plan.chaos_seed;
      chaos_->blocks = plan.blocks;
      chaos_->start_epoch = args.start_epoch;
    }
    args_ = args;
    running_ = plan.blocks;
    workers_.reserve(plan.blocks);
    for (std::uint32_t b = 0; b < plan.blocks; ++b) {
      workers_.emplace_back([this, &program, b] {
        const detail::BlockEnv env{b, barrier_.get(), chaos_.get(), nullptr, 0, 0};
        program.run_block_cpu(args_, env);
        std::lock_guard<std::mutex> lock(mu_);
        --running_;
        cv_.notify_all();
      });
    }
    return Status();
  }

  bool kernel_finished() override {
    std::lock_guard<std::mutex> lock(mu_);
    return running_ == 0;
  }

  Status wait_finished(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [this] { return running_ == 0; })) {
      return Status(StatusCode::kTimeout,
                    std::to_string(running_) + " CPU worker thread(s) still running " +
                        std::to_string(timeout.count()) +
                        " ms after the stop request: an actor's step or handler does not "
                        "return. Fix: make long loops check ctx.abort_requested()");
    }
    lock.unlock();
    for (auto& t : workers_) {
      if (t.joinable()) t.join();
    }
    return Status();
  }

  Status poll_fault() override { return Status(); }

 private:
  static Result<Buffer> alloc(std::size_t bytes) {
    const std::size_t rounded = std::max<std::size_t>(64, (bytes + 63) / 64 * 64);
    void* p = std::aligned_alloc(256, (rounded + 255) / 256 * 256);
    if (p == nullptr) {
      return Status(StatusCode::kInvalidArgument,
                    "cannot allocate " + std::to_string(bytes) +
                        " bytes for the CPU backend: reduce --actors or the grid size");
    }
    std::memset(p, 0, rounded);
    return Buffer(p, p, bytes, [p] { std::free(p); });
  }

  detail::KernelArgs args_{};
  std::unique_ptr<detail::HostEpochBarrier> barrier_;
  std::unique_ptr<detail::ChaosTurn> chaos_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint32_t running_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace pkrt::host
