// checkpoint/checkpoint_format.cpp: encoder and validating parser of the checkpoint file
// format (docs/checkpoint-format.md).
#include <pkrt/checkpoint.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/slot.hpp>

#include "checkpoint/byte_io.hpp"
#include "checkpoint/byte_shuffle.hpp"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <thread>

namespace pkrt {
namespace {

using detail::ByteReader;
using detail::ByteWriter;

static_assert(std::endian::native == std::endian::little,
              "the checkpoint format is little-endian; big-endian hosts need byte swapping here");

constexpr char kMagic[8] = {'P', 'K', 'R', 'T', 'C', 'K', 'P', 'T'};
constexpr char kFooterMagic[8] = {'P', 'K', 'R', 'T', 'E', 'N', 'D', '1'};
constexpr std::size_t kHeaderBytes = 128;
constexpr std::size_t kEntryBytes = 32;
constexpr std::size_t kFooterBytes = 32;
constexpr std::size_t kMaxAppName = 255;
constexpr std::size_t kMaxParams = 64 * 1024;
constexpr std::size_t kMaxRegions = 16;
constexpr std::size_t kMaxRegionName = 64;
constexpr std::uint32_t kFlagDelta = 1;
constexpr std::uint32_t kMinChunkBytes = 256;
constexpr std::uint32_t kMaxChunkBytes = 64u << 20;

bool chunk_size_ok(std::uint32_t c) { return c >= kMinChunkBytes && c <= kMaxChunkBytes && (c & (c - 1)) == 0; }

// The most bytes `stored` bytes of zstd data can decode to. Every zstd block, whatever its
// type, starts with a 3-byte header and yields at most 128 KiB (frame headers and skippable
// frames yield nothing), so no file can hold more: a chunk declaring more is refused before
// anything the size of the state is allocated or decompressed. Legitimate data stays well
// below (an RLE block, the densest there is, takes 4 bytes).
std::uint64_t max_zstd_output(std::uint64_t stored) { return stored / 3 * (std::uint64_t{128} << 10); }

template <class T>
T load_at(std::span<const std::byte> s, std::size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof(T));
  return v;
}

Status corrupt(const std::string& name, const std::string& what) {
  return Status(StatusCode::kCorruptData,
                "checkpoint '" + name + "': " + what +
                    ". The file is damaged or not a pkrt checkpoint; restore from an older "
                    "checkpoint (pkrt checkpoint list) or take a new one");
}

std::vector<std::byte> encode_metadata(const CheckpointInfo& info) {
  std::vector<std::byte> m;
  ByteWriter w(m);
  w.put(static_cast<std::uint16_t>(info.app.size()));
  w.bytes(info.app.data(), info.app.size());
  w.put(static_cast<std::uint32_t>(info.params.size()));
  w.bytes(info.params.data(), info.params.size());
  w.put(static_cast<std::uint32_t>(info.regions.size()));
  for (const auto& r : info.regions) {
    w.put(static_cast<std::uint16_t>(r.name.size()));
    w.bytes(r.name.data(), r.name.size());
    w.put(r.offset);
    w.put(r.bytes);
  }
  w.put(crc32(m.data(), m.size()));
  return m;
}

}  // namespace

std::uint32_t CheckpointInfo::chunk_count() const {
  if (chunk_bytes == 0) return 0;
  const std::uint64_t n = state_bytes / chunk_bytes + (state_bytes % chunk_bytes != 0 ? 1 : 0);
  return n > 0xFFFFFFFFull ? 0xFFFFFFFFu : static_cast<std::uint32_t>(n);
}

std::uint64_t checkpoint_digest(const CheckpointInfo& info) {
  struct {
    std::uint64_t epoch;
    std::uint32_t actor;
    std::uint32_t state_crc;
    std::uint32_t flags;
  } id{info.epoch, info.actor, info.state_crc, info.delta ? kFlagDelta : 0u};
  std::uint32_t lo = crc32(&id.epoch, 8);
  lo = crc32(&id.actor, 4, lo);
  lo = crc32(&id.state_crc, 4, lo);
  lo = crc32(&id.flags, 4, lo);
  const std::uint32_t hi = crc32(info.app.data(), info.app.size());
  return (std::uint64_t{hi} << 32) | lo;
}

std::string checkpoint_subject_name(std::uint32_t actor) {
  if (actor == kGlobalRegionActor) return "global";
  if (actor == kQueuedCommandsActor) return "queued";
  char who[16];
  std::snprintf(who, sizeof who, "a%06u", actor);
  return who;
}

std::string checkpoint_file_name(const CheckpointInfo& info) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%s-e%012llu-%s.pkck", checkpoint_subject_name(info.actor).c_str(),
                static_cast<unsigned long long>(info.epoch), info.delta ? "delta" : "full");
  return info.app + buf;
}

Result<std::vector<std::byte>> encode_checkpoint(const CheckpointInfo& in,
                                                 std::span<const std::byte> state,
                                                 std::span<const std::uint32_t> chunk_indices,
                                                 const CheckpointEncodeOptions& options) {
  CheckpointInfo info = in;
  if (info.app.empty() || info.app.size() > kMaxAppName || info.params.size() > kMaxParams ||
      info.regions.size() > kMaxRegions || !chunk_size_ok(info.chunk_bytes) || state.size() != info.state_bytes ||
      info.state_bytes / info.chunk_bytes >= 0xFFFFFFFFull) {
    return Status(StatusCode::kInvalidArgument,
                  "cannot encode checkpoint of actor " + std::to_string(info.actor) +
                      ": app name 1..255 bytes, params <= 64 KiB, <= 16 regions, a power-of-two chunk "
                      "size of 256 B..64 MiB and a state buffer of state_bytes are required");
  }
  for (const auto& r : info.regions)
    if (r.name.empty() || r.name.size() > kMaxRegionName)
      return Status(StatusCode::kInvalidArgument, "region names must be 1..64 bytes");
  if (options.shuffle_element != 0 && options.shuffle_element != 4 && options.shuffle_element != 8)
    return Status(StatusCode::kInvalidArgument, "shuffle element must be 0, 4 or 8 bytes");
  const std::uint32_t chunks = info.chunk_count();
  for (std::size_t i = 0; i < chunk_indices.size(); ++i) {
    if (chunk_indices[i] >= chunks || (i > 0 && chunk_indices[i] <= chunk_indices[i - 1]))
      return Status(StatusCode::kInvalidArgument, "chunk indices must be increasing and < chunk_count");
  }
  if (!info.delta && chunk_indices.size() != chunks)
    return Status(StatusCode::kInvalidArgument, "a full checkpoint stores every chunk");
  info.element_bytes = options.zstd_level > 0 ? options.shuffle_element : 0;
  info.digest = checkpoint_digest(info);

  const std::vector<std::byte> meta = encode_metadata(info);
  std::vector<CheckpointChunkEntry> entries(chunk_indices.size());
  std::vector<std::vector<std::byte>> stored(chunk_indices.size());
  // Chunks are independent: threads take every k-th one, each with its own zstd context.
  auto compress_range = [&](std::size_t first, std::size_t stride) {
    std::vector<std::byte> shuffled;
    ZSTD_CCtx* cctx = options.zstd_level > 0 ? ZSTD_createCCtx() : nullptr;
    for (std::size_t i = first; i < chunk_indices.size(); i += stride) {
      const std::uint64_t off = std::uint64_t{chunk_indices[i]} * info.chunk_bytes;
      const std::size_t raw =
          static_cast<std::size_t>(std::min<std::uint64_t>(info.chunk_bytes, info.state_bytes - off));
      const std::byte* src = state.data() + off;
      CheckpointChunkEntry& e = entries[i];
      e.index = chunk_indices[i];
      e.raw_bytes = static_cast<std::uint32_t>(raw);
      e.raw_crc = crc32(src, raw);
      if (cctx != nullptr) {
        const std::byte* input = src;
        if (info.element_bytes != 0) {
          shuffled.resize(raw);
          if (options.word_delta) {
            delta_byte_shuffle(src, shuffled.data(), raw, info.element_bytes);
          } else {
            byte_shuffle(src, shuffled.data(), raw, info.element_bytes);
          }
          input = shuffled.data();
        }
        std::vector<std::byte> out(ZSTD_compressBound(raw));
        const std::size_t n = ZSTD_compressCCtx(cctx, out.data(), out.size(), input, raw, options.zstd_level);
        if (!ZSTD_isError(n) && n < raw) {
          out.resize(n);
          stored[i] = std::move(out);
          e.compression = 1;
          e.filter = info.element_bytes == 0 ? 0 : options.word_delta ? 2 : 1;
          continue;
        }
      }
      stored[i].assign(src, src + raw);  // incompressible or level 0: stored raw
    }
    if (cctx != nullptr) ZSTD_freeCCtx(cctx);
  };
  std::size_t threads = options.threads;
  if (threads == 0) {
    threads = std::min<std::size_t>(std::max(1u, std::thread::hardware_concurrency()), chunk_indices.size() / 16);
  }
  threads = std::clamp<std::size_t>(threads, 1, std::max<std::size_t>(1, chunk_indices.size()));
  if (threads == 1 || options.zstd_level == 0) {
    compress_range(0, 1);
  } else {
    std::vector<std::thread> pool;
    for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(compress_range, t, threads);
    compress_range(0, threads);
    for (auto& th : pool) th.join();
  }

  std::vector<std::byte> file;
  ByteWriter w(file);
  w.bytes(kMagic, 8);
  w.put(kCheckpointVersion);
  w.put(static_cast<std::uint16_t>(kHeaderBytes));
  w.put(info.delta ? kFlagDelta : 0u);
  w.put(info.epoch);
  w.put(info.actor);
  w.put(info.num_actors);
  w.put(info.state_bytes);
  w.put(info.chunk_bytes);
  w.put(chunks);
  w.put(static_cast<std::uint32_t>(entries.size()));
  w.put(info.state_crc);
  w.put(info.digest);
  w.put(info.delta ? info.parent_digest : 0ull);
  w.put(static_cast<std::uint32_t>(meta.size()));
  w.put(info.element_bytes);
  w.put(std::uint16_t{0});
  w.put((std::uint64_t{static_cast<std::uint32_t>(info.params.size())} << 32) |
        crc32(info.params.data(), info.params.size()));
  const std::byte zeros[36] = {};
  w.bytes(zeros, sizeof zeros);
  w.put(crc32(file.data(), 124));
  w.bytes(meta.data(), meta.size());
  std::uint64_t data_off = kHeaderBytes + meta.size() + entries.size() * kEntryBytes;
  const std::size_t table_at = file.size();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    CheckpointChunkEntry& e = entries[i];
    e.offset = data_off;
    e.stored_bytes = static_cast<std::uint32_t>(stored[i].size());
    data_off += e.stored_bytes;
    const std::size_t at = file.size();
    w.put(e.index);
    w.put(e.raw_bytes);
    w.put(e.offset);
    w.put(e.stored_bytes);
    w.put(e.compression);
    w.put(e.filter);
    w.put(std::uint16_t{0});
    w.put(e.raw_crc);
    w.put(crc32(file.data() + at, 28));
  }
  const std::uint32_t table_crc = crc32(file.data() + table_at, file.size() - table_at);
  for (const auto& s : stored) w.bytes(s.data(), s.size());
  const std::size_t footer_at = file.size();
  w.bytes(kFooterMagic, 8);
  w.put(static_cast<std::uint64_t>(footer_at + kFooterBytes));
  w.put(info.digest);
  w.put(table_crc);
  w.put(crc32(file.data() + footer_at, 28));
  return file;
}

Result<ParsedCheckpoint> parse_checkpoint(std::span<const std::byte> file, const std::string& name) {
  if (file.size() < kHeaderBytes + kFooterBytes)
    return corrupt(name, "only " + std::to_string(file.size()) + " bytes, shorter than a header and footer (160)");
  if (std::memcmp(file.data(), kMagic, 8) != 0) return corrupt(name, "bad magic in the header (not PKRTCKPT)");
  const auto version = load_at<std::uint16_t>(file, 8);
  if (version < kOldestCheckpointVersion || version > kCheckpointVersion)
    return Status(StatusCode::kCorruptData,
                  "checkpoint '" + name + "': format version " + std::to_string(version) +
                      ", this pkrt reads versions " + std::to_string(kOldestCheckpointVersion) + " to " +
                      std::to_string(kCheckpointVersion) + ". Fix: read it with a pkrt that supports that version");
  const std::uint8_t newest_filter = version >= 2 ? 2 : 1;
  if (load_at<std::uint32_t>(file, 124) != crc32(file.data(), 124))
    return corrupt(name, "header CRC mismatch (bytes 0..123 damaged)");
  ParsedCheckpoint out;
  out.version = version;
  CheckpointInfo& info = out.info;
  const auto header_bytes = load_at<std::uint16_t>(file, 10);
  const auto flags = load_at<std::uint32_t>(file, 12);
  info.epoch = load_at<std::uint64_t>(file, 16);
  info.actor = load_at<std::uint32_t>(file, 24);
  info.num_actors = load_at<std::uint32_t>(file, 28);
  info.state_bytes = load_at<std::uint64_t>(file, 32);
  info.chunk_bytes = load_at<std::uint32_t>(file, 40);
  const auto chunk_count = load_at<std::uint32_t>(file, 44);
  const auto stored_chunks = load_at<std::uint32_t>(file, 48);
  info.state_crc = load_at<std::uint32_t>(file, 52);
  info.digest = load_at<std::uint64_t>(file, 56);
  info.parent_digest = load_at<std::uint64_t>(file, 64);
  const auto meta_bytes = load_at<std::uint32_t>(file, 72);
  info.element_bytes = load_at<std::uint16_t>(file, 76);
  const auto params_hash = load_at<std::uint64_t>(file, 80);
  info.delta = (flags & kFlagDelta) != 0;
  bool reserved_zero = load_at<std::uint16_t>(file, 78) == 0;
  for (std::size_t i = 88; i < 124; ++i) reserved_zero = reserved_zero && file[i] == std::byte{0};
  if (header_bytes != kHeaderBytes || (flags & ~kFlagDelta) != 0 || !reserved_zero)
    return corrupt(name, "header has unknown flags or nonzero reserved fields (a newer format?)");
  if (!chunk_size_ok(info.chunk_bytes) || info.state_bytes / info.chunk_bytes >= 0xFFFFFFFFull ||
      info.chunk_count() != chunk_count || stored_chunks > chunk_count ||
      (!info.delta && stored_chunks != chunk_count) || (info.delta == (info.parent_digest == 0)) ||
      (info.actor >= info.num_actors && info.actor != kGlobalRegionActor && info.actor != kQueuedCommandsActor) ||
      (info.element_bytes != 0 && info.element_bytes != 4 && info.element_bytes != 8))
    return corrupt(name, "header fields are inconsistent (chunk count, delta/parent, actor range)");
  // Sizes against the file length, before any allocation.
  const std::uint64_t table_bytes = std::uint64_t{stored_chunks} * kEntryBytes;
  const std::uint64_t fixed = kHeaderBytes + std::uint64_t{meta_bytes} + table_bytes + kFooterBytes;
  if (fixed > file.size())
    return corrupt(name, "metadata (" + std::to_string(meta_bytes) + " bytes) and chunk table (" +
                             std::to_string(stored_chunks) + " entries) do not fit in the file (" +
                             std::to_string(file.size()) + " bytes): truncated");
  const std::size_t footer_at = file.size() - kFooterBytes;
  if (std::memcmp(file.data() + footer_at, kFooterMagic, 8) != 0)
    return corrupt(name, "no footer at the end of the file: truncated or damaged");
  if (load_at<std::uint32_t>(file, footer_at + 28) != crc32(file.data() + footer_at, 28))
    return corrupt(name, "footer CRC mismatch");
  if (load_at<std::uint64_t>(file, footer_at + 8) != file.size())
    return corrupt(name, "footer says " + std::to_string(load_at<std::uint64_t>(file, footer_at + 8)) +
                             " bytes but the file has " + std::to_string(file.size()) + ": truncated or extended");
  if (load_at<std::uint64_t>(file, footer_at + 16) != info.digest)
    return corrupt(name, "footer digest differs from the header's");

  // Metadata.
  const auto meta = file.subspan(kHeaderBytes, meta_bytes);
  if (meta_bytes < 4 || load_at<std::uint32_t>(meta, meta_bytes - 4) != crc32(meta.data(), meta_bytes - 4))
    return corrupt(name, "metadata CRC mismatch");
  ByteReader r(meta.first(meta_bytes - 4));
  const auto app_len = r.get<std::uint16_t>();
  if (app_len == 0 || app_len > kMaxAppName) return corrupt(name, "metadata: bad app name length");
  auto app = r.take(app_len);
  info.app.assign(reinterpret_cast<const char*>(app.data()), app.size());
  const auto params_len = r.get<std::uint32_t>();
  if (params_len > kMaxParams) return corrupt(name, "metadata: params larger than 64 KiB");
  auto params = r.take(params_len);
  info.params.assign(params.begin(), params.end());
  const auto regions = r.get<std::uint32_t>();
  if (regions > kMaxRegions) return corrupt(name, "metadata: more than 16 regions");
  for (std::uint32_t i = 0; i < regions && !r.failed(); ++i) {
    CheckpointRegion reg;
    const auto len = r.get<std::uint16_t>();
    if (len == 0 || len > kMaxRegionName) return corrupt(name, "metadata: bad region name length");
    auto n = r.take(len);
    reg.name.assign(reinterpret_cast<const char*>(n.data()), n.size());
    reg.offset = r.get<std::uint64_t>();
    reg.bytes = r.get<std::uint64_t>();
    if (reg.offset > info.state_bytes || reg.bytes > info.state_bytes - reg.offset)
      return corrupt(name, "metadata: region '" + reg.name + "' lies outside the state");
    info.regions.push_back(std::move(reg));
  }
  if (r.failed() || r.pos() != meta_bytes - 4) return corrupt(name, "metadata is truncated or has trailing bytes");
  if (params_hash != ((std::uint64_t{params_len} << 32) | crc32(info.params.data(), info.params.size())))
    return corrupt(name, "params hash in the header does not match the metadata");
  if (checkpoint_digest(info) != info.digest) return corrupt(name, "digest does not match the header fields");

  // Chunk table.
  const std::size_t table_at = kHeaderBytes + meta_bytes;
  if (load_at<std::uint32_t>(file, footer_at + 24) != crc32(file.data() + table_at, table_bytes))
    return corrupt(name, "chunk table CRC mismatch");
  std::uint64_t data_off = table_at + table_bytes;
  out.chunks.reserve(stored_chunks);
  for (std::uint32_t i = 0; i < stored_chunks; ++i) {
    const std::size_t at = table_at + std::size_t{i} * kEntryBytes;
    if (load_at<std::uint32_t>(file, at + 28) != crc32(file.data() + at, 28))
      return corrupt(name, "chunk table entry " + std::to_string(i) + " CRC mismatch");
    CheckpointChunkEntry e;
    e.index = load_at<std::uint32_t>(file, at);
    e.raw_bytes = load_at<std::uint32_t>(file, at + 4);
    e.offset = load_at<std::uint64_t>(file, at + 8);
    e.stored_bytes = load_at<std::uint32_t>(file, at + 16);
    e.compression = load_at<std::uint8_t>(file, at + 20);
    e.filter = load_at<std::uint8_t>(file, at + 21);
    e.raw_crc = load_at<std::uint32_t>(file, at + 24);
    const std::uint64_t expect_raw =
        std::min<std::uint64_t>(info.chunk_bytes, info.state_bytes - std::uint64_t{e.index} * info.chunk_bytes);
    if (e.compression == 1 && e.raw_bytes > max_zstd_output(e.stored_bytes)) {
      return Status(StatusCode::kCorruptData,
                    "checkpoint '" + name + "': chunk table entry " + std::to_string(i) + " (chunk " +
                        std::to_string(e.index) + ") declares raw_bytes " + std::to_string(e.raw_bytes) +
                        " from stored_bytes " + std::to_string(e.stored_bytes) + ", but that much zstd data "
                        "decodes to at most " + std::to_string(max_zstd_output(e.stored_bytes)) +
                        " bytes: the header's state_bytes " + std::to_string(info.state_bytes) +
                        " is more than this " + std::to_string(file.size()) +
                        "-byte file can hold. Fix: the file is crafted or damaged; restore from another "
                        "checkpoint (pkrt checkpoint list) or take a new one");
    }
    if (e.index >= chunk_count || (i > 0 && e.index <= out.chunks.back().index) || e.raw_bytes != expect_raw ||
        e.offset != data_off || e.stored_bytes > footer_at - std::min<std::uint64_t>(data_off, footer_at) ||
        e.compression > 1 || e.filter > newest_filter || (e.filter != 0 && (info.element_bytes == 0 || e.compression == 0)) ||
        load_at<std::uint16_t>(file, at + 22) != 0 || (e.compression == 0 && e.stored_bytes != e.raw_bytes))
      return corrupt(name, "chunk table entry " + std::to_string(i) + " (chunk " + std::to_string(e.index) +
                               ") has inconsistent index, sizes or offset");
    data_off += e.stored_bytes;
    out.chunks.push_back(e);
  }
  if (data_off != footer_at) return corrupt(name, "chunk data does not end where the footer starts");
  out.file_bytes = file.size();
  return out;
}

namespace {

// Decodes one stored chunk into dst (e.raw_bytes bytes) and checks its CRC.
Status decode_chunk(const CheckpointInfo& info, const CheckpointChunkEntry& e, std::span<const std::byte> file,
                    const std::string& name, std::byte* dst, std::vector<std::byte>& scratch, ZSTD_DCtx*& dctx) {
  const std::byte* src = file.data() + e.offset;
  if (e.compression == 0) {
    std::memcpy(dst, src, e.raw_bytes);
  } else {
    if (dctx == nullptr) dctx = ZSTD_createDCtx();
    std::byte* target = dst;
    if (e.filter != 0) {
      scratch.resize(e.raw_bytes);
      target = scratch.data();
    }
    const std::size_t n = ZSTD_decompressDCtx(dctx, target, e.raw_bytes, src, e.stored_bytes);
    if (ZSTD_isError(n) || n != e.raw_bytes) {
      return corrupt(name, "chunk " + std::to_string(e.index) + " does not decompress to " +
                               std::to_string(e.raw_bytes) + " bytes (" +
                               (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size") + ")");
    }
    if (e.filter == 1) byte_unshuffle(scratch.data(), dst, e.raw_bytes, info.element_bytes);
    if (e.filter == 2) delta_byte_unshuffle(scratch.data(), dst, e.raw_bytes, info.element_bytes);
  }
  if (crc32(dst, e.raw_bytes) != e.raw_crc)
    return corrupt(name, "chunk " + std::to_string(e.index) + " CRC mismatch (its data is damaged)");
  return Status();
}

}  // namespace

Result<std::uint32_t> verify_chunks(const ParsedCheckpoint& parsed, std::span<const std::byte> file,
                                    const std::string& name) {
  std::vector<std::byte> chunk, scratch;
  ZSTD_DCtx* dctx = nullptr;
  std::uint32_t running = 0;
  Status st;
  for (const CheckpointChunkEntry& e : parsed.chunks) {
    chunk.resize(e.raw_bytes);
    st = decode_chunk(parsed.info, e, file, name, chunk.data(), scratch, dctx);
    if (!st.ok()) break;
    running = crc32(chunk.data(), chunk.size(), running);
  }
  if (dctx != nullptr) ZSTD_freeDCtx(dctx);
  if (!st.ok()) return st;
  return running;
}

Status decode_chunks(const ParsedCheckpoint& parsed, std::span<const std::byte> file, const std::string& name,
                     std::span<std::byte> state) {
  const CheckpointInfo& info = parsed.info;
  if (state.size() != info.state_bytes)
    return Status(StatusCode::kInvalidArgument, "state buffer of " + std::to_string(state.size()) +
                                                    " bytes for a " + std::to_string(info.state_bytes) + "-byte state");
  std::vector<std::byte> scratch;
  ZSTD_DCtx* dctx = nullptr;
  Status result;
  for (const CheckpointChunkEntry& e : parsed.chunks) {
    result = decode_chunk(info, e, file, name, state.data() + std::uint64_t{e.index} * info.chunk_bytes, scratch, dctx);
    if (!result.ok()) break;
  }
  if (dctx != nullptr) ZSTD_freeDCtx(dctx);
  return result;
}

}  // namespace pkrt
