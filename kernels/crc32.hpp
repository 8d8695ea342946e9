// kernels/crc32.hpp: CRC32 (IEEE 802.3, reflected polynomial 0xEDB88320, zlib-compatible)
// written once for host and device: slice-by-8 over one buffer, crc32_combine, and the
// chunked form the snapshot path uses (chunk CRCs computed by any threads in any order,
// combined in chunk order, so the whole-state value does not depend on the launch shape).
//
// Contract
// - crc32_update(crc, p, n) == zlib's crc32(crc, p, n); start from 0.
// - crc32_combine(crc(A), crc(B), len(B)) == crc(A || B) (zlib's crc32_combine).
// - crc32_chunks() + crc32_combine_chunks() == crc32_update(0, data, n) for every chunk
//   size, thread count and thread order.
// - Host/device: PKRT_HD. The tables live in __constant__ memory on the device (one copy per
//   translation unit: whole-program CUDA mode has no shared device variables) and in a
//   constexpr object on the host.
// - Thread safety: pure functions.
#pragma once

#include <pkrt/config.hpp>
#if !PKRT_DEVICE_PASS
#include <pkrt/crc32.hpp>
#endif

#include <cstdint>

namespace pkrt::crc {

inline constexpr std::uint32_t kPolynomial = 0xEDB88320u;

struct Crc32Tables {
  std::uint32_t slice[8][256];  // slice-by-8 lookup tables
  std::uint32_t x2n[32];        // x^(2^k) mod P, for combine
};

// (a * b) mod P in the reflected bit order (bit 31 is x^0).
PKRT_HD constexpr std::uint32_t multmodp(std::uint32_t a, std::uint32_t b) {
  std::uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if ((a & m) != 0) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1u) != 0 ? (b >> 1) ^ kPolynomial : b >> 1;
  }
  return p;
}

constexpr Crc32Tables make_crc32_tables() {
  Crc32Tables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) != 0 ? (c >> 1) ^ kPolynomial : c >> 1;
    t.slice[0][i] = c;
  }
  for (std::uint32_t i = 0; i < 256; ++i)
    for (int s = 1; s < 8; ++s) t.slice[s][i] = (t.slice[s - 1][i] >> 8) ^ t.slice[0][t.slice[s - 1][i] & 0xFFu];
  std::uint32_t p = 1u << 30;  // x^1
  t.x2n[0] = p;
  for (int k = 1; k < 32; ++k) t.x2n[k] = p = multmodp(p, p);
  return t;
}

#if defined(__CUDACC__)
static __constant__ Crc32Tables d_crc32_tables = make_crc32_tables();
#endif
inline constexpr Crc32Tables h_crc32_tables = make_crc32_tables();

PKRT_HD inline const Crc32Tables& crc32_tables() {
#if PKRT_DEVICE_PASS
  return d_crc32_tables;
#else
  return h_crc32_tables;
#endif
}

// zlib's crc32(crc, data, n).
PKRT_HD inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::uint64_t n) {
  const Crc32Tables& t = crc32_tables();
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  // Bytes up to 8-byte alignment, then 8 bytes per step (little-endian words), then the tail.
  while (n > 0 && (reinterpret_cast<std::uintptr_t>(p) & 7u) != 0) {
    c = t.slice[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
    --n;
  }
  while (n >= 8) {
    const std::uint32_t lo = c ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                                  std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24);
    const std::uint32_t hi = std::uint32_t{p[4]} | std::uint32_t{p[5]} << 8 |
                             std::uint32_t{p[6]} << 16 | std::uint32_t{p[7]} << 24;
    c = t.slice[7][lo & 0xFFu] ^ t.slice[6][(lo >> 8) & 0xFFu] ^ t.slice[5][(lo >> 16) & 0xFFu] ^
        t.slice[4][lo >> 24] ^ t.slice[3][hi & 0xFFu] ^ t.slice[2][(hi >> 8) & 0xFFu] ^
        t.slice[1][(hi >> 16) & 0xFFu] ^ t.slice[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = t.slice[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
  return ~c;
}

// crc32_update with the fastest code of the agent running it: on the host pass pkrt::crc32
// (ISA-L, folding with carry-less multiplies), on the device the slice-by-8 above. Same
// values. Snapshots use it; tests check the portable crc32_update itself.
PKRT_HD inline std::uint32_t crc32_update_native(std::uint32_t crc, const void* data, std::uint64_t n) {
#if PKRT_DEVICE_PASS
  return crc32_update(crc, data, n);
#else
  return pkrt::crc32(data, static_cast<std::size_t>(n), crc);
#endif
}

// x^(8 * bytes) mod P: the factor that shifts a CRC over `bytes` zero bytes.
PKRT_HD inline std::uint32_t x8nmodp(std::uint64_t bytes) {
  const Crc32Tables& t = crc32_tables();
  std::uint32_t p = 1u << 31;  // x^0
  int k = 3;                   // 8 * bytes = bytes * 2^3
  while (bytes != 0) {
    if ((bytes & 1u) != 0) p = multmodp(t.x2n[k & 31], p);
    bytes >>= 1;
    ++k;
  }
  return p;
}

// CRC of A || B from crc(A), crc(B) and len(B).
PKRT_HD inline std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b,
                                           std::uint64_t len_b) {
  return multmodp(x8nmodp(len_b), crc_a) ^ crc_b;
}

PKRT_HD constexpr std::uint64_t chunk_count(std::uint64_t bytes, std::uint64_t chunk_bytes) {
  return (bytes + chunk_bytes - 1) / chunk_bytes;
}

// The CRCs of chunks first, first + stride, ... (one thread's share; call from every thread
// with its rank and the thread count, then sync before combining).
PKRT_HD inline void crc32_chunks(const void* data, std::uint64_t bytes, std::uint64_t chunk_bytes,
                                 std::uint64_t first, std::uint64_t stride,
                                 std::uint32_t* chunk_crcs) {
  const auto* p = static_cast<const unsigned char*>(data);
  const std::uint64_t chunks = chunk_count(bytes, chunk_bytes);
  for (std::uint64_t i = first; i < chunks; i += stride) {
    const std::uint64_t off = i * chunk_bytes;
    const std::uint64_t n = bytes - off < chunk_bytes ? bytes - off : chunk_bytes;
    chunk_crcs[i] = crc32_update(0, p + off, n);
  }
}

// CRC of the whole buffer from its chunk CRCs, in chunk order (one thread).
PKRT_HD inline std::uint32_t crc32_combine_chunks(const std::uint32_t* chunk_crcs,
                                                  std::uint64_t bytes, std::uint64_t chunk_bytes) {
  const std::uint64_t chunks = chunk_count(bytes, chunk_bytes);
  std::uint32_t crc = 0;
  for (std::uint64_t i = 0; i < chunks; ++i) {
    const std::uint64_t n = bytes - i * chunk_bytes < chunk_bytes ? bytes - i * chunk_bytes : chunk_bytes;
    crc = crc32_combine(crc, chunk_crcs[i], n);
  }
  return crc;
}

}  // namespace pkrt::crc
