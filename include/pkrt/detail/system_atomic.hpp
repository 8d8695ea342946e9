// pkrt/detail/system_atomic.hpp: named acquire/release accessors for memory shared by the
// host and the device (mapped pinned memory on CUDA, plain memory on the CPU backend).
//
// Every cross-agent access in pkrt goes through these functions, so the ordering each one
// provides is visible at the call site by name, the way CUB names load_acquire/store_release.
// Only loads and stores: read-modify-write atomics do not work across PCIe on x86 hosts,
// so nothing here offers them at system scope.
//
// With libcu++ available (always under nvcc) they are cuda::atomic_ref at
// thread_scope_system, which compiles to ld.acquire.sys / st.release.sys on sm_70+ and to
// ordinary atomics on the host. Without the CUDA toolkit they are std::atomic_ref, which has
// the same meaning for host threads (the CPU backend).
#pragma once

#include <pkrt/config.hpp>

#if PKRT_USE_LIBCUDACXX
#include <cuda/atomic>
#else
#include <atomic>
#endif

namespace pkrt::detail {

#if PKRT_USE_LIBCUDACXX
template <class T>
using system_atomic_ref = cuda::atomic_ref<T, cuda::thread_scope_system>;
template <class T>
using device_atomic_ref = cuda::atomic_ref<T, cuda::thread_scope_device>;
namespace mo = cuda::std;
#else
template <class T>
using system_atomic_ref = std::atomic_ref<T>;
template <class T>
using device_atomic_ref = std::atomic_ref<T>;
namespace mo = std;
#endif

// Acquire load: later reads by this thread see everything the releasing writer wrote
// before its paired store_release.
template <class T>
PKRT_HD inline T load_acquire(const T& word) {
  return system_atomic_ref<T>(const_cast<T&>(word)).load(mo::memory_order_acquire);
}

// Release store: everything this thread wrote before becomes visible to the agent whose
// load_acquire reads this value.
template <class T>
PKRT_HD inline void store_release(T& word, T value) {
  system_atomic_ref<T>(word).store(value, mo::memory_order_release);
}

// Relaxed load of a word another agent writes: no ordering, but never torn and never
// cached in a register across calls (used for monotonic counters and diagnostics).
template <class T>
PKRT_HD inline T load_relaxed(const T& word) {
  return system_atomic_ref<T>(const_cast<T&>(word)).load(mo::memory_order_relaxed);
}

// Relaxed store of a word another agent only observes for progress or diagnostics.
template <class T>
PKRT_HD inline void store_relaxed(T& word, T value) {
  system_atomic_ref<T>(word).store(value, mo::memory_order_relaxed);
}

// Device scope: for words in device memory that only the kernel's blocks touch, ordered by
// grid barriers. System scope there would make each access pay for host coherence (and on
// a GPU keep it out of L1) for nothing. Relaxed, the add included: the barrier orders them.
template <class T>
PKRT_HD inline T device_load_relaxed(const T& word) {
  return device_atomic_ref<T>(const_cast<T&>(word)).load(mo::memory_order_relaxed);
}

template <class T>
PKRT_HD inline void device_store_relaxed(T& word, T value) {
  device_atomic_ref<T>(word).store(value, mo::memory_order_relaxed);
}

template <class T>
PKRT_HD inline void device_add_relaxed(T& word, T value) {
  device_atomic_ref<T>(word).fetch_add(value, mo::memory_order_relaxed);
}

}  // namespace pkrt::detail
