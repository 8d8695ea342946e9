// checkpoint/global_checkpoint.cpp: the global manifest of a multi-rank checkpoint (see
// pkrt/global_checkpoint.hpp; layout in docs/scale-out.md, "Coordinated checkpoints").
//
// Layout (little-endian):
//   "PKGLOBAL"  u16 version  u16 reserved (0)  u32 total bytes
//   u64 epoch  u64 sequence  u32 global actors  u32 ranks  u32 K2K delay  u32 chunk bytes
//   u64 image bytes  u32 app length  u32 params length  u32 partition length  u32 reserved (0)
//   app, params, partition bytes
//   per rank: u32 manifest CRC, u32 actors, u32 name length, name bytes
//   per global actor: u32 owner rank
//   u32 CRC32 of everything before it
#include <pkrt/crc32.hpp>
#include <pkrt/global_checkpoint.hpp>

#include "checkpoint/byte_io.hpp"

#include <cstdio>
#include <cstring>

namespace pkrt {
namespace {

using detail::ByteReader;
using detail::ByteWriter;

constexpr char kMagic[8] = {'P', 'K', 'G', 'L', 'O', 'B', 'A', 'L'};
constexpr std::size_t kFixedBytes = 8 + 2 + 2 + 4 + 8 + 8 + 4 * 4 + 8 + 4 * 4;
constexpr std::uint32_t kMaxName = 255;
constexpr std::uint32_t kMaxParams = 64 * 1024;
constexpr std::uint32_t kMaxPartitionText = 4096;
constexpr std::uint32_t kMaxActors = 1u << 24;
constexpr std::uint32_t kMaxRankName = 512;
constexpr std::size_t kMinRankBytes = 12;

Status corrupt(const std::string& name, const std::string& what) {
  return Status(StatusCode::kCorruptData,
                "global checkpoint manifest '" + name + "': " + what +
                    ". Fix: this global checkpoint cannot be used; restore another one (`pkrt checkpoint list DIR` "
                    "shows them)");
}

void put_text(ByteWriter& w, const std::string& t) { w.bytes(t.data(), t.size()); }

// A rank's manifest path: "rank-NNNNN/<name>.pkset", nothing that climbs out or hides.
bool rank_manifest_ok(const std::string& p) {
  const std::string suffix = ".pkset";
  const auto slash = p.find('/');
  return p.rfind("rank-", 0) == 0 && slash != std::string::npos && p.find('/', slash + 1) == std::string::npos &&
         p.find("..") == std::string::npos && p.find('\0') == std::string::npos && slash + 1 < p.size() &&
         p[slash + 1] != '.' && p.size() > suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::byte> encode_global_manifest(const GlobalCheckpointManifest& m) {
  std::vector<std::byte> out;
  ByteWriter w(out);
  w.bytes(kMagic, sizeof kMagic);
  w.put(kGlobalManifestVersion);
  w.put(std::uint16_t{0});
  w.put(std::uint32_t{0});  // total, patched below
  w.put(m.epoch);
  w.put(m.sequence);
  w.put(m.global_actors);
  w.put(static_cast<std::uint32_t>(m.ranks.size()));
  w.put(m.k2k_delay);
  w.put(m.chunk_bytes);
  w.put(m.image_bytes);
  w.put(static_cast<std::uint32_t>(m.app.size()));
  w.put(static_cast<std::uint32_t>(m.params.size()));
  w.put(static_cast<std::uint32_t>(m.partition.size()));
  w.put(std::uint32_t{0});
  put_text(w, m.app);
  w.bytes(m.params.data(), m.params.size());
  put_text(w, m.partition);
  for (const GlobalCheckpointRank& r : m.ranks) {
    w.put(r.manifest_crc);
    w.put(r.actors);
    w.put(static_cast<std::uint32_t>(r.manifest.size()));
    put_text(w, r.manifest);
  }
  for (std::uint32_t o : m.owner) w.put(o);
  const auto total = static_cast<std::uint32_t>(out.size() + 4);
  std::memcpy(out.data() + 12, &total, sizeof total);
  w.put(crc32(out.data(), out.size()));
  return out;
}

Result<GlobalCheckpointManifest> parse_global_manifest(std::span<const std::byte> file, const std::string& name) {
  if (file.size() < kFixedBytes + 4) return corrupt(name, "file is " + std::to_string(file.size()) + " bytes, shorter than any");
  if (file.size() > (std::size_t{1} << 30)) return corrupt(name, "file is larger than any global manifest (1 GiB)");
  if (std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) return corrupt(name, "bad magic (not a pkrt global manifest)");
  ByteReader r(file.subspan(sizeof kMagic, file.size() - sizeof kMagic - 4));
  GlobalCheckpointManifest m;
  m.version = r.get<std::uint16_t>();
  if (m.version != kGlobalManifestVersion)
    return corrupt(name, "version " + std::to_string(m.version) + " is not one this build reads (" +
                             std::to_string(kGlobalManifestVersion) + ")");
  if (r.get<std::uint16_t>() != 0) return corrupt(name, "reserved field after the version is not zero");
  const auto total = r.get<std::uint32_t>();
  if (total != file.size())
    return corrupt(name, "declares " + std::to_string(total) + " bytes but holds " + std::to_string(file.size()) +
                             " (torn or truncated)");
  std::uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, file.data() + file.size() - 4, sizeof stored_crc);
  if (crc32(file.data(), file.size() - 4) != stored_crc) return corrupt(name, "CRC mismatch (damaged)");
  m.epoch = r.get<std::uint64_t>();
  m.sequence = r.get<std::uint64_t>();
  m.global_actors = r.get<std::uint32_t>();
  const auto ranks = r.get<std::uint32_t>();
  m.k2k_delay = r.get<std::uint32_t>();
  m.chunk_bytes = r.get<std::uint32_t>();
  m.image_bytes = r.get<std::uint64_t>();
  const auto app = r.get<std::uint32_t>();
  const auto params = r.get<std::uint32_t>();
  const auto partition = r.get<std::uint32_t>();
  const auto reserved = r.get<std::uint32_t>();
  if (r.failed()) return corrupt(name, "truncated fixed fields");
  if (reserved != 0) return corrupt(name, "reserved field after the partition length is not zero");
  if (m.global_actors == 0 || m.global_actors > kMaxActors)
    return corrupt(name, std::to_string(m.global_actors) + " actors (1 to 2^24)");
  if (ranks == 0 || ranks > m.global_actors)
    return corrupt(name, std::to_string(ranks) + " ranks for " + std::to_string(m.global_actors) + " actors");
  if (m.k2k_delay == 0 || m.k2k_delay > 64) return corrupt(name, "K2K delay " + std::to_string(m.k2k_delay));
  if (app == 0 || app > kMaxName) return corrupt(name, "app name of " + std::to_string(app) + " bytes");
  if (params > kMaxParams) return corrupt(name, "params of " + std::to_string(params) + " bytes (at most 64 KiB)");
  if (partition > kMaxPartitionText) return corrupt(name, "partition text of " + std::to_string(partition) + " bytes");
  // Bound the counts by the bytes present before reserving anything for them.
  if (std::uint64_t{ranks} * kMinRankBytes + std::uint64_t{m.global_actors} * 4 > file.size())
    return corrupt(name, std::to_string(ranks) + " ranks and " + std::to_string(m.global_actors) +
                             " actors cannot fit in " + std::to_string(file.size()) + " bytes");
  const auto app_bytes = r.take(app);
  const auto param_bytes = r.take(params);
  const auto partition_bytes = r.take(partition);
  if (r.failed()) return corrupt(name, "truncated app, params or partition");
  m.app.assign(reinterpret_cast<const char*>(app_bytes.data()), app_bytes.size());
  m.params.assign(param_bytes.begin(), param_bytes.end());
  m.partition.assign(reinterpret_cast<const char*>(partition_bytes.data()), partition_bytes.size());
  std::uint64_t actors_in_ranks = 0;
  m.ranks.resize(ranks);
  for (std::uint32_t i = 0; i < ranks; ++i) {
    GlobalCheckpointRank& rk = m.ranks[i];
    rk.manifest_crc = r.get<std::uint32_t>();
    rk.actors = r.get<std::uint32_t>();
    const auto len = r.get<std::uint32_t>();
    if (r.failed() || len > kMaxRankName) return corrupt(name, "rank " + std::to_string(i) + "'s entry is truncated or too long");
    const auto text = r.take(len);
    if (r.failed()) return corrupt(name, "rank " + std::to_string(i) + "'s manifest path is truncated");
    rk.manifest.assign(reinterpret_cast<const char*>(text.data()), text.size());
    if (!rank_manifest_ok(rk.manifest))
      return corrupt(name, "rank " + std::to_string(i) + "'s manifest path '" + rk.manifest + "' is not rank-N/<set>.pkset");
    if (rk.actors == 0) return corrupt(name, "rank " + std::to_string(i) + " ran no actors");
    actors_in_ranks += rk.actors;
  }
  if (actors_in_ranks != m.global_actors)
    return corrupt(name, "the ranks ran " + std::to_string(actors_in_ranks) + " actors, not " + std::to_string(m.global_actors));
  m.owner.resize(m.global_actors);
  std::vector<std::uint32_t> counted(ranks, 0);
  for (std::uint32_t a = 0; a < m.global_actors; ++a) {
    m.owner[a] = r.get<std::uint32_t>();
    if (r.failed()) return corrupt(name, "truncated owner table");
    if (m.owner[a] >= ranks) return corrupt(name, "actor " + std::to_string(a) + " owned by rank " + std::to_string(m.owner[a]));
    ++counted[m.owner[a]];
  }
  for (std::uint32_t i = 0; i < ranks; ++i)
    if (counted[i] != m.ranks[i].actors)
      return corrupt(name, "rank " + std::to_string(i) + " owns " + std::to_string(counted[i]) + " actors in the table, " +
                               std::to_string(m.ranks[i].actors) + " in its entry");
  if (r.pos() != file.size() - sizeof kMagic - 4) return corrupt(name, "trailing bytes before the CRC");
  return m;
}

std::string global_manifest_name(const std::string& app, std::uint64_t epoch) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "-global-e%012llu", static_cast<unsigned long long>(epoch));
  return app + buf + kGlobalManifestSuffix;
}

std::string rank_checkpoint_dir(std::uint32_t rank, std::uint32_t ranks, std::span<const std::uint32_t> global_ids) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "rank-%05u-of-%05u-%08x", rank, ranks,
                crc32(global_ids.data(), global_ids.size_bytes()));
  return buf;
}

std::vector<std::uint32_t> global_local_indices(std::span<const std::uint32_t> owner, std::uint32_t ranks) {
  std::vector<std::uint32_t> next(ranks, 0), local(owner.size(), 0);
  for (std::size_t a = 0; a < owner.size(); ++a)
    if (owner[a] < ranks) local[a] = next[owner[a]]++;
  return local;
}

}  // namespace pkrt
