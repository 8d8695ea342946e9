// The staging pool (RuntimeOptions::staging_bytes): how large it is, snapshot_all of more
// actors than it holds served in waves at one cut, and how single-actor snapshots, live
// restores and withdrawn requests share it.
#include "examples/heat2d/heat2d_host.hpp"
#include "tests/probe_actor.hpp"
#include "tests/test_support.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/crc32.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <cstring>

namespace pkrt {
namespace {

using namespace std::chrono_literals;
using testing::SnapshotCollector;

constexpr std::uint32_t kActors = 8;

examples::Heat2d::Params heat_params(std::uint32_t actors) {
  examples::Heat2d::Params p;
  p.width = 64;
  p.height = 48;
  p.seed = 11;
  p.stats_every = 0;
  examples::heat2d_choose_tiles(p, actors);
  return p;
}

// A pool of `slots` actor images (0: the default).
RuntimeOptions with_pool(std::uint32_t actors, std::uint32_t threads, std::uint64_t slots) {
  RuntimeOptions o = testing::cpu_runtime(actors, threads, 1024);
  if (slots != 0) {
    // One slot's size, from a runtime of the same app and layout.
    auto probe = Runtime::create(examples::heat2d_program(), heat_params(actors), o);
    if (probe.ok()) o.staging_bytes = slots * probe.value()->image_layout().staging_slot_bytes;
  }
  return o;
}

std::unique_ptr<Runtime> make_heat(std::uint32_t actors, std::uint32_t threads, std::uint64_t slots) {
  auto created = Runtime::create(examples::heat2d_program(), heat_params(actors), with_pool(actors, threads, slots));
  EXPECT_TRUE(created.ok()) << created.status().to_string();
  return created.ok() ? std::move(created.value()) : nullptr;
}

void inject(Runtime& rt, const examples::Heat2d::Params& p) {
  // Heat arriving around the cut, so the images differ from epoch to epoch.
  const examples::Heat2dScheduledInjection injections[] = {
      {18, {5, 5, 60.0f}}, {20, {40, 30, 25.0f}}, {21, {63, 47, 80.0f}}, {33, {10, 40, 15.0f}}};
  for (const auto& inj : injections)
    (void)rt.post(examples::Heat2d::actor_of(p, inj.inject.x, inj.inject.y), examples::kHeat2dInject, inj.inject,
                  inj.epoch);
}

TEST(StagingPool, TheDefaultPoolIsAQuarterOfTheImagesWithinItsCapAndFloor) {
  constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
  EXPECT_EQ(staging_pool_slots(0, kMiB, 2048), 256u) << "a quarter of 2 GiB is more than the 256 MiB cap";
  EXPECT_EQ(staging_pool_slots(0, kMiB, 400), 100u) << "a quarter of 400 MiB";
  EXPECT_EQ(staging_pool_slots(0, kMiB, 100), 64u) << "never less than the 64 MiB floor";
  EXPECT_EQ(staging_pool_slots(0, 1024, 8), 8u) << "images that fit in the floor are all staged";
  EXPECT_EQ(staging_pool_slots(0, 100 * kMiB, 8), 2u) << "a quarter of 8 large images";
  EXPECT_EQ(staging_pool_slots(0, 100 * kMiB, 3), 1u) << "never less than one image";
  EXPECT_EQ(staging_pool_slots(3 * 4096, 4096, 8), 3u) << "the bytes asked for, in whole slots";
  EXPECT_EQ(staging_pool_slots(1, 4096, 8), 1u) << "rounded up to one slot";
  EXPECT_EQ(staging_pool_slots(1ull << 40, 4096, 8), 8u) << "never more than one slot per actor";
}

TEST(StagingPool, ARuntimeGetsThePoolItAsksForAndSaysSo) {
  auto small = make_heat(8, 2, 0);
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(small->image_layout().staging_slots, 8u) << "a small run stages every image (one pass)";
  auto asked = make_heat(8, 2, 3);
  ASSERT_NE(asked, nullptr);
  EXPECT_EQ(asked->image_layout().staging_slots, 3u);
  const ImageLayout& l = asked->image_layout();
  EXPECT_GE(l.staging_slot_bytes, l.image_bytes) << "a slot holds an image and its chunk tables";
  EXPECT_EQ(staging_pool_slots(0, l.staging_slot_bytes, 8), small->image_layout().staging_slots);
}

// Every actor's image at the end of `cut`, taken from a grid that runs on to epoch 40 (not
// parked at the cut), and the field at 40.
struct CutResult {
  std::vector<SnapshotImage> images;
  std::uint32_t final_checksum = 0;
  std::uint64_t first_park = 0;  // the epoch of the first park wait_parked() saw
};

CutResult snapshot_while_running(std::uint32_t slots, std::uint32_t threads, bool full) {
  CutResult out;
  auto rt = make_heat(kActors, threads, slots);
  if (!rt) return out;
  const auto p = heat_params(kActors);
  SnapshotCollector images(*rt);
  EXPECT_TRUE(rt->set_target_epoch(40).ok());
  inject(*rt, p);
  // Requested before the launch: a running grid could pass epoch 20 before the request.
  auto id = rt->snapshot_all(20, full);
  EXPECT_TRUE(id.ok()) << id.status().to_string();
  if (!id.ok()) return out;
  EXPECT_TRUE(rt->start().ok());
  // The waves' hold is no park of the user's: the first one wait_parked() sees is at 40.
  EXPECT_TRUE(rt->wait_parked(30s).ok());
  out.first_park = rt->epoch();
  out.images = images.wait(id.value(), kActors);
  EXPECT_TRUE(rt->run_until(40, 30s).ok());
  auto field = examples::heat2d_gather(*rt, p);
  EXPECT_TRUE(field.ok());
  if (field.ok()) out.final_checksum = examples::heat2d_checksum(field.value());
  return out;
}

class PooledCut : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint32_t>> {};

TEST_P(PooledCut, ASnapshotAllOfMoreActorsThanThePoolHoldsIsTheSameCutAsAnUnpooledOne) {
  const auto [slots, threads] = GetParam();
  const CutResult whole = snapshot_while_running(kActors, threads, true);
  const CutResult pooled = snapshot_while_running(slots, threads, true);
  ASSERT_EQ(whole.images.size(), kActors);
  ASSERT_EQ(pooled.images.size(), kActors);
  for (std::uint32_t a = 0; a < kActors; ++a) {
    const SnapshotImage& w = whole.images[a];
    const SnapshotImage& g = pooled.images[a];
    ASSERT_TRUE(g.status.ok()) << g.status.to_string();
    ASSERT_TRUE(w.status.ok()) << w.status.to_string();
    EXPECT_EQ(g.actor, a);
    EXPECT_EQ(g.epoch, 20u) << "every wave is taken at the requested cut";
    EXPECT_EQ(w.epoch, 20u);
    ASSERT_EQ(g.image->size(), w.image->size());
    EXPECT_EQ(g.crc, crc32(g.image->data(), g.image->size()));
    EXPECT_EQ(g.crc, w.crc) << "actor " << a << "'s image differs from the one-pass snapshot of the same epoch";
  }
  EXPECT_EQ(pooled.final_checksum, whole.final_checksum) << "holding the grid for the waves changed the run";
  EXPECT_EQ(pooled.first_park, 40u) << "the grid's hold at the cut was reported as a park";
}

INSTANTIATE_TEST_SUITE_P(SlotsAndThreads, PooledCut,
                         ::testing::Values(std::make_tuple(1u, 1u), std::make_tuple(1u, 4u), std::make_tuple(3u, 2u),
                                           std::make_tuple(7u, 3u)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "slots_" +
                                  std::to_string(std::get<1>(info.param)) + "threads";
                         });

TEST(StagingPool, ACheckpointSetTakenInWavesRestoresToTheStraightRun) {
  const auto p = heat_params(kActors);
  auto memory = std::make_unique<MemoryCheckpointStore>();
  MemoryCheckpointStore* store = memory.get();
  auto straight = make_heat(kActors, 2, 1);  // one slot: the set is taken in 8 waves
  ASSERT_NE(straight, nullptr);
  auto manager = CheckpointManager::create(*straight, std::move(memory), CheckpointPolicy{});
  ASSERT_TRUE(manager.ok()) << manager.status().to_string();
  ASSERT_TRUE(straight->set_target_epoch(20).ok());
  inject(*straight, p);
  ASSERT_TRUE(straight->start().ok());
  ASSERT_TRUE(straight->run_until(20, 30s).ok());
  ASSERT_TRUE(manager.value()->checkpoint_at(20).ok());
  ASSERT_TRUE(manager.value()->flush(30s).ok());
  EXPECT_EQ(manager.value()->counters().sets_committed, 1u);
  ASSERT_TRUE(straight->run_until(40, 30s).ok());
  auto expected = examples::heat2d_gather(*straight, p);
  ASSERT_TRUE(expected.ok());
  RestoreQuery q;
  q.fingerprint = checkpoint_fingerprint(*straight);
  auto point = find_restore_point(*store, q);  // the manager owns the store: read it first
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  manager.value().reset();
  ASSERT_TRUE(straight->shutdown().ok());

  EXPECT_EQ(point->epoch, 20u);
  EXPECT_EQ(point->queued.size(), 2u) << "the injections due at 21 and 33";
  auto resumed = make_heat(kActors, 3, 1);
  ASSERT_NE(resumed, nullptr);
  ASSERT_TRUE(resumed->restore_before_start(point->epoch, point->images, point->global, point->queued).ok());
  ASSERT_TRUE(resumed->set_target_epoch(40).ok());
  ASSERT_TRUE(resumed->start().ok());
  ASSERT_TRUE(resumed->run_until(40, 30s).ok());
  auto again = examples::heat2d_gather(*resumed, p);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(examples::heat2d_checksum(again.value()), examples::heat2d_checksum(expected.value()))
      << "the restored run differs from the straight run";
}

TEST(StagingPool, DeltasAcrossPooledSnapshotsCopyOnlyWhatChanged) {
  RuntimeOptions o = testing::cpu_runtime(kActors, 2, 256);
  o.staging_bytes = 1;  // rounds up to one slot: eight waves
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  ASSERT_EQ(rt.image_layout().staging_slots, 1u);
  SnapshotCollector images(rt);
  ASSERT_TRUE(rt.set_target_epoch(10).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(10, 30s).ok());
  auto first = rt.snapshot_all(10);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_EQ(images.wait(first.value(), kActors).size(), kActors);
  ASSERT_TRUE(rt.run_until(12, 30s).ok());
  auto second = rt.snapshot_all(12);
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  const auto got = images.wait(second.value(), kActors);
  ASSERT_EQ(got.size(), kActors);
  for (const SnapshotImage& img : got) {
    ASSERT_TRUE(img.status.ok()) << img.status.to_string();
    EXPECT_EQ(img.changed, std::vector<std::uint32_t>{0}) << "only the chunk with the step counter changed";
    EXPECT_EQ(img.crc, crc32(img.image->data(), img.image->size())) << "the host image rebuilt from the delta";
    testing::Probe::State s{};
    std::memcpy(&s, img.image->data(), sizeof s);
    EXPECT_EQ(s.steps, 12u);
  }
  ASSERT_TRUE(rt.wait_parked(30s).ok()) << "the parked grid stays parked after the waves";
  EXPECT_EQ(rt.epoch(), 12u);
}

TEST(StagingPool, BackToBackPooledSnapshotsOfARunningGridEachCompleteAtTheirOwnCut) {
  // Each request is made the moment the previous one's last image arrives, as a checkpoint
  // scheduler does, while the grid runs: the finished request must not lend the next one its
  // hold, nor take the next one's waves.
  RuntimeOptions o = testing::cpu_runtime(kActors, 3, 256);
  o.staging_bytes = 1;  // one slot: eight waves each
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  SnapshotCollector images(rt);
  ASSERT_TRUE(rt.start().ok());
  for (int i = 0; i < 40; ++i) {
    auto id = rt.snapshot_all(rt.epoch() + 1);
    ASSERT_TRUE(id.ok()) << "request " << i << ": " << id.status().to_string();
    const auto got = images.wait(id.value(), kActors);
    ASSERT_EQ(got.size(), kActors) << "request " << i << " lost images";
    for (const SnapshotImage& img : got) {
      ASSERT_TRUE(img.status.ok()) << img.status.to_string();
      EXPECT_EQ(img.epoch, got[0].epoch) << "request " << i << " is not one cut";
      testing::Probe::State st{};
      std::memcpy(&st, img.image->data(), sizeof st);
      EXPECT_EQ(st.steps, img.epoch) << "actor " << img.actor << "'s image is not of its epoch";
    }
  }
  ASSERT_TRUE(rt.shutdown().ok());
}

// A probe runtime of 4 actors with a staging pool of one slot, parked at epoch 5.
std::unique_ptr<Runtime> parked_probe() {
  RuntimeOptions o = testing::cpu_runtime(4, 2, 256);
  o.staging_bytes = 1;  // rounds up to one slot
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, o);
  EXPECT_TRUE(created.ok()) << created.status().to_string();
  if (!created.ok()) return nullptr;
  std::unique_ptr<Runtime> rt = std::move(created.value());
  EXPECT_EQ(rt->image_layout().staging_slots, 1u);
  const bool parked = rt->set_target_epoch(5).ok() && rt->start().ok() && rt->run_until(5, 30s).ok();
  EXPECT_TRUE(parked);
  return parked ? std::move(rt) : nullptr;
}

TEST(StagingPool, ASnapshotActorTakesASlotAndIsRefusedNamingTheFixWhenNoneIsFree) {
  auto created = parked_probe();
  ASSERT_NE(created, nullptr);
  Runtime& rt = *created;
  SnapshotCollector images(rt);
  auto first = rt.snapshot_actor(0, true, 0);  // applies at 6: the parked grid has not served it
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  auto second = rt.snapshot_actor(1, true, 0);
  ASSERT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("staging_bytes"), std::string::npos) << second.status().to_string();
  auto all = rt.snapshot_all(5);
  ASSERT_EQ(all.status().code(), StatusCode::kFailedPrecondition) << "a snapshot_all needs the whole pool";
  EXPECT_NE(all.status().message().find("single-actor"), std::string::npos) << all.status().to_string();
  ASSERT_TRUE(rt.run_until(6, 30s).ok());
  const auto got = images.wait(first.value(), 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].status.ok()) << got[0].status.to_string();
  EXPECT_EQ(got[0].epoch, 6u);
  auto again = rt.snapshot_actor(1, true, 0);
  EXPECT_TRUE(again.ok()) << "the copied image gave its slot back: " << again.status().to_string();
}

TEST(StagingPool, AWithdrawnRequestTheGridNeverLatchedLeavesThePoolToTheNextOne) {
  auto created = parked_probe();
  ASSERT_NE(created, nullptr);
  Runtime& rt = *created;
  SnapshotCollector images(rt);
  auto far = rt.snapshot_all(1'000'000);
  ASSERT_TRUE(far.ok());
  ASSERT_TRUE(rt.cancel_snapshot(far.value()));
  auto now = rt.snapshot_all(5);
  ASSERT_TRUE(now.ok()) << now.status().to_string();
  const auto got = images.wait(now.value(), 4);
  ASSERT_EQ(got.size(), 4u);
  for (const SnapshotImage& img : got) {
    EXPECT_TRUE(img.status.ok()) << img.status.to_string();
    EXPECT_EQ(img.epoch, 5u);
  }
}

TEST(StagingPool, ALiveRestoreGivesItsSlotBackOnceTheGridAppliedIt) {
  auto created = parked_probe();
  ASSERT_NE(created, nullptr);
  Runtime& rt = *created;
  SnapshotCollector images(rt);
  auto id = rt.snapshot_actor(2, true, 0);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(rt.run_until(6, 30s).ok());
  const auto img = images.wait(id.value(), 1);
  ASSERT_EQ(img.size(), 1u);
  ASSERT_TRUE(img[0].status.ok());
  auto restored = rt.restore_actor(2, *img[0].image, 6, 0);
  ASSERT_TRUE(rt.run_until(7, 30s).ok());
  ASSERT_EQ(restored.wait_for(30s), std::future_status::ready);
  ASSERT_TRUE(restored.get().status.ok());
  ASSERT_TRUE(rt.run_until(8, 30s).ok());
  // The pump frees the slot once it has seen epoch 7 complete; give it a moment.
  Result<std::uint64_t> next = Status(StatusCode::kInternal, "not tried");
  for (int i = 0; i < 2000 && !next.ok(); ++i) {
    next = rt.snapshot_all(8);
    if (!next.ok()) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(next.ok()) << "the restore's slot never came back: " << next.status().to_string();
  const auto all = images.wait(next.value(), 4);
  ASSERT_EQ(all.size(), 4u);
  testing::Probe::State s{};
  std::memcpy(&s, all[2].image->data(), sizeof s);
  EXPECT_EQ(s.steps, 8u) << "restored to its epoch-6 state at the start of 7, then stepped in 7 and 8";
}

}  // namespace
}  // namespace pkrt
