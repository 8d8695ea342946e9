// Ptx: the ring's device paths keep system-scope release/acquire after compilation (a block's
// shared copy of an H2K run included), and the device's grid barrier its device-scope orders
// and its sleep. Reads the PTX that the build produced from tests/ptx/ring_probe.cu (path in
// PKRT_PROBE_PTX).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>

namespace {

std::string function_body(const std::string& ptx, const std::string& name) {
  const auto start = ptx.find(".entry " + name);
  if (start == std::string::npos) return "";
  const auto open = ptx.find('{', start);
  int depth = 0;
  for (std::size_t i = open; i < ptx.size(); ++i) {
    if (ptx[i] == '{') ++depth;
    if (ptx[i] == '}' && --depth == 0) return ptx.substr(open, i - open + 1);
  }
  return "";
}

std::string read_ptx() {
  std::ifstream in(PKRT_PROBE_PTX);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Ptx, PublishStoresTheSequenceWithSystemScopeRelease) {
  const std::string body = function_body(read_ptx(), "pkrt_probe_publish");
  ASSERT_FALSE(body.empty()) << "pkrt_probe_publish not found in " << PKRT_PROBE_PTX;
  // The slot's sequence store: st.release.sys (or a fence.acq_rel.sys/sc.sys before a
  // relaxed/volatile system store on older targets).
  const bool release_store = std::regex_search(body, std::regex(R"(st\.release\.sys(\.global)?\.[bu]64)"));
  const bool fenced_store = std::regex_search(body, std::regex(R"(fence\.(acq_rel|sc)\.sys)")) &&
                            std::regex_search(body, std::regex(R"(st\.(relaxed|volatile)\.sys(\.global)?\.[bu]64)"));
  EXPECT_TRUE(release_store || fenced_store) << body;
  // The consumer index reload on a full ring: an acquire load at system scope.
  EXPECT_TRUE(std::regex_search(body, std::regex(R"(ld\.acquire\.sys(\.global)?\.[bu]64)"))) << body;
}

TEST(Ptx, AStagedRunStoresEachSequenceAndThenPublishedWithSystemScopeRelease) {
  const std::string body = function_body(read_ptx(), "pkrt_probe_stage_run");
  ASSERT_FALSE(body.empty()) << "pkrt_probe_stage_run not found in " << PKRT_PROBE_PTX;
  // Two slots' sequence words and the ring's `published`: three release stores at system
  // scope (st.release.sys, or relaxed/volatile system stores each behind a fence).
  const std::regex release_store(R"(st\.release\.sys(\.global)?\.[bu]64)");
  const std::regex fenced_store(R"(st\.(relaxed|volatile)\.sys(\.global)?\.[bu]64)");
  const std::regex fence(R"(fence\.(acq_rel|sc)\.sys)");
  auto count = [&body](const std::regex& re) {
    return std::distance(std::sregex_iterator(body.begin(), body.end(), re), std::sregex_iterator());
  };
  const bool released = count(release_store) >= 3 || (count(fenced_store) >= 3 && count(fence) >= 3);
  EXPECT_TRUE(released) << body;
  EXPECT_FALSE(std::regex_search(body, std::regex(R"(atom\.)"))) << body;
}

TEST(Ptx, PollLoadsTheSequenceWithSystemScopeAcquireAndReleasesTheHead) {
  const std::string body = function_body(read_ptx(), "pkrt_probe_poll");
  ASSERT_FALSE(body.empty()) << "pkrt_probe_poll not found in " << PKRT_PROBE_PTX;
  EXPECT_TRUE(std::regex_search(body, std::regex(R"(ld\.acquire\.sys(\.global)?\.[bu]64)"))) << body;
  EXPECT_TRUE(std::regex_search(body, std::regex(R"(st\.release\.sys(\.global)?\.[bu]64)"))) << body;
  // No read-modify-write atomics: they do not work across PCIe.
  EXPECT_FALSE(std::regex_search(body, std::regex(R"(atom\.)"))) << body;
}

// Checks the probe kernel built on stage_h2k_run, the function apply_due_commands calls; that
// apply_due_commands commits only after it returns is its own code's to keep (a GPU runs it;
// the CPU backend's one-thread blocks never split the copy).
TEST(Ptx, ABlockCopiesItsH2KRunWithAcquireLoadsBetweenBarriersBeforeTheHeadRelease) {
  const std::string body = function_body(read_ptx(), "pkrt_probe_h2k_stage");
  ASSERT_FALSE(body.empty()) << "pkrt_probe_h2k_stage not found in " << PKRT_PROBE_PTX;
  // In this order: the barrier after the leader's bounds, each thread's acquire of its slot's
  // seq at system scope (the slot is host memory), the barrier that hands the copies to the
  // leader, and only then the leader's release of the ring's head. Positions, not one regex:
  // std::regex recurses per character over a body this size.
  const std::regex barrier(R"((bar|barrier)(\.cta)?\.sync)");
  const std::regex acquire(R"(ld\.acquire\.sys(\.global)?\.[bu]64)");
  const std::regex release(R"(st\.release\.sys(\.global)?\.[bu]64)");
  auto first_after = [&body](const std::regex& re, std::size_t from) -> std::size_t {
    std::smatch m;
    const std::string rest = body.substr(from);
    return std::regex_search(rest, m, re) ? from + static_cast<std::size_t>(m.position(0)) : std::string::npos;
  };
  const std::size_t bounds_barrier = first_after(barrier, 0);
  ASSERT_NE(bounds_barrier, std::string::npos) << body;
  const std::size_t seq_acquire = first_after(acquire, bounds_barrier);
  ASSERT_NE(seq_acquire, std::string::npos) << "no acquire of a slot's seq after the first barrier\n" << body;
  const std::size_t copies_barrier = first_after(barrier, seq_acquire);
  ASSERT_NE(copies_barrier, std::string::npos) << "no barrier after the copies\n" << body;
  const std::size_t head_release = first_after(release, copies_barrier);
  ASSERT_NE(head_release, std::string::npos) << "no release of the head after the copies' barrier\n" << body;
  // No slot is read after the last barrier before the head's release.
  EXPECT_EQ(first_after(acquire, copies_barrier), std::string::npos) << body;
  EXPECT_EQ(first_after(release, 0), head_release) << "the head is released before the copies' barrier\n" << body;
  EXPECT_FALSE(std::regex_search(body, std::regex(R"(atom\.)"))) << body;
}

TEST(Ptx, GridBarrierReleasesItsArrivalBetweenBlockBarriersAndSleepsBetweenAcquirePolls) {
  const std::string body = function_body(read_ptx(), "pkrt_probe_grid_barrier");
  ASSERT_FALSE(body.empty()) << "pkrt_probe_grid_barrier not found in " << PKRT_PROBE_PTX;
  // In this order: the block barrier that makes the block's writes thread 0's, its release
  // add, the acquire polls, the block barrier that hands what they acquired to the block.
  // Device scope: the word is in device memory and only blocks touch it.
  EXPECT_TRUE(std::regex_search(body, std::regex(R"(bar\.sync[\s\S]*atom(\.add)?\.release\.gpu(\.add)?\.u32[\s\S]*)"
                                                 R"(ld\.acquire\.gpu(\.global)?\.b32[\s\S]*bar\.sync)")))
      << body;
  EXPECT_TRUE(std::regex_search(body, std::regex(R"(nanosleep)"))) << body;
  EXPECT_FALSE(std::regex_search(body, std::regex(R"(\.sys)"))) << body;
}

TEST(Ptx, DeviceCrc32ReadsItsTablesFromConstantMemory) {
  const std::string body = function_body(read_ptx(), "pkrt_probe_crc32");
  ASSERT_FALSE(body.empty()) << "pkrt_probe_crc32 not found in " << PKRT_PROBE_PTX;
  EXPECT_TRUE(std::regex_search(body, std::regex(R"(ld\.const\.u32)"))) << body;
}

}  // namespace
