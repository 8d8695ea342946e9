// Runtime: lifecycle, commands and acknowledgements, error events, watchdog, backpressure.
#include "examples/echo/echo.hpp"
#include "examples/heat2d/heat2d_host.hpp"
#include "tests/probe_actor.hpp"
#include "tests/test_support.hpp"
#include "cuda/device_registry.hpp"

#include <pkrt/program.hpp>
#include <pkrt/replay_log.hpp>
#include <pkrt/runtime.hpp>

#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

namespace pkrt {
namespace {

using namespace std::chrono_literals;
using testing::kProbeEpoch;
using testing::kProbeSilent;
using testing::kProbeStall;
using testing::kProbeSteps;
using testing::probe_program;
using testing::Probe;

int thread_count() {
  // Sanitizer runtimes start helper threads lazily on the first thread creation; create one
  // first so they are counted in every baseline.
  static const bool warmed = [] {
    std::thread([] {}).join();
    return true;
  }();
  (void)warmed;
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

RuntimeOptions cpu_options(std::uint32_t actors, std::uint32_t threads) {
  return testing::cpu_runtime(actors, threads);
}

std::unique_ptr<Runtime> make_probe(std::uint32_t actors, std::uint32_t threads, RuntimeOptions o = {}) {
  o.backend = BackendKind::kCpu;
  o.num_actors = actors;
  o.threads = threads;
  auto r = Runtime::create(probe_program(), Probe::Params{}, o);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? std::move(r.value()) : nullptr;
}

// Far more memory than any machine has: 64 TiB of region per actor.
struct HugeRegionActor {
  static constexpr const char* kName = "huge_region";
  struct Params {
    std::uint32_t unused = 0;
  };
  struct State {
    std::uint64_t steps;
  };
  static constexpr const char* kRegionNames[] = {"field"};
  static std::uint64_t region_bytes(const Params&, std::uint32_t, std::uint32_t, std::uint32_t) {
    return std::uint64_t{1} << 46;
  }
  PKRT_HD static void step(State& s, ActorContext& ctx) {
    if (ctx.leader()) ++s.steps;
  }
};

TEST(Runtime, ARunTooLargeForTheMachineIsRefusedBeforeAnythingIsAllocated) {
  const auto started = std::chrono::steady_clock::now();
  auto created = Runtime::create(make_program<HugeRegionActor>(), HugeRegionActor::Params{}, testing::cpu_runtime(2, 1));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kOutOfRange) << created.status().to_string();
  EXPECT_NE(created.status().message().find("GiB of host memory"), std::string::npos) << created.status().message();
  EXPECT_NE(created.status().message().find("Fix:"), std::string::npos) << created.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5)) << "refused without touching pages";
}

TEST(Runtime, StartsRepliesAndShutsDownWithoutLeavingThreads) {
  const int before = thread_count();
  {
    auto rt = make_probe(4, 2);
    ASSERT_TRUE(rt);
    ASSERT_TRUE(rt->start().ok());
    EXPECT_EQ(thread_count(), before + 3) << "2 workers and the pump";
    for (std::uint32_t a = 0; a < 4; ++a) {
      Reply r = rt->send(a, kProbeEpoch, std::uint64_t{0}).get();
      EXPECT_TRUE(r.status.ok()) << r.status.to_string();
      EXPECT_EQ(r.event.actor, a);
    }
    EXPECT_TRUE(rt->shutdown().ok());
    EXPECT_EQ(thread_count(), before);
    EXPECT_TRUE(rt->shutdown().ok()) << "shutdown is idempotent";
  }
  EXPECT_EQ(thread_count(), before);
}

TEST(Runtime, DestructorStopsARunningKernel) {
  const int before = thread_count();
  {
    auto rt = make_probe(2, 2);
    ASSERT_TRUE(rt->start().ok());
  }
  EXPECT_EQ(thread_count(), before);
}

TEST(Runtime, CommandAppliesAtItsApplyEpochAndTheReplyCarriesIt) {
  auto rt = make_probe(3, 2);
  ASSERT_TRUE(rt->set_target_epoch(5).ok());
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->run_until(5, 10s).ok());
  auto later = rt->send(2, kProbeEpoch, std::uint64_t{0}, /*apply_epoch=*/40);
  // Actors 1 and 2 share block 1: the command due at 40 must not hold back this one.
  auto soon = rt->send(1, kProbeEpoch, std::uint64_t{0}, /*apply_epoch=*/0);
  ASSERT_TRUE(rt->run_until(100, 10s).ok());
  Reply a = later.get();
  Reply b = soon.get();
  ASSERT_TRUE(a.status.ok());
  ASSERT_TRUE(b.status.ok());
  EXPECT_EQ(a.event.as<std::uint64_t>(), 40u);
  EXPECT_EQ(a.event.epoch, 40u) << "the reply slot carries the applied epoch";
  EXPECT_EQ(b.event.epoch, 6u) << "apply_epoch 0 means the next epoch after the park at 5";
}

TEST(Runtime, CommandsDueAtOneEpochApplyInTheOrderSent) {
  auto rt = make_probe(1, 1);
  // std::future<Reply>, as code written before ReplyFuture names it: still compiles and works.
  std::vector<std::future<Reply>> replies;
  for (std::uint64_t apply : {30u, 20u, 30u, 10u, 20u, 30u})
    replies.push_back(rt->send(0, kProbeEpoch, std::uint64_t{0}, apply));
  std::promise<void> order_checked;
  std::vector<std::uint64_t> applied;
  ASSERT_TRUE(rt->set_target_epoch(40).ok());
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->run_until(40, 10s).ok());
  for (auto& f : replies) applied.push_back(f.get().event.epoch);
  EXPECT_EQ(applied, (std::vector<std::uint64_t>{30, 20, 30, 10, 20, 30})) << "each at its own epoch";
  EXPECT_EQ(rt->stats().replies, 6u);
}

TEST(Runtime, HandlerWithoutReplyIsAcknowledgedWithTheAppliedEpoch) {
  auto rt = make_probe(1, 1);
  auto pending = rt->send(0, kProbeSilent, std::uint64_t{0}, 12);  // queued before launch
  ASSERT_TRUE(rt->start().ok());
  Reply r = pending.get();
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.event.opcode, kOpAck);
  EXPECT_EQ(r.event.as<AckData>().opcode, kProbeSilent);
  EXPECT_EQ(r.event.epoch, 12u);
}

TEST(Runtime, UnknownOpcodeYieldsErrorEventAndTheKernelKeepsRunning) {
  auto rt = make_probe(2, 2);
  ASSERT_TRUE(rt->start().ok());
  Reply bad = rt->send(1, static_cast<std::uint16_t>(kUserOpcodeBase + 999), std::uint64_t{0}).get();
  EXPECT_EQ(bad.status.code(), StatusCode::kUnknownOpcode);
  EXPECT_NE(bad.status.message().find("0x13e7"), std::string::npos) << bad.status.message();
  EXPECT_EQ(bad.event.opcode, kOpError);
  Reply sys = rt->send(0, static_cast<std::uint16_t>(0x0300), std::uint64_t{0}).get();
  EXPECT_EQ(sys.status.code(), StatusCode::kInvalidArgument) << "reserved system opcodes never reach the kernel";
  Reply good = rt->send(1, kProbeEpoch, std::uint64_t{0}).get();
  EXPECT_TRUE(good.status.ok()) << "the kernel keeps running after an error event";
  EXPECT_EQ(rt->stats().errors, 1u);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Runtime, OutOfRangeActorYieldsErrorEventNamingTheRange) {
  auto rt = make_probe(5, 2);
  ASSERT_TRUE(rt->start().ok());
  Reply bad = rt->send(77, kProbeEpoch, std::uint64_t{0}).get();
  EXPECT_EQ(bad.status.code(), StatusCode::kOutOfRange);
  EXPECT_NE(bad.status.message().find("actor 77"), std::string::npos) << bad.status.message();
  EXPECT_NE(bad.status.message().find("5 actors"), std::string::npos) << bad.status.message();
  EXPECT_TRUE(rt->send(4, kProbeEpoch, std::uint64_t{0}).get().status.ok());
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Runtime, RunUntilParksAtExactlyTheTargetEpoch) {
  auto rt = make_probe(4, 2);
  ASSERT_TRUE(rt->set_target_epoch(123).ok());  // before start: no overshoot
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->run_until(123, 10s).ok());
  EXPECT_EQ(rt->epoch(), 123u);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(rt->epoch(), 123u) << "a parked grid does not advance";
  for (std::uint32_t a = 0; a < 4; ++a) {
    Probe::State s{};
    ASSERT_TRUE(rt->read_region(a, -1, &s, sizeof s).ok());
    EXPECT_EQ(s.steps, 123u) << "actor " << a;
  }
  ASSERT_TRUE(rt->run_until(200, 10s).ok());
  EXPECT_EQ(rt->epoch(), 200u);
}

TEST(Runtime, PauseParksTheGridAndResumeContinues) {
  auto rt = make_probe(2, 2);
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->pause().ok());
  ASSERT_TRUE(rt->wait_parked(10s).ok());
  const std::uint64_t parked = rt->epoch();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(rt->epoch(), parked);
  Probe::State s{};
  ASSERT_TRUE(rt->read_region(0, -1, &s, sizeof s).ok());
  EXPECT_EQ(s.steps, parked);
  ASSERT_TRUE(rt->resume().ok());
  Reply r = rt->send(0, kProbeEpoch, std::uint64_t{0}).get();
  ASSERT_TRUE(r.status.ok());
  EXPECT_GT(r.event.epoch, parked);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Runtime, ParkIsOnlyReportedOnceEveryBlockFinishedTheEpoch) {
  // Probe steps count per actor; a park at epoch e must find every actor at exactly e, on
  // every block, however the workers are scheduled.
  for (int round = 0; round < 50; ++round) {
    auto rt = make_probe(6, 3);
    ASSERT_TRUE(rt->set_target_epoch(1 + round % 7).ok());
    ASSERT_TRUE(rt->start().ok());
    ASSERT_TRUE(rt->run_until(1 + round % 7, 10s).ok());
    for (std::uint32_t a = 0; a < 6; ++a) {
      Probe::State s{};
      ASSERT_TRUE(rt->read_region(a, -1, &s, sizeof s).ok());
      ASSERT_EQ(s.steps, 1u + round % 7) << "actor " << a << " in round " << round;
    }
  }
}

TEST(Runtime, AParkFromBeforeAControlChangeDoesNotCount) {
  auto rt = make_probe(2, 2);
  ASSERT_TRUE(rt->set_target_epoch(10).ok());
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->run_until(10, 10s).ok());
  ASSERT_TRUE(rt->set_target_epoch(1u << 30).ok());
  Probe::State s{};
  EXPECT_EQ(rt->read_region(0, -1, &s, sizeof s).code(), StatusCode::kFailedPrecondition)
      << "the park at 10 no longer holds once the target moved";
  ASSERT_TRUE(rt->pause().ok());
  ASSERT_TRUE(rt->wait_parked(10s).ok());
  EXPECT_GE(rt->epoch(), 10u);
  EXPECT_TRUE(rt->read_region(0, -1, &s, sizeof s).ok());
}

TEST(Runtime, RunUntilAnEpochAlreadyPassedSaysSo) {
  auto rt = make_probe(1, 1);
  ASSERT_TRUE(rt->set_target_epoch(50).ok());
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->run_until(50, 10s).ok());
  Status st = rt->run_until(20, 10s);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("epoch 50"), std::string::npos) << st.message();
}

TEST(Runtime, ReadRegionIsRefusedWhileTheGridRuns) {
  auto rt = make_probe(2, 2);
  ASSERT_TRUE(rt->start().ok());
  Probe::State s{};
  Status st = rt->read_region(0, -1, &s, sizeof s);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(rt->read_region(9, -1, &s, sizeof s).code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Runtime, ShutdownWhileParkedStopsCleanlyAndFailsPendingCommands) {
  const int before = thread_count();
  auto rt = make_probe(2, 2);
  ASSERT_TRUE(rt->set_target_epoch(10).ok());
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->run_until(10, 10s).ok());
  auto never = rt->send(1, kProbeEpoch, std::uint64_t{0}, 1000);
  EXPECT_TRUE(rt->shutdown().ok());
  Reply r = never.get();
  EXPECT_EQ(r.status.code(), StatusCode::kAborted);
  EXPECT_EQ(thread_count(), before);
  EXPECT_EQ(rt->send(0, kProbeEpoch, std::uint64_t{0}).get().status.code(), StatusCode::kFailedPrecondition);
}

TEST(Runtime, WatchdogReportsTheStalledBlockAndStopsCleanly) {
  const int before = thread_count();
  RuntimeOptions o;
  o.watchdog_timeout = 200ms;
  auto rt = make_probe(4, 2, o);
  std::mutex mu;
  std::vector<Status> errors;
  rt->set_error_callback([&](const Status& st) {
    std::lock_guard<std::mutex> lock(mu);
    errors.push_back(st);
  });
  ASSERT_TRUE(rt->start().ok());
  // Actors 2 and 3 live on block 1.
  auto stalled = rt->send(3, kProbeStall, std::uint64_t{0});
  ASSERT_EQ(stalled.wait_for(20s), std::future_status::ready) << "the watchdog never fired";
  Status final = rt->shutdown();
  EXPECT_EQ(final.code(), StatusCode::kWatchdogTimeout);
  EXPECT_NE(final.message().find("block(s) 1"), std::string::npos) << final.message();
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].code(), StatusCode::kWatchdogTimeout);
  }
  EXPECT_EQ(thread_count(), before);
}

TEST(Runtime, WatchdogAbortFailsEveryPendingRequestAndOpenSnapshotWithoutWaitingForShutdown) {
  RuntimeOptions o;
  o.watchdog_timeout = 200ms;
  auto rt = make_probe(4, 2, o);
  std::mutex mu;
  std::vector<SnapshotImage> images;
  rt->set_snapshot_sink([&](SnapshotImage img) {
    std::lock_guard<std::mutex> lock(mu);
    images.push_back(std::move(img));
  });
  ASSERT_TRUE(rt->start().ok());
  // Due long after the stall: only a failure can complete them.
  auto far = rt->send(0, kProbeEpoch, std::uint64_t{0}, 1'000'000);
  auto far_all = rt->snapshot_all(1'000'000);
  ASSERT_TRUE(far_all.ok()) << far_all.status().to_string();
  // The snapshot_all holds the staging pool until its images are copied.
  auto far_one = rt->snapshot_actor(1, true, 1'000'000);
  EXPECT_EQ(far_one.status().code(), StatusCode::kFailedPrecondition);
  auto stalled = rt->send(3, kProbeStall, std::uint64_t{0});
  ASSERT_EQ(far.wait_for(20s), std::future_status::ready) << "a pending request outlived the watchdog abort";
  EXPECT_EQ(far.get().status.code(), StatusCode::kWatchdogTimeout);
  EXPECT_EQ(rt->send(2, kProbeEpoch, std::uint64_t{0}).get().status.code(), StatusCode::kWatchdogTimeout)
      << "a send after the failure is refused at once with the cause";
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(images.size(), 4u) << "one failed image per actor of snapshot_all";
    std::set<std::uint32_t> all_actors;
    for (const SnapshotImage& img : images) {
      EXPECT_EQ(img.status.code(), StatusCode::kWatchdogTimeout) << img.status.to_string();
      EXPECT_NE(img.status.message().find("actor " + std::to_string(img.actor)), std::string::npos);
      if (img.request == far_all.value()) all_actors.insert(img.actor);
    }
    EXPECT_EQ(all_actors, (std::set<std::uint32_t>{0, 1, 2, 3}));
  }
  EXPECT_EQ(rt->shutdown().code(), StatusCode::kWatchdogTimeout);
}

TEST(Runtime, ShutdownFailsSnapshotsDueAfterItSoNoSinkWaitsForThem) {
  auto rt = make_probe(2, 2);
  std::mutex mu;
  std::vector<SnapshotImage> images;
  rt->set_snapshot_sink([&](SnapshotImage img) {
    std::lock_guard<std::mutex> lock(mu);
    images.push_back(std::move(img));
  });
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->snapshot_all(1'000'000).ok());
  EXPECT_TRUE(rt->shutdown().ok());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(images.size(), 2u);
  for (const SnapshotImage& img : images) EXPECT_EQ(img.status.code(), StatusCode::kAborted) << img.status.to_string();
}

TEST(Runtime, CudaBlocksPerSmOutsideOneTo32IsRefusedSayingTheRange) {
  for (std::uint32_t bad : {0u, 33u}) {
    RuntimeOptions o;
    o.backend = BackendKind::kCpu;
    o.num_actors = 2;
    o.cuda_blocks_per_sm = bad;
    auto r = Runtime::create(probe_program(), Probe::Params{}, o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("1..32"), std::string::npos) << r.status().message();
  }
}

TEST(Runtime, FullH2KRingReportsRingFullNamingTheRingAndItsCapacity) {
  RuntimeOptions o;
  o.ring_capacity = 4;
  o.ring_full_timeout = 100ms;
  auto rt = make_probe(1, 1, o);
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->pause().ok());
  ASSERT_TRUE(rt->wait_parked(10s).ok());
  std::vector<ReplyFuture> queued;
  for (int i = 0; i < 4; ++i) queued.push_back(rt->send(0, kProbeEpoch, std::uint64_t{0}));
  Reply refused = rt->send(0, kProbeEpoch, std::uint64_t{0}).get();
  EXPECT_EQ(refused.status.code(), StatusCode::kRingFull);
  EXPECT_NE(refused.status.message().find("block 0"), std::string::npos) << refused.status.message();
  EXPECT_NE(refused.status.message().find("capacity 4"), std::string::npos) << refused.status.message();
  ASSERT_TRUE(rt->resume().ok());
  for (auto& f : queued) EXPECT_TRUE(f.get().status.ok()) << "nothing queued before the refusal is lost";
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Runtime, EventDrivenGridIdlesInsteadOfSpinningThroughEpochs) {
  RuntimeOptions o = cpu_options(2, 2);
  auto created = Runtime::create(examples::echo_program(), examples::Echo::Params{}, o);
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.send(0, examples::kEchoPing, std::uint64_t{1}).get().status.ok());
  std::this_thread::sleep_for(50ms);
  const std::uint64_t e1 = rt.epoch();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(rt.epoch(), e1) << "no epochs without work";
  EXPECT_LT(e1, 1000u);
  Reply r = rt.send(1, examples::kEchoPing, std::uint64_t{2}).get();
  ASSERT_TRUE(r.status.ok()) << "the doorbell wakes an idle grid";
  EXPECT_TRUE(rt.shutdown().ok());
}

TEST(Runtime, RunUntilReachesTheTargetOnAnIdleEventDrivenGrid) {
  auto created = Runtime::create(examples::echo_program(), examples::Echo::Params{}, cpu_options(3, 2));
  ASSERT_TRUE(created.ok());
  Runtime& rt = *created.value();
  ASSERT_TRUE(rt.set_target_epoch(2).ok());
  ASSERT_TRUE(rt.start().ok());
  ASSERT_TRUE(rt.run_until(2, 10s).ok());
  ASSERT_TRUE(rt.run_until(7, 10s).ok()) << "an idle grid still advances to a target ahead of it";
  EXPECT_EQ(rt.epoch(), 7u);
}

TEST(Runtime, RunUntilOnAPausedRuntimeSaysResumeFirst) {
  auto rt = make_probe(2, 2);
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->pause().ok());
  ASSERT_TRUE(rt->wait_parked(10s).ok());
  Status st = rt->run_until(rt->epoch() + 10, 10s);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("resume()"), std::string::npos) << st.message();
  ASSERT_TRUE(rt->resume().ok());
}

TEST(Runtime, CallbackSendCompletesOnThePumpThread) {
  auto rt = make_probe(2, 2);
  std::promise<std::uint64_t> got;
  rt->send(1, kProbeEpoch, nullptr, 0, 7, [&](const Reply& r) { got.set_value(r.event.as<std::uint64_t>()); });
  ASSERT_TRUE(rt->start().ok());
  EXPECT_EQ(got.get_future().get(), 7u);
  EXPECT_TRUE(rt->shutdown().ok());
}

TEST(Runtime, RejectsMismatchedParamsAndBadOptions) {
  RuntimeOptions o = cpu_options(2, 1);
  std::uint64_t wrong = 0;
  auto r = Runtime::create(probe_program(), &wrong, sizeof wrong, o);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  o.ring_capacity = 1000;
  auto r2 = Runtime::create(probe_program(), Probe::Params{}, o);
  EXPECT_EQ(r2.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r2.status().message().find("power of two"), std::string::npos);
  o.ring_capacity = 16;
  o.num_actors = 0;
  EXPECT_EQ(Runtime::create(probe_program(), Probe::Params{}, o).status().code(), StatusCode::kInvalidArgument);
}

// Values a caller can put in RuntimeOptions by mistake (a cast, an uninitialised field, a
// typo'd duration) are refused by name, before anything is allocated: a null params pointer
// used to crash create(), and a negative stop_timeout leaked the backend at shutdown.
TEST(Runtime, RejectsNullParamsOutOfRangeEnumsAndNonPositiveTimeouts) {
  auto refused = [](const RuntimeOptions& o, const void* params, std::size_t bytes, const std::string& words) {
    auto r = Runtime::create(probe_program(), params, bytes, o);
    ASSERT_FALSE(r.ok()) << words;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status().message();
  };
  const Probe::Params p{};
  refused(cpu_options(2, 1), nullptr, sizeof p, "null pointer");
  RuntimeOptions o = cpu_options(2, 1);
  o.backend = static_cast<BackendKind>(9);
  refused(o, &p, sizeof p, "not a BackendKind");
  o = cpu_options(2, 1);
  o.poll = static_cast<PollPolicy>(17);
  refused(o, &p, sizeof p, "not a PollPolicy");
  for (const auto ms : {std::chrono::milliseconds(0), std::chrono::milliseconds(-5)}) {
    o = cpu_options(2, 1);
    o.stop_timeout = ms;
    refused(o, &p, sizeof p, "stop_timeout");
    o = cpu_options(2, 1);
    o.watchdog_timeout = ms;
    refused(o, &p, sizeof p, "watchdog_timeout");
    o = cpu_options(2, 1);
    o.ring_full_timeout = ms;
    refused(o, &p, sizeof p, "ring_full_timeout");
  }
}

TEST(Runtime, CommandsQueuedBeforeAStartThatNeverComesCompleteAsAborted) {
  auto rt = make_probe(1, 1);
  auto queued = rt->send(0, kProbeEpoch, std::uint64_t{0});
  EXPECT_TRUE(rt->shutdown().ok());
  EXPECT_EQ(queued.get().status.code(), StatusCode::kAborted);
}

// A log that was already closed refuses the run at start(): nothing sent before or after may
// wait for a grid that never launched (they waited until shutdown() before).
TEST(Runtime, AFailedStartFailsQueuedCommandsRefusesNewOnesAndStaysUnhealthy) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("pkrt_failed_start_" + std::to_string(::getpid()) + ".pkrl")).string();
  std::filesystem::remove(path);
  auto writer = ReplayLogWriter::create(path, {.capacity_records = 64});
  ASSERT_TRUE(writer.ok()) << writer.status().to_string();
  struct Remove {
    std::string path;
    ~Remove() { std::filesystem::remove(path); }
  } remove{path};
  ASSERT_TRUE(writer.value()->close().ok());
  RuntimeOptions o = cpu_options(2, 1);
  o.replay_log = std::move(writer.value());
  auto created = Runtime::create(probe_program(), Probe::Params{}, o);
  ASSERT_TRUE(created.ok()) << created.status().to_string();
  Runtime& rt = *created.value();
  ReplyFuture queued = rt.send(0, kProbeEpoch, std::uint64_t{0});
  Status reported;
  rt.set_error_callback([&](const Status& st) { reported = st; });
  const Status started = rt.start();
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(queued.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "the queued command was failed";
  EXPECT_FALSE(queued.get().status.ok());
  EXPECT_FALSE(rt.health().ok());
  EXPECT_NE(rt.health().message().find("start() failed"), std::string::npos) << rt.health().message();
  EXPECT_FALSE(reported.ok()) << "the error callback heard of it";
  EXPECT_FALSE(rt.post(0, kProbeEpoch, std::uint64_t{0}).ok());
  EXPECT_FALSE(rt.send(1, kProbeEpoch, std::uint64_t{0}).get().status.ok());
  const Status again = rt.start();
  EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(again.message().find("after a failed start"), std::string::npos) << again.message();
  EXPECT_FALSE(rt.shutdown().ok()) << "shutdown reports the sticky error";
}

TEST(Runtime, StartAfterShutdownSaysSo) {
  auto rt = make_probe(1, 1);
  ASSERT_TRUE(rt->shutdown().ok());
  const Status st = rt->start();
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("after shutdown()"), std::string::npos) << st.message();
}

TEST(Runtime, SetTargetEpochAfterShutdownIsRefusedInsteadOfLeftToAWaitThatCannotEnd) {
  auto rt = make_probe(1, 1);
  ASSERT_TRUE(rt->set_target_epoch(3).ok());  // before start: allowed
  ASSERT_TRUE(rt->start().ok());
  ASSERT_TRUE(rt->wait_parked(std::chrono::seconds(30)).ok());
  ASSERT_TRUE(rt->shutdown().ok());
  const Status st = rt->set_target_epoch(10);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("set_target_epoch() after shutdown()"), std::string::npos) << st.message();
}

TEST(Runtime, StartTwiceIsRefused) {
  auto rt = make_probe(1, 1);
  ASSERT_TRUE(rt->start().ok());
  EXPECT_EQ(rt->start().code(), StatusCode::kFailedPrecondition);
}

TEST(Runtime, CudaBackendRunsOrFailsWithAClearMessage) {
  RuntimeOptions o;
  o.backend = BackendKind::kCuda;
  o.num_actors = 4;
  auto r = Runtime::create(examples::echo_program(), examples::Echo::Params{}, o);
  if (r.ok()) {
    // A machine with a GPU: the CUDA backend must really work.
    Runtime& rt = *r.value();
    ASSERT_EQ(rt.backend(), BackendKind::kCuda);
    ASSERT_TRUE(rt.start().ok());
    Reply reply = rt.send(3, examples::kEchoPing, std::uint64_t{0xC0DA}).get();
    ASSERT_TRUE(reply.status.ok()) << reply.status.to_string();
    EXPECT_EQ(reply.event.as<std::uint64_t>(), 0xC0DAu);
    EXPECT_TRUE(rt.shutdown().ok());
  } else {
    EXPECT_EQ(r.status().code(), StatusCode::kDeviceUnavailable) << r.status().to_string();
    EXPECT_NE(r.status().message().find("--backend cpu"), std::string::npos) << r.status().message();
  }
}

TEST(Runtime, CpuOnlyProgramIsRefusedByTheCudaBackend) {
  RuntimeOptions o;
  o.backend = BackendKind::kCuda;
  auto r = Runtime::create(probe_program(), Probe::Params{}, o);
  ASSERT_FALSE(r.ok());
  // Without a GPU the device check fails first; with one, the missing kernel is named.
  EXPECT_TRUE(r.status().code() == StatusCode::kDeviceUnavailable || r.status().code() == StatusCode::kUnsupported)
      << r.status().to_string();
}

TEST(Runtime, AutoBackendSaysWhichBackendItPicked) {
  RuntimeOptions o;
  o.num_actors = 2;
  auto r = Runtime::create(examples::echo_program(), examples::Echo::Params{}, o);
  ASSERT_TRUE(r.ok());
  const std::string& d = r.value()->backend_description();
  EXPECT_NE(d.find("picked by --backend auto"), std::string::npos) << d;
  EXPECT_EQ(d.rfind(backend_name(r.value()->backend()), 0), 0u) << d;
}

TEST(CudaDeviceRegistry, ASecondRuntimeOnADeviceIsRefusedUntilTheFirstIsDestroyed) {
  host::DeviceRegistry registry;
  ASSERT_TRUE(registry.claim(0).ok());
  EXPECT_TRUE(registry.claim(1).ok()) << "another device is free";
  const Status second = registry.claim(0);
  EXPECT_EQ(second.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.message().find("GPU 0 already hosts another pkrt Runtime"), std::string::npos) << second.message();
  EXPECT_NE(second.message().find("Fix:"), std::string::npos) << second.message();
  registry.release(0);
  EXPECT_TRUE(registry.claim(0).ok()) << "free again once the first runtime's backend is gone";
}

TEST(CudaDeviceRegistry, ADeviceWithALeakedGridIsRefusedForTheRestOfTheProcess) {
  host::DeviceRegistry registry;
  ASSERT_TRUE(registry.claim(2).ok());
  registry.mark_leaked(2);
  registry.release(2);  // a leaked backend is never destroyed; a stray release changes nothing
  const Status refused = registry.claim(2);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("did not stop"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("restart the process"), std::string::npos) << refused.message();
}

}  // namespace
}  // namespace pkrt
