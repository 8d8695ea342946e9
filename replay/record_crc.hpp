// replay/record_crc.hpp: CRC32 of one 128-byte replay record, computed from the record's
// bytes while they are in registers, so that the log writer seals and copies a record in one
// pass (replay/replay_log.cpp).
//
// Contract
// - crc32_fixed128(p) == pkrt::crc32(p, 128) (zlib's CRC32) for every input: the value on
//   disk does not depend on which path computed it. tests/replay_log_test.cpp checks both
//   paths against ISA-L on seeded random records.
// - x86-64 with VPCLMULQDQ (AVX-512: four 64-bit products per instruction; AVX2: two): the
//   functions carry target attributes and crc32_fixed128 picks the widest path the CPU and OS
//   support, once. Other CPUs (and x86 without VPCLMULQDQ, where 128-bit PCLMULQDQ measured
//   no faster than ISA-L) take ISA-L.
// - Pure functions; host only.
//
// Why not ISA-L here: ISA-L's folding CRC is built for long buffers; on 128 bytes it is one
// dependent chain (fold 8 lanes into one, then reduce) of about as many 64-bit carry-less
// products as this needs. A record has a fixed length, so each of its sixteen 64-bit words
// is multiplied by its own constant x^(distance to the end) mod P independently of the
// others: four 512-bit instructions, one XOR tree, then one reduction. Measured on the AMD
// EPYC (Zen 4) of BENCHMARKS.md: 5.3 ns per record against ISA-L's 11.4 ns.
//
// The arithmetic (zlib's reflected CRC32, P = 0x104C11DB7, message M of N = 1024 bits with
// its first 32 bits inverted for the initial value 0xFFFFFFFF):
//   CRC_raw = M(x) * x^32 mod P,  crc = ~CRC_raw.
// In the reflected bit order a little-endian 64-bit word q_j (bytes 8j..8j+7) stands for
// q_j(x) * x^(N - 64 - 64j) with bit i of q_j the coefficient of x^(63-i). So
//   CRC_raw = (sum_j q_j(x) * K_j) mod P,   K_j = x^(N - 32 - 64j) mod P  (j = 0..15),
// and with K_j stored reflected in 32 bits each product clmul(q_j, K_j) holds bit t as the
// coefficient of x^(94-t): the sum S has degree <= 94. Its top 32 coefficients A (bits 0..31)
// fold down with one more product by x^63 mod P, leaving T of degree <= 62; T = H*x^32 + L,
// and H*x^32 mod P comes from Barrett reduction with mu = floor(x^64 / P) (two products).
#pragma once

#include <pkrt/crc32.hpp>

#include <array>
#include <cstddef>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the merge source of unmasked
// operations and then warn that it is uninitialized (a false positive of the compiler).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#define PKRT_RECORD_CRC_CLMUL 1
#else
#define PKRT_RECORD_CRC_CLMUL 0
#endif

namespace pkrt::detail {

inline constexpr std::uint64_t kCrc32Poly = 0x104C11DB7;  // P(x), degree 32, normal bit order

// x^n mod P, normal bit order (bit d: coefficient of x^d).
constexpr std::uint64_t xpow_mod_p(unsigned n) {
  std::uint64_t r = 1;
  for (unsigned i = 0; i < n; ++i) {
    r <<= 1;
    if ((r >> 32) & 1) r ^= kCrc32Poly;
  }
  return r;
}

// floor(x^64 / P), degree 32, normal bit order.
constexpr std::uint64_t x64_div_p() {
  // Long division of x^64: the remainder's top bit decides each quotient bit.
  std::uint64_t quotient = 0;
  std::uint64_t rem = 0;  // degree < 32 between steps
  for (int bit = 64; bit >= 0; --bit) {
    rem = (rem << 1) | (bit == 64 ? 1 : 0);
    if ((rem >> 32) & 1) {
      rem ^= kCrc32Poly;
      quotient |= std::uint64_t{1} << bit;
    }
  }
  return quotient;
}

constexpr std::uint64_t reflect_bits(std::uint64_t v, unsigned bits) {
  std::uint64_t r = 0;
  for (unsigned i = 0; i < bits; ++i)
    if ((v >> i) & 1) r |= std::uint64_t{1} << (bits - 1 - i);
  return r;
}

struct RecordCrcConstants {
  std::array<std::uint64_t, 16> word;  // K_j reflected in 32 bits
  std::uint64_t fold63;                // x^63 mod P, reflected in 32 bits
  std::uint64_t mu;                    // floor(x^64 / P), reflected in 33 bits
  std::uint64_t poly;                  // P, reflected in 33 bits
};

constexpr RecordCrcConstants make_record_crc_constants() {
  RecordCrcConstants c{};
  for (unsigned j = 0; j < 16; ++j) c.word[j] = reflect_bits(xpow_mod_p(1024 - 32 - 64 * j), 32);
  c.fold63 = reflect_bits(xpow_mod_p(63), 32);
  c.mu = reflect_bits(x64_div_p(), 33);
  c.poly = reflect_bits(kCrc32Poly, 33);
  return c;
}

inline constexpr RecordCrcConstants kRecordCrc = make_record_crc_constants();
// Known values (x^32 mod P is zlib's reflected polynomial 0xEDB88320): a wrong derivation
// fails to compile instead of writing bad CRCs.
static_assert(kRecordCrc.word[15] == 0xEDB88320 && kRecordCrc.poly == 0x1DB710641 &&
              kRecordCrc.mu == 0x1F7011641);

#if PKRT_RECORD_CRC_CLMUL
// Reduces S (the XOR of the sixteen word products, degree <= 94) to the record's CRC.
__attribute__((target("pclmul,sse4.1"))) inline std::uint32_t record_crc_reduce(__m128i sum) {
  // S = A(x) * x^63 + rest: fold A (bits 0..31) with x^63 mod P; T has degree <= 62.
  const __m128i top = _mm_and_si128(sum, _mm_cvtsi32_si128(-1));
  const __m128i folded =
      _mm_clmulepi64_si128(top, _mm_cvtsi64_si128(static_cast<long long>(kRecordCrc.fold63)), 0x00);
  const auto t = static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_xor_si128(_mm_srli_si128(sum, 4), folded)));
  // T = H * x^32 + L: L is already the reflected 32-bit remainder part; H * x^32 mod P by
  // Barrett: q = floor(H * mu / x^32), H * x^32 mod P = (q * P) mod x^32.
  const auto low = static_cast<std::uint32_t>(t >> 31);
  const std::uint64_t high = (t << 1) & 0xFFFFFFFFu;
  const __m128i q = _mm_and_si128(
      _mm_clmulepi64_si128(_mm_cvtsi64_si128(static_cast<long long>(high)),
                           _mm_cvtsi64_si128(static_cast<long long>(kRecordCrc.mu)), 0x00),
      _mm_cvtsi32_si128(-1));
  const __m128i qp = _mm_clmulepi64_si128(q, _mm_cvtsi64_si128(static_cast<long long>(kRecordCrc.poly)), 0x00);
  const auto remainder = static_cast<std::uint32_t>(static_cast<std::uint64_t>(_mm_cvtsi128_si64(qp)) >> 32);
  return ~(remainder ^ low);
}

// The sixteen word products four at a time (AVX-512 + VPCLMULQDQ). `front` is bytes 0..63 of
// the record, `back` bytes 64..127, as loaded (the CRC field must be zero in them).
__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1"))) inline std::uint32_t record_crc_zmm(__m512i front,
                                                                                         __m512i back) {
  // The initial value 0xFFFFFFFF inverts the first 32 message bits.
  front = _mm512_xor_si512(front, _mm512_maskz_set1_epi32(__mmask16{1}, -1));
  const __m512i k_front = _mm512_loadu_si512(kRecordCrc.word.data());
  const __m512i k_back = _mm512_loadu_si512(kRecordCrc.word.data() + 8);
  // Lane i of each product: low (0x00) or high (0x11) word of 16-byte lane i times its K.
  const __m512i s = _mm512_xor_si512(
      _mm512_xor_si512(_mm512_clmulepi64_epi128(front, k_front, 0x00), _mm512_clmulepi64_epi128(front, k_front, 0x11)),
      _mm512_xor_si512(_mm512_clmulepi64_epi128(back, k_back, 0x00), _mm512_clmulepi64_epi128(back, k_back, 0x11)));
  // XOR the four 128-bit lanes into lane 0 (lane shuffles: GCC 12 warns on the extracts).
  const __m512i pairs = _mm512_xor_si512(s, _mm512_shuffle_i64x2(s, s, 0x4E));        // lanes 2,3,0,1
  const __m512i all = _mm512_xor_si512(pairs, _mm512_shuffle_i64x2(pairs, pairs, 0xB1));  // lanes 1,0,3,2
  return record_crc_reduce(_mm512_castsi512_si128(all));
}

// The same with 256-bit registers (AVX2 + VPCLMULQDQ: CPUs without AVX-512).
__attribute__((target("avx2,vpclmulqdq,pclmul,sse4.1"))) inline std::uint32_t record_crc_ymm(const void* data) {
  const auto* p = static_cast<const __m256i*>(data);
  __m256i sum = _mm256_setzero_si256();
  for (int i = 0; i < 4; ++i) {
    __m256i part = _mm256_loadu_si256(p + i);
    if (i == 0) part = _mm256_xor_si256(part, _mm256_zextsi128_si256(_mm_cvtsi32_si128(-1)));
    const __m256i k = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kRecordCrc.word.data() + 4 * i));
    sum = _mm256_xor_si256(sum, _mm256_xor_si256(_mm256_clmulepi64_epi128(part, k, 0x00),
                                                 _mm256_clmulepi64_epi128(part, k, 0x11)));
  }
  return record_crc_reduce(_mm_xor_si128(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1)));
}

__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.1"))) inline std::uint32_t record_crc_zmm(const void* data) {
  const auto* p = static_cast<const char*>(data);
  return record_crc_zmm(_mm512_loadu_si512(p), _mm512_loadu_si512(p + 64));
}

enum class RecordCrcPath { kIsal, kYmm, kZmm };

// The widest carry-less path this CPU and OS support (checked once; __builtin_cpu_supports
// also checks that the OS saves the vector registers).
inline RecordCrcPath record_crc_path() {
  static const RecordCrcPath path = [] {
    if (!__builtin_cpu_supports("vpclmulqdq") || !__builtin_cpu_supports("pclmul") ||
        !__builtin_cpu_supports("sse4.1"))
      return RecordCrcPath::kIsal;
    if (__builtin_cpu_supports("avx512f")) return RecordCrcPath::kZmm;
    if (__builtin_cpu_supports("avx2")) return RecordCrcPath::kYmm;
    return RecordCrcPath::kIsal;
  }();
  return path;
}
#endif

// CRC32 of exactly 128 bytes: the carry-less path where the CPU has it, ISA-L otherwise.
inline std::uint32_t crc32_fixed128(const void* data) {
#if PKRT_RECORD_CRC_CLMUL
  switch (record_crc_path()) {
    case RecordCrcPath::kZmm: return record_crc_zmm(data);
    case RecordCrcPath::kYmm: return record_crc_ymm(data);
    case RecordCrcPath::kIsal: break;
  }
#endif
  return crc32(data, 128);
}

}  // namespace pkrt::detail
