// pkrt/config.hpp: the one place that knows which compiler is looking at pkrt's code.
//
// Contract
// - PKRT_HD marks code shared by host and device. Under nvcc it is `__host__ __device__`;
//   under a host compiler it is nothing, so kernels compile as plain inline C++ for the
//   CPU backend. Every kernel-side function in pkrt is PKRT_HD; nothing else is.
// - PKRT_DEVICE_PASS is 1 only while nvcc compiles for the device. Kernel code branches on
//   it through the few helpers below (nanosleep, fp arithmetic), never inline in logic.
// - Floating point: pkrt's kernels use pkrt::fadd/fmul, which never contract into FMA on
//   either side, so a kernel gives bit-identical results on CPU and GPU. The pkrt::pkrt
//   target also adds -ffp-contract=off (host) and --fmad=false (CUDA) for user kernels.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PKRT_HD __host__ __device__
#define PKRT_DEVICE_ONLY __device__
#else
#define PKRT_HD
#define PKRT_DEVICE_ONLY
#endif

#if defined(__CUDA_ARCH__)
#define PKRT_DEVICE_PASS 1
#else
#define PKRT_DEVICE_PASS 0
#endif

// Storage one per block: __shared__ in the device pass; on the CPU a block is one worker
// thread, so a local variable of the block's loop is already per block.
#if PKRT_DEVICE_PASS
#define PKRT_BLOCK_SHARED __shared__
#else
#define PKRT_BLOCK_SHARED
#endif

// Whether libcu++ (<cuda/atomic>) is available. It ships with the CUDA toolkit (CCCL); a
// CPU-only build without the toolkit falls back to std::atomic_ref, which has the same
// semantics for host threads.
#if defined(__CUDACC__) || defined(PKRT_HAVE_CCCL)
#define PKRT_USE_LIBCUDACXX 1
#else
#define PKRT_USE_LIBCUDACXX 0
#endif

#define PKRT_VERSION_MAJOR 0
#define PKRT_VERSION_MINOR 1
#define PKRT_VERSION_PATCH 0
#define PKRT_VERSION_STRING "0.1.0"

namespace pkrt {

// Size of one cache line on every target pkrt supports (x86-64, aarch64 hosts; NVIDIA L2
// sectors are 32 B, lines 128 B, but host-visible mapped memory is coherent per 64 B).
inline constexpr std::uint32_t kCacheLine = 64;

// The longest K2K delay (RuntimeOptions::k2k_delay): each epoch of delay costs a mailbox
// buffer of every actor, and a lookahead past this hides no more exchange latency.
inline constexpr std::uint32_t kMaxK2KDelay = 64;

// Round-to-nearest float operations that a compiler may not fuse, so a kernel's result does
// not depend on which backend compiled it.
PKRT_HD inline float fadd(float a, float b) {
#if PKRT_DEVICE_PASS
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

PKRT_HD inline float fmul(float a, float b) {
#if PKRT_DEVICE_PASS
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

PKRT_HD inline float fsub(float a, float b) {
#if PKRT_DEVICE_PASS
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

}  // namespace pkrt
