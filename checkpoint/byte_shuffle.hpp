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

// Element sizes are compile-time constants here so that the word loads, the subtraction and
// the plane stores compile to plain register code (a runtime size costs ~7x).
template <class Word>
void delta_byte_shuffle_words(const std::byte* src, std::byte* dst, std::size_t elems) {
  Word prev = 0;
  for (std::size_t i = 0; i < elems; ++i) {
    Word w;
    std::memcpy(&w, src + i * sizeof(Word), sizeof(Word));  // little-endian hosts only
    const Word d = static_cast<Word>(w - prev);              // modulo 2^(8 * sizeof(Word))
    prev = w;
    for (std::size_t j = 0; j < sizeof(Word); ++j) dst[j * elems + i] = static_cast<std::byte>(d >> (8 * j));
  }
}

template <class Word>
void delta_byte_unshuffle_words(const std::byte* src, std::byte* dst, std::size_t elems) {
  Word prev = 0;
  for (std::size_t i = 0; i < elems; ++i) {
    Word d = 0;
    for (std::size_t j = 0; j < sizeof(Word); ++j)
      d = static_cast<Word>(d | (static_cast<Word>(static_cast<unsigned char>(src[j * elems + i])) << (8 * j)));
    prev = static_cast<Word>(prev + d);
    std::memcpy(dst + i * sizeof(Word), &prev, sizeof(Word));
  }
}

}  // namespace detail

// k is 4 or 8.
inline void delta_byte_shuffle(const std::byte* src, std::byte* dst, std::size_t n, std::size_t k) {
  const std::size_t elems = n / k;
  if (k == 8) {
    detail::delta_byte_shuffle_words<std::uint64_t>(src, dst, elems);
  } else {
    detail::delta_byte_shuffle_words<std::uint32_t>(src, dst, elems);
  }
  for (std::size_t i = elems * k; i < n; ++i) dst[i] = src[i];
}

inline void delta_byte_unshuffle(const std::byte* src, std::byte* dst, std::size_t n, std::size_t k) {
  const std::size_t elems = n / k;
  if (k == 8) {
    detail::delta_byte_unshuffle_words<std::uint64_t>(src, dst, elems);
  } else {
    detail::delta_byte_unshuffle_words<std::uint32_t>(src, dst, elems);
  }
  for (std::size_t i = elems * k; i < n; ++i) dst[i] = src[i];
}

}  // namespace pkrt
