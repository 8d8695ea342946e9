// Heat2d: the tiled actors match the serial reference bit for bit, for any tiling, block
// count and thread count, with host injections at chosen epochs.
#include "examples/heat2d/heat2d_host.hpp"
#include "tests/test_support.hpp"

#include <pkrt/crc32.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <tuple>

namespace pkrt::examples {
namespace {

using namespace std::chrono_literals;

std::vector<Heat2dScheduledInjection> random_injections(const Heat2d::Params& p, std::uint64_t epochs,
                                                        std::uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  std::vector<Heat2dScheduledInjection> out;
  for (int i = 0; i < count; ++i) {
    Heat2dScheduledInjection inj{};
    inj.epoch = 1 + rng() % epochs;
    inj.inject = {static_cast<std::uint32_t>(rng() % p.width), static_cast<std::uint32_t>(rng() % p.height),
                  1.0f + static_cast<float>(rng() % 997) / 7.0f};
    out.push_back(inj);
  }
  // Two injections into the same cell at the same epoch: their order must be kept.
  out.push_back({epochs / 2, {p.width / 2, p.height / 2, 1e-7f}});
  out.push_back({epochs / 2, {p.width / 2, p.height / 2, 3.0e7f}});
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.epoch < b.epoch; });
  return out;
}

class Heat2dMatchesReference : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint32_t>> {};

TEST_P(Heat2dMatchesReference, BitIdenticalFieldWithInjections) {
  const auto [actors, threads] = GetParam();
  constexpr std::uint64_t kEpochs = 150;
  Heat2d::Params p;
  p.width = 61;  // odd sizes: uneven tiles
  p.height = 37;
  p.seed = 20261122;
  p.stats_every = 25;
  heat2d_choose_tiles(p, actors);
  ASSERT_TRUE(p.tiles_x * p.tiles_y == actors);
  const auto injections = random_injections(p, kEpochs, p.seed + actors, 12);
  std::printf("[ seed ] %llu, %u actors as %ux%u tiles, %u threads\n", static_cast<unsigned long long>(p.seed),
              actors, p.tiles_x, p.tiles_y, threads);

  const RuntimeOptions o = testing::cpu_runtime(actors, threads);
  auto created = Runtime::create(heat2d_program(), p, o);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Runtime& rt = *created.value();
  // Target and commands before the launch, so every injection is queued before its epoch.
  ASSERT_TRUE(rt.set_target_epoch(kEpochs).ok());
  std::vector<ReplyFuture> acks;
  for (const auto& inj : injections)
    acks.push_back(rt.send(Heat2d::actor_of(p, inj.inject.x, inj.inject.y), kHeat2dInject, inj.inject, inj.epoch));
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(kEpochs, 60s).ok());
  for (std::size_t i = 0; i < acks.size(); ++i) {
    Reply r = acks[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    EXPECT_EQ(r.event.epoch, injections[i].epoch) << "injection " << i << " applied at the wrong epoch";
  }
  auto field = heat2d_gather(rt, p);
  ASSERT_TRUE(field.ok()) << field.status().to_string();
  ASSERT_TRUE(rt.shutdown().ok());

  const auto ref = heat2d_reference(p, kEpochs, injections);
  ASSERT_EQ(field.value().size(), ref.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (std::memcmp(&ref[i], &field.value()[i], sizeof(float)) != 0 && differing++ < 5)
      ADD_FAILURE() << "cell (" << i % p.width << ", " << i / p.width << "): " << field.value()[i] << " vs reference "
                    << ref[i];
  }
  EXPECT_EQ(differing, 0u);
  EXPECT_EQ(heat2d_checksum(field.value()), heat2d_checksum(ref));
}

INSTANTIATE_TEST_SUITE_P(ActorsAndThreads, Heat2dMatchesReference,
                         ::testing::Combine(::testing::Values(1u, 2u, 7u, 16u), ::testing::Values(1u, 2u)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "actors_" +
                                  std::to_string(std::get<1>(info.param)) + "threads";
                         });

TEST(Heat2d, ActorOfFindsTheTileThatOwnsEveryCell) {
  for (std::uint32_t actors : {1u, 2u, 6u, 7u, 12u, 16u}) {
    Heat2d::Params p;
    p.width = 53;
    p.height = 29;
    heat2d_choose_tiles(p, actors);
    std::vector<int> owned(std::size_t{p.width} * p.height, 0);
    for (std::uint32_t a = 0; a < actors; ++a) {
      const Heat2dTile t = Heat2d::tile_of(p, a);
      for (std::uint32_t y = t.y0; y < t.y0 + t.h; ++y)
        for (std::uint32_t x = t.x0; x < t.x0 + t.w; ++x) {
          ++owned[std::size_t{y} * p.width + x];
          ASSERT_EQ(Heat2d::actor_of(p, x, y), a) << "cell " << x << "," << y << " with " << actors << " actors";
        }
    }
    for (int n : owned) ASSERT_EQ(n, 1) << "tiles must cover the grid exactly once";
  }
}

TEST(Heat2d, StatisticsEventsSumToTheFieldTotal) {
  Heat2d::Params p;
  p.width = 40;
  p.height = 30;
  p.stats_every = 10;
  heat2d_choose_tiles(p, 4);
  const RuntimeOptions o = testing::cpu_runtime(4, 2);
  auto created = Runtime::create(heat2d_program(), p, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  std::mutex mu;
  double sum = 0;
  int tiles = 0;
  rt.set_event_callback([&](const Event& ev) {
    if (ev.opcode != kHeat2dStats || ev.epoch != 30) return;
    std::lock_guard<std::mutex> lock(mu);
    sum += ev.as<Heat2dStatsData>().sum;
    ++tiles;
  });
  ASSERT_TRUE(rt.set_target_epoch(30).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(30, 60s).ok());
  auto field = heat2d_gather(rt, p);
  ASSERT_TRUE(field.ok());
  ASSERT_TRUE(rt.shutdown().ok());  // drains every K2H event before returning
  double total = 0;
  for (float v : field.value()) total += v;
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(tiles, 4);
  EXPECT_NEAR(sum, total, 1e-9 * total);
}

TEST(Heat2d, RunUntilReturnsOnlyAfterEveryTilesEventsForThatEpoch) {
  // The grid barrier orders every block's epoch-e events before block 0's park report; the
  // host must deliver them before run_until(e) returns.
  Heat2d::Params p;
  p.width = 32;
  p.height = 16;
  p.stats_every = 1;
  heat2d_choose_tiles(p, 8);
  const RuntimeOptions o = testing::cpu_runtime(8, 2);
  auto created = Runtime::create(heat2d_program(), p, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  std::mutex mu;
  std::map<std::uint64_t, int> per_epoch;
  rt.set_event_callback([&](const Event& ev) {
    std::lock_guard<std::mutex> lock(mu);
    if (ev.opcode == kHeat2dStats) ++per_epoch[ev.epoch];
  });
  ASSERT_TRUE(rt.set_target_epoch(1).ok());
  ASSERT_TRUE(rt.start().ok());
  for (std::uint64_t e = 1; e <= 300; ++e) {
    ASSERT_TRUE(rt.run_until(e, 60s).ok());
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(per_epoch[e], 8) << "epoch " << e << ": events still in flight when run_until returned";
  }
}

TEST(Heat2d, ParamsThatLeaveEmptyTilesAreRejected) {
  Heat2d::Params p;
  p.width = 4;
  p.height = 4;
  heat2d_choose_tiles(p, 16);
  p.tiles_x = 16;
  p.tiles_y = 1;
  RuntimeOptions o;
  o.backend = BackendKind::kCpu;
  o.num_actors = 16;
  auto r = Runtime::create(heat2d_program(), p, o);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("empty tiles"), std::string::npos) << r.status().message();
}

TEST(Crc32, MatchesZlibReferenceValues) {
  EXPECT_EQ(crc32("", 0), 0u);
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);  // the CRC-32/IEEE check value
  EXPECT_EQ(crc32("a", 1), 0xE8B7BE43u);
  const char* text = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(crc32(text, std::strlen(text)), 0x414FA339u);
  EXPECT_EQ(crc32(text + 10, std::strlen(text) - 10, crc32(text, 10)), 0x414FA339u) << "running CRC";
}

}  // namespace
}  // namespace pkrt::examples
