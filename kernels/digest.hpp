// kernels/digest.hpp: periodic state digests, the replay's view of actor state.
//
// Every digest_period epochs (RuntimeOptions::digest_period), at the end of the epoch's
// step, each block digests each of its actors: the CRC32 (zlib) of the actor's arena
// (State + named regions), published as kOpDigest{crc, bytes} with the epoch. Only the
// owning actor writes its arena, and it has finished the epoch, so no barrier is needed.
// The K2K inbox is not digested: what it holds shows up in the state one epoch later.
//
// The CRC does not depend on the launch shape: each thread takes one contiguous slice of
// digest_slice_bytes (crc::crc32_part) and the slices' terms are folded by BlockReduce
// (block_crc32 in kernels/block_crc32.hpp). kBlockThreads: the launch's block size
// (kernels/block_collectives.hpp). A digest is not activity: an idle event-driven grid stays
// idle.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/kernels/block_collectives.hpp>
#include <pkrt/kernels/block_crc32.hpp>
#include <pkrt/kernels/crc32.hpp>
#include <pkrt/slot.hpp>

#include <cstdint>

namespace pkrt::detail {

// Bytes per thread slice: `bytes` split evenly over `threads`, rounded up to 64 bytes (how
// block_crc32 splits an arena: crc::crc32_part_bytes).
PKRT_HD constexpr std::uint64_t digest_slice_bytes(std::uint64_t bytes, std::uint32_t threads) {
  return crc::crc32_part_bytes(bytes, threads);
}

// Digests actors [first, last) at the end of bs.epoch when it is due. Call from all threads.
template <std::uint32_t kBlockThreads>
PKRT_HD void serve_digests(BlockState& bs, std::uint32_t first, std::uint32_t last) {
  const KernelArgs& args = *bs.args;
  if (args.digest_period == 0 || bs.epoch % args.digest_period != 0) return;
  const crc::Crc32Slices& tables = block_crc32_tables();
  for (std::uint32_t a = first; a < last; ++a) {
    const std::uint32_t crc = block_crc32<kBlockThreads>(tables, args.state + args.state_stride * a, args.state_stride);
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
