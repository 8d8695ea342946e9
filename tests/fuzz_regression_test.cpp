// FuzzRegression: every corpus input and every crash the fuzzers ever found is replayed
// through the fuzz target bodies in every build (under ASan/UBSan in the sanitizer suite).
#include "tests/fuzz/fuzz_targets.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace {

std::size_t replay_dir(const std::filesystem::path& dir,
                       void (*target)(const std::uint8_t*, std::size_t)) {
  std::size_t n = 0;
  if (!std::filesystem::exists(dir)) return 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file() || entry.path().filename() == "README.md") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    SCOPED_TRACE(entry.path().string());
    target(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    ++n;
  }
  return n;
}

TEST(FuzzRegression, CheckpointReaderSurvivesItsCorpusAndEveryRecordedCrash) {
  const std::filesystem::path root = PKRT_FUZZ_DIR;
  const std::size_t corpus = replay_dir(root / "corpus" / "checkpoint", &pkrt::fuzz::checkpoint_reader);
  const std::size_t crashes = replay_dir(root / "regressions" / "checkpoint", &pkrt::fuzz::checkpoint_reader);
  EXPECT_GE(corpus, 4u) << "the seed corpus is missing from " << root;
  std::printf("[ info ] replayed %zu corpus inputs and %zu recorded crashes\n", corpus, crashes);
}

TEST(FuzzRegression, ReplayLogReaderSurvivesItsCorpusAndEveryRecordedCrash) {
  const std::filesystem::path root = PKRT_FUZZ_DIR;
  const std::size_t corpus = replay_dir(root / "corpus" / "replay_log", &pkrt::fuzz::replay_log_reader);
  const std::size_t crashes = replay_dir(root / "regressions" / "replay_log", &pkrt::fuzz::replay_log_reader);
  EXPECT_GE(corpus, 4u) << "the seed corpus is missing from " << root;
  std::printf("[ info ] replayed %zu corpus inputs and %zu recorded crashes\n", corpus, crashes);
}

TEST(FuzzRegression, CheckpointManifestReaderSurvivesItsCorpusAndEveryRecordedCrash) {
  const std::filesystem::path root = PKRT_FUZZ_DIR;
  const std::size_t corpus =
      replay_dir(root / "corpus" / "checkpoint_manifest", &pkrt::fuzz::checkpoint_manifest_reader);
  const std::size_t crashes =
      replay_dir(root / "regressions" / "checkpoint_manifest", &pkrt::fuzz::checkpoint_manifest_reader);
  EXPECT_GE(corpus, 3u) << "the seed corpus is missing from " << root;
  std::printf("[ info ] replayed %zu corpus inputs and %zu recorded crashes\n", corpus, crashes);
}

TEST(FuzzRegression, K2KLogReaderSurvivesItsCorpusAndEveryRecordedCrash) {
  const std::filesystem::path root = PKRT_FUZZ_DIR;
  const std::size_t corpus = replay_dir(root / "corpus" / "k2k_log", &pkrt::fuzz::k2k_log_reader);
  const std::size_t crashes = replay_dir(root / "regressions" / "k2k_log", &pkrt::fuzz::k2k_log_reader);
  EXPECT_GE(corpus, 2u) << "the seed corpus is missing from " << root;
  std::printf("[ info ] replayed %zu corpus inputs and %zu recorded crashes\n", corpus, crashes);
}

TEST(FuzzRegression, GlobalManifestReaderSurvivesItsCorpusAndEveryRecordedCrash) {
  const std::filesystem::path root = PKRT_FUZZ_DIR;
  const std::size_t corpus = replay_dir(root / "corpus" / "global_manifest", &pkrt::fuzz::global_manifest_reader);
  const std::size_t crashes = replay_dir(root / "regressions" / "global_manifest", &pkrt::fuzz::global_manifest_reader);
  EXPECT_GE(corpus, 2u) << "the seed corpus is missing from " << root;
  std::printf("[ info ] replayed %zu corpus inputs and %zu recorded crashes\n", corpus, crashes);
}

}  // namespace
