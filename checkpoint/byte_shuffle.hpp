// checkpoint/byte_shuffle.hpp: the shuffle filters of the checkpoint format.
// Filter 1, byte shuffle: n bytes of k-byte elements become k planes (plane j = byte j of
// every element); the n mod k tail is copied as is. The exponent and high mantissa planes of
// a float field are then long runs that zstd compresses well.
// Filter 2, word delta + byte shuffle: each k-byte little-endian element is first replaced
// by its difference from the previous one (modulo 2^(8k); the first from 0). Neighbouring
// cells of a smooth field differ only in their low bits, so the low planes, which a plain
// shuffle leaves noisy, compress too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pkrt {

inline void byte_shuffle(const std::byte* src, std::byte* dst, std::size_t n, std::size_t k) {
  const std::size_t elems = n / k;
  for (std::size_t j = 0; j < k; ++j)
    for (std::size_t i = 0; i < elems; ++i) dst[j * elems + i] = src[i * k + j];
  for (std::size_t i = elems * k; i < n; ++i) dst[i] = src[i];
}

inline void byte_unshuffle(const std::byte* src, std::byte* dst, std::size_t n, std::size_t k) {
  const std::size_t elems = n / k;
  for (std::size_t j = 0; j < k; ++j)
    for (std::size_t i = 0; i < elems; ++i) dst[i * k + j] = src[j * elems + i];
  for (std::size_t i = elems * k; i < n; ++i) dst[i] = src[i];
}

namespace detail {

inline std::uint64_t load_word(const std::byte* p, std::size_t k) {
  std::uint64_t w = 0;
  std::memcpy(&w, p, k);  // little-endian hosts only (checked in checkpoint_format.cpp)
  return w;
}

inline std::uint64_t word_mask(std::size_t k) { return k == 8 ? ~std::uint64_t{0} : (std::uint64_t{1} << (8 * k)) - 1; }

}  // namespace detail

// k is 4 or 8.
inline void delta_byte_shuffle(const std::byte* src, std::byte* dst, std::size_t n, std::size_t k) {
  const std::size_t elems = n / k;
  const std::uint64_t mask = detail::word_mask(k);
  std::uint64_t prev = 0;
  for (std::size_t i = 0; i < elems; ++i) {
    const std::uint64_t w = detail::load_word(src + i * k, k);
    const std::uint64_t d = (w - prev) & mask;
    prev = w;
    for (std::size_t j = 0; j < k; ++j) dst[j * elems + i] = static_cast<std::byte>(d >> (8 * j));
  }
  for (std::size_t i = elems * k; i < n; ++i) dst[i] = src[i];
}

inline void delta_byte_unshuffle(const std::byte* src, std::byte* dst, std::size_t n, std::size_t k) {
  const std::size_t elems = n / k;
  const std::uint64_t mask = detail::word_mask(k);
  std::uint64_t prev = 0;
  for (std::size_t i = 0; i < elems; ++i) {
    std::uint64_t d = 0;
    for (std::size_t j = 0; j < k; ++j) d |= std::uint64_t{static_cast<unsigned char>(src[j * elems + i])} << (8 * j);
    prev = (prev + d) & mask;
    std::memcpy(dst + i * k, &prev, k);
  }
  for (std::size_t i = elems * k; i < n; ++i) dst[i] = src[i];
}

}  // namespace pkrt
