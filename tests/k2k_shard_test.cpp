// K2K delay and shards: the program-level K2K delay D (RuntimeOptions::k2k_delay) and a
// program split over several runtimes (RuntimeOptions::global_ids) whose K2K crosses between
// them through collect_outbound_k2k / deliver_inbound_k2k. The shards here run in one process
// and the test routes their messages itself: the MPI layer (pkrt/mpi.hpp) does the same over
// ranks. Results must not depend on the shard count, the partition or the thread count.
#include "examples/heat2d/heat2d_host.hpp"
#include "tests/test_support.hpp"

#include <pkrt/partition.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <thread>
#include <tuple>

namespace pkrt::examples {
namespace {

using namespace std::chrono_literals;

Heat2d::Params small_field(std::uint32_t actors) {
  Heat2d::Params p;
  p.width = 53;  // odd sizes: uneven tiles
  p.height = 41;
  p.seed = 20261204;
  p.stats_every = 0;
  heat2d_choose_tiles(p, actors);
  return p;
}

// Checksum of heat2d after `epochs` on one runtime of every actor.
std::uint32_t one_runtime_checksum(const Heat2d::Params& p, std::uint32_t actors, std::uint32_t threads,
                                   std::uint32_t delay, std::uint64_t epochs) {
  RuntimeOptions o = testing::cpu_runtime(actors, threads);
  o.k2k_delay = delay;
  auto created = Runtime::create(heat2d_program(), p, o);
  EXPECT_TRUE(created.ok()) << created.status().to_string();
  if (!created.ok()) return 0;
  Runtime& rt = *created.value();
  EXPECT_TRUE(rt.set_target_epoch(epochs).ok());  // before start: the grid cannot pass it
  EXPECT_TRUE(rt.start().ok());
  const Status parked = rt.wait_parked(60s);
  EXPECT_TRUE(parked.ok()) << parked.to_string();
  auto field = heat2d_gather(rt, p);
  EXPECT_TRUE(field.ok());
  EXPECT_TRUE(rt.shutdown().ok());
  return field.ok() ? heat2d_checksum(field.value()) : 0;
}

// The shards of one program, each a runtime of its partition's actors, and the host side of
// their K2K exchange, done in the test's thread.
class InProcessShards {
 public:
  static std::unique_ptr<InProcessShards> create(const Heat2d::Params& p, const ActorPartition& partition,
                                                 std::uint32_t delay) {
    auto shards = std::unique_ptr<InProcessShards>(new InProcessShards(partition));
    for (std::uint32_t r = 0; r < partition.ranks(); ++r) {
      const auto ids = partition.actors_of(r);
      RuntimeOptions o = testing::cpu_runtime(static_cast<std::uint32_t>(ids.size()), 1);
      o.k2k_delay = delay;
      o.global_actors = partition.actors();
      o.global_ids.assign(ids.begin(), ids.end());
      auto created = Runtime::create(heat2d_program(), p, o);
      EXPECT_TRUE(created.ok()) << created.status().to_string();
      if (!created.ok()) return nullptr;
      shards->runtimes_.push_back(std::move(created.value()));
    }
    return shards;
  }

  Runtime& shard(std::uint32_t r) { return *runtimes_[r]; }

  // Starts every shard and runs them through `epochs`, exchanging each epoch's K2K.
  Status run_until(std::uint64_t epochs) {
    for (auto& rt : runtimes_) {
      PKRT_RETURN_IF_ERROR(rt->set_target_epoch(epochs));
      PKRT_RETURN_IF_ERROR(rt->start());
    }
    const std::uint32_t ranks = partition_.ranks();
    for (std::uint64_t e = runtimes_[0]->first_exchange_epoch(); e <= epochs; ++e) {
      std::vector<std::vector<K2KTransfer>> to(ranks);
      std::vector<std::vector<std::byte>> to_payload(ranks);
      for (auto& rt : runtimes_) {
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (!rt->epoch_completed(e)) {
          PKRT_RETURN_IF_ERROR(rt->health());
          if (std::chrono::steady_clock::now() > deadline)
            return Status(StatusCode::kTimeout, "shard stuck before epoch " + std::to_string(e));
          std::this_thread::yield();
        }
        std::vector<K2KTransfer> out;
        std::vector<std::byte> payload;
        PKRT_RETURN_IF_ERROR(rt->collect_outbound_k2k(e, out, payload));
        std::size_t offset = 0;
        for (const K2KTransfer& t : out) {
          const std::uint32_t owner = partition_.owner(t.dst);
          to[owner].push_back(t);
          to_payload[owner].insert(to_payload[owner].end(), payload.begin() + offset,
                                   payload.begin() + offset + t.bytes);
          offset += t.bytes;
        }
        messages_ += out.size();
      }
      for (std::uint32_t r = 0; r < ranks; ++r)
        PKRT_RETURN_IF_ERROR(runtimes_[r]->deliver_inbound_k2k(e, to[r], to_payload[r]));
    }
    for (auto& rt : runtimes_) PKRT_RETURN_IF_ERROR(rt->wait_parked(60s));
    return Status();
  }

  // The whole field, each shard contributing its tiles.
  Result<std::uint32_t> checksum(const Heat2d::Params& p) {
    std::vector<float> field(std::uint64_t{p.width} * p.height);
    for (auto& rt : runtimes_) PKRT_RETURN_IF_ERROR(heat2d_gather_into(*rt, p, field));
    return heat2d_checksum(field);
  }

  std::uint64_t messages() const { return messages_; }

  Status shutdown() {
    Status first;
    for (auto& rt : runtimes_) {
      Status st = rt->shutdown();
      if (first.ok()) first = st;
    }
    return first;
  }

 private:
  explicit InProcessShards(const ActorPartition& partition) : partition_(partition) {}
  ActorPartition partition_;
  std::vector<std::unique_ptr<Runtime>> runtimes_;
  std::uint64_t messages_ = 0;
};

TEST(K2KDelay, DelayTwoIsIndependentOfThreadCountAndDiffersFromDelayOne) {
  const Heat2d::Params p = small_field(6);
  const std::uint32_t d2 = one_runtime_checksum(p, 6, 1, 2, 40);
  EXPECT_EQ(one_runtime_checksum(p, 6, 3, 2, 40), d2);
  EXPECT_EQ(one_runtime_checksum(p, 6, 6, 2, 40), d2);
  // Halos a further epoch late are a different computation.
  EXPECT_NE(one_runtime_checksum(p, 6, 2, 1, 40), d2);
}

TEST(K2KDelay, DelayOneIsTheSerialReference) {
  const Heat2d::Params p = small_field(6);
  const std::vector<float> ref = heat2d_reference(p, 30, {});
  EXPECT_EQ(one_runtime_checksum(p, 6, 2, 1, 30), heat2d_checksum(ref));
}

TEST(K2KDelay, OutOfRangeDelayIsRefusedNamingTheFix) {
  const Heat2d::Params p = small_field(2);
  for (std::uint32_t delay : {0u, kMaxK2KDelay + 1}) {
    RuntimeOptions o = testing::cpu_runtime(2, 1);
    o.k2k_delay = delay;
    auto created = Runtime::create(heat2d_program(), p, o);
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(created.status().message().find("K2K delay"), std::string::npos) << created.status().to_string();
  }
}

// Images hold D mailboxes: every message in flight at the cut comes back with a restore.
TEST(K2KDelay, RestoreWithDelayThreeContinuesLikeTheStraightRun) {
  const Heat2d::Params p = small_field(4);
  constexpr std::uint32_t kDelay = 3;
  RuntimeOptions o = testing::cpu_runtime(4, 2);
  o.k2k_delay = kDelay;
  std::vector<std::vector<std::byte>> images;
  std::uint32_t straight = 0;
  {
    auto created = Runtime::create(heat2d_program(), p, o);
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    Runtime& rt = *created.value();
    EXPECT_EQ(rt.image_layout().inbox_bytes % kDelay, 0u);
    testing::SnapshotCollector collector(rt);
    auto request = rt.snapshot_all(17);
    ASSERT_TRUE(request.ok()) << request.status().to_string();
    ASSERT_TRUE(rt.set_target_epoch(35).ok());
    ASSERT_TRUE(rt.start().ok());
    auto got = collector.wait(request.value(), 4);
    ASSERT_EQ(got.size(), 4u);
    for (const SnapshotImage& img : got) {
      ASSERT_TRUE(img.status.ok()) << img.status.to_string();
      ASSERT_EQ(img.epoch, 17u);
      images.push_back(*img.image);
    }
    ASSERT_TRUE(rt.wait_parked(60s).ok());
    auto field = heat2d_gather(rt, p);
    ASSERT_TRUE(field.ok());
    straight = heat2d_checksum(field.value());
    ASSERT_TRUE(rt.shutdown().ok());
  }
  auto created = Runtime::create(heat2d_program(), p, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  ASSERT_TRUE(rt.restore_before_start(17, images).ok());
  ASSERT_TRUE(rt.set_target_epoch(35).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.wait_parked(60s).ok());
  auto field = heat2d_gather(rt, p);
  ASSERT_TRUE(field.ok());
  EXPECT_EQ(heat2d_checksum(field.value()), straight);
  ASSERT_TRUE(rt.shutdown().ok());
}

// A live restore of one actor from its own image at the cut: the run goes on as if nothing
// happened only if all D mailboxes of its inbox came back under the right epochs.
TEST(K2KDelay, LiveRestoreOfAnActorFromItsOwnCutChangesNothing) {
  const Heat2d::Params p = small_field(4);
  RuntimeOptions o = testing::cpu_runtime(4, 2);
  o.k2k_delay = 2;
  const std::uint32_t straight = one_runtime_checksum(p, 4, 2, 2, 30);
  auto created = Runtime::create(heat2d_program(), p, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  testing::SnapshotCollector collector(rt);
  ASSERT_TRUE(rt.set_target_epoch(12).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.wait_parked(60s).ok());
  auto request = rt.snapshot_actor(1, true, 0);  // applied at 13: its image is the state at 13
  ASSERT_TRUE(request.ok());
  ASSERT_TRUE(rt.run_until(13, 60s).ok());
  auto got = collector.wait(request.value(), 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].status.ok()) << got[0].status.to_string();
  // Restored at the start of 14 from the state at the end of 13: the same state.
  auto restored = rt.restore_actor(1, *got[0].image, 13, 14);
  ASSERT_TRUE(rt.run_until(30, 60s).ok());
  ASSERT_TRUE(restored.get().status.ok());
  auto field = heat2d_gather(rt, p);
  ASSERT_TRUE(field.ok());
  EXPECT_EQ(heat2d_checksum(field.value()), straight);
  ASSERT_TRUE(rt.shutdown().ok());
}

class ShardsMatchOneRuntime
    : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint32_t, bool>> {};

TEST_P(ShardsMatchOneRuntime, Heat2dChecksumIsTheSameOnAnyShardCount) {
  const auto [ranks, delay, tiles] = GetParam();
  constexpr std::uint32_t kActors = 12;
  constexpr std::uint64_t kEpochs = 40;
  const Heat2d::Params p = small_field(kActors);
  auto partition = tiles ? ActorPartition::tiles_2d(p.tiles_x, p.tiles_y, ranks)
                         : ActorPartition::contiguous(kActors, ranks);
  ASSERT_TRUE(partition.ok()) << partition.status().to_string();
  std::printf("[ seed ] %llu, %u shards (%s), delay %u\n", static_cast<unsigned long long>(p.seed), ranks,
              partition.value().description().c_str(), delay);
  const std::uint32_t expected = one_runtime_checksum(p, kActors, 2, delay, kEpochs);
  auto shards = InProcessShards::create(p, partition.value(), delay);
  ASSERT_NE(shards, nullptr);
  Status ran = shards->run_until(kEpochs);
  ASSERT_TRUE(ran.ok()) << ran.to_string();
  if (ranks > 1) EXPECT_GT(shards->messages(), 0u);  // halos did cross shards
  auto sum = shards->checksum(p);
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum.value(), expected);
  ASSERT_TRUE(shards->shutdown().ok());
}

INSTANTIATE_TEST_SUITE_P(RanksDelaysPartitions, ShardsMatchOneRuntime,
                         ::testing::Combine(::testing::Values(1u, 2u, 3u, 4u), ::testing::Values(1u, 2u),
                                            ::testing::Bool()));

TEST(Shards, GlobalIdsThatDoNotFitAreRefused) {
  const Heat2d::Params p = small_field(4);
  struct Case {
    std::uint32_t global;
    std::vector<std::uint32_t> ids;
  };
  for (const Case& c : {Case{4, {0, 1, 2}}, Case{4, {1, 0}}, Case{4, {2, 4}}, Case{1, {0, 1}}}) {
    RuntimeOptions o = testing::cpu_runtime(2, 1);
    o.global_actors = c.global;
    o.global_ids = c.ids;
    auto created = Runtime::create(heat2d_program(), p, o);
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument) << created.status().to_string();
    EXPECT_NE(created.status().message().find("Fix:"), std::string::npos) << created.status().to_string();
  }
}

TEST(Shards, DeliveriesOutOfOrderOrToTheWrongShardAreRefused) {
  const Heat2d::Params p = small_field(4);
  auto partition = ActorPartition::contiguous(4, 2);
  ASSERT_TRUE(partition.ok());
  auto shards = InProcessShards::create(p, partition.value(), 1);
  ASSERT_NE(shards, nullptr);
  Runtime& rt = shards->shard(0);  // actors 0 and 1
  ASSERT_TRUE(rt.start().ok());
  // Epoch 1 before epoch 0.
  Status st = rt.deliver_inbound_k2k(1, {}, {});
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.to_string();
  // A message for actor 3, which shard 1 runs.
  const K2KTransfer wrong{3, 0, 2, 0, 0};
  st = rt.deliver_inbound_k2k(0, std::span<const K2KTransfer>(&wrong, 1), {});
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
  // A payload that does not add up.
  const K2KTransfer right{1, 0, 2, 8, 0};
  const std::byte four[4] = {};
  st = rt.deliver_inbound_k2k(0, std::span<const K2KTransfer>(&right, 1), four);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
  // The grid has not passed epoch 0: it waits for the exchange, nothing more.
  EXPECT_FALSE(rt.epoch_completed(1));
  EXPECT_TRUE(shards->shutdown().ok());
}

}  // namespace
}  // namespace pkrt::examples
