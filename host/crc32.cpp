// host/crc32.cpp: the host CRC32 path (ISA-L).
#include <pkrt/crc32.hpp>

#include <isa-l/crc.h>

#include <climits>

namespace pkrt {

std::uint32_t crc32(const void* data, std::size_t bytes, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  // ISA-L takes a 64-bit length, but split anyway so no platform's uint64_t/size_t mismatch
  // can truncate a huge buffer.
  constexpr std::size_t kStep = std::size_t{1} << 30;
  while (bytes > 0) {
    const std::size_t n = bytes < kStep ? bytes : kStep;
    crc = crc32_gzip_refl(crc, p, n);
    p += n;
    bytes -= n;
  }
  return crc;
}

}  // namespace pkrt
