// checkpoint/byte_shuffle.hpp: the byte-shuffle filter of the checkpoint format: n bytes
// of k-byte elements become k planes (plane j = byte j of every element); the n mod k tail
// is copied as is. Makes float fields about twice as compressible for zstd.
#pragma once

#include <cstddef>
#include <cstdint>

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

}  // namespace pkrt
