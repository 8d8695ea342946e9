// pkrt/k2k_transfer.hpp: one K2K message as it crosses between runtimes (shards of one
// program, pkrt/mpi.hpp): what Runtime::collect_outbound_k2k yields and deliver_inbound_k2k
// takes, what ranks exchange, and what an inbound K2K log records (pkrt/k2k_log.hpp).
// Plain data; its 24 bytes travel as they are.
#pragma once

#include <cstdint>

namespace pkrt {

// One K2K message crossing runtimes (scale-out): its payload travels beside it.
struct K2KTransfer {
  std::uint32_t dst = 0;      // global actor
  std::uint32_t channel = 0;
  std::uint32_t src = 0;      // global actor
  std::uint32_t bytes = 0;    // payload bytes
  std::uint64_t epoch = 0;    // committed in this epoch; read in epoch + D
};
static_assert(sizeof(K2KTransfer) == 24, "K2KTransfer travels between ranks as bytes");

}  // namespace pkrt
