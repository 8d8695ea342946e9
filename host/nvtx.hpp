// host/nvtx.hpp: NVTX ranges and marks on the host side of pkrt, so that Nsight Systems
// (`nsys profile`) shows a run's timeline: pump passes, snapshot requests and copies,
// checkpoint compression, writes and commits, replay appends, beside the CUDA API calls.
//
// Contract
// - Built with the NVTX v3 header that ships with the CUDA toolkit (PKRT_HAVE_NVTX, set by
//   CMake when it finds nvtx3/nvToolsExt.h); without it every type here is empty and every
//   call compiles to nothing. NVTX v3 is header-only: with no tool attached each call is one
//   indirect call to a no-op, so the ranges stay in release builds.
// - Everything is in one NVTX domain, "pkrt"; names are registered once (NvtxName, meant to be
//   a function-local static) so a range costs no string hashing in the tool.
// - Thread safety: any thread. A range is pushed and popped on the thread that made it
//   (NvtxRange is a scope guard; do not move it across threads).
#pragma once

#include <cstdint>

#if PKRT_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace pkrt::host {

#if PKRT_HAVE_NVTX

inline nvtxDomainHandle_t nvtx_domain() {
  static const nvtxDomainHandle_t domain = nvtxDomainCreateA("pkrt");
  return domain;
}

// A registered range or mark name. Keep one per call site, as a function-local static.
class NvtxName {
 public:
  explicit NvtxName(const char* name) : handle_(nvtxDomainRegisterStringA(nvtx_domain(), name)) {}
  nvtxStringHandle_t handle() const { return handle_; }

 private:
  nvtxStringHandle_t handle_;
};

namespace nvtx_detail {
inline nvtxEventAttributes_t attributes(const NvtxName& name) {
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
  a.message.registered = name.handle();
  return a;
}
}  // namespace nvtx_detail

// Pushes a range for its lifetime.
class NvtxRange {
 public:
  explicit NvtxRange(const NvtxName& name) {
    const nvtxEventAttributes_t a = nvtx_detail::attributes(name);
    nvtxDomainRangePushEx(nvtx_domain(), &a);
  }
  ~NvtxRange() { nvtxDomainRangePop(nvtx_domain()); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

// An instant on the timeline carrying a value (e.g. a snapshot's device stall in ns, which
// happened on the GPU and is known on the host only afterwards).
inline void nvtx_mark(const NvtxName& name, std::uint64_t value) {
  nvtxEventAttributes_t a = nvtx_detail::attributes(name);
  a.payloadType = NVTX_PAYLOAD_TYPE_UNSIGNED_INT64;
  a.payload.ullValue = value;
  nvtxDomainMarkEx(nvtx_domain(), &a);
}

#else

class NvtxName {
 public:
  explicit NvtxName(const char*) {}
};

class NvtxRange {
 public:
  explicit NvtxRange(const NvtxName&) {}
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

inline void nvtx_mark(const NvtxName&, std::uint64_t) {}

#endif

}  // namespace pkrt::host
