// kernels/block_crc32.hpp: CRC32 by every thread of a block, one source for both backends:
// the slice tables staged in shared memory, one range split over the threads (digests), and
// the chunk CRCs of a snapshot image, each chunk split over the threads.
//
// Contract
// - Call from every thread of the block with the launch's block size as kBlockThreads
//   (kernels/block_collectives.hpp); the CRCs are valid on thread 0.
// - Values equal crc32_update(0, range) for every block size: thread t CRCs the contiguous
//   part crc32_part(bytes, threads, t) and the XOR of the parts' terms (crc32_part_term) is the
//   range's CRC (crc32_of_range_split is the same split run by one thread).
// - Host pass: one thread, whose part is the whole range, CRC'd by ISA-L.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/kernels/block_collectives.hpp>
#include <pkrt/kernels/crc32.hpp>

#include <cstddef>
#include <cstdint>

namespace pkrt::detail {

// The slice tables this block's CRCs read. Device: copied from __constant__ into shared
// memory by all threads (each lane of a slice-by-8 step looks up its own index: one
// shared-memory access per warp, where the constant cache serialises one access per distinct
// address). Host: the tables themselves. Call from every thread (barriers inside) before a
// run of CRCs: 8 KiB of shared memory per block, refilled (8 KiB read) per call.
PKRT_HD inline const crc::Crc32Slices& block_crc32_tables() {
#if PKRT_DEVICE_PASS
  __shared__ __align__(16) crc::Crc32Slices tables;
  constexpr std::uint32_t kWords = sizeof(crc::Crc32Slices) / sizeof(uint4);
  const auto* src = reinterpret_cast<const uint4*>(&crc::d_crc32_tables.slice);
  auto* dst = reinterpret_cast<uint4*>(&tables);
  sync_block();  // no thread still reads the previous copy while it is rewritten
  for (std::uint32_t i = thread_rank(); i < kWords; i += threads_per_block()) dst[i] = src[i];
  sync_block();  // the copy is complete before any thread looks up
  return tables;
#else
  return crc::h_crc32_tables.slice;
#endif
}

// CRC32 of [data, data + bytes), on thread 0.
template <std::uint32_t kBlockThreads>
PKRT_HD std::uint32_t block_crc32(const crc::Crc32Slices& tables, const std::byte* data, std::uint64_t bytes) {
  const crc::Crc32Part part = crc::crc32_part(bytes, threads_per_block(), thread_rank());
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  return block_reduce<kBlockThreads>(crc::crc32_part_term(tables, part, p), crc::Crc32Xor{});
}

// chunk_crcs[c] = CRC32 of chunk c of [data, data + bytes), written by thread 0; sync the
// block before other threads read them. Every chunk is split over all threads, so a block
// runs at its full width whatever the chunk count (an image under one chunk included).
template <std::uint32_t kBlockThreads>
PKRT_HD void block_crc32_chunks(const crc::Crc32Slices& tables, const std::byte* data, std::uint64_t bytes,
                                std::uint64_t chunk_bytes, std::uint32_t* chunk_crcs) {
  const std::uint32_t rank = thread_rank(), threads = threads_per_block();
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  // Every full chunk is split alike: its shift factor is computed once.
  const crc::Crc32Part full = crc::crc32_part(chunk_bytes, threads, rank);
  const std::uint64_t chunks = crc::chunk_count(bytes, chunk_bytes);
  for (std::uint64_t c = 0; c < chunks; ++c) {
    const std::uint64_t off = c * chunk_bytes;
    const std::uint64_t n = bytes - off < chunk_bytes ? bytes - off : chunk_bytes;
    const crc::Crc32Part part = n == chunk_bytes ? full : crc::crc32_part(n, threads, rank);
    const std::uint32_t crc = block_reduce<kBlockThreads>(crc::crc32_part_term(tables, part, p + off), crc::Crc32Xor{});
    if (rank == 0) chunk_crcs[c] = crc;
  }
}

}  // namespace pkrt::detail
