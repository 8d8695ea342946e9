// bench/cuda_bench.cu: device-side figures of the snapshot path, timed with CUDA events
// (no runtime, no persistent kernel: the kernels' own copy and CRC code on their own).
//   BM_SnapshotStallDevice/<bytes>/blocks:1     copy + chunk CRCs of one actor's state by one
//                                               block of 128 threads, as serve_snapshot runs it
//   BM_SnapshotStallDevice/<bytes>/blocks:all   the same work spread over every SM (the
//                                               device-bandwidth bound of the cost model)
//   BM_DeviceMemcpy/<bytes>                     cudaMemcpyAsync device to device (the floor)
//   BM_PcieCopy/<bytes>                         device to pinned host (the delta transfer)
//   BM_CudaLaunchSync/empty                     an empty kernel launch + cudaStreamSynchronize,
//                                               timed on the host like a round trip (counters
//                                               p50_ns, p99_ns, p999_ns): the baseline of
//                                               BM_RingRoundTrip/echo_cuda/* (bench/ring_bench.cpp)
// Each is skipped with "no CUDA GPU: ..." where no device can be used.
#include "bench/bench_util.hpp"
#include "bench/latency_histogram.hpp"

#include <pkrt/kernels/crc32.hpp>

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace pkrt::bench {
namespace {

constexpr std::uint64_t kChunkBytes = 64 * 1024;

__global__ void copy_then_crc(const uint4* __restrict__ src, uint4* __restrict__ dst, std::uint64_t bytes,
                              std::uint32_t* crcs) {
  const std::uint64_t rank = std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::uint64_t threads = std::uint64_t{gridDim.x} * blockDim.x;
  const std::uint64_t words = bytes / 16;
  for (std::uint64_t i = rank; i < words; i += threads) dst[i] = src[i];
  // One block: __syncthreads orders the copy before the CRC, as in serve_snapshot. Several
  // blocks: each thread CRCs chunks it did not all copy, so the grid is split in two launches
  // (see below) and this launch only copies.
  if (gridDim.x == 1) {
    __syncthreads();
    crc::crc32_chunks(dst, bytes, kChunkBytes, rank, threads, crcs);
  }
}

__global__ void empty_kernel() {}

__global__ void crc_only(const void* data, std::uint64_t bytes, std::uint32_t* crcs) {
  const std::uint64_t rank = std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::uint64_t threads = std::uint64_t{gridDim.x} * blockDim.x;
  crc::crc32_chunks(data, bytes, kChunkBytes, rank, threads, crcs);
}

struct DeviceBuffers {
  void* src = nullptr;
  void* dst = nullptr;
  void* host = nullptr;
  std::uint32_t* crcs = nullptr;
  cudaEvent_t start{}, stop{};
  cudaStream_t stream{};
  std::string error;

  explicit DeviceBuffers(std::uint64_t bytes) {
    if (cudaMalloc(&src, bytes) != cudaSuccess || cudaMalloc(&dst, bytes) != cudaSuccess ||
        cudaMalloc(&crcs, crc::chunk_count(bytes, kChunkBytes) * sizeof(std::uint32_t)) != cudaSuccess ||
        cudaHostAlloc(&host, bytes, cudaHostAllocDefault) != cudaSuccess ||
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) {
      error = cudaGetErrorString(cudaGetLastError());
      return;
    }
    cudaMemset(src, 0x5A, bytes);
    cudaDeviceSynchronize();
  }
  ~DeviceBuffers() {
    cudaFree(src);
    cudaFree(dst);
    cudaFree(crcs);
    cudaFreeHost(host);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaStreamDestroy(stream);
  }
  // Milliseconds between the two events recorded around `work` on the stream.
  template <class Work>
  float time(Work&& work) {
    cudaEventRecord(start, stream);
    work();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    return ms;
  }
};

bool skip_without_device(benchmark::State& state) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaSuccess && n > 0) return false;
  state.SkipWithError((std::string("no CUDA GPU: ") +
                       (err == cudaSuccess ? "no device found" : cudaGetErrorString(err))).c_str());
  return true;
}

void BM_SnapshotStallDevice(benchmark::State& state, bool one_block) {
  if (skip_without_device(state)) return;
  const auto bytes = static_cast<std::uint64_t>(state.range(0));
  DeviceBuffers b(bytes);
  if (!b.error.empty()) {
    state.SkipWithError(("CUDA allocation failed: " + b.error).c_str());
    return;
  }
  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const unsigned blocks = one_block ? 1u : static_cast<unsigned>(sms) * 4u;
  for (auto _ : state) {
    const float ms = b.time([&] {
      copy_then_crc<<<blocks, 128, 0, b.stream>>>(static_cast<const uint4*>(b.src), static_cast<uint4*>(b.dst), bytes,
                                                  b.crcs);
      if (!one_block) crc_only<<<blocks, 128, 0, b.stream>>>(b.dst, bytes, b.crcs);
    });
    state.SetIterationTime(ms / 1e3);
  }
  if (cudaGetLastError() != cudaSuccess) state.SkipWithError("kernel launch failed");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["blocks"] = blocks;
}

void BM_DeviceCopy(benchmark::State& state, cudaMemcpyKind kind) {
  if (skip_without_device(state)) return;
  const auto bytes = static_cast<std::uint64_t>(state.range(0));
  DeviceBuffers b(bytes);
  if (!b.error.empty()) {
    state.SkipWithError(("CUDA allocation failed: " + b.error).c_str());
    return;
  }
  void* to = kind == cudaMemcpyDeviceToHost ? b.host : b.dst;
  for (auto _ : state) {
    const float ms = b.time([&] { cudaMemcpyAsync(to, b.src, bytes, kind, b.stream); });
    state.SetIterationTime(ms / 1e3);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

// What a round trip through a non-persistent kernel costs at the least: launch, run nothing,
// wait for it. One sample per iteration, host clock, the same two reads as the ring round trips.
void BM_CudaLaunchSync(benchmark::State& state, const std::string& name) {
  if (skip_without_device(state)) return;
  cudaStream_t stream{};
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    state.SkipWithError(
        (std::string("cudaStreamCreateWithFlags failed: ") + cudaGetErrorString(cudaGetLastError())).c_str());
    return;
  }
  for (int i = 0; i < 100; ++i) empty_kernel<<<1, 1, 0, stream>>>();  // module load, first-launch costs
  cudaStreamSynchronize(stream);
  LatencyHistogram histogram;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    empty_kernel<<<1, 1, 0, stream>>>();
    const cudaError_t err = cudaStreamSynchronize(stream);
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    histogram.record(elapsed);
    state.SetIterationTime(std::chrono::duration<double>(elapsed).count());
    if (err != cudaSuccess) {
      state.SkipWithError((std::string("empty kernel failed: ") + cudaGetErrorString(err)).c_str());
      break;
    }
  }
  cudaStreamDestroy(stream);
  state.SetItemsProcessed(state.iterations());
  publish_latency(state, histogram, name);
}

void register_all() {
  std::vector<std::int64_t> sizes = {64 << 10, 1 << 20, 16 << 20, 64 << 20, 256 << 20};
  if (short_level() >= 1) sizes = {1 << 20, 64 << 20};
  for (bool one : {true, false}) {
    auto* b = benchmark::RegisterBenchmark(one ? "BM_SnapshotStallDevice/blocks:1" : "BM_SnapshotStallDevice/blocks:all",
                                           BM_SnapshotStallDevice, one);
    for (auto n : sizes) b->Arg(n);
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  auto* d = benchmark::RegisterBenchmark("BM_DeviceMemcpy", BM_DeviceCopy, cudaMemcpyDeviceToDevice);
  auto* h = benchmark::RegisterBenchmark("BM_PcieCopy", BM_DeviceCopy, cudaMemcpyDeviceToHost);
  for (auto n : sizes) {
    d->Arg(n);
    h->Arg(n);
  }
  d->UseManualTime()->Unit(benchmark::kMicrosecond);
  h->UseManualTime()->Unit(benchmark::kMicrosecond);
  const std::string launch = "BM_CudaLaunchSync/empty";
  benchmark::RegisterBenchmark(launch.c_str(), [launch](benchmark::State& state) {
    BM_CudaLaunchSync(state, launch);
  })->UseManualTime();
}

const bool registered = (register_all(), true);

}  // namespace
}  // namespace pkrt::bench
