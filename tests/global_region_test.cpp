// The app-wide (global) region in snapshots and checkpoint sets: snapshot_all with
// SnapshotScope::kActorsAndGlobal copies it at the same cut as the actors while the grid
// runs on, a checkpoint set holds it, and a restored run continues from it exactly.
//
// racy_sum keeps its accumulator there, double-buffered by epoch parity: at the end of
// epoch e, slot e & 1 holds epoch e's total (actor 0 reads and clears it in e + 1) and slot
// (e + 1) & 1 is exactly zero (cleared in e; nobody adds to it before e + 1). Under chaos
// mode the total is a known float sum (blocks in the seeded order, actors in index order).
#include "examples/racy_sum/racy_sum.hpp"
#include "tests/test_support.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/detail/chaos.hpp>
#include <pkrt/detail/kernel_args.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>

namespace pkrt {
namespace {

using namespace std::chrono_literals;
using examples::RacySum;

constexpr std::uint32_t kActors = 8, kThreads = 4;
constexpr std::uint64_t kAppSeed = 5;

RuntimeOptions racy_options(std::optional<std::uint64_t> chaos_seed) {
  RuntimeOptions o = testing::cpu_runtime(kActors, kThreads, 256);
  if (chaos_seed) {
    o.chaos = true;
    o.chaos_seed = *chaos_seed;
  }
  return o;
}

std::unique_ptr<Runtime> make_racy(std::optional<std::uint64_t> chaos_seed) {
  RacySum::Params p;
  p.seed = kAppSeed;
  auto created = Runtime::create(examples::racy_sum_program(), p, racy_options(chaos_seed));
  EXPECT_TRUE(created.ok()) << created.status().to_string();
  return created.ok() ? std::move(created.value()) : nullptr;
}

// Epoch e's total as chaos mode orders the adds.
float chaos_total(std::uint64_t chaos_seed, std::uint64_t epoch) {
  float acc = 0.0f;
  for (std::uint32_t b : detail::chaos_block_order(chaos_seed, epoch, kThreads))
    for (std::uint32_t a = detail::block_first_actor(b, kThreads, kActors);
         a < detail::block_first_actor(b + 1, kThreads, kActors); ++a)
      acc = acc + RacySum::contribution(kAppSeed, a, epoch);
  return acc;
}

struct Accumulator {
  float slot[2];
};

Accumulator accumulator_of(const SnapshotImage& img) {
  Accumulator acc{};
  EXPECT_EQ(img.image->size(), sizeof acc);
  if (img.image->size() == sizeof acc) std::memcpy(&acc, img.image->data(), sizeof acc);
  return acc;
}


using testing::SnapshotCollector;

const SnapshotImage* global_image(const std::vector<SnapshotImage>& images) {
  for (const auto& img : images)
    if (img.actor == kGlobalRegionActor) return &img;
  return nullptr;
}

TEST(GlobalRegion, TheDefaultScopeSnapshotsTheActorsOnlyAndTheWiderOneAddsTheRegion) {
  auto rt = make_racy(std::nullopt);
  ASSERT_NE(rt, nullptr);
  SnapshotCollector images(*rt);
  EXPECT_EQ(rt->image_layout().global_bytes, sizeof(Accumulator));
  ASSERT_TRUE(rt->set_target_epoch(6).ok());
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->run_until(6, 30s).ok());
  auto actors_only = rt->snapshot_all(6);
  ASSERT_TRUE(actors_only.ok()) << actors_only.status().to_string();
  const auto first = images.wait(actors_only.value(), kActors);
  ASSERT_EQ(first.size(), kActors);
  EXPECT_EQ(global_image(first), nullptr);
  auto with_global = rt->snapshot_all(6, false, SnapshotScope::kActorsAndGlobal);
  ASSERT_TRUE(with_global.ok()) << with_global.status().to_string();
  const auto second = images.wait(with_global.value(), kActors + 1);
  ASSERT_EQ(second.size(), kActors + 1);
  const SnapshotImage* g = global_image(second);
  ASSERT_NE(g, nullptr);
  ASSERT_TRUE(g->status.ok()) << g->status.to_string();
  EXPECT_EQ(g->epoch, 6u);
  EXPECT_EQ(accumulator_of(*g).slot[1], 0.0f);  // slot 7 & 1, cleared in epoch 6
  EXPECT_NE(accumulator_of(*g).slot[0], 0.0f);  // epoch 6's total, read in epoch 7
  ASSERT_TRUE(rt->shutdown().ok());
}

// Snapshots served while the grid runs on: the next epoch's adds (into slot (e + 1) & 1) and
// actor 0's clear of slot e & 1 must not reach the copy. Every block waits at one extra
// barrier while block 0 copies the region; without it these images tear.
TEST(GlobalRegion, TheRegionsImageIsTheCutOfItsEpochWhileTheGridRunsOn) {
  auto rt = make_racy(std::nullopt);
  ASSERT_NE(rt, nullptr);
  SnapshotCollector images(*rt);
  ASSERT_TRUE(rt->set_target_epoch(1u << 30).ok());
  ASSERT_TRUE(rt->start().ok());
  for (int i = 0; i < 40; ++i) {
    auto id = rt->snapshot_all(rt->epoch() + 2, false, SnapshotScope::kActorsAndGlobal);
    ASSERT_TRUE(id.ok()) << id.status().to_string();
    const auto got = images.wait(id.value(), kActors + 1);
    const SnapshotImage* g = global_image(got);
    ASSERT_NE(g, nullptr);
    ASSERT_TRUE(g->status.ok()) << g->status.to_string();
    const Accumulator acc = accumulator_of(*g);
    SCOPED_TRACE("snapshot at epoch " + std::to_string(g->epoch));
    EXPECT_EQ(acc.slot[(g->epoch + 1) & 1u], 0.0f);
    EXPECT_NE(acc.slot[g->epoch & 1u], 0.0f);
    for (const auto& img : got) EXPECT_EQ(img.epoch, g->epoch);  // one cut
  }
  ASSERT_TRUE(rt->shutdown().ok());
}

TEST(GlobalRegion, UnderChaosTheRegionsImageHoldsExactlyThePredictedTotal) {
  constexpr std::uint64_t kChaos = 17;
  auto rt = make_racy(kChaos);
  ASSERT_NE(rt, nullptr);
  SnapshotCollector images(*rt);
  ASSERT_TRUE(rt->set_target_epoch(1u << 30).ok());
  ASSERT_TRUE(rt->start().ok());
  for (int i = 0; i < 10; ++i) {
    auto id = rt->snapshot_all(rt->epoch() + 3, false, SnapshotScope::kActorsAndGlobal);
    ASSERT_TRUE(id.ok());
    const auto got = images.wait(id.value(), kActors + 1);
    const SnapshotImage* g = global_image(got);
    ASSERT_NE(g, nullptr);
    const float want = chaos_total(kChaos, g->epoch);
    const Accumulator acc = accumulator_of(*g);
    EXPECT_EQ(std::memcmp(&acc.slot[g->epoch & 1u], &want, sizeof want), 0) << "epoch " << g->epoch;
  }
  ASSERT_TRUE(rt->shutdown().ok());
}

// Runs racy_sum under chaos from `restore` (or from scratch) to `epochs`, checkpointing into
// `store` at `checkpoint_epoch` (0: none). Returns the totals reported, by epoch.
std::map<std::uint64_t, float> run_racy(std::uint64_t chaos, std::uint64_t epochs, const RestorePoint* restore,
                                        CheckpointStore* store, std::uint64_t checkpoint_epoch) {
  std::map<std::uint64_t, float> totals;
  std::mutex mu;
  auto rt = make_racy(chaos);
  if (rt == nullptr) return totals;
  rt->set_event_callback([&](const Event& ev) {
    if (ev.opcode != examples::kRacySumTotal) return;
    const auto d = ev.as<examples::RacySumTotalData>();
    std::lock_guard<std::mutex> lock(mu);
    totals[d.epoch] = d.total;
  });
  if (restore != nullptr) {
    Status st = rt->restore_before_start(restore->epoch, restore->images, restore->global);
    EXPECT_TRUE(st.ok()) << st.to_string();
  }
  std::unique_ptr<CheckpointManager> manager;
  if (store != nullptr) {
    struct Borrowed : CheckpointStore {
      explicit Borrowed(CheckpointStore& s) : inner(s) {}
      Status put(const std::string& n, const std::vector<std::byte>& b) override { return inner.put(n, b); }
      Result<std::vector<std::byte>> get(const std::string& n) const override { return inner.get(n); }
      Result<std::vector<std::string>> list() const override { return inner.list(); }
      Status remove(const std::string& n) override { return inner.remove(n); }
      std::string describe(const std::string& n) const override { return inner.describe(n); }
      CheckpointStore& inner;
    };
    CheckpointPolicy policy;
    policy.encode.zstd_level = 1;
    auto m = CheckpointManager::create(*rt, std::make_unique<Borrowed>(*store), policy);
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    if (m.ok()) manager = std::move(m.value());
  }
  const std::uint64_t first_stop = checkpoint_epoch != 0 ? checkpoint_epoch : epochs;
  EXPECT_TRUE(rt->set_target_epoch(first_stop).ok());
  EXPECT_TRUE(rt->start().ok());
  EXPECT_TRUE(rt->run_until(first_stop, 60s).ok());
  if (manager && checkpoint_epoch != 0) {
    EXPECT_TRUE(manager->checkpoint_at(checkpoint_epoch).ok());
    EXPECT_TRUE(manager->wait_served(30s).ok());
    Status flushed = manager->flush(30s);
    EXPECT_TRUE(flushed.ok()) << flushed.to_string();
    EXPECT_TRUE(rt->set_target_epoch(epochs).ok());
    EXPECT_TRUE(rt->run_until(epochs, 60s).ok());
  }
  manager.reset();
  EXPECT_TRUE(rt->shutdown().ok());
  std::lock_guard<std::mutex> lock(mu);
  return totals;
}

TEST(GlobalRegion, ACheckpointSetHoldsTheRegionAndARestoredRunReportsTheStraightRunsTotals) {
  constexpr std::uint64_t kChaos = 4, kCut = 30, kEnd = 60;
  MemoryCheckpointStore store;
  const auto straight = run_racy(kChaos, kEnd, nullptr, &store, kCut);
  ASSERT_EQ(straight.size(), kEnd - 1);

  auto sets = scan_checkpoint_sets(store);
  ASSERT_TRUE(sets.ok());
  ASSERT_EQ(sets->size(), 1u);
  const CheckpointManifest& m = sets->front().manifest;
  EXPECT_EQ(m.fingerprint.global_bytes, sizeof(Accumulator));
  ASSERT_EQ(m.members.size(), kActors + 2);  // and the queued commands, last
  const CheckpointSetMember& global = m.members[kActors];
  EXPECT_EQ(global.actor, kGlobalRegionActor);
  EXPECT_NE(global.file.find("-global-"), std::string::npos) << global.file;

  auto rt = make_racy(kChaos);
  ASSERT_NE(rt, nullptr);
  RestoreQuery q;
  q.fingerprint = checkpoint_fingerprint(*rt);
  auto point = find_restore_point(store, q);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  ASSERT_EQ(point->epoch, kCut);
  ASSERT_EQ(point->global.size(), sizeof(Accumulator));
  Accumulator acc;
  std::memcpy(&acc, point->global.data(), sizeof acc);
  const float want = chaos_total(kChaos, kCut);
  EXPECT_EQ(std::memcmp(&acc.slot[kCut & 1u], &want, sizeof want), 0);

  // The total of the restore epoch is read from the restored region in the next epoch.
  const auto restored = run_racy(kChaos, kEnd, &point.value(), nullptr, 0);
  ASSERT_EQ(restored.size(), kEnd - kCut);
  for (const auto& [epoch, total] : restored) {
    ASSERT_EQ(straight.count(epoch), 1u) << "epoch " << epoch;
    const float s = straight.at(epoch);
    EXPECT_EQ(std::memcmp(&total, &s, sizeof s), 0) << "epoch " << epoch << ": " << total << " vs " << s;
  }
  EXPECT_EQ(restored.begin()->first, kCut);
}

TEST(GlobalRegion, RestoreWithoutTheRegionsImageIsRefusedNamingIt) {
  auto rt = make_racy(std::nullopt);
  ASSERT_NE(rt, nullptr);
  const std::vector<std::vector<std::byte>> images(kActors, std::vector<std::byte>(rt->image_layout().image_bytes));
  Status st = rt->restore_before_start(10, images);
  ASSERT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("global region"), std::string::npos) << st.message();
  const std::vector<std::byte> wrong(3);
  EXPECT_EQ(rt->restore_before_start(10, images, wrong).code(), StatusCode::kInvalidArgument);
}

CheckpointManifest manifest_with_global() {
  CheckpointManifest m;
  m.epoch = 40;
  m.sequence = 2;
  m.fingerprint.app = "racy_sum";
  m.fingerprint.num_actors = 2;
  m.fingerprint.image_bytes = 512;
  m.fingerprint.chunk_bytes = 256;
  m.fingerprint.regions = {{"state", 0, 16}};
  m.fingerprint.global_bytes = 8;
  for (std::uint32_t a : {0u, 1u, kGlobalRegionActor}) {
    CheckpointSetMember mem;
    mem.actor = a;
    CheckpointInfo info;
    info.app = "racy_sum";
    info.epoch = 40;
    info.actor = a;
    mem.file = checkpoint_member_name(info, 2);
    mem.digest = 0x1000 + a;
    mem.file_bytes = 300;
    m.members.push_back(mem);
  }
  return m;
}

TEST(GlobalRegionManifest, TheGlobalMemberRoundTripsAfterTheActors) {
  const CheckpointManifest m = manifest_with_global();
  EXPECT_EQ(m.members.back().file, "racy_sum-e000000000040-s000002-global-full.pkck");
  EXPECT_EQ(checkpoint_member_sequence(m.members.back().file), 2u);
  const auto bytes = encode_checkpoint_manifest(m);
  auto parsed = parse_checkpoint_manifest(bytes, "m.pkset");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->version, kCheckpointManifestVersion);
  EXPECT_EQ(parsed->fingerprint.global_bytes, 8u);
  ASSERT_EQ(parsed->members.size(), 3u);
  EXPECT_EQ(parsed->members[2].actor, kGlobalRegionActor);
  EXPECT_EQ(encode_checkpoint_manifest(parsed.value()), bytes);
}

TEST(GlobalRegionManifest, AManifestWithoutTheGlobalMemberOrWithItOutOfPlaceIsRefused) {
  CheckpointManifest missing = manifest_with_global();
  missing.members.pop_back();
  auto a = parse_checkpoint_manifest(encode_checkpoint_manifest(missing), "missing.pkset");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("global region"), std::string::npos) << a.status().message();

  CheckpointManifest swapped = manifest_with_global();
  std::swap(swapped.members[1], swapped.members[2]);
  EXPECT_FALSE(parse_checkpoint_manifest(encode_checkpoint_manifest(swapped), "swapped.pkset").ok());
}

TEST(GlobalRegionManifest, AVersion1ManifestIsReadAsASetWithoutTheRegionAndRestoreRefusesItNamingTheRegion) {
  CheckpointManifest v1 = manifest_with_global();
  v1.version = 1;
  v1.fingerprint.global_bytes = 0;
  v1.members.pop_back();
  const auto bytes = encode_checkpoint_manifest(v1);
  auto parsed = parse_checkpoint_manifest(bytes, "v1.pkset");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->version, 1u);
  EXPECT_EQ(parsed->fingerprint.global_bytes, 0u);
  EXPECT_EQ(encode_checkpoint_manifest(parsed.value()), bytes);  // read back byte for byte

  CheckpointFingerprint now = parsed->fingerprint;
  now.global_bytes = 8;
  Status st = compare_fingerprints(parsed->fingerprint, now, "v1.pkset");
  ASSERT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("global region of 0 bytes"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("8 bytes"), std::string::npos) << st.message();
}

TEST(GlobalRegionManifest, ParamsThatDifferOnlyInBytesNoFieldShowsAreNamedAsPadding) {
  CheckpointFingerprint saved = manifest_with_global().fingerprint;
  saved.params = {std::byte{1}, std::byte{0}, std::byte{0xAA}};
  CheckpointFingerprint now = saved;
  now.params[2] = std::byte{0x55};
  const ParamsDescriber first_byte = [](std::span<const std::byte> b) {
    return "--seed " + std::to_string(b.empty() ? 0 : static_cast<int>(b[0]));
  };
  Status st = compare_fingerprints(saved, now, "s.pkset", first_byte);
  ASSERT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("padding"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace pkrt
