// Snapshot: the two-phase protocol end to end on the CPU backend: consistent cuts, deltas
// that copy only changed chunks, restore before start and live restore.
#include "examples/heat2d/heat2d_host.hpp"
#include "tests/probe_actor.hpp"
#include "tests/test_support.hpp"

#include <pkrt/crc32.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>

namespace pkrt {
namespace {

using namespace std::chrono_literals;

using testing::SnapshotCollector;

examples::Heat2d::Params heat_params(std::uint32_t actors) {
  examples::Heat2d::Params p;
  p.width = 48;
  p.height = 40;
  p.seed = 3;
  p.stats_every = 0;
  examples::heat2d_choose_tiles(p, actors);
  return p;
}

RuntimeOptions cpu(std::uint32_t actors, std::uint32_t threads, std::uint32_t chunk = 1024) {
  return testing::cpu_runtime(actors, threads, chunk);
}

const std::vector<examples::Heat2dScheduledInjection> kInjections = {
    {30, {5, 5, 50.0f}}, {99, {40, 30, 25.0f}}, {100, {1, 39, 10.0f}}, {101, {20, 20, 70.0f}}, {150, {47, 0, 5.0f}}};

void send_injections(Runtime& rt, const examples::Heat2d::Params& p, std::uint64_t after) {
  for (const auto& inj : kInjections)
    if (inj.epoch > after)
      (void)rt.send(examples::Heat2d::actor_of(p, inj.inject.x, inj.inject.y), examples::kHeat2dInject, inj.inject,
                    inj.epoch);
}

TEST(Snapshot, SnapshotAllOfAParkedGridIsOneConsistentCutMatchingTheState) {
  const auto p = heat_params(4);
  auto created = Runtime::create(examples::heat2d_program(), p, cpu(4, 2));
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Runtime& rt = *created.value();
  SnapshotCollector images(rt);
  ASSERT_TRUE(rt.set_target_epoch(10).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(10, 30s).ok());
  auto id = rt.snapshot_all(10);
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  const auto got = images.wait(id.value(), 4);
  ASSERT_EQ(got.size(), 4u);
  ASSERT_TRUE(rt.wait_parked(30s).ok()) << "a snapshot_all of a parked grid leaves it parked";
  EXPECT_EQ(rt.epoch(), 10u);
  const ImageLayout& layout = rt.image_layout();
  for (std::uint32_t a = 0; a < 4; ++a) {
    const SnapshotImage& img = got[a];
    ASSERT_TRUE(img.status.ok()) << img.status.to_string();
    EXPECT_EQ(img.actor, a);
    EXPECT_EQ(img.epoch, 10u) << "served on the parked epoch";
    ASSERT_EQ(img.image->size(), layout.image_bytes);
    EXPECT_EQ(crc32(img.image->data(), img.image->size()), img.crc);
    EXPECT_EQ(img.changed.size(), layout.chunks) << "the first snapshot of an actor is full";
    std::vector<std::byte> field(rt.region_bytes(0));
    ASSERT_TRUE(rt.read_region(a, 0, field.data(), field.size()).ok());
    EXPECT_EQ(std::memcmp(img.image->data() + layout.regions[1].offset, field.data(), field.size()), 0)
        << "the image holds the actor's field as of the parked epoch";
  }
}

TEST(Snapshot, SecondSnapshotCopiesOnlyTheChunksThatChanged) {
  RuntimeOptions o = cpu(2, 1, 256);
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  SnapshotCollector images(rt);
  ASSERT_TRUE(rt.set_target_epoch(5).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(5, 30s).ok());
  auto first = rt.snapshot_all(5);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(images.wait(first.value(), 2).size(), 2u);
  ASSERT_TRUE(rt.run_until(6, 30s).ok());
  auto second = rt.snapshot_all(6);
  ASSERT_TRUE(second.ok());
  const auto got = images.wait(second.value(), 2);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& img : got) {
    ASSERT_TRUE(img.status.ok()) << img.status.to_string();
    EXPECT_EQ(img.changed, std::vector<std::uint32_t>{0}) << "only the chunk with the step counter changed";
    EXPECT_EQ(img.bytes_copied, 256u);
    testing::Probe::State s{};
    std::memcpy(&s, img.image->data(), sizeof s);
    EXPECT_EQ(s.steps, 6u);
  }
}

class RestoreEquivalence : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint32_t>> {};

TEST_P(RestoreEquivalence, RestoredRunEndsBitIdenticalToTheStraightRun) {
  const auto [threads_before, threads_after] = GetParam();
  constexpr std::uint32_t kActors = 6;
  constexpr std::uint64_t kCut = 100, kEnd = 200;
  const auto p = heat_params(kActors);

  auto straight = Runtime::create(examples::heat2d_program(), p, cpu(kActors, threads_before));
  ASSERT_TRUE(straight.ok());
  ASSERT_TRUE(straight.value()->set_target_epoch(kEnd).ok());
  send_injections(*straight.value(), p, 0);
  ASSERT_TRUE(straight.value()->start().ok());
  ASSERT_TRUE(straight.value()->run_until(kEnd, 60s).ok());
  auto expected = examples::heat2d_gather(*straight.value(), p);
  ASSERT_TRUE(expected.ok());

  auto first = Runtime::create(examples::heat2d_program(), p, cpu(kActors, threads_before));
  ASSERT_TRUE(first.ok());
  SnapshotCollector images(*first.value());
  ASSERT_TRUE(first.value()->set_target_epoch(kCut).ok());
  send_injections(*first.value(), p, 0);
  ASSERT_TRUE(first.value()->start().ok());
  ASSERT_TRUE(first.value()->run_until(kCut, 60s).ok());
  auto id = first.value()->snapshot_all(kCut);
  ASSERT_TRUE(id.ok());
  std::vector<std::vector<std::byte>> cut;
  for (const auto& img : images.wait(id.value(), kActors)) {
    ASSERT_TRUE(img.status.ok()) << img.status.to_string();
    ASSERT_EQ(img.epoch, kCut);
    cut.push_back(*img.image);
  }
  ASSERT_EQ(cut.size(), kActors);
  ASSERT_TRUE(first.value()->shutdown().ok());

  auto resumed = Runtime::create(examples::heat2d_program(), p, cpu(kActors, threads_after));
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE(resumed.value()->restore_before_start(kCut, cut).ok());
  ASSERT_TRUE(resumed.value()->set_target_epoch(kEnd).ok());
  send_injections(*resumed.value(), p, kCut);
  ASSERT_TRUE(resumed.value()->start().ok());
  ASSERT_TRUE(resumed.value()->run_until(kEnd, 60s).ok());
  auto got = examples::heat2d_gather(*resumed.value(), p);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(examples::heat2d_checksum(got.value()), examples::heat2d_checksum(expected.value()));
  EXPECT_EQ(std::memcmp(got.value().data(), expected.value().data(), got.value().size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, RestoreEquivalence,
                         ::testing::Values(std::make_tuple(1u, 1u), std::make_tuple(2u, 2u), std::make_tuple(2u, 1u),
                                           std::make_tuple(1u, 3u)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "to" + std::to_string(std::get<1>(info.param)) +
                                  "threads";
                         });

TEST(Snapshot, SnapshotOfARunningGridHoldsEveryK2KMessageOfItsEpoch) {
  // Requested before the launch, served mid-run (never parked at 100): the image must still
  // hold the halos all neighbours sent in epoch 100, or the restored run diverges.
  constexpr std::uint32_t kActors = 8;
  const auto p = heat_params(kActors);
  for (int round = 0; round < 5; ++round) {
    auto straight = Runtime::create(examples::heat2d_program(), p, cpu(kActors, 2));
    ASSERT_TRUE(straight.ok());
    SnapshotCollector images(*straight.value());
    auto id = straight.value()->snapshot_all(100);
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(straight.value()->set_target_epoch(200).ok());
    send_injections(*straight.value(), p, 0);
    ASSERT_TRUE(straight.value()->start().ok());
    ASSERT_TRUE(straight.value()->run_until(200, 60s).ok());
    auto expected = examples::heat2d_gather(*straight.value(), p);
    ASSERT_TRUE(expected.ok());
    std::vector<std::vector<std::byte>> cut;
    for (const auto& img : images.wait(id.value(), kActors)) {
      ASSERT_TRUE(img.status.ok()) << img.status.to_string();
      ASSERT_EQ(img.epoch, 100u);
      cut.push_back(*img.image);
    }
    ASSERT_EQ(cut.size(), kActors);
    auto resumed = Runtime::create(examples::heat2d_program(), p, cpu(kActors, 2));
    ASSERT_TRUE(resumed.ok());
    ASSERT_TRUE(resumed.value()->restore_before_start(100, cut).ok());
    ASSERT_TRUE(resumed.value()->set_target_epoch(200).ok());
    send_injections(*resumed.value(), p, 100);
    ASSERT_TRUE(resumed.value()->start().ok());
    ASSERT_TRUE(resumed.value()->run_until(200, 60s).ok());
    auto got = examples::heat2d_gather(*resumed.value(), p);
    ASSERT_TRUE(got.ok());
    ASSERT_EQ(examples::heat2d_checksum(got.value()), examples::heat2d_checksum(expected.value())) << "round " << round;
  }
}

TEST(Snapshot, LiveRestoreRewindsOneActorAtAnEpochBoundary) {
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, cpu(3, 2, 256));
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  SnapshotCollector images(rt);
  ASSERT_TRUE(rt.set_target_epoch(10).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(10, 30s).ok());
  auto id = rt.snapshot_actor(1, false, 0);  // applies at 11: state at the end of 11
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(rt.run_until(20, 30s).ok());
  const auto img = images.wait(id.value(), 1);
  ASSERT_EQ(img.size(), 1u);
  ASSERT_TRUE(img[0].status.ok()) << img[0].status.to_string();
  ASSERT_EQ(img[0].epoch, 11u);
  auto ack = rt.restore_actor(1, *img[0].image, 11, 0);  // applies at 21, before its step
  ASSERT_TRUE(rt.run_until(21, 30s).ok());
  ASSERT_TRUE(ack.get().status.ok());
  for (std::uint32_t a = 0; a < 3; ++a) {
    testing::Probe::State s{};
    ASSERT_TRUE(rt.read_region(a, -1, &s, sizeof s).ok());
    EXPECT_EQ(s.steps, a == 1 ? 12u : 21u) << "actor " << a;
  }
}

TEST(Snapshot, RestoreRefusesImagesOfTheWrongSize) {
  auto created = Runtime::create(testing::probe_program(), testing::Probe::Params{}, cpu(2, 1));
  ASSERT_TRUE(created.ok());
  std::vector<std::vector<std::byte>> images(2, std::vector<std::byte>(3));
  Status st = created.value()->restore_before_start(5, images);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("same app parameters"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace pkrt
