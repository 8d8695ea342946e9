// pkrt/crc32.hpp: CRC32 (IEEE 802.3, reflected, zlib-compatible) on the host.
//
// Contract
// - crc32(data, n) equals zlib's crc32(0, data, n); crc32(data, n, prev) continues a running
//   value exactly like zlib's crc32(prev, data, n).
// - Backed by ISA-L's crc32_gzip_refl (folding with PCLMULQDQ/VPCLMULQDQ where available).
// - Thread safety: pure function; host only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pkrt {

std::uint32_t crc32(const void* data, std::size_t bytes, std::uint32_t crc = 0);

}  // namespace pkrt
