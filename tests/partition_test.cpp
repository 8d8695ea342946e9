// ActorPartition (pkrt/partition.hpp): which rank owns which actor when a run is spread over
// ranks. Every actor has exactly one owner, every rank at least one actor, and the kinds keep
// what they promise (contiguous blocks; rectangles of tiles with few halo crossings).
#include <pkrt/partition.hpp>

#include <gtest/gtest.h>

#include <set>

namespace pkrt {
namespace {

// Every actor owned once, listed once under its owner, ascending, at its local index.
void expect_consistent(const ActorPartition& p) {
  std::set<std::uint32_t> seen;
  for (std::uint32_t r = 0; r < p.ranks(); ++r) {
    const auto mine = p.actors_of(r);
    ASSERT_FALSE(mine.empty()) << "rank " << r << " owns nothing";
    for (std::size_t i = 0; i < mine.size(); ++i) {
      EXPECT_EQ(p.owner(mine[i]), r);
      EXPECT_EQ(p.local_index(mine[i]), i);
      if (i > 0) EXPECT_LT(mine[i - 1], mine[i]);
      EXPECT_TRUE(seen.insert(mine[i]).second) << "actor " << mine[i] << " listed twice";
    }
  }
  EXPECT_EQ(seen.size(), p.actors());
}

// K2K edges between 4-neighbour tiles whose owners differ.
std::uint32_t crossing_edges(const ActorPartition& p, std::uint32_t tiles_x, std::uint32_t tiles_y) {
  std::uint32_t n = 0;
  for (std::uint32_t y = 0; y < tiles_y; ++y)
    for (std::uint32_t x = 0; x < tiles_x; ++x) {
      const std::uint32_t a = y * tiles_x + x;
      if (x + 1 < tiles_x && p.owner(a) != p.owner(a + 1)) ++n;
      if (y + 1 < tiles_y && p.owner(a) != p.owner(a + tiles_x)) ++n;
    }
  return n;
}

TEST(Partition, ContiguousGivesEachRankAnEqualBlockInIdOrder) {
  for (std::uint32_t actors : {1u, 7u, 16u, 100u})
    for (std::uint32_t ranks = 1; ranks <= std::min(actors, 9u); ++ranks) {
      auto p = ActorPartition::contiguous(actors, ranks);
      ASSERT_TRUE(p.ok()) << p.status().to_string();
      expect_consistent(p.value());
      for (std::uint32_t r = 0; r < ranks; ++r) {
        const auto mine = p->actors_of(r);
        EXPECT_EQ(mine.front(), std::uint64_t{r} * actors / ranks) << actors << " actors, " << ranks << " ranks";
        EXPECT_EQ(mine.size(), (std::uint64_t{r} + 1) * actors / ranks - std::uint64_t{r} * actors / ranks);
      }
    }
}

TEST(Partition, TilesSplitIntoRectanglesThatCrossFewerHalosThanContiguousBlocks) {
  auto tiles = ActorPartition::tiles_2d(8, 8, 4);
  ASSERT_TRUE(tiles.ok()) << tiles.status().to_string();
  expect_consistent(tiles.value());
  EXPECT_EQ(tiles->description(), "tiles 8x8 over 2x2 ranks");
  EXPECT_EQ(tiles->owner(0), 0u);
  EXPECT_EQ(tiles->owner(7), 1u);
  EXPECT_EQ(tiles->owner(56), 2u);
  EXPECT_EQ(tiles->owner(63), 3u);
  EXPECT_EQ(tiles->actors_of(0).size(), 16u);
  // A tall grid: contiguous id blocks are bands of whole rows; 2 x 2 rectangles cut less.
  auto tall_tiles = ActorPartition::tiles_2d(16, 16, 4);
  auto tall_blocks = ActorPartition::contiguous(256, 4);
  ASSERT_TRUE(tall_tiles.ok() && tall_blocks.ok());
  EXPECT_EQ(crossing_edges(tall_tiles.value(), 16, 16), 32u);
  EXPECT_EQ(crossing_edges(tall_blocks.value(), 16, 16), 48u);
}

TEST(Partition, TilesFitRankGridsThatAreNotSquare) {
  auto three = ActorPartition::tiles_2d(4, 4, 3);
  ASSERT_TRUE(three.ok()) << three.status().to_string();
  expect_consistent(three.value());
  auto wide = ActorPartition::tiles_2d(12, 2, 6);
  ASSERT_TRUE(wide.ok()) << wide.status().to_string();
  expect_consistent(wide.value());
  EXPECT_EQ(wide->description(), "tiles 12x2 over 6x1 ranks") << "rectangles of 2 x 2 tiles, not 4 x 1";
}

TEST(Partition, ImpossiblePartitionsAreRefusedNamingTheFix) {
  auto more_ranks = ActorPartition::contiguous(3, 4);
  ASSERT_EQ(more_ranks.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(more_ranks.status().message().find("at most 3 ranks"), std::string::npos) << more_ranks.status().to_string();
  auto prime = ActorPartition::tiles_2d(2, 2, 3);
  ASSERT_EQ(prime.status().code(), StatusCode::kInvalidArgument) << "3 = 3 x 1 or 1 x 3: wider than 2 tiles";
  EXPECT_NE(prime.status().message().find("contiguous"), std::string::npos);
  auto huge = ActorPartition::tiles_2d(65536, 65536, 2);
  ASSERT_EQ(huge.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(huge.status().message().find("at most 2^32 - 1 tiles"), std::string::npos) << huge.status().to_string();
  auto outside = ActorPartition::custom(4, 2, [](std::uint32_t a) { return a; }, "identity");
  ASSERT_EQ(outside.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(outside.status().message().find("actor 2 on rank 2"), std::string::npos) << outside.status().to_string();
  auto empty = ActorPartition::custom(4, 2, [](std::uint32_t) { return 0u; }, "all on 0");
  ASSERT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find("rank 1 without actors"), std::string::npos) << empty.status().to_string();
}

TEST(Partition, ACustomOwnerFunctionIsCalledOncePerActorAndKeptAsGiven) {
  std::uint32_t calls = 0;
  auto odd_even = ActorPartition::custom(
      10, 2, [&](std::uint32_t a) { ++calls; return a % 2; }, "odd/even");
  ASSERT_TRUE(odd_even.ok()) << odd_even.status().to_string();
  EXPECT_EQ(calls, 10u);
  expect_consistent(odd_even.value());
  EXPECT_EQ(std::vector<std::uint32_t>(odd_even->actors_of(1).begin(), odd_even->actors_of(1).end()),
            (std::vector<std::uint32_t>{1, 3, 5, 7, 9}));
  EXPECT_EQ(odd_even->local_index(7), 3u);
}

}  // namespace
}  // namespace pkrt
