// kernels/crc32.hpp: CRC32 (IEEE 802.3, reflected polynomial 0xEDB88320, zlib-compatible)
// written once for host and device, at thread level: slice-by-8 over one buffer,
// crc32_combine, the split of one range into parts that threads CRC independently, and the
// chunked form (chunk CRCs computed by any threads in any order, combined in chunk order, so
// the whole-state value does not depend on the launch shape). The block-level forms the
// snapshot and digest kernels run are in kernels/block_crc32.hpp.
//
// Contract
// - crc32_update(crc, p, n) == zlib's crc32(crc, p, n); start from 0.
// - crc32_combine(crc(A), crc(B), len(B)) == crc(A || B) (zlib's crc32_combine).
// - XOR over t < parts of crc32_part_term(crc32_part(n, parts, t)) == crc32_update(0, p, n)
//   for every part count (crc32_of_range_split).
// - crc32_chunks() + crc32_combine_chunks() == crc32_update(0, data, n) for every chunk
//   size, thread count and thread order.
// - Host/device: PKRT_HD. The tables live in __constant__ memory on the device (one copy per
//   translation unit: whole-program CUDA mode has no shared device variables) and in a
//   constexpr object on the host. The crc32_update overload that takes tables reads them
//   from wherever the caller keeps them (the block kernels: shared memory).
// - Thread safety: pure functions.
#pragma once

#include <pkrt/config.hpp>
#if !PKRT_DEVICE_PASS
#include <pkrt/crc32.hpp>
#endif

#include <cstdint>

namespace pkrt::crc {

inline constexpr std::uint32_t kPolynomial = 0xEDB88320u;

// Slice-by-8 lookup tables: 8 KiB.
using Crc32Slices = std::uint32_t[8][256];

// 16-byte aligned so a block can copy the slices with 16-byte loads.
struct alignas(16) Crc32Tables {
  Crc32Slices slice;
  std::uint32_t x2n[32];  // x^(2^k) mod P, for combine
};

// (a * b) mod P in the reflected bit order (bit 31 is x^0). `a` must not be 0.
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

// Eight message bytes through the slice tables: `lo` (already XORed with the running CRC)
// and `hi` are its two little-endian words.
PKRT_HD inline std::uint32_t crc32_slice8(const Crc32Slices& t, std::uint32_t lo, std::uint32_t hi) {
  return t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^
         t[3][hi & 0xFFu] ^ t[2][(hi >> 8) & 0xFFu] ^ t[1][(hi >> 16) & 0xFFu] ^ t[0][hi >> 24];
}

// zlib's crc32(crc, data, n) with the slice tables `t`.
PKRT_HD inline std::uint32_t crc32_update(const Crc32Slices& t, std::uint32_t crc, const void* data,
                                          std::uint64_t n) {
  // Bytes up to word alignment, then words of little-endian bytes (the device loads 16 bytes
  // at a time: one ld.v4 instead of sixteen byte loads), then the tail.
  constexpr std::uintptr_t kAlign = PKRT_DEVICE_PASS ? 16 : 8;
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  while (n > 0 && (reinterpret_cast<std::uintptr_t>(p) & (kAlign - 1)) != 0) {
    c = t[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
    --n;
  }
#if PKRT_DEVICE_PASS
  for (; n >= 16; p += 16, n -= 16) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);  // GPUs are little-endian
    c = crc32_slice8(t, c ^ v.x, v.y);
    c = crc32_slice8(t, c ^ v.z, v.w);
  }
#endif
  for (; n >= 8; p += 8, n -= 8) {
    const std::uint32_t lo = std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                             std::uint32_t{p[3]} << 24;
    const std::uint32_t hi = std::uint32_t{p[4]} | std::uint32_t{p[5]} << 8 | std::uint32_t{p[6]} << 16 |
                             std::uint32_t{p[7]} << 24;
    c = crc32_slice8(t, c ^ lo, hi);
  }
  while (n-- > 0) c = t[0][(c ^ *p++) & 0xFFu] ^ (c >> 8);
  return ~c;
}

// zlib's crc32(crc, data, n) with this agent's own copy of the tables (__constant__ on the
// device).
PKRT_HD inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::uint64_t n) {
  return crc32_update(crc32_tables().slice, crc, data, n);
}

// crc32_update with the fastest code of the agent running it: on the host pass pkrt::crc32
// (ISA-L, folding with carry-less multiplies; `t` unused), on the device slice-by-8 with the
// tables `t` (a block's shared copy). Same values. Snapshots and digests use it; tests check
// the portable crc32_update itself.
PKRT_HD inline std::uint32_t crc32_update_native(const Crc32Slices& t, std::uint32_t crc, const void* data,
                                                 std::uint64_t n) {
#if PKRT_DEVICE_PASS
  return crc32_update(t, crc, data, n);
#else
  (void)t;
  return pkrt::crc32(data, static_cast<std::size_t>(n), crc);
#endif
}

// x^(8 * bytes) mod P: the factor that shifts a CRC over `bytes` zero bytes. Never 0.
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

// A CRC and the length of the bytes it covers: the element of an ordered CRC fold.
struct Crc32Span {
  std::uint32_t crc;
  std::uint64_t bytes;
};

// Concatenation of two spans (crc32_combine): associative, not commutative; {0, 0} is its
// identity, so a thread with nothing to fold contributes {0, 0}.
struct Crc32Concat {
  PKRT_HD Crc32Span operator()(const Crc32Span& a, const Crc32Span& b) const {
    return {crc32_combine(a.crc, b.crc, b.bytes), a.bytes + b.bytes};
  }
};

// Folds the terms of crc32_part (below): XOR.
struct Crc32Xor {
  PKRT_HD std::uint32_t operator()(std::uint32_t a, std::uint32_t b) const { return a ^ b; }
};

// Bytes per part when a range of `bytes` bytes is split over `parts` threads: an even share
// rounded up to 64 bytes, so every part starts on a cache line (and the device's 16-byte
// loads need no byte-wise lead-in). Trailing parts may be empty.
PKRT_HD constexpr std::uint64_t crc32_part_bytes(std::uint64_t bytes, std::uint32_t parts) {
  const std::uint64_t even = (bytes + parts - 1) / parts;
  return (even + 63) / 64 * 64;
}

// Thread t's share of a range split over `parts` threads: bytes [begin, end), and the factor
// that shifts its CRC past the bytes after it.
struct Crc32Part {
  std::uint64_t begin;
  std::uint64_t end;
  std::uint32_t shift;  // x^(8 * (range bytes - end)) mod P
};

PKRT_HD inline Crc32Part crc32_part(std::uint64_t bytes, std::uint32_t parts, std::uint32_t t) {
  const std::uint64_t share = crc32_part_bytes(bytes, parts);
  const std::uint64_t begin = t * share < bytes ? t * share : bytes;
  const std::uint64_t end = bytes - begin < share ? bytes : begin + share;
  return {begin, end, x8nmodp(bytes - end)};
}

// Part's term of the range's CRC: crc(part) shifted past the bytes that follow it. The XOR
// of every part's term is the CRC of the range: crc32_combine distributed over the parts
// (crc(A || B) = shift(crc(A), |B|) ^ crc(B), and shifts compose), so the parts' order is in
// their shift factors and the terms fold in any order. One multiply per part, where folding
// the parts with crc32_combine takes one per combine along the fold.
PKRT_HD inline std::uint32_t crc32_part_term(const Crc32Slices& t, const Crc32Part& part,
                                             const unsigned char* range) {
  return multmodp(part.shift, crc32_update_native(t, 0, range + part.begin, part.end - part.begin));
}

// CRC of [data, data + bytes) as `parts` threads compute it (block_crc32, block_crc32_chunks
// in kernels/block_crc32.hpp), folded by one thread: the host's way to run any split.
PKRT_HD inline std::uint32_t crc32_of_range_split(const void* data, std::uint64_t bytes, std::uint32_t parts) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t crc = 0;
  for (std::uint32_t t = 0; t < parts; ++t)
    crc ^= crc32_part_term(crc32_tables().slice, crc32_part(bytes, parts, t), p);
  return crc;
}

PKRT_HD constexpr std::uint64_t chunk_count(std::uint64_t bytes, std::uint64_t chunk_bytes) {
  return (bytes + chunk_bytes - 1) / chunk_bytes;
}

// The CRCs of chunks first, first + stride, ... (one thread's share; call from every thread
// with its rank and the thread count, then sync before combining). One thread per chunk: the
// host benchmarks and checks use it; the snapshot kernel splits each chunk over its block.
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
