// checkpoint/checkpoint_set.cpp: the set manifest (encode, bounded parse), the program
// fingerprint and its comparison, member and manifest names.
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/crc32.hpp>

#include "checkpoint/byte_io.hpp"

#include <cstdio>
#include <cstring>
#include <cstdlib>

namespace pkrt {
namespace {

constexpr char kMagic[8] = {'P', 'K', 'R', 'T', 'S', 'E', 'T', '1'};
// Version 2's flags (the u16 after the version; zero in version 1).
constexpr std::uint16_t kManifestHasQueued = 1;  // the last member holds the queued commands
constexpr std::size_t kFixedBytes = 72;       // the fixed part before the variable fields (v1; v2 adds 8)
constexpr std::size_t kMinMemberBytes = 32;   // fixed member fields + a 1-byte name
constexpr std::uint32_t kMaxName = 255;
constexpr std::uint32_t kMaxParams = 64 * 1024;
constexpr std::uint32_t kMaxRegions = 16;
constexpr auto kMaxInputs = static_cast<std::uint32_t>(kMaxRunInputs);
constexpr auto kMaxInputText = static_cast<std::uint32_t>(kMaxRunInputText);

using detail::ByteReader;
using detail::ByteWriter;

// A text is a u32 length and that many bytes.
void put_text(ByteWriter& w, const std::string& t) {
  w.put(static_cast<std::uint32_t>(t.size()));
  w.bytes(t.data(), t.size());
}

// False (and nothing read into `t`) past the end or over `max_len`.
bool get_text(ByteReader& r, std::string& t, std::uint32_t max_len) {
  const auto n = r.get<std::uint32_t>();
  if (r.failed() || n > max_len) return false;
  const auto bytes = r.take(n);
  if (r.failed()) return false;
  t.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return true;
}

Status corrupt(const std::string& name, const std::string& what) {
  return Status(StatusCode::kCorruptData,
                "checkpoint set manifest '" + name + "': " + what +
                    ". Fix: the set cannot be used; restore another one (`pkrt checkpoint list DIR` shows them)");
}

bool member_name_ok(const std::string& n) {
  const std::string suffix = kCheckpointFileSuffix;
  return !n.empty() && n[0] != '.' && n.find('/') == std::string::npos && n.find('\0') == std::string::npos &&
         n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string params_summary(const std::vector<std::byte>& p) {
  return std::to_string(p.size()) + " bytes, CRC32 " + hex(crc32(p.data(), p.size()));
}

std::string regions_text(const std::vector<CheckpointRegion>& regions) {
  std::string s;
  for (const auto& r : regions) {
    if (!s.empty()) s += ", ";
    s += r.name + "@" + std::to_string(r.offset) + "+" + std::to_string(r.bytes);
  }
  return s.empty() ? "(none)" : s;
}

Status mismatch(const std::string& where, const std::string& field, const std::string& saved, const std::string& now,
                const std::string& fix) {
  return Status(StatusCode::kInvalidArgument, "checkpoint set '" + where + "' was written with " + field + " " + saved +
                                                  "; this run has " + now + ". Fix: " + fix);
}

}  // namespace

Status compare_fingerprints(const CheckpointFingerprint& saved, const CheckpointFingerprint& now,
                            const std::string& where, const ParamsDescriber& describe) {
  if (saved.app != now.app)
    return mismatch(where, "app", "'" + saved.app + "'", "'" + now.app + "'", "restore it with --app " + saved.app);
  if (saved.program_version != now.program_version)
    return mismatch(where, "program version", std::to_string(saved.program_version),
                    std::to_string(now.program_version),
                    "restore with the program build that wrote it, or start this version from scratch");
  if (saved.num_actors != now.num_actors)
    return mismatch(where, "actor count", std::to_string(saved.num_actors), std::to_string(now.num_actors),
                    "pass --actors " + std::to_string(saved.num_actors));
  if (saved.params != now.params) {
    if (describe && describe(saved.params) != describe(now.params))
      return mismatch(where, "params", describe(saved.params), describe(now.params),
                      "restore with the parameters of the run that wrote it");
    if (describe)  // equal as described: the bytes differ where no field shows them
      return mismatch(where, "params", params_summary(saved.params) + " (" + describe(saved.params) + ")",
                      params_summary(now.params),
                      "the Params differ in bytes no field shows, most likely padding: give the app's Params "
                      "no padding (explicit zeroed reserved fields) so equal params are equal bytes");
    return mismatch(where, "params", params_summary(saved.params), params_summary(now.params),
                    "restore with the parameters (e.g. --grid, --seed) of the run that wrote it");
  }
  if (saved.chunk_bytes != now.chunk_bytes)
    return mismatch(where, "chunk size", std::to_string(saved.chunk_bytes), std::to_string(now.chunk_bytes),
                    "restore with the chunk size of the run that wrote it");
  const bool same_regions =
      saved.regions.size() == now.regions.size() &&
      std::equal(saved.regions.begin(), saved.regions.end(), now.regions.begin(), [](const auto& a, const auto& b) {
        return a.name == b.name && a.offset == b.offset && a.bytes == b.bytes;
      });
  if (saved.image_bytes != now.image_bytes || !same_regions)
    return mismatch(where, "image layout", std::to_string(saved.image_bytes) + " bytes [" + regions_text(saved.regions) + "]",
                    std::to_string(now.image_bytes) + " bytes [" + regions_text(now.regions) + "]",
                    "the program's state layout changed: restore with the build that wrote it");
  if (saved.global_bytes != now.global_bytes)
    return mismatch(where, "a global region of", std::to_string(saved.global_bytes) + " bytes",
                    std::to_string(now.global_bytes) + " bytes",
                    saved.global_bytes == 0
                        ? "the set holds no image of the app's global region (written before pkrt checkpointed "
                          "it, or by a build without one); start this run from scratch"
                        : "the program's global region changed: restore with the build that wrote it");
  return Status();
}

Status compare_run_inputs(const RunInputs& saved, const RunInputs& now, const std::string& where) {
  auto value_of = [](const RunInputs& in, const std::string& key) -> std::string {
    for (const auto& [k, v] : in)
      if (k == key) return v;
    return "(not set)";
  };
  for (const auto& [k, v] : saved) {
    const std::string n = value_of(now, k);
    if (n != v)
      return mismatch(where, k, v, n, "pass " + k + " " + v + ": a different value changes the run's history after the restore point");
  }
  for (const auto& [k, v] : now) {
    const std::string s = value_of(saved, k);
    if (s != v)
      return mismatch(where, k, s, v, "drop " + k + " or restore a set written with it");
  }
  return Status();
}

std::vector<std::byte> encode_checkpoint_manifest(const CheckpointManifest& m) {
  std::vector<std::byte> out;
  ByteWriter w(out);
  const CheckpointFingerprint& f = m.fingerprint;
  const std::uint16_t version = m.version == 0 ? kCheckpointManifestVersion : m.version;
  const bool queued = !m.members.empty() && m.members.back().actor == kQueuedCommandsActor;
  w.bytes(kMagic, sizeof kMagic);
  w.put(version);
  w.put(static_cast<std::uint16_t>(queued ? kManifestHasQueued : 0));
  w.put(std::uint32_t{0});  // total bytes, patched below
  w.put(m.epoch);
  w.put(m.sequence);
  w.put(f.num_actors);
  w.put(f.chunk_bytes);
  w.put(f.image_bytes);
  w.put(f.program_version);
  w.put(static_cast<std::uint32_t>(f.regions.size()));
  w.put(static_cast<std::uint32_t>(f.params.size()));
  w.put(static_cast<std::uint32_t>(m.inputs.size()));
  w.put(static_cast<std::uint32_t>(m.members.size()));
  w.put(std::uint32_t{0});
  if (version >= 2) w.put(f.global_bytes);
  put_text(w, f.app);
  w.bytes(f.params.data(), f.params.size());
  for (const auto& r : f.regions) {
    put_text(w, r.name);
    w.put(r.offset);
    w.put(r.bytes);
  }
  for (const auto& [k, v] : m.inputs) {
    put_text(w, k);
    put_text(w, v);
  }
  for (const auto& mem : m.members) {
    w.put(mem.actor);
    w.put(mem.state_crc);
    w.put(mem.digest);
    w.put(mem.file_bytes);
    w.put(static_cast<std::uint8_t>(mem.delta ? 1 : 0));
    w.put(std::uint8_t{0});
    w.put(std::uint16_t{0});
    put_text(w, mem.file);
  }
  const auto total = static_cast<std::uint32_t>(out.size() + 4);
  std::memcpy(out.data() + 12, &total, sizeof total);
  w.put(crc32(out.data(), out.size()));
  return out;
}

Result<CheckpointManifest> parse_checkpoint_manifest(std::span<const std::byte> file, const std::string& name) {
  if (file.size() < kFixedBytes + 4) return corrupt(name, "file is " + std::to_string(file.size()) + " bytes, shorter than any manifest");
  if (file.size() > kMaxCheckpointManifestBytes) return corrupt(name, "file is larger than any manifest (1 GiB)");
  if (std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) return corrupt(name, "bad magic (not a pkrt set manifest)");
  // The CRC's 4 bytes are read apart: the fields end exactly where it starts.
  ByteReader r(file.subspan(sizeof kMagic, file.size() - sizeof kMagic - 4));
  const auto version = r.get<std::uint16_t>();
  if (version < kOldestCheckpointManifestVersion || version > kCheckpointManifestVersion)
    return corrupt(name, "version " + std::to_string(version) + " is not one this build reads (" +
                             std::to_string(kOldestCheckpointManifestVersion) + " to " +
                             std::to_string(kCheckpointManifestVersion) + ")");
  // Reserved fields must be zero, so every accepted manifest is exactly what the encoder
  // writes for it (a flipped reserved byte is damage, not a future extension).
  const auto flags = r.get<std::uint16_t>();
  if (flags & ~(version >= 2 ? kManifestHasQueued : 0))
    return corrupt(name, "unknown flags " + std::to_string(flags) + " in the reserved field after the version");
  const bool has_queued = (flags & kManifestHasQueued) != 0;
  const auto total = r.get<std::uint32_t>();
  if (total != file.size())
    return corrupt(name, "declares " + std::to_string(total) + " bytes but holds " + std::to_string(file.size()) + " (torn or truncated)");
  std::uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, file.data() + file.size() - 4, sizeof stored_crc);
  if (crc32(file.data(), file.size() - 4) != stored_crc) return corrupt(name, "CRC mismatch (damaged)");

  CheckpointManifest m;
  CheckpointFingerprint& f = m.fingerprint;
  m.version = version;
  m.epoch = r.get<std::uint64_t>();
  m.sequence = r.get<std::uint64_t>();
  f.num_actors = r.get<std::uint32_t>();
  f.chunk_bytes = r.get<std::uint32_t>();
  f.image_bytes = r.get<std::uint64_t>();
  f.program_version = r.get<std::uint32_t>();
  const auto regions = r.get<std::uint32_t>();
  const auto params = r.get<std::uint32_t>();
  const auto inputs = r.get<std::uint32_t>();
  const auto members = r.get<std::uint32_t>();
  const auto reserved = r.get<std::uint32_t>();
  if (version >= 2) f.global_bytes = r.get<std::uint64_t>();
  if (r.failed()) return corrupt(name, "truncated fixed fields");
  if (reserved != 0) return corrupt(name, "reserved field after the member count is not zero");
  // Bounded like the runtime bounds the region (runtime_setup.cpp).
  if (f.global_bytes > (std::uint64_t{1} << 48))
    return corrupt(name, "a global region of " + std::to_string(f.global_bytes) + " bytes (at most 2^48)");
  const std::uint64_t expected_members =
      std::uint64_t{f.num_actors} + (f.global_bytes > 0 ? 1 : 0) + (has_queued ? 1 : 0);
  if (regions > kMaxRegions) return corrupt(name, std::to_string(regions) + " regions (at most 16)");
  if (params > kMaxParams) return corrupt(name, "params of " + std::to_string(params) + " bytes (at most 64 KiB)");
  if (inputs > kMaxInputs) return corrupt(name, std::to_string(inputs) + " run inputs (at most 64)");
  if (members != expected_members)
    return corrupt(name, std::to_string(members) + " members for " + std::to_string(f.num_actors) + " actors" +
                             (f.global_bytes > 0 ? ", the global region" : "") +
                             (has_queued ? ", the queued commands" : ""));
  // Bound the member count by the bytes present before reserving anything for them.
  if (members > file.size() / kMinMemberBytes)
    return corrupt(name, std::to_string(members) + " members cannot fit in " + std::to_string(file.size()) + " bytes");
  if (!get_text(r, f.app, kMaxName) || f.app.empty()) return corrupt(name, "bad app name");
  const auto param_bytes = r.take(params);
  if (r.failed()) return corrupt(name, "truncated params");
  f.params.assign(param_bytes.begin(), param_bytes.end());
  for (std::uint32_t i = 0; i < regions; ++i) {
    CheckpointRegion reg;
    if (!get_text(r, reg.name, kMaxName)) return corrupt(name, "bad region name " + std::to_string(i));
    reg.offset = r.get<std::uint64_t>();
    reg.bytes = r.get<std::uint64_t>();
    if (r.failed()) return corrupt(name, "truncated region " + std::to_string(i));
    f.regions.push_back(std::move(reg));
  }
  for (std::uint32_t i = 0; i < inputs; ++i) {
    std::string k, v;
    if (!get_text(r, k, kMaxInputText) || !get_text(r, v, kMaxInputText))
      return corrupt(name, "bad run input " + std::to_string(i));
    m.inputs.emplace_back(std::move(k), std::move(v));
  }
  m.members.reserve(members);
  for (std::uint32_t i = 0; i < members; ++i) {
    CheckpointSetMember mem;
    mem.actor = r.get<std::uint32_t>();
    mem.state_crc = r.get<std::uint32_t>();
    mem.digest = r.get<std::uint64_t>();
    mem.file_bytes = r.get<std::uint64_t>();
    const auto kind = r.get<std::uint8_t>();
    const auto pad = r.get<std::uint8_t>();
    const auto pad2 = r.get<std::uint16_t>();
    if (!get_text(r, mem.file, kMaxName)) return corrupt(name, "bad member " + std::to_string(i));
    const std::uint32_t want =
        i < f.num_actors ? i : (i == f.num_actors && f.global_bytes > 0 ? kGlobalRegionActor : kQueuedCommandsActor);
    if (mem.actor != want)
      return corrupt(name, "member " + std::to_string(i) + " is for actor " + std::to_string(mem.actor) + ", not " +
                               (want == kGlobalRegionActor    ? std::string("the global region")
                                : want == kQueuedCommandsActor ? std::string("the queued commands")
                                                               : std::to_string(want)));
    if (kind > 1) return corrupt(name, "member " + std::to_string(i) + " has kind " + std::to_string(kind));
    if (pad != 0 || pad2 != 0) return corrupt(name, "member " + std::to_string(i) + " has nonzero reserved bytes");
    if (!member_name_ok(mem.file)) return corrupt(name, "member " + std::to_string(i) + " names '" + mem.file + "', not a checkpoint file");
    mem.delta = kind == 1;
    m.members.push_back(std::move(mem));
  }
  const std::size_t left = file.size() - sizeof kMagic - 4 - r.pos();
  if (left != 0) return corrupt(name, std::to_string(left) + " unexpected bytes before the CRC");
  return m;
}

std::vector<std::byte> encode_queued_commands(std::span<const Command> commands) {
  std::vector<std::byte> out(commands.size() * kQueuedCommandBytes);
  std::byte* p = out.data();
  for (const Command& c : commands) {
    const std::uint16_t reserved = 0;
    std::memcpy(p, &c.actor, 4);
    std::memcpy(p + 4, &c.opcode, 2);
    std::memcpy(p + 6, &reserved, 2);
    std::memcpy(p + 8, &c.apply_epoch, 8);
    std::memcpy(p + 16, c.data.data(), kEnvelopeDataBytes);
    p += kQueuedCommandBytes;
  }
  return out;
}

Result<std::vector<Command>> decode_queued_commands(std::span<const std::byte> image, std::uint32_t num_actors,
                                                    const std::string& name) {
  auto corrupt = [&](const std::string& what) {
    return Status(StatusCode::kCorruptData, "queued commands '" + name + "': " + what +
                                                ". Fix: restore another checkpoint set (`pkrt checkpoint list DIR`)");
  };
  if (image.size() % kQueuedCommandBytes != 0)
    return corrupt(std::to_string(image.size()) + " bytes is not a whole number of 48-byte records");
  std::vector<Command> out(image.size() / kQueuedCommandBytes);
  const std::byte* p = image.data();
  for (std::size_t i = 0; i < out.size(); ++i, p += kQueuedCommandBytes) {
    Command& c = out[i];
    std::uint16_t reserved = 0;
    std::memcpy(&c.actor, p, 4);
    std::memcpy(&c.opcode, p + 4, 2);
    std::memcpy(&reserved, p + 6, 2);
    std::memcpy(&c.apply_epoch, p + 8, 8);
    std::memcpy(c.data.data(), p + 16, kEnvelopeDataBytes);
    if (reserved != 0) return corrupt("record " + std::to_string(i) + " has a nonzero reserved field");
    if (c.actor >= num_actors)
      return corrupt("record " + std::to_string(i) + " is for actor " + std::to_string(c.actor) + " of " +
                     std::to_string(num_actors));
    if (c.opcode < kUserOpcodeBase)
      return corrupt("record " + std::to_string(i) + " has runtime opcode " + std::to_string(c.opcode));
  }
  return out;
}

std::string checkpoint_manifest_name(const std::string& app, std::uint64_t epoch) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "-set-e%012llu", static_cast<unsigned long long>(epoch));
  return app + buf + kCheckpointManifestSuffix;
}

std::string checkpoint_manifest_name(const std::string& app, std::uint64_t epoch, std::uint64_t sequence) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-set-e%012llu-s%06llu", static_cast<unsigned long long>(epoch),
                static_cast<unsigned long long>(sequence));
  return app + buf + kCheckpointManifestSuffix;
}

std::string checkpoint_member_name(const CheckpointInfo& info, std::uint64_t sequence) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "-e%012llu-s%06llu-%s-%s", static_cast<unsigned long long>(info.epoch),
                static_cast<unsigned long long>(sequence), checkpoint_subject_name(info.actor).c_str(),
                info.delta ? "delta" : "full");
  return info.app + buf + kCheckpointFileSuffix;
}

std::uint64_t checkpoint_member_sequence(const std::string& name) {
  // ...-e<12 digits>-s<digits>-(a<digits>|global|queued)-(full|delta).pkck
  const std::size_t s = name.rfind("-s");
  std::size_t a = name.rfind("-a");
  for (const char* pseudo : {"-global-", "-queued-"})
    if (const std::size_t p = name.rfind(pseudo); p != std::string::npos && s != std::string::npos && p > s) a = p;
  if (s == std::string::npos || a == std::string::npos || a <= s + 2) return 0;
  std::uint64_t v = 0;
  for (std::size_t i = s + 2; i < a; ++i) {
    if (name[i] < '0' || name[i] > '9' || v > (~std::uint64_t{0} - 9) / 10) return 0;
    v = v * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return v;
}

}  // namespace pkrt
