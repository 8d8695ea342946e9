// Commands sent and not yet applied at a snapshot cut (a block's deferred list and its H2K
// ring) are part of a whole-run snapshot (SnapshotScope::kWholeRun) and of every checkpoint
// set, so a restored run applies them at their epochs without the app sending them again.
#include "examples/heat2d/heat2d_host.hpp"
#include "tests/test_support.hpp"

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_set.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

namespace pkrt {
namespace {

using namespace std::chrono_literals;
using examples::Heat2d;

Heat2d::Params heat_params(std::uint32_t actors) {
  Heat2d::Params p;
  p.width = 48;
  p.height = 40;
  p.seed = 3;
  p.stats_every = 0;
  examples::heat2d_choose_tiles(p, actors);
  return p;
}

// Due before, at and after the cut at 100 (and one past the deferred list's turn at 150).
const std::vector<examples::Heat2dScheduledInjection> kInjections = {
    {30, {5, 5, 50.0f}}, {99, {40, 30, 25.0f}}, {100, {1, 39, 10.0f}}, {101, {20, 20, 70.0f}},
    {150, {47, 0, 5.0f}}, {160, {10, 30, 8.0f}}, {160, {11, 30, 9.0f}}};

void post_injections(Runtime& rt, const Heat2d::Params& p) {
  for (const auto& inj : kInjections)
    ASSERT_TRUE(rt.post(Heat2d::actor_of(p, inj.inject.x, inj.inject.y), examples::kHeat2dInject, inj.inject, inj.epoch)
                    .ok());
}


using testing::SnapshotCollector;

std::vector<Command> queued_of(const std::vector<SnapshotImage>& images, std::uint32_t actors) {
  for (const auto& img : images) {
    if (img.actor != kQueuedCommandsActor) continue;
    EXPECT_TRUE(img.status.ok()) << img.status.to_string();
    if (!img.status.ok()) return {};
    auto decoded = decode_queued_commands(*img.image, actors, "snapshot");
    EXPECT_TRUE(decoded.ok()) << decoded.status().to_string();
    return decoded.ok() ? decoded.value() : std::vector<Command>{};
  }
  ADD_FAILURE() << "no queued-commands image";
  return {};
}

TEST(QueuedCommands, AWholeRunSnapshotHoldsTheDeferredListThenTheRingInApplyOrder) {
  const auto p = heat_params(4);
  auto created = Runtime::create(examples::heat2d_program(), p, testing::cpu_runtime(4, 1, 1024));
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Runtime& rt = *created.value();
  SnapshotCollector images(rt);
  ASSERT_TRUE(rt.set_target_epoch(100).ok());
  post_injections(rt, p);
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(100, 30s).ok());
  // Taken from the ring by now, not yet due: the deferred list. Sent now: the ring.
  const examples::Heat2dInjectData late{2, 2, 1.0f};
  ASSERT_TRUE(rt.post(Heat2d::actor_of(p, 2, 2), examples::kHeat2dInject, late, 120).ok());
  auto id = rt.snapshot_all(100, false, SnapshotScope::kWholeRun);
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  const auto got = images.wait(id.value(), 4 + 1);
  ASSERT_EQ(got.size(), 5u);
  const std::vector<Command> queued = queued_of(got, 4);
  // One block: deferred by (epoch, sending order), then the ring.
  const std::vector<std::uint64_t> want_epochs = {101, 150, 160, 160, 120};
  ASSERT_EQ(queued.size(), want_epochs.size());
  for (std::size_t i = 0; i < queued.size(); ++i) {
    EXPECT_EQ(queued[i].apply_epoch, want_epochs[i]) << "record " << i;
    EXPECT_EQ(queued[i].opcode, examples::kHeat2dInject);
  }
  examples::Heat2dInjectData first, second;
  std::memcpy(&first, queued[2].data.data(), sizeof first);
  std::memcpy(&second, queued[3].data.data(), sizeof second);
  EXPECT_EQ(first.x, 10u);  // the two due at 160 in the order they were sent
  EXPECT_EQ(second.x, 11u);
  EXPECT_EQ(queued[4].actor, Heat2d::actor_of(p, 2, 2));
  ASSERT_TRUE(rt.shutdown().ok());
}

class QueuedRestore : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint32_t>> {};

// Served while the grid runs (requested before the launch), restored into a run that sends
// nothing: the injections due after the cut come from the snapshot alone.
TEST_P(QueuedRestore, ARestoredRunAppliesTheQueuedCommandsWithoutTheAppSendingThemAgain) {
  const auto [threads_before, threads_after] = GetParam();
  constexpr std::uint32_t kActors = 6;
  constexpr std::uint64_t kCut = 100, kEnd = 200;
  const auto p = heat_params(kActors);

  auto first = Runtime::create(examples::heat2d_program(), p, testing::cpu_runtime(kActors, threads_before, 1024));
  ASSERT_TRUE(first.ok());
  SnapshotCollector images(*first.value());
  auto id = first.value()->snapshot_all(kCut, false, SnapshotScope::kWholeRun);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(first.value()->set_target_epoch(kEnd).ok());
  post_injections(*first.value(), p);
  ASSERT_TRUE(first.value()->start().ok());
  ASSERT_TRUE(first.value()->run_until(kEnd, 60s).ok());
  auto expected = examples::heat2d_gather(*first.value(), p);
  ASSERT_TRUE(expected.ok());
  std::vector<std::vector<std::byte>> cut;
  const auto got = images.wait(id.value(), kActors + 1);
  for (const auto& img : got) {
    ASSERT_TRUE(img.status.ok()) << img.status.to_string();
    ASSERT_EQ(img.epoch, kCut);
    if (img.actor < kActors) cut.push_back(*img.image);
  }
  ASSERT_EQ(cut.size(), kActors);
  const std::vector<Command> queued = queued_of(got, kActors);
  EXPECT_EQ(queued.size(), 4u);  // due at 101, 150, 160, 160
  ASSERT_TRUE(first.value()->shutdown().ok());

  auto resumed = Runtime::create(examples::heat2d_program(), p, testing::cpu_runtime(kActors, threads_after, 1024));
  ASSERT_TRUE(resumed.ok());
  Status restored = resumed.value()->restore_before_start(kCut, cut, {}, queued);
  ASSERT_TRUE(restored.ok()) << restored.to_string();
  ASSERT_TRUE(resumed.value()->set_target_epoch(kEnd).ok());
  ASSERT_TRUE(resumed.value()->start().ok());
  ASSERT_TRUE(resumed.value()->run_until(kEnd, 60s).ok());
  auto again = examples::heat2d_gather(*resumed.value(), p);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(examples::heat2d_checksum(again.value()), examples::heat2d_checksum(expected.value()));
  EXPECT_EQ(std::memcmp(again.value().data(), expected.value().data(), again.value().size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, QueuedRestore,
                         ::testing::Values(std::make_tuple(1u, 1u), std::make_tuple(2u, 2u), std::make_tuple(3u, 1u),
                                           std::make_tuple(1u, 3u)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "to" +
                                  std::to_string(std::get<1>(info.param)) + "threads";
                         });

TEST(QueuedCommands, ACheckpointSetHoldsThemAndRestoreFindsThem) {
  constexpr std::uint32_t kActors = 4;
  const auto p = heat_params(kActors);
  auto created = Runtime::create(examples::heat2d_program(), p, testing::cpu_runtime(kActors, 2, 1024));
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  auto memory = std::make_unique<MemoryCheckpointStore>();
  MemoryCheckpointStore* store = memory.get();
  auto manager = CheckpointManager::create(rt, std::move(memory), CheckpointPolicy{});
  ASSERT_TRUE(manager.ok()) << manager.status().to_string();
  ASSERT_TRUE(rt.set_target_epoch(100).ok());
  post_injections(rt, p);
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(100, 30s).ok());
  ASSERT_TRUE(manager.value()->checkpoint_at(100).ok());
  ASSERT_TRUE(manager.value()->wait_served(30s).ok());
  ASSERT_TRUE(manager.value()->flush(30s).ok());

  auto sets = scan_checkpoint_sets(*store);
  ASSERT_TRUE(sets.ok());
  ASSERT_EQ(sets->size(), 1u);
  const CheckpointManifest& m = sets->front().manifest;
  ASSERT_EQ(m.members.size(), kActors + 1);
  EXPECT_EQ(m.members.back().actor, kQueuedCommandsActor);
  EXPECT_NE(m.members.back().file.find("-queued-full"), std::string::npos) << m.members.back().file;

  RestoreQuery q;
  q.fingerprint = checkpoint_fingerprint(rt);
  auto point = find_restore_point(*store, q);
  ASSERT_TRUE(point.ok()) << point.status().to_string();
  EXPECT_TRUE(point->has_queued);
  std::multiset<std::uint64_t> epochs;  // per block in apply order; blocks one after another
  for (const Command& c : point->queued) epochs.insert(c.apply_epoch);
  EXPECT_EQ(epochs, (std::multiset<std::uint64_t>{101, 150, 160, 160}));
  manager.value().reset();
  ASSERT_TRUE(rt.shutdown().ok());
}

TEST(QueuedCommands, RestoreRefusesMoreCommandsForABlockThanItsRingHoldsNamingTheFix) {
  const auto p = heat_params(2);
  RuntimeOptions o = testing::cpu_runtime(2, 1, 1024);
  o.ring_capacity = 16;
  auto created = Runtime::create(examples::heat2d_program(), p, o);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  const std::vector<std::vector<std::byte>> images(2, std::vector<std::byte>(created.value()->image_layout().image_bytes));
  std::vector<Command> queued(17, Command::make(0, examples::kHeat2dInject, examples::Heat2dInjectData{1, 1, 1.0f}, 50));
  Status st = created.value()->restore_before_start(10, images, {}, queued);
  ASSERT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("--ring-capacity"), std::string::npos) << st.message();
}

TEST(QueuedCommands, MalformedRecordsAreRefusedNamingTheRecord) {
  std::vector<Command> one = {Command::make(1, examples::kHeat2dInject, examples::Heat2dInjectData{1, 1, 1.0f}, 50)};
  const std::vector<std::byte> good = encode_queued_commands(one);
  ASSERT_EQ(good.size(), kQueuedCommandBytes);
  auto back = decode_queued_commands(good, 2, "q");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->front().actor, 1u);
  EXPECT_EQ(back->front().apply_epoch, 50u);
  EXPECT_EQ(back->front().data, one.front().data);

  EXPECT_EQ(decode_queued_commands(std::span(good).first(47), 2, "q").status().code(), StatusCode::kCorruptData);
  EXPECT_NE(decode_queued_commands(good, 1, "q").status().message().find("actor 1 of 1"), std::string::npos);
  std::vector<std::byte> reserved = good;
  reserved[6] = std::byte{1};
  EXPECT_EQ(decode_queued_commands(reserved, 2, "q").status().code(), StatusCode::kCorruptData);
  std::vector<Command> runtime_op = one;
  runtime_op.front().opcode = kOpReleaseStaging;
  EXPECT_NE(decode_queued_commands(encode_queued_commands(runtime_op), 2, "q").status().message().find("runtime opcode"),
            std::string::npos);
}

TEST(QueuedCommands, AManifestWithTheQueuedMemberRoundTripsAndOneWithoutItsFlagIsRefused) {
  CheckpointManifest m;
  m.epoch = 100;
  m.sequence = 1;
  m.fingerprint.app = "heat2d";
  m.fingerprint.num_actors = 1;
  m.fingerprint.image_bytes = 512;
  m.fingerprint.chunk_bytes = 256;
  for (std::uint32_t a : {0u, kQueuedCommandsActor}) {
    CheckpointInfo info;
    info.app = "heat2d";
    info.epoch = 100;
    info.actor = a;
    CheckpointSetMember mem;
    mem.actor = a;
    mem.file = checkpoint_member_name(info, 1);
    m.members.push_back(mem);
  }
  EXPECT_EQ(m.members.back().file, "heat2d-e000000000100-s000001-queued-full.pkck");
  EXPECT_EQ(checkpoint_member_sequence(m.members.back().file), 1u);
  std::vector<std::byte> bytes = encode_checkpoint_manifest(m);
  auto parsed = parse_checkpoint_manifest(bytes, "m.pkset");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  ASSERT_EQ(parsed->members.size(), 2u);
  EXPECT_EQ(parsed->members.back().actor, kQueuedCommandsActor);
  EXPECT_EQ(encode_checkpoint_manifest(parsed.value()), bytes);

  CheckpointManifest v1 = m;
  v1.version = 1;  // version 1 has no flags: a queued member makes the count wrong
  EXPECT_FALSE(parse_checkpoint_manifest(encode_checkpoint_manifest(v1), "v1.pkset").ok());
}

}  // namespace
}  // namespace pkrt
