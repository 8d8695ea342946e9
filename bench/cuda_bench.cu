// bench/cuda_bench.cu: device-side figures of the snapshot path, timed with CUDA events
// (no runtime, no persistent kernel: the kernels' own copy and CRC code on their own).
//   BM_SnapshotStallDevice/<bytes>/blocks:1     copy + chunk CRCs of one actor's state by one
//                                               block of 128 threads, as serve_snapshot runs it
//   BM_SnapshotStallDevice/<bytes>/blocks:all   the same work spread over every SM (the
//                                               device-bandwidth bound of the cost model)
//   BM_DeviceCrc32/blocks:1/<bytes>             chunk CRCs, image CRC and changed marks of one
//                                               image by one block, as serve_snapshot computes
//                                               them once the image is in staging
//                                               (kernels/block_crc32.hpp): one actor's CRC stall
//   BM_DeviceCrc32/blocks:all/<bytes>           the same, one image of bytes / blocks per block,
//                                               as many blocks as fit on the device (a
//                                               snapshot_all): the device CRC rate, against
//                                               BM_DeviceMemcpy (which also writes each byte)
//   BM_DeviceMemcpy/<bytes>                     cudaMemcpyAsync device to device (the floor)
//   BM_PcieCopy/<bytes>                         device to pinned host (the delta transfer)
//   BM_CudaLaunchSync/empty                     an empty kernel launch + cudaStreamSynchronize,
//                                               timed on the host like a round trip (counters
//                                               p50_ns, p99_ns, p999_ns): the baseline of
//                                               BM_RingRoundTrip/echo_cuda/* (bench/ring_bench.cpp)
// Each is skipped with "no CUDA GPU: ..." where no device can be used.
#include "bench/bench_util.hpp"
#include "bench/latency_histogram.hpp"

#include <pkrt/crc32.hpp>
#include <pkrt/kernels/block_crc32.hpp>
#include <pkrt/kernels/crc32.hpp>
#include <pkrt/kernels/snapshot.hpp>

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace pkrt::bench {
namespace {

constexpr std::uint64_t kChunkBytes = 64 * 1024;
constexpr std::uint32_t kCrcBlockThreads = detail::kDefaultBlockThreads;

__global__ void __launch_bounds__(kCrcBlockThreads) copy_then_crc(const uint4* __restrict__ src, uint4* __restrict__ dst, std::uint64_t bytes,
                              std::uint32_t* crcs) {
  const std::uint64_t rank = std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::uint64_t threads = std::uint64_t{gridDim.x} * blockDim.x;
  const std::uint64_t words = bytes / 16;
  for (std::uint64_t i = rank; i < words; i += threads) dst[i] = src[i];
  // One block: the copy, then every chunk split over the block's threads, as serve_snapshot
  // does (block_crc32_tables' first barrier orders the copy before the CRC). Several blocks:
  // each thread CRCs chunks it did not all copy, so the grid is split in two launches (see
  // below) and this launch only copies.
  if (gridDim.x == 1) {
    detail::block_crc32_chunks<kCrcBlockThreads>(detail::block_crc32_tables(), reinterpret_cast<const std::byte*>(dst),
                                                 bytes, kChunkBytes, crcs);
  }
}

__global__ void empty_kernel() {}

__global__ void crc_only(const void* data, std::uint64_t bytes, std::uint32_t* crcs) {
  const std::uint64_t rank = std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  const std::uint64_t threads = std::uint64_t{gridDim.x} * blockDim.x;
  crc::crc32_chunks(data, bytes, kChunkBytes, rank, threads, crcs);
}

// Block b: step 2 and 3 of a snapshot of image b (image_bytes bytes at images + b *
// image_bytes), as serve_snapshot runs them: chunk CRCs, then changed marks against `prev` and
// the image CRC, written to image_crcs[b].
__global__ void __launch_bounds__(kCrcBlockThreads)
    snapshot_crcs(const std::byte* images, std::uint64_t image_bytes, std::uint32_t* crcs, std::uint32_t* prev,
                  std::uint8_t* changed, std::uint32_t* image_crcs) {
  const auto chunks = static_cast<std::uint32_t>(crc::chunk_count(image_bytes, kChunkBytes));
  const std::uint64_t b = blockIdx.x;
  const crc::Crc32Slices& tables = detail::block_crc32_tables();
  detail::block_crc32_chunks<kCrcBlockThreads>(tables, images + b * image_bytes, image_bytes, kChunkBytes,
                                               crcs + b * chunks);
  __syncthreads();  // thread 0's chunk CRCs are visible to every thread, as in serve_snapshot
  const detail::SnapshotSummary summary = detail::summarize_chunks<kCrcBlockThreads>(
      crcs + b * chunks, prev + b * chunks, changed + b * chunks, chunks, image_bytes, kChunkBytes, false);
  if (threadIdx.x == 0) image_crcs[b] = summary.image_crc;
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

// The device CRC of snapshot images; image 0 holds seeded random bytes and its CRC is checked
// against pkrt::crc32 after the timed runs.
void BM_DeviceCrc32(benchmark::State& state, bool one_block) {
  if (skip_without_device(state)) return;
  const auto bytes = static_cast<std::uint64_t>(state.range(0));
  DeviceBuffers b(bytes);
  if (!b.error.empty()) {
    state.SkipWithError(("CUDA allocation failed: " + b.error).c_str());
    return;
  }
  int per_sm = 1, sms = 1;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, snapshot_crcs, kCrcBlockThreads, 0);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const std::uint64_t blocks = one_block ? 1u : static_cast<std::uint64_t>(per_sm) * static_cast<std::uint64_t>(sms);
  const std::uint64_t image_bytes = bytes / blocks / 16 * 16;  // images start 16-byte aligned, like staging
  if (image_bytes == 0) {
    state.SkipWithError("fewer bytes than blocks");
    return;
  }
  const std::uint64_t chunks = crc::chunk_count(image_bytes, kChunkBytes);
  std::uint32_t* words = nullptr;  // per image: chunk CRCs, previous CRCs; then image CRCs
  std::uint8_t* changed = nullptr;
  if (cudaMalloc(&words, (2 * blocks * chunks + blocks) * sizeof(std::uint32_t)) != cudaSuccess ||
      cudaMalloc(&changed, blocks * chunks) != cudaSuccess) {
    state.SkipWithError((std::string("CUDA allocation failed: ") + cudaGetErrorString(cudaGetLastError())).c_str());
    cudaFree(words);
    return;
  }
  std::uint32_t* crcs = words;
  std::uint32_t* prev = words + blocks * chunks;
  std::uint32_t* image_crcs = prev + blocks * chunks;
  std::vector<unsigned char> image(image_bytes);
  std::mt19937_64 rng(11);
  for (std::uint64_t i = 0; i < image_bytes; i += 8) {
    const std::uint64_t r = rng();
    std::memcpy(image.data() + i, &r, image_bytes - i < 8 ? image_bytes - i : 8);
  }
  cudaMemcpy(b.src, image.data(), image_bytes, cudaMemcpyHostToDevice);
  const auto* images = static_cast<const std::byte*>(b.src);
  for (auto _ : state) {
    const float ms = b.time([&] {
      snapshot_crcs<<<static_cast<unsigned>(blocks), kCrcBlockThreads, 0, b.stream>>>(images, image_bytes, crcs, prev,
                                                                                      changed, image_crcs);
    });
    state.SetIterationTime(ms / 1e3);
  }
  std::uint32_t got = 0;
  const cudaError_t err = cudaMemcpy(&got, image_crcs, sizeof got, cudaMemcpyDeviceToHost);
  cudaFree(words);
  cudaFree(changed);
  if (err != cudaSuccess) {
    state.SkipWithError((std::string("kernel failed: ") + cudaGetErrorString(err)).c_str());
    return;
  }
  if (got != pkrt::crc32(image.data(), image.size())) {
    state.SkipWithError("device image CRC differs from pkrt::crc32 of the same bytes");
    return;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * image_bytes * blocks));
  state.counters["blocks"] = static_cast<double>(blocks);
  state.counters["image_bytes"] = static_cast<double>(image_bytes);
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
  for (bool one : {true, false}) {
    auto* b = benchmark::RegisterBenchmark(one ? "BM_DeviceCrc32/blocks:1" : "BM_DeviceCrc32/blocks:all",
                                           BM_DeviceCrc32, one);
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
