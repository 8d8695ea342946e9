// kernels/digest.hpp: periodic state digests, the replay's view of actor state.
//
// Every digest_period epochs (RuntimeOptions::digest_period), at the end of the epoch's
// step, each block digests each of its actors: the CRC32 (zlib) of the actor's arena
// (State + named regions), published as kOpDigest{crc, bytes} with the epoch. Only the
// owning actor writes its arena, and it has finished the epoch, so no barrier is needed.
// The K2K inbox is not digested: what it holds shows up in the state one epoch later.
//
// The CRC does not depend on the launch shape: each thread takes one contiguous slice
// (digest_slice_bytes), and the leader combines the slice CRCs in order (crc32_combine).
// A digest is not activity: an idle event-driven grid stays idle.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/kernels/crc32.hpp>
#include <pkrt/slot.hpp>

#include <cstdint>

namespace pkrt::detail {

// Bytes per thread slice: `bytes` split evenly over `threads`, rounded up to 64 bytes.
PKRT_HD constexpr std::uint64_t digest_slice_bytes(std::uint64_t bytes, std::uint32_t threads) {
  const std::uint64_t even = (bytes + threads - 1) / threads;
  return (even + 63) / 64 * 64;
}

// CRC32 of `bytes` bytes with every thread of the block; the result is valid on the leader.
PKRT_HD inline std::uint32_t block_crc32(const std::byte* data, std::uint64_t bytes) {
  const std::uint32_t rank = thread_rank(), n = threads_per_block();
  const std::uint64_t slice = digest_slice_bytes(bytes, n);
  const std::uint64_t begin = rank * slice < bytes ? rank * slice : bytes;
  const std::uint64_t end = bytes - begin < slice ? bytes : begin + slice;
  std::uint32_t* partial = block_scratch_words();
  partial[rank] = crc::crc32_update(0, data + begin, end - begin);
  sync_block();
  std::uint32_t crc = 0;
  if (rank == 0) {
    for (std::uint32_t t = 0; t < n; ++t) {
      const std::uint64_t b = t * slice < bytes ? t * slice : bytes;
      const std::uint64_t len = (bytes - b < slice ? bytes : b + slice) - b;
      crc = crc::crc32_combine(crc, partial[t], len);
    }
  }
  sync_block();  // nobody overwrites the scratch before the leader has combined it
  return crc;
}

// Digests actors [first, last) at the end of bs.epoch when it is due. Call from all threads.
PKRT_HD inline void serve_digests(BlockState& bs, std::uint32_t first, std::uint32_t last) {
  const KernelArgs& args = *bs.args;
  if (args.digest_period == 0 || bs.epoch % args.digest_period != 0) return;
  for (std::uint32_t a = first; a < last; ++a) {
    const std::uint32_t crc = block_crc32(args.state + args.state_stride * a, args.state_stride);
    if (thread_rank() == 0) {
      DigestData digest{};
      digest.crc = crc;
      digest.bytes = args.state_stride;
      const bool was_active = bs.active;
      publish_k2h(bs, kOpDigest, kFlagNone, a, make_envelope(bs.epoch, 0, &digest, sizeof digest));
      bs.active = was_active;
    }
  }
}

}  // namespace pkrt::detail
