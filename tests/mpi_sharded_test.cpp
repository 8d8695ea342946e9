// pkrt::mpi under mpirun (tests/CMakeLists.txt runs it with -np 4, CPU backend): one job,
// sub-communicators of 1 to 4 ranks, so a run on R ranks can be checkpointed and restored on
// M ranks inside one test. Every rank runs every test; ranks outside a test's group wait at
// its end. Seeded, one behaviour each.
#include "examples/echo/echo.hpp"
#include "examples/heat2d/heat2d_host.hpp"
#include "mpi/commit_fault.hpp"

#include <pkrt/k2k_log.hpp>
#include <pkrt/mpi.hpp>
#include <pkrt/replay.hpp>
#include <pkrt/replay_log.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

namespace pkrt::mpi {
namespace {

using examples::Heat2d;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// World ranks 0 .. n-1 in a new communicator (MPI_COMM_NULL on the others).
MPI_Comm first_ranks(int n) {
  MPI_Comm c = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank() < n ? 0 : MPI_UNDEFINED, world_rank(), &c);
  return c;
}

// Runs `body` with a communicator of world ranks 0 .. n-1 on those ranks; then every rank
// meets, so the next test starts together. What `body` creates is gone before the
// communicator is freed.
template <class Body>
void on_first_ranks(int n, Body&& body) {
  MPI_Comm comm = first_ranks(n);
  if (comm != MPI_COMM_NULL) {
    body(comm);
    MPI_Comm_free(&comm);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

Heat2d::Params field(std::uint32_t actors) {
  Heat2d::Params p;
  p.width = 47;
  p.height = 38;
  p.seed = 20261204;
  p.stats_every = 0;
  examples::heat2d_choose_tiles(p, actors);
  return p;
}

constexpr std::uint32_t kActors = 12;

ShardOptions options(std::uint32_t delay) {
  ShardOptions o;
  o.runtime.backend = BackendKind::kCpu;
  o.runtime.num_actors = kActors;
  o.runtime.threads = 1;
  o.runtime.k2k_delay = delay;
  o.exchange_timeout = std::chrono::milliseconds(20000);
  return o;
}

// The field's checksum on the group's rank 0 (0 elsewhere), every rank's tiles OR-ed in.
std::uint32_t group_checksum(ShardedRuntime& shard, MPI_Comm comm, const Heat2d::Params& p) {
  std::vector<float> mine(std::uint64_t{p.width} * p.height, 0.0f), whole(mine.size());
  EXPECT_TRUE(examples::heat2d_gather_into(shard.local(), p, mine).ok());
  MPI_Reduce(mine.data(), whole.data(), static_cast<int>(mine.size()), MPI_UINT32_T, MPI_BOR, 0, comm);
  return shard.context().rank == 0 ? examples::heat2d_checksum(whole) : 0;
}

// Injections, the same schedule on every rank count: from every tile's owner, or (`from` >= 0)
// all from that rank, forwarded to the owners.
void inject(ShardedRuntime& shard, const Heat2d::Params& p, int from = -1) {
  std::mt19937_64 rng(p.seed);
  for (int i = 0; i < 10; ++i) {
    examples::Heat2dInjectData inj{static_cast<std::uint32_t>(rng() % p.width), static_cast<std::uint32_t>(rng() % p.height),
                                   1.0f + static_cast<float>(rng() % 100)};
    const std::uint64_t epoch = 1 + rng() % 40;
    const std::uint32_t actor = Heat2d::actor_of(p, inj.x, inj.y);
    const bool mine = from < 0 ? shard.owns(actor) : shard.context().rank == from;
    if (mine) ASSERT_TRUE(shard.post(actor, examples::kHeat2dInject, &inj, sizeof inj, epoch).ok());
  }
}

// Runs heat2d on `ranks` ranks through `epochs` (checkpointing at `checkpoint_at` into `dir`
// when set) and returns the checksum on world rank 0.
std::uint32_t straight(int ranks, std::uint32_t delay, std::uint64_t epochs, const std::string& dir = {},
                       std::uint64_t checkpoint_at = 0, int inject_from = -1) {
  std::uint32_t sum = 0;
  on_first_ranks(ranks, [&](MPI_Comm comm) {
    const Heat2d::Params p = field(kActors);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, options(delay));
    EXPECT_TRUE(created.ok()) << created.status().to_string();
    if (created.ok()) {
      ShardedRuntime& shard = *created.value();
      if (!dir.empty()) {
        GlobalCheckpointOptions co;
        co.directory = dir;
        EXPECT_TRUE(shard.enable_checkpoints(co).ok());
      }
      inject(shard, p, inject_from);
      EXPECT_TRUE(shard.start().ok());
      if (checkpoint_at != 0) {
        EXPECT_TRUE(shard.run_until(checkpoint_at).ok());
        auto taken = shard.checkpoint();
        EXPECT_TRUE(taken.ok()) << taken.status().to_string();
      }
      const Status ran = shard.run_until(epochs);
      EXPECT_TRUE(ran.ok()) << ran.to_string();
      sum = group_checksum(shard, comm, p);
    }
  });
  MPI_Bcast(&sum, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
  return sum;
}

// Restores heat2d on `ranks` ranks from `dir` and runs it through `epochs`.
std::uint32_t restored(int ranks, std::uint32_t delay, std::uint64_t epochs, const std::string& dir,
                       std::uint64_t expected_epoch) {
  std::uint32_t sum = 0;
  on_first_ranks(ranks, [&](MPI_Comm comm) {
    const Heat2d::Params p = field(kActors);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, options(delay));
    EXPECT_TRUE(created.ok()) << created.status().to_string();
    if (created.ok()) {
      ShardedRuntime& shard = *created.value();
      auto epoch = shard.restore(dir, std::nullopt, {});
      EXPECT_TRUE(epoch.ok()) << epoch.status().to_string();
      if (epoch.ok()) EXPECT_EQ(epoch.value(), expected_epoch);
      EXPECT_TRUE(shard.start().ok());
      const Status ran = shard.run_until(epochs);
      EXPECT_TRUE(ran.ok()) << ran.to_string();
      sum = group_checksum(shard, comm, p);
    }
  });
  MPI_Bcast(&sum, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
  return sum;
}

std::string fresh_dir(const std::string& name) {
  std::string dir = (std::filesystem::temp_directory_path() / ("pkrt_mpi_test_" + name)).string();
  if (world_rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return dir;
}

class RestoreOnAnotherRankCount : public ::testing::TestWithParam<std::tuple<int, int, std::uint32_t>> {};

TEST_P(RestoreOnAnotherRankCount, ContinuesLikeTheStraightRun) {
  const auto [from, to, delay] = GetParam();
  ASSERT_GE(world_size(), std::max(from, to)) << "run under mpirun -np 4";
  const std::string dir = fresh_dir("restore_" + std::to_string(from) + "_" + std::to_string(to) + "_d" + std::to_string(delay));
  const std::uint32_t reference = straight(1, delay, 40);
  const std::uint32_t written = straight(from, delay, 40, dir, 20);
  EXPECT_EQ(written, reference) << from << " ranks with a checkpoint at 20";
  EXPECT_EQ(restored(to, delay, 40, dir, 20), reference) << from << " -> " << to << " ranks";
}

INSTANTIATE_TEST_SUITE_P(FromToDelay, RestoreOnAnotherRankCount,
                         ::testing::Values(std::make_tuple(4, 2, 1u), std::make_tuple(2, 3, 1u),
                                           std::make_tuple(1, 4, 1u), std::make_tuple(3, 4, 2u),
                                           std::make_tuple(4, 1, 2u)));

TEST(ShardedRuntime, ARankThatStopsMakesEveryRankFailNamingIt) {
  ASSERT_GE(world_size(), 3);
  on_first_ranks(3, [&](MPI_Comm comm) {
    const Heat2d::Params p = field(kActors);
    ShardOptions o = options(1);
    // Rank 1 gives up on its own grid well before its peers give up on it, so they hear why.
    int group_rank = 0;
    MPI_Comm_rank(comm, &group_rank);
    o.exchange_timeout = std::chrono::milliseconds(group_rank == 1 ? 1000 : 15000);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, o);
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    ShardedRuntime& shard = *created.value();
    ASSERT_TRUE(shard.start().ok());
    ASSERT_TRUE(shard.run_until(5).ok());
    // Rank 1's grid is held (stuck, as in user code that never returns): it never completes
    // epoch 6, and rank 1 gives up on it at its own deadline.
    if (shard.context().rank == 1) ASSERT_TRUE(shard.local().pause().ok());
    const Status st = shard.run_until(10);
    ASSERT_FALSE(st.ok());
    if (shard.context().rank == 1) {
      EXPECT_NE(st.message().find("rank 1's grid did not complete epoch 6"), std::string::npos) << st.to_string();
    } else {
      EXPECT_EQ(st.code(), StatusCode::kAborted) << st.to_string();
      EXPECT_NE(st.message().find("rank(s) 1 failed"), std::string::npos) << st.to_string();
    }
  });
}

TEST(ShardedRuntime, PostsFromOneRankApplyAtTheirEpochsOnTheOwners) {
  ASSERT_GE(world_size(), 3);
  for (std::uint32_t delay : {1u, 2u}) {
    const std::uint32_t reference = straight(1, delay, 40);
    // Every injection posted from rank 2 before the start, forwarded to its tile's owner,
    // including those due at epoch 1 (the first epoch after the start's park).
    EXPECT_EQ(straight(3, delay, 40, {}, 0, 2), reference) << "delay " << delay;
  }
}

// A command's apply epoch follows Runtime::post on its owner (0 or an epoch the grids already
// ran: the next one), whichever rank calls and whichever rank runs the actor, for any K2K
// delay: code written for one rank behaves alike on any partition.
TEST(ShardedRuntime, ACommandAppliesAtTheSameEpochWhicheverRankSendsItAndRunsItsActor) {
  ASSERT_GE(world_size(), 3);
  for (int ranks : {1, 3}) {
    on_first_ranks(ranks, [&](MPI_Comm comm) {
      ShardOptions o = options(2);
      o.exchange_timeout = std::chrono::milliseconds(20000);
      auto created = ShardedRuntime::create(comm, examples::echo_program(), examples::Echo::Params{}, o);
      ASSERT_TRUE(created.ok()) << created.status().to_string();
      ShardedRuntime& shard = *created.value();
      ASSERT_TRUE(shard.start().ok());
      ASSERT_TRUE(shard.run_until(10).ok());
      EXPECT_EQ(shard.earliest_remote_apply_epoch(), 11u) << ranks << " rank(s)";
      // Rank 0 asks every actor (its own and the others') at 0, a past epoch, the next one
      // and a later one; the last rank asks too, for 0, so both directions cross ranks.
      const std::uint64_t asked[] = {0, 4, 11, 13};
      const std::uint64_t expected[] = {11, 11, 11, 13};
      std::vector<std::vector<ReplyFuture>> replies(std::size(asked));
      const bool last = shard.context().rank == shard.context().size - 1;
      std::vector<ReplyFuture> from_last;
      for (std::uint32_t a = 0; a < kActors; ++a) {
        if (shard.context().rank == 0)
          for (std::size_t i = 0; i < std::size(asked); ++i)
            replies[i].push_back(shard.send(a, examples::kEchoPing, std::uint64_t{a}, asked[i]));
        if (last) from_last.push_back(shard.send(a, examples::kEchoPing, std::uint64_t{a}));
      }
      ASSERT_TRUE(shard.run_until(13).ok());
      for (std::size_t i = 0; i < std::size(asked) && shard.context().rank == 0; ++i) {
        for (std::uint32_t a = 0; a < kActors; ++a) {
          ASSERT_TRUE(replies[i][a].ready()) << "actor " << a << ", asked for " << asked[i];
          const Reply r = replies[i][a].get();
          ASSERT_TRUE(r.status.ok()) << r.status.to_string();
          EXPECT_EQ(r.event.epoch, expected[i]) << "actor " << a << " on rank " << shard.partition().owner(a)
                                                << ", asked for epoch " << asked[i] << ", " << ranks << " rank(s)";
        }
      }
      for (std::uint32_t a = 0; a < from_last.size(); ++a) {
        ASSERT_TRUE(from_last[a].ready()) << "actor " << a;
        const Reply r = from_last[a].get();
        ASSERT_TRUE(r.status.ok()) << r.status.to_string();
        EXPECT_EQ(r.event.epoch, 11u) << "actor " << a << ", from rank " << shard.context().rank;
      }
    });
  }
}

// Three ranks inject into one cell at one epoch amounts whose float sum depends on the order
// (1e8 + 1 - 1e8 is 0 in float, 1e8 - 1e8 + 1 is 1). Whichever rank runs the cell's tile, the
// commands apply in rank order, so the field is the same on every partition.
TEST(ShardedRuntime, CommandsFromSeveralRanksForOneActorApplyInRankOrderOnAnyPartition) {
  ASSERT_GE(world_size(), 3);
  const Heat2d::Params p = field(kActors);
  const examples::Heat2dInjectData cell{p.width / 2, p.height / 2, 0.0f};
  const std::uint32_t target = Heat2d::actor_of(p, cell.x, cell.y);
  const float amounts[] = {1e8f, 1.0f, -1e8f};
  std::vector<std::uint32_t> sums;
  for (std::uint32_t owner_of_target : {0u, 1u, 2u}) {
    std::uint32_t sum = 0;
    on_first_ranks(3, [&](MPI_Comm comm) {
      ShardOptions o = options(1);
      // Round robin, except the target's tile, which goes to `owner_of_target`.
      auto partition = ActorPartition::custom(
          kActors, 3, [&](std::uint32_t a) { return a == target ? owner_of_target : a % 3; }, "test");
      ASSERT_TRUE(partition.ok()) << partition.status().to_string();
      o.partition = std::move(partition.value());
      auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, o);
      ASSERT_TRUE(created.ok()) << created.status().to_string();
      ShardedRuntime& shard = *created.value();
      ASSERT_TRUE(shard.start().ok());
      ASSERT_TRUE(shard.run_until(3).ok());
      examples::Heat2dInjectData inj = cell;
      inj.amount = amounts[shard.context().rank];
      ASSERT_TRUE(shard.post(target, examples::kHeat2dInject, &inj, sizeof inj, 5).ok());
      ASSERT_TRUE(shard.run_until(10).ok());
      sum = group_checksum(shard, comm, p);
    });
    MPI_Bcast(&sum, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
    sums.push_back(sum);
  }
  EXPECT_EQ(sums[1], sums[0]) << "the target's tile on rank 1 vs rank 0";
  EXPECT_EQ(sums[2], sums[0]) << "the target's tile on rank 2 vs rank 0";
}

// A single rank is not gated by any exchange: without a park at the start its grid would run
// ahead of the first run_until (it did, and a restore test failed one run in ten).
TEST(ShardedRuntime, AStartedGridWaitsForRunUntilEvenOnOneRank) {
  on_first_ranks(1, [&](MPI_Comm comm) {
    const Heat2d::Params p = field(kActors);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, options(1));
    ASSERT_TRUE(created.ok());
    ShardedRuntime& shard = *created.value();
    ASSERT_TRUE(shard.start().ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // thousands of epochs' time
    ASSERT_TRUE(shard.run_until(5).ok());
    EXPECT_EQ(shard.local().stats().epoch, 5u);
    // The epoch counts are those of any rank count, so generic code behaves alike on one.
    EXPECT_EQ(shard.next_exchange_epoch(), 6u);
    EXPECT_EQ(shard.earliest_remote_apply_epoch(), 6u);
    const Status back = shard.run_until(3);
    EXPECT_EQ(back.code(), StatusCode::kFailedPrecondition) << back.to_string();
  });
}

TEST(ShardedRuntime, TotalsAddUpOverRanks) {
  ASSERT_GE(world_size(), 3);
  on_first_ranks(3, [&](MPI_Comm comm) {
    const Heat2d::Params p = field(kActors);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, options(1));
    ASSERT_TRUE(created.ok());
    ShardedRuntime& shard = *created.value();
    inject(shard, p, 0);  // all from rank 0: forwarded to the other ranks' tiles
    ASSERT_TRUE(shard.start().ok());
    ASSERT_TRUE(shard.run_until(20).ok());
    auto t = shard.totals();
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->ranks, 3);
    EXPECT_EQ(t->runtime.epoch, 20u);
    EXPECT_EQ(t->exchange.epochs, 21u);  // epochs 0 (init) to 20
    EXPECT_GT(t->exchange.messages_sent, 0u);
    EXPECT_EQ(t->exchange.messages_sent, t->exchange.messages_received);
    EXPECT_EQ(t->exchange.bytes_sent, t->exchange.bytes_received);
    std::uint32_t remote = 0;  // injections rank 0 had to forward
    std::mt19937_64 rng(p.seed);
    for (int i = 0; i < 10; ++i) {
      const std::uint32_t x = static_cast<std::uint32_t>(rng() % p.width), y = static_cast<std::uint32_t>(rng() % p.height);
      rng();
      rng();
      remote += shard.partition().owner(Heat2d::actor_of(p, x, y)) != 0 ? 1 : 0;
    }
    EXPECT_EQ(t->exchange.commands_forwarded, remote);
  });
}

// The echo app (a reply per ping, no K2K) over `ranks` ranks of `comm`.
std::unique_ptr<ShardedRuntime> echo_shard(MPI_Comm comm, std::chrono::milliseconds timeout = std::chrono::milliseconds(20000)) {
  ShardOptions o = options(1);
  o.exchange_timeout = timeout;
  auto created = ShardedRuntime::create(comm, examples::echo_program(), examples::Echo::Params{}, o);
  EXPECT_TRUE(created.ok()) << created.status().to_string();
  return created.ok() ? std::move(created.value()) : nullptr;
}

// What rank `from` sends actor `actor`: both ids in the bytes, so a reply shows whose it is.
std::array<std::byte, kEnvelopeDataBytes> ping_bytes(int from, std::uint32_t actor) {
  std::array<std::byte, kEnvelopeDataBytes> b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>((from * 31 + actor * 7 + i) & 0xff);
  return b;
}

TEST(ShardedRuntime, SendsToAnyActorFromAnyRankAreAnsweredByTheRunUntilOfTheirEpoch) {
  ASSERT_GE(world_size(), 3);
  on_first_ranks(3, [&](MPI_Comm comm) {
    auto shard = echo_shard(comm);
    ASSERT_NE(shard, nullptr);
    ASSERT_TRUE(shard->start().ok());
    ASSERT_TRUE(shard->run_until(2).ok());
    const int me = shard->context().rank;
    // Every rank pings every actor at epoch 6, and asks one remote actor an unknown opcode.
    std::vector<ReplyFuture> pings;
    for (std::uint32_t a = 0; a < kActors; ++a) {
      const auto bytes = ping_bytes(me, a);
      pings.push_back(shard->send(a, examples::kEchoPing, bytes.data(), bytes.size(), 6));
    }
    const std::uint32_t remote = shard->owns(0) ? kActors - 1 : 0;
    ReplyFuture unknown = shard->send(remote, std::uint16_t{examples::kEchoPing + 40}, nullptr, 0, 6);
    ASSERT_TRUE(shard->run_until(5).ok());
    EXPECT_FALSE(pings[remote].ready()) << "a remote reply before its epoch ran";
    ASSERT_TRUE(shard->run_until(6).ok());
    for (std::uint32_t a = 0; a < kActors; ++a) {
      if (!shard->owns(a)) EXPECT_TRUE(pings[a].ready()) << "actor " << a << "'s reply is back with epoch 6's exchange";
      ASSERT_EQ(pings[a].wait_for(std::chrono::seconds(10)), std::future_status::ready) << "actor " << a;
      const Reply r = pings[a].get();
      ASSERT_TRUE(r.status.ok()) << "actor " << a << ": " << r.status.to_string();
      EXPECT_EQ(r.event.actor, a) << "replies name the global id";
      EXPECT_EQ(r.event.epoch, 6u);
      EXPECT_EQ(r.event.data, ping_bytes(me, a)) << "actor " << a;
    }
    ASSERT_TRUE(unknown.ready());
    const Reply u = unknown.get();
    EXPECT_EQ(u.status.code(), StatusCode::kUnknownOpcode) << u.status.to_string();
    EXPECT_NE(u.status.message().find("on rank " + std::to_string(shard->partition().owner(remote))), std::string::npos)
        << u.status.to_string();
    auto t = shard->totals();
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->exchange.replies_returned, 3u * (kActors + 1) - kActors) << "every send but the owners' own";
  });
}

TEST(ShardedRuntime, AFailedRunFailsThePendingRemoteSends) {
  ASSERT_GE(world_size(), 2);
  on_first_ranks(2, [&](MPI_Comm comm) {
    int group_rank = 0;
    MPI_Comm_rank(comm, &group_rank);
    auto shard = echo_shard(comm, std::chrono::milliseconds(group_rank == 1 ? 1000 : 15000));
    ASSERT_NE(shard, nullptr);
    ASSERT_TRUE(shard->start().ok());
    ASSERT_TRUE(shard->run_until(4).ok());
    const std::uint32_t remote = shard->owns(0) ? kActors - 1 : 0;
    // A reply due long after the run fails: rank 1's grid stops, both ranks' run_until fail,
    // and the future holds that failure instead of waiting for ever.
    ReplyFuture late = shard->send(remote, examples::kEchoPing, std::uint64_t{2}, 1000);
    if (shard->context().rank == 1) ASSERT_TRUE(shard->local().shutdown().ok());
    ASSERT_FALSE(shard->run_until(10).ok());
    ASSERT_EQ(late.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_FALSE(late.get().status.ok());
  });
}

// A send still queued for the hand-over when its rank shuts down fails at once, for this
// rank's actor and another's alike, instead of waiting until the ShardedRuntime goes.
TEST(ShardedRuntime, AShutdownFailsTheSendsStillQueuedForTheHandOver) {
  ASSERT_GE(world_size(), 2);
  on_first_ranks(2, [&](MPI_Comm comm) {
    auto shard = echo_shard(comm);
    ASSERT_NE(shard, nullptr);
    ASSERT_TRUE(shard->start().ok());
    ASSERT_TRUE(shard->run_until(2).ok());
    const std::uint32_t mine = shard->partition().actors_of(static_cast<std::uint32_t>(shard->context().rank)).front();
    const std::uint32_t theirs = shard->owns(0) ? kActors - 1 : 0;
    ReplyFuture own = shard->send(mine, examples::kEchoPing, std::uint64_t{1});
    ReplyFuture remote = shard->send(theirs, examples::kEchoPing, std::uint64_t{2});
    EXPECT_FALSE(own.ready()) << "queued until the next run_until";
    ASSERT_TRUE(shard->shutdown().ok());
    for (ReplyFuture* f : {&own, &remote}) {
      ASSERT_TRUE(f->ready());
      const Reply r = f->get();
      EXPECT_EQ(r.status.code(), StatusCode::kAborted) << r.status.to_string();
      EXPECT_NE(r.status.message().find("shut down before the command"), std::string::npos) << r.status.to_string();
    }
  });
}

// What every rank exchanges with every other each epoch is one small all-reduce: MPI messages
// go only to ranks with something for them (K2K, a handed-over command, a reply).
TEST(ShardedRuntime, RanksWithNothingForEachOtherExchangeNoMessages) {
  ASSERT_GE(world_size(), 4);
  on_first_ranks(4, [&](MPI_Comm comm) {
    auto shard = echo_shard(comm);
    ASSERT_NE(shard, nullptr);
    ASSERT_TRUE(shard->start().ok());
    ASSERT_TRUE(shard->run_until(30).ok());
    auto quiet = shard->totals();
    ASSERT_TRUE(quiet.ok());
    EXPECT_EQ(quiet->exchange.epochs, 31u);
    EXPECT_EQ(quiet->exchange.peer_messages, 0u) << "no traffic, no messages";
    // Rank 0 posts to rank 3's last actor and sends to rank 2's first: the post is one
    // message, the send one there and one back with its reply.
    const std::uint32_t on_rank_3 = kActors - 1, on_rank_2 = shard->partition().actors_of(2).front();
    if (shard->context().rank == 0) {
      ASSERT_TRUE(shard->post(on_rank_3, examples::kEchoPing, std::uint64_t{1}, 33).ok());
    }
    ReplyFuture reply = shard->context().rank == 0 ? shard->send(on_rank_2, examples::kEchoCount, nullptr, 0, 33)
                                                   : ReplyFuture();
    ASSERT_TRUE(shard->run_until(40).ok());
    auto busy = shard->totals();
    ASSERT_TRUE(busy.ok());
    EXPECT_EQ(busy->exchange.peer_messages, 3u);
    if (shard->context().rank == 0) {
      const Reply r = reply.get();
      ASSERT_TRUE(r.status.ok()) << r.status.to_string();
      EXPECT_EQ(r.event.as<std::uint64_t>(), 0u) << "actor " << on_rank_2 << " answered no ping before";
    }
  });
}

// Each rank records its replay log and the K2K it received; one rank is then replayed alone
// (no MPI: its inbound K2K comes from the log). A changed halo in that log makes the replay
// diverge after it, which shows the replay really runs on what the log delivers.
// Records heat2d (D = 2, digests every 5 epochs) on `ranks` ranks through epoch 40: rank r's
// replay log in dir/rank<r>.log, its inbound K2K beside it; with `checkpoints`, a global
// checkpoint there at each epoch of `checkpoint_at`. The injections are posted by their
// tiles' owners, or all by rank `inject_from` (handed over to the owners).
void record_ranks(int ranks, const std::string& dir, const std::string& checkpoints = {},
                  std::vector<std::uint64_t> checkpoint_at = {}, const std::string& restore_from = {},
                  int inject_from = -1) {
  const Heat2d::Params p = field(kActors);
  on_first_ranks(ranks, [&](MPI_Comm comm) {
    int r = 0;
    MPI_Comm_rank(comm, &r);
    ShardOptions o = options(2);
    std::shared_ptr<ReplayLogWriter> log;
    if (!dir.empty()) {
      const std::string path = dir + "/rank" + std::to_string(r) + ".log";
      auto writer = ReplayLogWriter::create(path);
      ASSERT_TRUE(writer.ok()) << writer.status().to_string();
      log = std::move(writer.value());
      o.runtime.replay_log = log;
      o.k2k_log = k2k_log_path(path);
    }
    o.runtime.digest_period = 5;
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, o);
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    ShardedRuntime& shard = *created.value();
    if (!checkpoints.empty()) {
      GlobalCheckpointOptions co;
      co.directory = checkpoints;
      ASSERT_TRUE(shard.enable_checkpoints(co).ok());
    }
    if (restore_from.empty()) {
      inject(shard, p, inject_from);
    } else {
      // The injections not yet applied are among the checkpoint's queued commands.
      auto restored = shard.restore(restore_from, std::nullopt, {});
      ASSERT_TRUE(restored.ok()) << restored.status().to_string();
    }
    ASSERT_TRUE(shard.start().ok());
    for (std::uint64_t at : checkpoint_at) {
      ASSERT_TRUE(shard.run_until(at).ok());
      auto taken = shard.checkpoint();
      ASSERT_TRUE(taken.ok()) << taken.status().to_string();
    }
    ASSERT_TRUE(shard.run_until(40).ok());
    ASSERT_TRUE(shard.shutdown().ok());
    if (log) ASSERT_TRUE(log->close().ok());
  });
}

// Replays one rank's heat2d log (read from `path`) alone, with the inbound K2K log beside it,
// from the global checkpoints in `from_checkpoint` when it is not empty.
Result<ReplayResult> replay_alone(const ReplayLog& log, const std::string& path, std::string from_checkpoint = {}) {
  const Program* programs[] = {&examples::heat2d_program()};
  ReplayOptions o;
  o.inbound_k2k = k2k_log_path(path);
  o.from_checkpoint = std::move(from_checkpoint);
  return replay_log(log, programs, o);
}

TEST(ShardedRuntime, ARankReplaysAloneFromItsLogsAndATamperedHaloDiverges) {
  ASSERT_GE(world_size(), 3);
  const std::string dir = fresh_dir("replay");
  record_ranks(3, dir);
  if (world_rank() == 0) {
    const std::string path = dir + "/rank1.log";
    auto log = read_replay_log(path);
    ASSERT_TRUE(log.ok()) << log.status().to_string();
    const Program* programs[] = {&examples::heat2d_program()};
    auto same = replay_alone(log.value(), path);
    ASSERT_TRUE(same.ok()) << same.status().to_string();
    EXPECT_TRUE(same->identical) << format_replay_report(same.value());
    EXPECT_EQ(same->end_epoch, 40u);
    EXPECT_NE(same->recorded_run.find("rank 1 of 3"), std::string::npos) << same->recorded_run;
    // Without the inbound log the rank's log is refused, saying what is missing.
    auto refused = replay_log(log.value(), programs, ReplayOptions{});
    EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().to_string();
    // One float of a halo rank 1 received at epoch 20, changed (the record's CRC made anew).
    auto inbound = read_k2k_log(k2k_log_path(path));
    ASSERT_TRUE(inbound.ok()) << inbound.status().to_string();
    const std::string tampered = dir + "/rank1.tampered.k2k";
    {
      auto out = K2KLogWriter::create(tampered, inbound->shard);
      ASSERT_TRUE(out.ok());
      bool changed = false;
      for (K2KLogEpoch& e : inbound->epochs) {
        if (e.epoch == 20) {
          ASSERT_FALSE(e.payload.empty()) << "rank 1 received nothing at epoch 20";
          float v = 0;
          std::memcpy(&v, e.payload.data(), sizeof v);
          v += 1.0f;
          std::memcpy(e.payload.data(), &v, sizeof v);
          changed = true;
        }
        ASSERT_TRUE(out.value()->append(e.epoch, e.messages, e.payload).ok());
      }
      ASSERT_TRUE(changed);
      ASSERT_TRUE(out.value()->close().ok());
    }
    ReplayOptions bad;
    bad.inbound_k2k = tampered;
    auto diverged = replay_log(log.value(), programs, bad);
    ASSERT_TRUE(diverged.ok()) << diverged.status().to_string();
    EXPECT_FALSE(diverged->identical);
    ASSERT_TRUE(diverged->divergence.has_value());
    // Read at epoch 22 (D = 2); the next digest (every 5 epochs) is at 25.
    EXPECT_GT(diverged->divergence->epoch, 20u);
    EXPECT_LE(diverged->divergence->epoch, 25u);
    // Named as the run knows it: the rank, and the actor's global id beside its local index.
    ASSERT_TRUE(diverged->rank.has_value());
    EXPECT_EQ(*diverged->rank, 1u);
    const std::uint32_t local = diverged->divergence->actor;
    ASSERT_LT(local, inbound->shard.global_ids.size());
    EXPECT_EQ(diverged->divergence->global_actor, inbound->shard.global_ids[local]);
    const std::string report = format_replay_report(diverged.value());
    EXPECT_NE(report.find("actor " + std::to_string(inbound->shard.global_ids[local]) + " (local index " +
                          std::to_string(local) + ") of rank 1 of 3"),
              std::string::npos)
        << report;
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// Copies the K2K log at `from` to `to`, letting `change` alter each epoch first.
template <class Change>
void rewrite_k2k_log(const std::string& from, const std::string& to, Change&& change) {
  auto log = read_k2k_log(from);
  ASSERT_TRUE(log.ok()) << log.status().to_string();
  auto out = K2KLogWriter::create(to, log->shard);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  for (K2KLogEpoch& e : log->epochs) {
    change(e);
    ASSERT_TRUE(out.value()->append(e.epoch, e.messages, e.payload).ok());
  }
  ASSERT_TRUE(out.value()->close().ok());
}

// Replayed alone with its peers' inbound logs, a rank's outbound K2K is checked too: equal,
// the replay counts it; a message its receiver logged differently (or not at all) is the
// divergence, at the epoch it was sent, naming sender, receiver and what differs. Without
// this check a rank whose halos go wrong but whose own state does not replays identical.
TEST(ShardedRuntime, ARankReplayedWithItsPeersLogsChecksTheK2KItSendsAndNamesTheFirstWrongMessage) {
  ASSERT_GE(world_size(), 3);
  const std::string dir = fresh_dir("replay_sent");
  record_ranks(3, dir);
  const std::string other = fresh_dir("replay_sent_other");  // the same run, recorded again
  record_ranks(3, other);
  if (world_rank() == 0) {
    const std::string path = dir + "/rank1.log";
    auto log = read_replay_log(path);
    ASSERT_TRUE(log.ok()) << log.status().to_string();
    auto own = read_k2k_log(k2k_log_path(path));
    ASSERT_TRUE(own.ok()) << own.status().to_string();
    const auto& ids = own->shard.global_ids;
    const auto from_rank_1 = [&](const K2KTransfer& t) { return std::binary_search(ids.begin(), ids.end(), t.src); };
    const Program* programs[] = {&examples::heat2d_program()};
    const auto replay_with = [&](std::vector<std::string> peers) {
      ReplayOptions o;
      o.inbound_k2k = k2k_log_path(path);
      o.peer_k2k = std::move(peers);
      return replay_log(log.value(), programs, o);
    };
    const std::string rank0 = k2k_log_path(dir + "/rank0.log"), rank2 = k2k_log_path(dir + "/rank2.log");
    auto same = replay_with({rank0, rank2});
    ASSERT_TRUE(same.ok()) << same.status().to_string();
    EXPECT_TRUE(same->identical) << format_replay_report(same.value());
    EXPECT_GT(same->k2k_sent_compared, 0u);

    // Rank 2's log with one byte changed in the first message it got from rank 1 at epoch 20.
    std::uint32_t changed_src = kNoActor;
    const std::string payload_changed = dir + "/rank2.payload.k2k";
    rewrite_k2k_log(rank2, payload_changed, [&](K2KLogEpoch& e) {
      if (e.epoch != 20) return;
      std::size_t offset = 0;
      for (const K2KTransfer& t : e.messages) {
        if (from_rank_1(t) && t.bytes > 0 && changed_src == kNoActor) {
          e.payload[offset] = static_cast<std::byte>(static_cast<unsigned>(e.payload[offset]) ^ 0x5a);
          changed_src = t.src;
        }
        offset += t.bytes;
      }
    });
    ASSERT_NE(changed_src, kNoActor) << "rank 1 sent rank 2 nothing at epoch 20";
    auto differs = replay_with({rank0, payload_changed});
    ASSERT_TRUE(differs.ok()) << differs.status().to_string();
    EXPECT_FALSE(differs->identical);
    ASSERT_TRUE(differs->divergence.has_value());
    const ReplayDivergence& d = *differs->divergence;
    EXPECT_EQ(d.kind, ReplayDivergence::Kind::kK2KSent);
    EXPECT_EQ(d.epoch, 20u);
    EXPECT_EQ(d.field, "payload");
    EXPECT_EQ(d.global_actor, changed_src);
    ASSERT_TRUE(d.expected_k2k.has_value() && d.actual_k2k.has_value());
    EXPECT_EQ(d.expected_k2k->rank, 2u);
    EXPECT_NE(d.expected_k2k->payload, d.actual_k2k->payload);
    const std::string report = format_replay_report(differs.value());
    EXPECT_NE(report.find("diverged at epoch 20, actor " + std::to_string(changed_src)), std::string::npos) << report;
    EXPECT_NE(report.find("whose payload differs from what rank 2 recorded receiving"), std::string::npos) << report;

    // Rank 0's log without the messages it got from rank 1 at epoch 30.
    const std::string dropped = dir + "/rank0.dropped.k2k";
    rewrite_k2k_log(rank0, dropped, [&](K2KLogEpoch& e) {
      if (e.epoch != 30) return;
      K2KLogEpoch kept;
      std::size_t offset = 0;
      for (const K2KTransfer& t : e.messages) {
        if (!from_rank_1(t)) {
          kept.messages.push_back(t);
          kept.payload.insert(kept.payload.end(), e.payload.begin() + static_cast<std::ptrdiff_t>(offset),
                              e.payload.begin() + static_cast<std::ptrdiff_t>(offset + t.bytes));
        }
        offset += t.bytes;
      }
      ASSERT_LT(kept.messages.size(), e.messages.size()) << "rank 1 sent rank 0 nothing at epoch 30";
      e.messages = std::move(kept.messages);
      e.payload = std::move(kept.payload);
    });
    auto extra = replay_with({dropped, rank2});
    ASSERT_TRUE(extra.ok()) << extra.status().to_string();
    ASSERT_TRUE(extra->divergence.has_value());
    EXPECT_EQ(extra->divergence->kind, ReplayDivergence::Kind::kK2KSent);
    EXPECT_EQ(extra->divergence->epoch, 30u);
    EXPECT_EQ(extra->divergence->field, "not received");
    EXPECT_FALSE(extra->divergence->expected_k2k.has_value());

    // Logs that are not a peer's are left out, saying why, and the rank replays without them:
    // this rank's own log; a rank given twice (the changed copy, second, is not compared);
    // rank 2's log of another recording of the same run (same shape, other run id); a file
    // that is not a K2K log at all.
    const auto left_out = [&](const std::vector<std::string>& peers, const std::string& why, std::uint64_t checked_ranks) {
      auto r = replay_with(peers);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_TRUE(r->identical) << format_replay_report(r.value());
      std::string notes;
      for (const std::string& n : r->notes) notes += n + "\n";
      EXPECT_NE(notes.find("is not checked against"), std::string::npos) << notes;
      EXPECT_NE(notes.find(why), std::string::npos) << notes;
      EXPECT_EQ(r->k2k_sent_compared > 0, checked_ranks > 0) << notes;
    };
    left_out({k2k_log_path(path)}, "the rank being replayed", 0);
    left_out({rank2, payload_changed}, "given twice", 1);
    left_out({rank0, k2k_log_path(other + "/rank2.log")}, "is of another recording", 1);
    left_out({rank0, path}, "bad magic", 1);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// Host commands another rank handed over are in the owner's log as its own commands: the
// owner replays alone with them, identical, and a copy of its log in which they add other
// heat diverges (so the replay really applies them).
TEST(ShardedRuntime, ARankReplaysAloneWithTheCommandsOtherRanksHandedItAndDivergesWhenTheyDiffer) {
  ASSERT_GE(world_size(), 3);
  const std::string dir = fresh_dir("replay_forwarded");
  record_ranks(3, dir, {}, {}, {}, /*inject_from=*/0);
  if (world_rank() == 0) {
    const Heat2d::Params p = field(kActors);
    const std::string path = dir + "/rank1.log";
    auto log = read_replay_log(path);
    ASSERT_TRUE(log.ok()) << log.status().to_string();
    auto inbound = read_k2k_log(k2k_log_path(path));
    ASSERT_TRUE(inbound.ok()) << inbound.status().to_string();
    // inject()'s schedule: the injections for rank 1's tiles, all posted on rank 0.
    std::vector<std::uint64_t> handed;  // their apply epochs
    std::mt19937_64 rng(p.seed);
    for (int i = 0; i < 10; ++i) {
      const std::uint32_t x = static_cast<std::uint32_t>(rng() % p.width), y = static_cast<std::uint32_t>(rng() % p.height);
      rng();
      const std::uint64_t epoch = 1 + rng() % 40;
      const std::uint32_t actor = Heat2d::actor_of(p, x, y);
      if (std::find(inbound->shard.global_ids.begin(), inbound->shard.global_ids.end(), actor) !=
          inbound->shard.global_ids.end())
        handed.push_back(epoch);
    }
    ASSERT_FALSE(handed.empty()) << "the schedule sends rank 1 nothing: pick another seed";
    std::size_t logged = 0;
    for (const ReplayRecord& r : log->records)
      logged += r.direction == static_cast<std::uint8_t>(ReplayDirection::kH2K) &&
                r.slot.header.opcode == examples::kHeat2dInject;
    EXPECT_EQ(logged, handed.size()) << "rank 1's log holds the injections rank 0 handed over";
    auto same = replay_alone(log.value(), path);
    ASSERT_TRUE(same.ok()) << same.status().to_string();
    EXPECT_TRUE(same->identical) << format_replay_report(same.value());
    // The same log with one more degree in each of those commands (records written anew,
    // with their CRCs).
    const std::string changed = dir + "/rank1.changed.log";
    {
      auto out = ReplayLogWriter::create(changed);
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      ASSERT_TRUE(out.value()->begin_run(log->info).ok());
      for (const ReplayRecord& r : log->records) {
        Slot slot = r.slot;
        if (r.direction == static_cast<std::uint8_t>(ReplayDirection::kH2K) && slot.header.opcode == examples::kHeat2dInject) {
          examples::Heat2dInjectData inj;
          std::memcpy(&inj, slot.payload.data, sizeof inj);
          inj.amount += 1.0f;
          std::memcpy(slot.payload.data, &inj, sizeof inj);
        }
        out.value()->append(static_cast<ReplayDirection>(r.direction), r.block, r.epoch_observed, r.epoch_applied, slot);
      }
      out.value()->set_complete_epoch(log->complete_epoch);
      ASSERT_TRUE(out.value()->close().ok());
    }
    auto other = read_replay_log(changed);
    ASSERT_TRUE(other.ok()) << other.status().to_string();
    const Program* programs[] = {&examples::heat2d_program()};
    ReplayOptions o;
    o.inbound_k2k = k2k_log_path(path);
    auto diverged = replay_log(other.value(), programs, o);
    ASSERT_TRUE(diverged.ok()) << diverged.status().to_string();
    EXPECT_FALSE(diverged->identical);
    ASSERT_TRUE(diverged->divergence.has_value());
    // At the first injection's ack, or at the digest after it (every 5 epochs).
    const std::uint64_t first = *std::min_element(handed.begin(), handed.end());
    EXPECT_GE(diverged->divergence->epoch, first);
    EXPECT_LE(diverged->divergence->epoch, first + 5);
    ASSERT_TRUE(diverged->rank.has_value());
    EXPECT_EQ(*diverged->rank, 1u);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// A run restored at epoch 0 starts at 0 like a fresh one, but its first exchange is epoch 1
// (the checkpoint's images hold epoch 0's): its rank logs replay from that checkpoint.
TEST(ShardedRuntime, ARankOfARunRestoredAtEpochZeroReplaysAloneFromThatCheckpoint) {
  ASSERT_GE(world_size(), 2);
  const std::string checkpoints = fresh_dir("replay_zero_ckpt");
  const std::string dir = fresh_dir("replay_zero");
  record_ranks(2, {}, checkpoints, {0});
  record_ranks(2, dir, {}, {}, checkpoints);
  if (world_rank() == 0) {
    const std::string path = dir + "/rank1.log";
    auto log = read_replay_log(path);
    ASSERT_TRUE(log.ok()) << log.status().to_string();
    auto fresh = replay_alone(log.value(), path);
    EXPECT_EQ(fresh.status().code(), StatusCode::kFailedPrecondition) << fresh.status().to_string();
    EXPECT_NE(fresh.status().message().find("--from-checkpoint"), std::string::npos) << fresh.status().to_string();
    auto replayed = replay_alone(log.value(), path, checkpoints);
    ASSERT_TRUE(replayed.ok()) << replayed.status().to_string();
    EXPECT_TRUE(replayed->from_checkpoint);
    EXPECT_EQ(replayed->start_epoch, 0u);
    EXPECT_EQ(replayed->end_epoch, 40u);
    EXPECT_TRUE(replayed->identical) << format_replay_report(replayed.value());
    EXPECT_GT(replayed->observations_compared, 0u);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// A rank's log replays from a global checkpoint within it, whatever rank count wrote the
// checkpoint (heat2d's results do not depend on it): the images of the rank's actors come
// from the sets of the ranks that ran them, the inbound K2K after the cut from its log.
TEST(ShardedRuntime, ARankReplaysAloneFromAGlobalCheckpointOfAnyRankCount) {
  ASSERT_GE(world_size(), 3);
  const std::string dir = fresh_dir("replay_global");
  const std::string own = fresh_dir("replay_global_own"), other = fresh_dir("replay_global_other");
  const std::string empty = fresh_dir("replay_global_none");
  record_ranks(3, dir, own, {20});
  record_ranks(2, {}, other, {15, 25});
  if (world_rank() == 0) {
    const std::string path = dir + "/rank1.log";
    auto log = read_replay_log(path);
    ASSERT_TRUE(log.ok()) << log.status().to_string();
    for (const auto& [checkpoints, epoch] : {std::pair{own, 20u}, std::pair{other, 25u}}) {
      auto replayed = replay_alone(log.value(), path, checkpoints);
      ASSERT_TRUE(replayed.ok()) << replayed.status().to_string();
      EXPECT_TRUE(replayed->from_checkpoint);
      EXPECT_EQ(replayed->start_epoch, epoch) << checkpoints;
      EXPECT_EQ(replayed->end_epoch, 40u);
      EXPECT_TRUE(replayed->identical) << format_replay_report(replayed.value());
      EXPECT_GT(replayed->observations_compared, 0u);
    }
    // A directory without a global checkpoint: refused, saying where to look.
    auto none = replay_alone(log.value(), path, empty);
    EXPECT_EQ(none.status().code(), StatusCode::kNotFound) << none.status().to_string();
    EXPECT_NE(none.status().message().find("pkrt checkpoint list"), std::string::npos) << none.status().to_string();
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(ShardedRuntime, MoreRanksThanActorsIsRefusedOnEveryRank) {
  const Heat2d::Params p = field(2);
  ShardOptions o = options(1);
  o.runtime.num_actors = 2;
  auto created = ShardedRuntime::create(MPI_COMM_WORLD, examples::heat2d_program(), p, o);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(created.status().message().find("mpirun -np 2 or fewer"), std::string::npos) << created.status().to_string();
}

TEST(ShardedRuntime, NoCommittedGlobalCheckpointIsNotFoundOnEveryRank) {
  const std::string dir = fresh_dir("empty");
  const Heat2d::Params p = field(kActors);
  auto created = ShardedRuntime::create(MPI_COMM_WORLD, examples::heat2d_program(), p, options(1));
  ASSERT_TRUE(created.ok());
  auto epoch = created.value()->restore(dir, std::nullopt, {});
  ASSERT_FALSE(epoch.ok());
  EXPECT_EQ(epoch.status().code(), StatusCode::kNotFound) << epoch.status().to_string();
}

TEST(ShardedRuntime, ACheckpointRightAfterStartTakesTheStartEpochAndRestoresLikeTheStraightRun) {
  ASSERT_GE(world_size(), 2);
  const std::string dir = fresh_dir("after_start");
  on_first_ranks(2, [&](MPI_Comm comm) {
    const Heat2d::Params p = field(kActors);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, options(1));
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    ShardedRuntime& shard = *created.value();
    GlobalCheckpointOptions co;
    co.directory = dir;
    ASSERT_TRUE(shard.enable_checkpoints(co).ok());
    inject(shard, p);  // straight()'s injections: queued at the cut, posted again on restore
    // Before the start no grid can take it: refused on every rank, not a hang.
    auto early = shard.checkpoint();
    EXPECT_EQ(early.status().code(), StatusCode::kFailedPrecondition) << early.status().to_string();
    ASSERT_TRUE(shard.start().ok());
    // Parked at epoch 0 before its exchange: the checkpoint runs that exchange first, so the
    // K2K init sent is in the images.
    auto taken = shard.checkpoint();
    ASSERT_TRUE(taken.ok()) << taken.status().to_string();
    EXPECT_EQ(taken.value(), 0u);
    EXPECT_TRUE(shard.run_until(20).ok());
  });
  EXPECT_EQ(restored(2, 1, 20, dir, 0), straight(2, 1, 20));
}

// Heat2d on `ranks` ranks: rank `from` posts ten injections for epochs 21 to 40 after
// run_until(20), most for other ranks' tiles; with `dir`, a global checkpoint follows at once
// and the run stops there, else it runs through 40. The checksum on world rank 0.
std::uint32_t posted_after_20(int ranks, int from, const std::string& dir = {}) {
  std::uint32_t sum = 0;
  on_first_ranks(ranks, [&](MPI_Comm comm) {
    const Heat2d::Params p = field(kActors);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), p, options(2));
    ASSERT_TRUE(created.ok()) << created.status().to_string();
    ShardedRuntime& shard = *created.value();
    if (!dir.empty()) {
      GlobalCheckpointOptions co;
      co.directory = dir;
      ASSERT_TRUE(shard.enable_checkpoints(co).ok());
    }
    ASSERT_TRUE(shard.start().ok());
    ASSERT_TRUE(shard.run_until(20).ok());
    std::mt19937_64 rng(p.seed + 1);
    for (int i = 0; i < 10 && shard.context().rank == from; ++i) {
      const examples::Heat2dInjectData inj{static_cast<std::uint32_t>(rng() % p.width),
                                           static_cast<std::uint32_t>(rng() % p.height), 50.0f + static_cast<float>(i)};
      ASSERT_TRUE(shard.post(Heat2d::actor_of(p, inj.x, inj.y), examples::kHeat2dInject, &inj, sizeof inj, 21 + rng() % 20)
                      .ok());
    }
    if (!dir.empty()) {
      auto taken = shard.checkpoint();
      ASSERT_TRUE(taken.ok()) << taken.status().to_string();
      EXPECT_EQ(taken.value(), 20u);
      return;
    }
    ASSERT_TRUE(shard.run_until(40).ok());
    sum = group_checksum(shard, comm, p);
  });
  MPI_Bcast(&sum, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
  return sum;
}

// checkpoint() hands the commands posted for other ranks' actors to their owners first: they
// are in the owners' queued commands at the cut, and a restore on another rank count posts
// them again on the actors' new ranks.
TEST(ShardedRuntime, CommandsPostedForOtherRanksJustBeforeACheckpointAreInIt) {
  ASSERT_GE(world_size(), 3);
  const std::string dir = fresh_dir("posted_before_checkpoint");
  const std::uint32_t reference = posted_after_20(1, 0);
  posted_after_20(3, 2, dir);
  EXPECT_EQ(restored(2, 2, 40, dir, 20), reference);
}

TEST(ShardedRuntime, ADifferentLaunchOnOneRankFailsOnEveryRankNamingWhatDiffers) {
  ASSERT_GE(world_size(), 2);
  on_first_ranks(2, [&](MPI_Comm comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    // Rank 1 reads K2K one epoch later: its exchanges would never line up with rank 0's.
    auto delay = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), options(rank == 1 ? 2 : 1));
    ASSERT_FALSE(delay.ok());
    EXPECT_EQ(delay.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(delay.status().message().find("another K2K delay (RuntimeOptions::k2k_delay) on rank(s) 1 than on rank 0"),
              std::string::npos)
        << delay.status().to_string();
    // Rank 1 asks for more actors than ranks allow (its own check refuses): it used to return
    // before the first collective and leave rank 0 waiting in it for ever.
    ShardOptions o = options(1);
    if (rank == 1) o.runtime.num_actors = 1;
    auto actors = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), o);
    ASSERT_FALSE(actors.ok());
    EXPECT_NE(actors.status().message().find("another actor count (RuntimeOptions::num_actors) on rank(s) 1"),
              std::string::npos)
        << actors.status().to_string();
  });
}

TEST(ShardedRuntime, TwoRanksRecordingIntoOneFileAreRefusedBeforeEitherWrites) {
  ASSERT_GE(world_size(), 2);
  const std::string dir = fresh_dir("one_k2k_log");
  on_first_ranks(2, [&](MPI_Comm comm) {
    ShardOptions o = options(1);
    o.k2k_log = dir + "/shared.k2k";
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), o);
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(created.status().message().find("ranks 0 and 1 would write the same inbound K2K log"), std::string::npos)
        << created.status().to_string();
    EXPECT_FALSE(std::filesystem::exists(o.k2k_log));
  });
}

TEST(ShardedRuntime, RunUntilAfterOneRanksShutdownFailsAtOnceOnEveryRankNamingIt) {
  ASSERT_GE(world_size(), 2);
  // Rank 1 shuts down its ShardedRuntime, then (second round) only its local() Runtime.
  for (const bool whole : {true, false}) {
    on_first_ranks(2, [&](MPI_Comm comm) {
      auto created = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), options(1));
      ASSERT_TRUE(created.ok());
      ShardedRuntime& shard = *created.value();
      ASSERT_TRUE(shard.start().ok());
      ASSERT_TRUE(shard.run_until(3).ok());
      const bool stopped = shard.context().rank == 1;
      if (stopped && !whole) ASSERT_TRUE(shard.local().shutdown().ok());
      if (stopped && whole) {
        ASSERT_TRUE(shard.shutdown().ok());
        // Nothing would carry a forwarded command any more: refused, not dropped.
        const examples::Heat2dInjectData inj{1, 1, 1.0f};
        const Status posted = shard.post(shard.owns(0) ? kActors - 1 : 0, examples::kHeat2dInject, &inj, sizeof inj, 10);
        EXPECT_EQ(posted.code(), StatusCode::kFailedPrecondition) << posted.to_string();
      }
      const auto began = std::chrono::steady_clock::now();
      const Status st = shard.run_until(10);
      // Well inside the 20 s exchange timeout: the stopped rank tells its peer at the exchange.
      EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(10));
      ASSERT_FALSE(st.ok());
      if (stopped) {
        const char* said = whole ? "rank 1: run_until(10) after shutdown()" : "rank 1: set_target_epoch() after shutdown()";
        EXPECT_NE(st.message().find(said), std::string::npos) << st.to_string();
      } else {
        EXPECT_NE(st.message().find("rank(s) 1 failed"), std::string::npos) << st.to_string();
      }
    });
  }
}

TEST(ShardedRuntime, ASecondJobWritingTheSameCheckpointDirectoryIsRefusedOnEveryRank) {
  ASSERT_GE(world_size(), 2);
  const std::string dir = fresh_dir("two_jobs");
  on_first_ranks(2, [&](MPI_Comm comm) {
    GlobalCheckpointOptions co;
    co.directory = dir;
    auto first = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), options(1));
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE(first.value()->enable_checkpoints(co).ok());
    // A second call on the same job is refused and leaves its checkpoints (and lock) as they are.
    EXPECT_EQ(first.value()->enable_checkpoints(co).code(), StatusCode::kFailedPrecondition);
    // Another job in the directory would retire the first one's global checkpoints by
    // sequence (and it might run on another rank count): refused while the first holds it.
    auto second = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), options(1));
    ASSERT_TRUE(second.ok());
    const Status refused = second.value()->enable_checkpoints(co);
    EXPECT_EQ(refused.code(), StatusCode::kBusy) << refused.to_string();
    EXPECT_NE(refused.message().find("in use by another writer"), std::string::npos) << refused.to_string();
    first.value().reset();
    EXPECT_TRUE(second.value()->enable_checkpoints(co).ok()) << "the lock goes with the job that held it";
  });
}

TEST(ShardedRuntime, EachRankKnowsItsPlaceOnItsNodeAsMpiSharedMemoryWouldSay) {
  ASSERT_GE(world_size(), 3);
  on_first_ranks(3, [&](MPI_Comm comm) {
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), options(1));
    ASSERT_TRUE(created.ok());
    auto shared = rank_context(comm);  // the blocking MPI_COMM_TYPE_SHARED split
    ASSERT_TRUE(shared.ok());
    const RankContext& mine = created.value()->context();
    EXPECT_EQ(mine.rank, shared->rank);
    EXPECT_EQ(mine.size, 3);
    EXPECT_EQ(mine.node_rank, shared->node_rank);
    EXPECT_EQ(mine.node_size, shared->node_size);
  });
}

TEST(ShardedRuntime, CallsOutOfOrderAreRefusedWithoutFailingTheRun) {
  ASSERT_GE(world_size(), 2);
  const std::string dir = fresh_dir("restore_after_start");
  on_first_ranks(2, [&](MPI_Comm comm) {
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), options(1));
    ASSERT_TRUE(created.ok());
    ShardedRuntime& shard = *created.value();
    const Status early = shard.run_until(5);
    EXPECT_EQ(early.code(), StatusCode::kFailedPrecondition) << early.to_string();
    EXPECT_NE(early.message().find("before start()"), std::string::npos) << early.to_string();
    ASSERT_TRUE(shard.start().ok());
    const Status twice = shard.start();
    EXPECT_EQ(twice.code(), StatusCode::kFailedPrecondition) << twice.to_string();
    auto late = shard.restore(dir, std::nullopt, {});
    EXPECT_EQ(late.status().code(), StatusCode::kFailedPrecondition) << late.status().to_string();
    EXPECT_NE(late.status().message().find("restore() after start()"), std::string::npos) << late.status().to_string();
    // None of them harmed the run.
    EXPECT_TRUE(shard.run_until(5).ok());
    EXPECT_EQ(shard.local().stats().epoch, 5u);
  });
}

// Run alone (tests/CMakeLists.txt, Mpi.ARankThatSkipsACollectiveAbortsTheJobNamingTheWait):
// the job ends in MPI_Abort, which the test expects, so the default run filters it out.
// PKRT_MPI_KILL_AT (tests/mpi_test.sh kills ranks inside the commit with it): what parses,
// and what is refused with the reason instead of killing somewhere unasked.
TEST(CommitFault, ParsesPointRankAndCheckpointAndRefusesTheRestWithTheReason) {
  std::string why;
  auto k = detail::parse_commit_kill("set-durable:3:2", why);
  ASSERT_TRUE(k.has_value()) << why;
  EXPECT_EQ(k->point, detail::CommitPoint::kSetDurable);
  EXPECT_EQ(k->rank, 3);
  EXPECT_EQ(k->checkpoint, 2u);
  k = detail::parse_commit_kill("after-commit:0:1", why);
  ASSERT_TRUE(k.has_value()) << why;
  EXPECT_EQ(k->point, detail::CommitPoint::kAfterCommit);
  const std::pair<const char*, const char*> refused[] = {
      {"set-durable:1", "not <point>:<rank>:<n>"},
      {"commit:0:1", "unknown point 'commit'"},
      {"before-commit:1:1", "before-commit happens on rank 0 only"},
      {"set-durable:x:1", "must be numbers"},
      {"set-durable:1:0", "n from 1"},
      {"set-durable:-1:1", "must be numbers"},
      {"set-durable:1:99999999999", "must be numbers"},
  };
  for (const auto& [text, reason] : refused) {
    why.clear();
    EXPECT_FALSE(detail::parse_commit_kill(text, why).has_value()) << text;
    EXPECT_NE(why.find(reason), std::string::npos) << text << ": " << why;
  }
}

TEST(LostPeer, ARankThatSkipsTotalsMakesItsPeerAbortTheJobAtTheDeadline) {
  ASSERT_GE(world_size(), 2);
  on_first_ranks(2, [&](MPI_Comm comm) {
    ShardOptions o = options(1);
    o.exchange_timeout = std::chrono::milliseconds(1500);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), o);
    ASSERT_TRUE(created.ok());
    ShardedRuntime& shard = *created.value();
    ASSERT_TRUE(shard.start().ok());
    ASSERT_TRUE(shard.run_until(2).ok());
    if (shard.context().rank == 1) {
      // Never joins: the all-reduce on rank 0 used to wait for it for ever.
      std::this_thread::sleep_for(std::chrono::seconds(60));
      return;
    }
    auto totals = shard.totals();
    ADD_FAILURE() << "totals() returned instead of aborting the job: " << totals.status().to_string();
  });
}

TEST(LostPeer, ARankThatNeverCallsCreateMakesItsPeerAbortTheJobAtTheDeadline) {
  ASSERT_GE(world_size(), 2);
  on_first_ranks(2, [&](MPI_Comm comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (rank == 1) {
      // Never arrives: rank 0's MPI_Comm_dup used to wait for it for ever.
      std::this_thread::sleep_for(std::chrono::seconds(60));
      return;
    }
    ShardOptions o = options(1);
    o.exchange_timeout = std::chrono::milliseconds(1500);
    auto created = ShardedRuntime::create(comm, examples::heat2d_program(), field(kActors), o);
    ADD_FAILURE() << "create() returned instead of aborting the job: " << created.status().to_string();
  });
}

}  // namespace
}  // namespace pkrt::mpi

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  // Only rank 0 prints results; every rank runs every test (they are collective). The other
  // ranks print their own failures, with their rank.
  if (pkrt::mpi::world_rank() != 0) {
    struct RankFailurePrinter : ::testing::EmptyTestEventListener {
      void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (r.failed())
          std::fprintf(stderr, "[rank %d] %s:%d: %s\n", pkrt::mpi::world_rank(), r.file_name() ? r.file_name() : "?",
                       r.line_number(), r.summary());
      }
    };
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter);
  }
  int rc = RUN_ALL_TESTS();
  // A ShardedRuntime destroyed after MPI_Finalize (one held until the end of main) must not
  // call MPI: it once freed its communicator there, which aborts the process.
  auto outliving = pkrt::mpi::ShardedRuntime::create(MPI_COMM_WORLD, pkrt::examples::heat2d_program(),
                                                     pkrt::mpi::field(pkrt::mpi::kActors), pkrt::mpi::options(1));
  if (!outliving.ok()) {
    std::fprintf(stderr, "[rank %d] the ShardedRuntime kept past MPI_Finalize was not created: %s\n",
                 pkrt::mpi::world_rank(), outliving.status().to_string().c_str());
    rc = 1;
  }
  std::unique_ptr<pkrt::mpi::ShardedRuntime> kept = outliving.ok() ? std::move(outliving.value()) : nullptr;
  // The job fails if any rank failed.
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  kept.reset();
  return worst;
}
