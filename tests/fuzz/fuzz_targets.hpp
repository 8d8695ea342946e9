// tests/fuzz/fuzz_targets.hpp: the bodies of pkrt's fuzz targets, shared by the libFuzzer
// binaries (scripts/fuzz.sh) and the regression test that replays every corpus and crash
// file in every build (tests/fuzz_regression_test.cpp).
#pragma once

#include <pkrt/checkpoint.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/global_checkpoint.hpp>
#include <pkrt/k2k_log.hpp>
#include <pkrt/replay_log.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace pkrt::fuzz {

// Parses and, when the structure is valid, decodes a checkpoint file image. Must never
// crash, hang or read out of bounds, whatever the bytes.
inline void checkpoint_reader(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  auto parsed = parse_checkpoint(file, "fuzz.pkck");
  if (!parsed.ok()) return;
  // The reader's promise: no chunk declares more than its stored bytes can decode to (a zstd
  // block takes at least 3 bytes for at most 128 KiB), so a full checkpoint's state is bounded
  // by the input's size (abort otherwise, so the fuzzer reports it).
  if (!parsed->info.delta && parsed->info.state_bytes > size / 3 * (std::uint64_t{128} << 10)) std::abort();
  // A valid structure may still describe a state far larger than the input (zstd expands);
  // decode only states a test machine can hold.
  if (parsed->info.state_bytes > (std::uint64_t{64} << 20)) return;
  std::vector<std::byte> state(parsed->info.state_bytes);
  if (!decode_chunks(parsed.value(), file, "fuzz.pkck", state).ok()) return;
  // A queued-commands member's state is itself parsed; what it accepts keeps its promises.
  if (parsed->info.actor == kQueuedCommandsActor) {
    auto commands = decode_queued_commands(state, parsed->info.num_actors, "fuzz.pkck");
    if (!commands.ok()) return;
    if (commands->size() * kQueuedCommandBytes != state.size()) std::abort();
    for (const Command& c : commands.value())
      if (c.actor >= parsed->info.num_actors || c.opcode < kUserOpcodeBase) std::abort();
    if (encode_queued_commands(commands.value()) != state) std::abort();
  }
}

// Parses a replay log image. Must never crash, hang, read out of bounds or allocate beyond
// the input's size; what it returns must keep the reader's promises (abort otherwise, so
// the fuzzer reports it).
inline void replay_log_reader(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  auto log = parse_replay_log(file);
  if (!log.ok()) return;
  const ReplayLog& l = log.value();
  if (l.records.size() > l.capacity || l.records.size() * kReplayRecordBytes > size)
    std::abort();
  for (std::size_t i = 0; i < l.records.size(); ++i) {
    const ReplayRecord& r = l.records[i];
    if (r.seq != l.first_seq + i || r.seq >= l.written || r.crc != replay_record_crc(r))
      std::abort();
  }
  const bool all_read = l.first_seq + l.records.size() == l.written;
  if (!all_read && l.stop_note.empty()) std::abort();  // a short log always says why
}

namespace detail {

// Checks what parse_checkpoint_manifest promises of a manifest it accepted (abort otherwise):
// one member per actor, in actor order, then one for the global region when the fingerprint
// has one (version 2), and encode_checkpoint_manifest writes the very same
// bytes back (reserved fields must be zero, so nothing the encoder does not write is accepted).
inline void check_manifest(std::span<const std::byte> file) {
  auto parsed = parse_checkpoint_manifest(file, "fuzz.pkset");
  if (!parsed.ok()) return;
  const CheckpointManifest& m = parsed.value();
  const bool global = m.fingerprint.global_bytes > 0;
  if (global && m.version < 2) std::abort();
  if (m.members.size() != std::size_t{m.fingerprint.num_actors} + (global ? 1 : 0)) std::abort();
  for (std::size_t i = 0; i < m.members.size(); ++i)
    if (m.members[i].actor != (i < m.fingerprint.num_actors ? i : kGlobalRegionActor)) std::abort();
  const std::vector<std::byte> again = encode_checkpoint_manifest(m);
  if (again.size() != file.size() || !std::equal(again.begin(), again.end(), file.begin())) std::abort();
}

}  // namespace detail

namespace detail {

// Runs `check` on the input as given, then on a copy whose total-size field (bytes 12..15) and
// trailing CRC32 are made to match it: random bytes almost never carry a valid CRC, and this
// lets the mutations reach the field checks behind it. Both manifest formats put them there.
inline void check_as_given_and_sealed(const std::uint8_t* data, std::size_t size,
                                      void (*check)(std::span<const std::byte>)) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  check(file);
  if (size < 16 + 4 || size > (std::size_t{1} << 20)) return;
  std::vector<std::byte> fixed(file.begin(), file.end());
  const auto total = static_cast<std::uint32_t>(size);
  for (int i = 0; i < 4; ++i) fixed[12 + i] = static_cast<std::byte>(total >> (8 * i));
  const std::uint32_t crc = crc32(fixed.data(), fixed.size() - 4);
  for (int i = 0; i < 4; ++i) fixed[size - 4 + i] = static_cast<std::byte>(crc >> (8 * i));
  check(fixed);
}

}  // namespace detail

// Parses a checkpoint set manifest (pkrt/checkpoint_set.hpp). Must never crash, hang or
// allocate beyond the input's size; an accepted manifest must keep the parser's promises
// (detail::check_manifest), as given and sealed (detail::check_as_given_and_sealed).
inline void checkpoint_manifest_reader(const std::uint8_t* data, std::size_t size) {
  detail::check_as_given_and_sealed(data, size, &detail::check_manifest);
}

namespace detail {

// What parse_global_manifest promises of a manifest it accepted (abort otherwise): every rank
// ran at least one actor, the owner table names ranks that exist and matches their counts,
// and encoding it again gives the very same bytes.
inline void check_global_manifest(std::span<const std::byte> file) {
  auto parsed = parse_global_manifest(file, "fuzz.pkglobal");
  if (!parsed.ok()) return;
  const GlobalCheckpointManifest& g = parsed.value();
  if (g.owner.size() != g.global_actors || g.ranks.empty() || g.ranks.size() > g.global_actors) std::abort();
  std::vector<std::uint32_t> count(g.ranks.size(), 0);
  for (std::uint32_t o : g.owner) {
    if (o >= g.ranks.size()) std::abort();
    ++count[o];
  }
  for (std::size_t r = 0; r < g.ranks.size(); ++r)
    if (count[r] != g.ranks[r].actors || count[r] == 0 || g.ranks[r].manifest.find("..") != std::string::npos) std::abort();
  const std::vector<std::byte> again = encode_global_manifest(g);
  if (again.size() != file.size() || !std::equal(again.begin(), again.end(), file.begin())) std::abort();
}

}  // namespace detail

// Parses a global checkpoint manifest (pkrt/global_checkpoint.hpp); same approach as the set
// manifest's target: as given, then with its length field and CRC made to match.
inline void global_manifest_reader(const std::uint8_t* data, std::size_t size) {
  detail::check_as_given_and_sealed(data, size, &detail::check_global_manifest);
}

// Parses an inbound K2K log (pkrt/k2k_log.hpp). Must never crash, hang or allocate beyond
// the input's size; what it accepts keeps the reader's promises: consecutive epochs, each
// record's messages adding up to its payload, ids ascending below the actor count.
inline void k2k_log_reader(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  auto log = parse_k2k_log(file, "fuzz.k2k");
  if (!log.ok()) return;
  const K2KLog& l = log.value();
  if (l.shard.global_ids.empty() || l.shard.global_ids.size() >= l.shard.global_actors) std::abort();
  for (std::size_t i = 0; i < l.shard.global_ids.size(); ++i)
    if (l.shard.global_ids[i] >= l.shard.global_actors || (i > 0 && l.shard.global_ids[i] <= l.shard.global_ids[i - 1]))
      std::abort();
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < l.epochs.size(); ++i) {
    if (i > 0 && l.epochs[i].epoch != l.epochs[i - 1].epoch + 1) std::abort();
    std::uint64_t sum = 0;
    for (const K2KTransfer& t : l.epochs[i].messages) sum += t.bytes;
    if (sum != l.epochs[i].payload.size()) std::abort();
    bytes += l.epochs[i].payload.size() + l.epochs[i].messages.size() * sizeof(K2KTransfer);
  }
  if (bytes > size) std::abort();
}

}  // namespace pkrt::fuzz
