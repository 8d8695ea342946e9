// Checkpoint: the file format round-trips, every damaged byte and every truncation is
// caught (or provably harmless), stores commit atomically, and delta chains restore.
#include "checkpoint/byte_shuffle.hpp"

#include <pkrt/checkpoint.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/crc32.hpp>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace pkrt {
namespace {

std::vector<std::byte> float_field(std::size_t bytes, std::uint64_t seed) {
  std::vector<std::byte> v(bytes);
  std::mt19937_64 rng(seed);
  for (std::size_t i = 0; i + 4 <= bytes; i += 4) {
    const float f = 300.0f + 20.0f * std::sin(static_cast<float>(i) * 1e-3f) + static_cast<float>(rng() % 100) * 1e-4f;
    std::memcpy(&v[i], &f, 4);
  }
  for (std::size_t i = bytes / 4 * 4; i < bytes; ++i) v[i] = static_cast<std::byte>(rng());
  return v;
}

CheckpointInfo info_for(std::uint64_t bytes, std::uint32_t chunk, std::uint64_t epoch) {
  CheckpointInfo info;
  info.app = "heat2d";
  info.params = {std::byte{1}, std::byte{2}, std::byte{3}};
  info.regions = {{"state", 0, bytes}};
  info.epoch = epoch;
  info.actor = 2;
  info.num_actors = 4;
  info.state_bytes = bytes;
  info.chunk_bytes = chunk;
  return info;
}

std::vector<std::uint32_t> all_chunks(const CheckpointInfo& info) {
  std::vector<std::uint32_t> v(info.chunk_count());
  for (std::uint32_t i = 0; i < v.size(); ++i) v[i] = i;
  return v;
}

std::vector<std::byte> encode_full(const std::vector<std::byte>& state, std::uint32_t chunk, std::uint64_t epoch,
                                   CheckpointEncodeOptions opts = {}) {
  CheckpointInfo info = info_for(state.size(), chunk, epoch);
  info.state_crc = crc32(state.data(), state.size());
  auto file = encode_checkpoint(info, state, all_chunks(info), opts);
  EXPECT_TRUE(file.ok()) << file.status().to_string();
  return file.ok() ? file.value() : std::vector<std::byte>{};
}

Result<std::vector<std::byte>> decode(const std::vector<std::byte>& file) {
  auto parsed = parse_checkpoint(file, "test.pkck");
  if (!parsed.ok()) return parsed.status();
  std::vector<std::byte> state(parsed->info.state_bytes);
  PKRT_RETURN_IF_ERROR(decode_chunks(parsed.value(), file, "test.pkck", state));
  return state;
}

TEST(Checkpoint, FullRoundTripsForEverySizeClassLevelAndFilter) {
  constexpr std::uint32_t kChunk = 4096;
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{kChunk - 1}, std::size_t{kChunk},
                            std::size_t{kChunk + 1}, std::size_t{37 * kChunk + 123}}) {
    for (int level : {0, 1, 3}) {
      for (std::uint16_t element : {0, 4, 8}) {
        for (bool word_delta : {false, true}) {
          const auto state = float_field(bytes, bytes);
          CheckpointEncodeOptions opts;
          opts.zstd_level = level;
          opts.shuffle_element = element;
          opts.word_delta = word_delta;
          auto back = decode(encode_full(state, kChunk, 10, opts));
          ASSERT_TRUE(back.ok()) << back.status().to_string() << " for " << bytes << " bytes, level " << level;
          EXPECT_EQ(back.value(), state) << bytes << " bytes, level " << level << ", element " << element
                                         << ", word delta " << word_delta;
        }
      }
    }
  }
}

// A copy of `file` relabelled as format version `version` (header CRC recomputed).
std::vector<std::byte> with_version(std::vector<std::byte> file, std::uint16_t version) {
  std::memcpy(file.data() + 8, &version, sizeof version);
  const std::uint32_t crc = crc32(file.data(), 124);
  std::memcpy(file.data() + 124, &crc, sizeof crc);
  return file;
}

TEST(Checkpoint, Version1FilesStillReadAndFilter2NeedsVersion2) {
  const auto state = float_field(3 * 4096 + 17, 21);
  CheckpointEncodeOptions filter1;
  filter1.word_delta = false;
  auto v1 = decode(with_version(encode_full(state, 4096, 7, filter1), 1));
  ASSERT_TRUE(v1.ok()) << v1.status().to_string();
  EXPECT_EQ(v1.value(), state);
  auto parsed = parse_checkpoint(with_version(encode_full(state, 4096, 7, filter1), 1), "v1.pkck");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->version, 1u);

  auto mislabelled = decode(with_version(encode_full(state, 4096, 7), 1));
  ASSERT_FALSE(mislabelled.ok());
  EXPECT_NE(mislabelled.status().message().find("chunk table entry"), std::string::npos)
      << mislabelled.status().message();
  auto future = decode(with_version(encode_full(state, 4096, 7), kCheckpointVersion + 1));
  ASSERT_FALSE(future.ok());
  EXPECT_NE(future.status().message().find("format version"), std::string::npos) << future.status().message();
}

TEST(Checkpoint, WordDeltaShuffleRoundTripsEveryWordSizeAndTail) {
  std::mt19937_64 rng(11);
  for (std::size_t k : {std::size_t{4}, std::size_t{8}}) {
    for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{8}, std::size_t{1001}}) {
      std::vector<std::byte> src(n), mid(n), back(n);
      for (auto& b : src) b = static_cast<std::byte>(rng());
      delta_byte_shuffle(src.data(), mid.data(), n, k);
      delta_byte_unshuffle(mid.data(), back.data(), n, k);
      EXPECT_EQ(back, src) << n << " bytes, words of " << k;
    }
  }
}

TEST(Checkpoint, ParallelCompressionWritesTheSameFileAsOneThread) {
  const auto state = float_field(100 * 4096 + 5, 8);
  CheckpointEncodeOptions one, four;
  one.threads = 1;
  four.threads = 4;
  const auto a = encode_full(state, 4096, 3, one);
  const auto b = encode_full(state, 4096, 3, four);
  EXPECT_EQ(a, b) << "chunks compress independently, so the file does not depend on threads";
  ASSERT_TRUE(decode(b).ok());
}

TEST(Checkpoint, ShuffleMakesAFloatFieldCompressBetterAndWordDeltaBetterStill) {
  const auto state = float_field(256 * 1024, 5);
  CheckpointEncodeOptions plain, shuffled, delta;
  plain.shuffle_element = 0;
  shuffled.shuffle_element = 4;
  shuffled.word_delta = false;
  delta.shuffle_element = 4;
  const auto a = encode_full(state, 65536, 1, plain);
  const auto b = encode_full(state, 65536, 1, shuffled);
  const auto c = encode_full(state, 65536, 1, delta);
  EXPECT_LT(b.size(), a.size());
  EXPECT_LT(c.size(), b.size());
  for (const auto* file : {&b, &c}) {
    ASSERT_TRUE(decode(*file).ok());
    EXPECT_EQ(decode(*file).value(), state);
  }
}

TEST(Checkpoint, DeltaRoundTripsForEverySizeClass) {
  constexpr std::uint32_t kChunk = 512;
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{kChunk - 1}, std::size_t{kChunk},
                            std::size_t{kChunk + 1}, std::size_t{40 * kChunk + 9}}) {
    MemoryCheckpointStore store;
    std::vector<std::byte> state = float_field(bytes, bytes + 1);
    CheckpointInfo base = info_for(bytes, kChunk, 1);
    base.state_crc = crc32(state.data(), state.size());
    auto full = encode_checkpoint(base, state, all_chunks(base), {});
    ASSERT_TRUE(full.ok());
    ASSERT_TRUE(store.put(checkpoint_file_name(base), full.value()).ok());
    std::vector<std::uint32_t> changed;
    if (bytes > 0) {  // change the first and the (possibly short) last chunk
      state.front() ^= std::byte{0xA5};
      state.back() ^= std::byte{0x3C};
      changed.push_back(0);
      if (base.chunk_count() > 1) changed.push_back(base.chunk_count() - 1);
    }
    CheckpointInfo delta = info_for(bytes, kChunk, 2);
    delta.delta = true;
    delta.parent_digest = checkpoint_digest(base);
    delta.state_crc = crc32(state.data(), state.size());
    auto file = encode_checkpoint(delta, state, changed, {});
    ASSERT_TRUE(file.ok()) << file.status().to_string();
    ASSERT_TRUE(store.put(checkpoint_file_name(delta), file.value()).ok());
    auto history = scan_checkpoints(store);
    ASSERT_TRUE(history.ok());
    auto got = load_actor_state(store, history.value(), 2, 2);
    ASSERT_TRUE(got.ok()) << got.status().to_string() << " for " << bytes << " bytes";
    EXPECT_EQ(got.value(), state) << bytes << " bytes";
  }
}

TEST(Checkpoint, DeltaChainRestoresEveryEpochThroughItsParents) {
  constexpr std::uint32_t kChunk = 1024;
  MemoryCheckpointStore store;
  std::vector<std::byte> state = float_field(20 * kChunk + 77, 9);
  std::vector<std::vector<std::byte>> expected;
  std::uint64_t parent = 0;
  std::mt19937_64 rng(10);
  for (std::uint64_t epoch = 100; epoch <= 500; epoch += 100) {
    CheckpointInfo info = info_for(state.size(), kChunk, epoch);
    std::vector<std::uint32_t> chunks = all_chunks(info);
    if (epoch > 100) {
      chunks.clear();
      for (int k = 0; k < 3; ++k) {  // change 3 chunks, one of them the short last chunk
        const std::uint32_t c = k == 0 ? info.chunk_count() - 1 : static_cast<std::uint32_t>(rng() % info.chunk_count());
        state[std::uint64_t{c} * kChunk] ^= std::byte{0x5A};
        chunks.push_back(c);
      }
      std::sort(chunks.begin(), chunks.end());
      chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
      info.delta = true;
      info.parent_digest = parent;
    }
    info.state_crc = crc32(state.data(), state.size());
    auto file = encode_checkpoint(info, state, chunks, {});
    ASSERT_TRUE(file.ok()) << file.status().to_string();
    auto parsed = parse_checkpoint(file.value(), "x");
    ASSERT_TRUE(parsed.ok());
    parent = parsed->info.digest;
    ASSERT_TRUE(store.put(checkpoint_file_name(info), file.value()).ok());
    expected.push_back(state);
  }
  auto history = scan_checkpoints(store);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    auto got = load_actor_state(store, history.value(), 2, 100 * (i + 1));
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(got.value(), expected[i]) << "epoch " << 100 * (i + 1);
  }
  // Losing the middle of the chain makes later epochs unrestorable, with a clear message.
  ASSERT_TRUE(store.remove(history->at(2).name).ok());
  auto after = scan_checkpoints(store);
  auto broken = load_actor_state(store, after.value(), 2, 500);
  EXPECT_EQ(broken.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(broken.status().message().find("parent"), std::string::npos) << broken.status().message();
  EXPECT_TRUE(load_actor_state(store, after.value(), 2, 200).ok());
}

TEST(Checkpoint, EverySingleByteChangeIsDetectedOrHarmless) {
  const auto state = float_field(3 * 256 + 10, 21);
  const auto file = encode_full(state, 256, 7);
  std::size_t detected = 0, harmless = 0;
  for (std::size_t pos = 0; pos < file.size(); ++pos) {
    for (std::byte flip : {std::byte{0x01}, std::byte{0x80}, std::byte{0xFF}}) {
      auto bad = file;
      bad[pos] ^= flip;
      auto got = decode(bad);
      if (!got.ok()) {
        ASSERT_EQ(got.status().code(), StatusCode::kCorruptData) << "byte " << pos;
        ++detected;
      } else {
        ASSERT_EQ(got.value(), state) << "byte " << pos << " changed the decoded state undetected";
        ++harmless;
      }
    }
  }
  EXPECT_GT(detected, file.size() * 2);
  std::printf("[ info ] %zu flips detected, %zu decoded to the identical state\n", detected, harmless);
}

TEST(Checkpoint, EveryTruncationIsDetected) {
  const auto file = encode_full(float_field(1000, 3), 256, 7);
  for (std::size_t n = 0; n < file.size(); ++n) {
    std::vector<std::byte> cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    auto got = parse_checkpoint(cut, "cut.pkck");
    ASSERT_FALSE(got.ok()) << "truncated to " << n << " bytes";
    ASSERT_EQ(got.status().code(), StatusCode::kCorruptData);
  }
  auto longer = file;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(parse_checkpoint(longer, "long.pkck").ok()) << "trailing bytes are detected too";
}

// A full checkpoint that declares `state_bytes` in `chunk_bytes` chunks but stores each
// chunk as 1..8 seeded random bytes marked zstd: every CRC and offset is right, so only
// the declared sizes give it away.
std::vector<std::byte> crafted_full(std::uint64_t state_bytes, std::uint32_t chunk_bytes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  CheckpointInfo info = info_for(state_bytes, chunk_bytes, 5);
  const std::uint32_t chunks = info.chunk_count();
  std::vector<std::byte> meta;
  auto put = [](std::vector<std::byte>& out, const auto& v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof v);
  };
  put(meta, static_cast<std::uint16_t>(info.app.size()));
  meta.insert(meta.end(), reinterpret_cast<const std::byte*>(info.app.data()),
              reinterpret_cast<const std::byte*>(info.app.data()) + info.app.size());
  put(meta, static_cast<std::uint32_t>(info.params.size()));
  meta.insert(meta.end(), info.params.begin(), info.params.end());
  put(meta, std::uint32_t{0});  // no regions
  put(meta, crc32(meta.data(), meta.size()));
  std::vector<std::vector<std::byte>> stored(chunks);
  for (auto& s : stored) {
    s.resize(1 + rng() % 8);
    for (auto& b : s) b = static_cast<std::byte>(rng());
  }
  const std::uint64_t digest = checkpoint_digest(info);
  std::vector<std::byte> file;
  file.insert(file.end(), reinterpret_cast<const std::byte*>("PKRTCKPT"), reinterpret_cast<const std::byte*>("PKRTCKPT") + 8);
  put(file, kCheckpointVersion);
  put(file, std::uint16_t{128});
  put(file, std::uint32_t{0});  // flags: full
  put(file, info.epoch);
  put(file, info.actor);
  put(file, info.num_actors);
  put(file, info.state_bytes);
  put(file, info.chunk_bytes);
  put(file, chunks);
  put(file, chunks);  // stored_chunks
  put(file, info.state_crc);
  put(file, digest);
  put(file, std::uint64_t{0});  // parent_digest
  put(file, static_cast<std::uint32_t>(meta.size()));
  put(file, std::uint16_t{0});  // element_bytes
  put(file, std::uint16_t{0});
  put(file, (std::uint64_t{static_cast<std::uint32_t>(info.params.size())} << 32) |
                crc32(info.params.data(), info.params.size()));
  file.resize(124);
  put(file, crc32(file.data(), 124));
  file.insert(file.end(), meta.begin(), meta.end());
  const std::size_t table_at = file.size();
  std::uint64_t offset = table_at + std::uint64_t{chunks} * 32;
  for (std::uint32_t i = 0; i < chunks; ++i) {
    const std::size_t at = file.size();
    put(file, i);
    put(file, static_cast<std::uint32_t>(std::min<std::uint64_t>(chunk_bytes, state_bytes - std::uint64_t{i} * chunk_bytes)));
    put(file, offset);
    put(file, static_cast<std::uint32_t>(stored[i].size()));
    put(file, std::uint8_t{1});   // zstd
    put(file, std::uint8_t{0});   // no filter
    put(file, std::uint16_t{0});
    put(file, std::uint32_t{0});  // raw_crc: never reached
    put(file, crc32(file.data() + at, 28));
    offset += stored[i].size();
  }
  const std::uint32_t table_crc = crc32(file.data() + table_at, file.size() - table_at);
  for (const auto& s : stored) file.insert(file.end(), s.begin(), s.end());
  const std::size_t footer_at = file.size();
  file.insert(file.end(), reinterpret_cast<const std::byte*>("PKRTEND1"), reinterpret_cast<const std::byte*>("PKRTEND1") + 8);
  put(file, static_cast<std::uint64_t>(footer_at + 32));
  put(file, digest);
  put(file, table_crc);
  put(file, crc32(file.data() + footer_at, 28));
  return file;
}

TEST(Checkpoint, HugeDeclaredStateIsRefusedBeforeAllocating) {
  // 1 TiB in 16384 chunks of 64 MiB, held in about 600 KB: parse_checkpoint is what every
  // reader (restore, replay, verify) runs before it sizes anything by state_bytes.
  const std::uint64_t tib = std::uint64_t{1} << 40;
  const auto file = crafted_full(tib, 64u << 20, 20240812);
  auto parsed = parse_checkpoint(file, "/ck/huge.pkck");
  ASSERT_FALSE(parsed.ok()) << "a " << file.size() << "-byte file was accepted as a 1 TiB state";
  EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData);
  const std::string& m = parsed.status().message();
  for (const std::string& part : {std::string("/ck/huge.pkck"), std::string("state_bytes ") + std::to_string(tib),
                                  std::string("raw_bytes 67108864"), std::string("stored_bytes"),
                                  std::to_string(file.size()) + "-byte file", std::string("Fix:")})
    EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in: " << m;
}

TEST(Checkpoint, AStateCompressedAsFarAsZstdGoesIsStillAccepted) {
  // Zeros compress to about 4 bytes per 128 KiB: the bound on declared sizes must let the
  // densest real encoding through.
  const std::vector<std::byte> zeros(4u << 20);
  const auto file = encode_full(zeros, 4u << 20, 9, CheckpointEncodeOptions{.zstd_level = 19});
  auto state = decode(file);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  EXPECT_EQ(state.value(), zeros);
}

TEST(Checkpoint, ErrorsNameTheFileAndThePart) {
  auto file = encode_full(float_field(1000, 3), 256, 7);
  file[0] = std::byte{'X'};
  auto magic = parse_checkpoint(file, "/ck/a.pkck");
  EXPECT_NE(magic.status().message().find("/ck/a.pkck"), std::string::npos);
  EXPECT_NE(magic.status().message().find("magic"), std::string::npos);
  auto good = encode_full(float_field(1000, 3), 256, 7);
  auto parsed = parse_checkpoint(good, "b.pkck");
  ASSERT_TRUE(parsed.ok());
  good[parsed->chunks[1].offset + 1] ^= std::byte{0x10};
  auto chunk = decode(good);
  ASSERT_FALSE(chunk.ok());
  EXPECT_NE(chunk.status().message().find("chunk 1"), std::string::npos) << chunk.status().message();
}

TEST(Checkpoint, FileStoreCommitsAtomicallyAndListsOnlyFinalNames) {
  const auto dir = std::filesystem::temp_directory_path() / ("pkrt_store_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto store = FileCheckpointStore::open(dir.string());
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  const auto file = encode_full(float_field(5000, 1), 1024, 42);
  ASSERT_TRUE(store.value()->put("heat2d-a000002-e000000000042-full.pkck", file).ok());
  std::FILE* junk = std::fopen((dir / ".heat2d-a000002-e000000000043-full.pkck.1.0.tmp").c_str(), "w");
  ASSERT_NE(junk, nullptr);
  std::fputs("partial", junk);
  std::fclose(junk);
  auto names = store.value()->list();
  ASSERT_TRUE(names.ok());
  ASSERT_EQ(names->size(), 1u);
  auto back = store.value()->get(names->front());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value(), file);
  EXPECT_EQ(store.value()->put("../escape.pkck", file).code(), StatusCode::kInvalidArgument);
  std::filesystem::remove_all(dir);
}

TEST(Checkpoint, HistoryIsOrderedByEpochNumericallyNotByName) {
  MemoryCheckpointStore store;
  for (std::uint64_t epoch : {9ull, 100ull, 10ull}) {
    const auto state = float_field(100, epoch);
    CheckpointInfo info = info_for(state.size(), 256, epoch);
    info.state_crc = crc32(state.data(), state.size());
    auto file = encode_checkpoint(info, state, all_chunks(info), {});
    ASSERT_TRUE(file.ok());
    // Names that sort the wrong way on purpose.
    ASSERT_TRUE(store.put("z" + std::to_string(1000 - epoch) + ".pkck", file.value()).ok());
  }
  ASSERT_TRUE(store.put("broken.pkck", std::vector<std::byte>(10)).ok());
  auto history = scan_checkpoints(store);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 4u);
  EXPECT_EQ(history->at(0).info.epoch, 9u);
  EXPECT_EQ(history->at(1).info.epoch, 10u);
  EXPECT_EQ(history->at(2).info.epoch, 100u);
  EXPECT_FALSE(history->at(3).status.ok()) << "damaged files are listed last, with their error";
}

TEST(Checkpoint, KilledWriterLeavesOnlyCompleteVerifiableCheckpoints) {
  const std::uint64_t seed = 20261122;
  std::printf("[ seed ] %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const auto dir = std::filesystem::temp_directory_path() / ("pkrt_kill_" + std::to_string(::getpid()));
  for (int round = 0; round < 12; ++round) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto store = FileCheckpointStore::open(dir.string());
      if (!store.ok()) ::_exit(3);
      for (std::uint64_t epoch = 1;; ++epoch) {
        const auto state = float_field(200 * 1024, epoch);
        CheckpointInfo info = info_for(state.size(), 65536, epoch);
        info.state_crc = crc32(state.data(), state.size());
        auto file = encode_checkpoint(info, state, all_chunks(info), {});
        if (!file.ok() || !store.value()->put(checkpoint_file_name(info), file.value()).ok()) ::_exit(4);
      }
    }
    ::usleep(static_cast<useconds_t>(2000 + rng() % 60000));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped on its own (status " << status << ")";
    auto store = FileCheckpointStore::open(dir.string());
    ASSERT_TRUE(store.ok());
    auto history = scan_checkpoints(*store.value());
    ASSERT_TRUE(history.ok());
    for (const auto& rec : history.value()) {
      ASSERT_TRUE(rec.status.ok()) << rec.name << ": " << rec.status.to_string();
      auto state = load_actor_state(*store.value(), history.value(), rec.info.actor, rec.info.epoch);
      ASSERT_TRUE(state.ok()) << rec.name << ": " << state.status().to_string();
      EXPECT_EQ(state.value(), float_field(200 * 1024, rec.info.epoch));
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(Checkpoint, AFifoWhereACheckpointFileShouldBeIsRefusedAtOnce) {
  const auto dir = std::filesystem::temp_directory_path() / ("pkrt_fifo_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string fifo = (dir / "heat2d-a000000-e000000000010-full.pkck").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0) << std::strerror(errno);
  // Opening a FIFO that has no writer for reading would block for ever.
  auto read = read_checkpoint_file(fifo);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kIoError);
  EXPECT_NE(read.status().message().find("not a regular file"), std::string::npos) << read.status().message();
  std::filesystem::remove_all(dir);
}

TEST(Checkpoint, AStrayHugeManifestIsRefusedByItsSizeWithoutReadingAllOfIt) {
  const auto dir = std::filesystem::temp_directory_path() / ("pkrt_huge_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "heat2d-set-e000000000010.pkset").string();
  // Sparse: 64 GiB declared, nothing on disk. Reading it whole would not fit this machine.
  {
    std::ofstream f(path);
  }
  std::filesystem::resize_file(path, std::uint64_t{64} << 30);
  auto read = read_checkpoint_file(path);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_EQ(read.value().size(), kMaxCheckpointManifestBytes + 1) << "read no more than a manifest can be, plus one";
  auto parsed = parse_checkpoint_manifest(read.value(), path);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(parsed.status().message().find("larger than any manifest"), std::string::npos)
      << parsed.status().to_string();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pkrt
