// cuda/device_registry.hpp: which GPUs of this process host a pkrt Runtime (the CUDA
// backend's allocations, then its persistent grid), and which were abandoned with a grid that
// would not stop. Host code with no CUDA dependency, so its rules are tested in every build.
//
// Why one runtime per device: a second cooperative grid could never be scheduled beside a
// persistent one that holds the SMs, and cudaFree/cudaFreeHost synchronise the device, so
// tearing down either runtime would wait on the other's kernel for ever. After a grid is
// leaked (shutdown timed out), nothing more can be freed or launched on that device.
//
// Thread safety: every member may be called from any thread.
#pragma once

#include <pkrt/status.hpp>

#include <map>
#include <mutex>
#include <string>

namespace pkrt::host {

class DeviceRegistry {
 public:
  // The process's registry (CudaBackend's); tests make their own. Never destroyed: a Runtime
  // in a static may release its device after every function-local static is gone.
  static DeviceRegistry& instance() {
    static DeviceRegistry* const registry = new DeviceRegistry;
    return *registry;
  }

  // Ok and the device is ours until release(); kFailedPrecondition, saying why and the fix,
  // while another runtime holds it or after a grid was leaked on it.
  Status claim(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = devices_.try_emplace(device, Use::kInUse);
    if (inserted) return Status();
    if (it->second == Use::kLeaked) {
      return Status(StatusCode::kFailedPrecondition,
                    "GPU " + std::to_string(device) +
                        " still runs the persistent kernel of an earlier pkrt Runtime that did not stop "
                        "(shutdown timed out and its grid was left resident); nothing more can run or be "
                        "freed on that device in this process. Fix: restart the process");
    }
    return Status(StatusCode::kFailedPrecondition,
                  "GPU " + std::to_string(device) +
                      " already hosts another pkrt Runtime in this process; two persistent grids cannot "
                      "share a device (the second would never be scheduled, and freeing either would "
                      "wait on the other). Fix: destroy the first Runtime (not only shut it down) before "
                      "creating the next, or give each its own cuda_device");
  }

  // The runtime on `device` is gone (its backend destroyed); a leaked device stays refused.
  void release(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = devices_.find(device);
    if (it != devices_.end() && it->second == Use::kInUse) devices_.erase(it);
  }

  // Its grid would not stop and was left resident: refuse the device from now on.
  void mark_leaked(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    devices_[device] = Use::kLeaked;
  }

 private:
  enum class Use { kInUse, kLeaked };
  std::mutex mu_;
  std::map<int, Use> devices_;
};

}  // namespace pkrt::host
