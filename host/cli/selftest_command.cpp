// host/cli/selftest_command.cpp: `pkrt selftest`: the first thing to run on a new machine.
// On the chosen backend it checks, end to end: the H2K/K2H ring round trip (echo, every
// reply compared byte for byte; error events for a bad actor and an unknown opcode), K2K
// mailboxes (token_ring: every token checked for sender, epoch and value), heat2d against
// the serial reference (bit-identical field with injections), and differential replay: a
// heat2d run recorded on the chosen backend (with state digests computed there) replayed on
// the CPU backend under chaos must be identical, which on a GPU checks that the device's
// digests and physics match the host's bit for bit.
#include "examples/echo/echo.hpp"
#include "examples/heat2d/heat2d_host.hpp"
#include "examples/token_ring/token_ring.hpp"
#include "host/cli/cli_common.hpp"
#include "host/cli/commands.hpp"

#include <pkrt/replay.hpp>
#include <pkrt/runtime.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <random>
#include <unistd.h>

namespace pkrt::cli {
namespace {

struct CheckResult {
  std::string name;
  bool passed = false;
  std::string detail;
  double seconds = 0;
};

RuntimeOptions base_options(const SelftestOptions& o, BackendKind backend, std::uint32_t actors) {
  RuntimeOptions ro;
  ro.backend = backend;
  ro.num_actors = actors;
  ro.threads = o.threads;
  ro.cuda_device = o.cuda_device;
  ro.watchdog_timeout = std::chrono::milliseconds(20000);
  return ro;
}

// How long any one answer may take. Generous (a first CUDA launch, a loaded CI machine), but
// finite: a kernel that died or wedged must turn into a failed check, never a selftest that
// blocks in get() for ever.
constexpr std::chrono::seconds kAnswerDeadline{60};

// The reply, or a kTimeout status naming `what` once kAnswerDeadline has passed.
Reply answer_within_deadline(ReplyFuture& future, const std::string& what) {
  if (future.wait_for(kAnswerDeadline) != std::future_status::ready) {
    return Reply{Status(StatusCode::kTimeout, what + " got no answer within " + std::to_string(kAnswerDeadline.count()) +
                                                  " s: the kernel is not applying commands (stuck, faulted or gone). "
                                                  "Fix: run `pkrt run --backend <same> --watchdog-ms 2000` to see "
                                                  "which block stalls, and report both outputs"),
                 Event{}};
  }
  return future.get();
}

Reply answer_within_deadline(ReplyFuture&& future, const std::string& what) {
  return answer_within_deadline(future, what);
}

// Returns ok with `detail` describing a pass, or a Status whose message says what failed.
Status check_ring_round_trip(const SelftestOptions& o, BackendKind backend, std::string& detail) {
  constexpr std::uint32_t kActors = 4;
  constexpr std::uint64_t kPings = 2000;
  auto created = Runtime::create(examples::echo_program(), examples::Echo::Params{}, base_options(o, backend, kActors));
  if (!created.ok()) return created.status();
  Runtime& rt = *created.value();
  PKRT_RETURN_IF_ERROR(rt.start());
  std::mt19937_64 rng(o.seed);
  std::vector<std::array<std::uint64_t, 4>> sent(kPings);
  std::vector<ReplyFuture> replies;
  replies.reserve(kPings);
  for (std::uint64_t i = 0; i < kPings; ++i) {
    sent[i] = {rng(), rng(), rng(), i};
    replies.push_back(rt.send(static_cast<std::uint32_t>(i % kActors), examples::kEchoPing, sent[i]));
  }
  for (std::uint64_t i = 0; i < kPings; ++i) {
    Reply r = answer_within_deadline(replies[i], "ping " + std::to_string(i));
    if (!r.status.ok()) return r.status;
    if (std::memcmp(r.event.data.data(), sent[i].data(), sizeof sent[i]) != 0)
      return Status(StatusCode::kInternal, "reply " + std::to_string(i) + " differs from its ping");
  }
  Reply bad_actor = answer_within_deadline(rt.send(kActors + 5, examples::kEchoPing, std::uint64_t{1}),
                                           "a ping to a missing actor");
  if (bad_actor.status.code() != StatusCode::kOutOfRange)
    return Status(StatusCode::kInternal, "a ping to a missing actor was not rejected: " + bad_actor.status.to_string());
  Reply bad_op = answer_within_deadline(rt.send(0, static_cast<std::uint16_t>(kUserOpcodeBase + 77), std::uint64_t{1}),
                                        "an unknown opcode");
  if (bad_op.status.code() != StatusCode::kUnknownOpcode)
    return Status(StatusCode::kInternal, "an unknown opcode was not rejected: " + bad_op.status.to_string());
  Reply count = answer_within_deadline(rt.send(1, examples::kEchoCount, std::uint64_t{0}), "the ping count");
  if (!count.status.ok()) return count.status;
  if (count.event.as<std::uint64_t>() != kPings / kActors)
    return Status(StatusCode::kInternal, "actor 1 answered " + std::to_string(count.event.as<std::uint64_t>()) +
                                             " pings, expected " + std::to_string(kPings / kActors));
  PKRT_RETURN_IF_ERROR(rt.shutdown());
  detail = std::to_string(kPings) + " round trips intact, 2 error events, on " + rt.backend_description();
  return Status();
}

Status check_k2k(const SelftestOptions& o, BackendKind backend, std::string& detail) {
  constexpr std::uint32_t kActors = 8;
  constexpr std::uint64_t kEpochs = 300;
  examples::TokenRing::Params p;
  p.seed = o.seed;
  auto created = Runtime::create(examples::token_ring_program(), p, base_options(o, backend, kActors));
  if (!created.ok()) return created.status();
  Runtime& rt = *created.value();
  PKRT_RETURN_IF_ERROR(rt.set_target_epoch(kEpochs));
  PKRT_RETURN_IF_ERROR(rt.start());
  PKRT_RETURN_IF_ERROR(rt.run_until(kEpochs, std::chrono::seconds(60)));
  std::uint64_t received = 0;
  for (std::uint32_t a = 0; a < kActors; ++a) {
    examples::TokenRing::State s{};
    PKRT_RETURN_IF_ERROR(rt.read_region(a, -1, &s, sizeof s));
    if (s.mismatches != 0 || s.received != kEpochs)
      return Status(StatusCode::kInternal, "actor " + std::to_string(a) + " got " + std::to_string(s.received) +
                                               " intact tokens and " + std::to_string(s.mismatches) +
                                               " bad ones over " + std::to_string(kEpochs) + " epochs");
    received += s.received;
  }
  PKRT_RETURN_IF_ERROR(rt.shutdown());
  detail = std::to_string(received) + " tokens over " + std::to_string(kEpochs) + " epochs, " +
           std::to_string(rt.stats().blocks) + " blocks";
  return Status();
}

Status check_heat2d(const SelftestOptions& o, BackendKind backend, std::string& detail) {
  constexpr std::uint32_t kActors = 7;
  constexpr std::uint64_t kEpochs = 120;
  examples::Heat2d::Params p;
  p.width = 70;
  p.height = 45;
  p.seed = o.seed;
  p.stats_every = 0;
  examples::heat2d_choose_tiles(p, kActors);
  std::vector<examples::Heat2dScheduledInjection> injections = {
      {5, {3, 4, 7.5f}}, {5, {3, 4, 1.25f}}, {40, {69, 44, 3.0f}}, {41, {35, 20, 9.0f}}, {100, {0, 0, 2.0f}}};
  auto created = Runtime::create(examples::heat2d_program(), p, base_options(o, backend, kActors));
  if (!created.ok()) return created.status();
  Runtime& rt = *created.value();
  PKRT_RETURN_IF_ERROR(rt.set_target_epoch(kEpochs));
  std::vector<ReplyFuture> acks;
  for (const auto& inj : injections)
    acks.push_back(rt.send(examples::Heat2d::actor_of(p, inj.inject.x, inj.inject.y), examples::kHeat2dInject,
                           inj.inject, inj.epoch));
  PKRT_RETURN_IF_ERROR(rt.start());
  PKRT_RETURN_IF_ERROR(rt.run_until(kEpochs, std::chrono::seconds(60)));
  for (std::size_t i = 0; i < acks.size(); ++i) {
    Reply r = answer_within_deadline(acks[i], "injection " + std::to_string(i));
    if (!r.status.ok()) return r.status;
    if (r.event.epoch != injections[i].epoch)
      return Status(StatusCode::kInternal, "injection " + std::to_string(i) + " applied at epoch " +
                                               std::to_string(r.event.epoch) + ", not " +
                                               std::to_string(injections[i].epoch));
  }
  auto field = examples::heat2d_gather(rt, p);
  if (!field.ok()) return field.status();
  PKRT_RETURN_IF_ERROR(rt.shutdown());
  const auto ref = examples::heat2d_reference(p, kEpochs, injections);
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (std::memcmp(&ref[i], &field.value()[i], sizeof(float)) != 0) {
      return Status(StatusCode::kInternal,
                    "cell (" + std::to_string(i % p.width) + ", " + std::to_string(i / p.width) +
                        ") differs from the serial reference: " + std::to_string(field.value()[i]) +
                        " vs " + std::to_string(ref[i]));
    }
  }
  detail = "70x45 field, 7 tiles, 120 epochs, 5 injections: bit-identical (checksum " +
           hex32(examples::heat2d_checksum(ref)) + ")";
  return Status();
}

Status check_replay(const SelftestOptions& o, BackendKind backend, std::string& detail) {
  constexpr std::uint32_t kActors = 5;
  constexpr std::uint64_t kEpochs = 100;
  examples::Heat2d::Params p;
  p.width = 50;
  p.height = 30;
  p.seed = o.seed;
  p.stats_every = 10;
  examples::heat2d_choose_tiles(p, kActors);
  const char* tmp = std::getenv("TMPDIR");
  const std::string path = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/pkrt-selftest-" +
                           std::to_string(::getpid()) + ".replay";
  struct Remove {
    std::string path;
    ~Remove() { std::filesystem::remove(path); }
  } cleanup{path};
  ReplayLogOptions lo;
  lo.capacity_records = 4096;
  auto writer = ReplayLogWriter::create(path, lo);
  if (!writer.ok()) return writer.status();
  RuntimeOptions ro = base_options(o, backend, kActors);
  ro.replay_log = std::move(writer.value());
  ro.digest_period = 5;
  std::string recorded_on;
  {
    auto created = Runtime::create(examples::heat2d_program(), p, ro);
    if (!created.ok()) return created.status();
    Runtime& rt = *created.value();
    recorded_on = rt.backend_description();
    PKRT_RETURN_IF_ERROR(rt.set_target_epoch(kEpochs));
    std::vector<ReplyFuture> acks;
    for (std::uint64_t e : {3u, 3u, 30u, 61u, 99u}) {
      const examples::Heat2dInjectData inj{static_cast<std::uint32_t>(e % p.width), static_cast<std::uint32_t>(e % p.height),
                                           0.5f + static_cast<float>(e)};
      acks.push_back(rt.send(examples::Heat2d::actor_of(p, inj.x, inj.y), examples::kHeat2dInject, inj, e));
    }
    PKRT_RETURN_IF_ERROR(rt.start());
    PKRT_RETURN_IF_ERROR(rt.run_until(kEpochs, std::chrono::seconds(60)));
    for (auto& a : acks) PKRT_RETURN_IF_ERROR(answer_within_deadline(a, "an injection").status);
    PKRT_RETURN_IF_ERROR(rt.shutdown());
  }
  PKRT_RETURN_IF_ERROR(ro.replay_log->close());
  auto log = read_replay_log(path);
  if (!log.ok()) return log.status();
  pkrt::ReplayOptions replay;
  replay.backend = BackendKind::kCpu;
  replay.threads = 2;
  replay.chaos = true;
  replay.chaos_seed = o.seed + 1;
  const std::array<const Program*, 1> programs = {&examples::heat2d_program()};
  auto result = replay_log(log.value(), programs, replay);
  if (!result.ok()) return result.status();
  if (!result->identical) {
    return Status(StatusCode::kInternal, "the run recorded on " + recorded_on +
                                             " does not replay identically on the CPU backend:\n" +
                                             format_replay_report(result.value()));
  }
  detail = "recorded on " + recorded_on + ", replayed on cpu (2 threads, chaos): identical, " +
           std::to_string(result->observations_compared) + " observations";
  return Status();
}

}  // namespace

void add_selftest_command(CLI::App& app, SelftestOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "selftest", "Check rings, K2K, heat2d and replay end to end on a backend (run this first on a GPU machine)");
  cmd->add_option("--backend", o.backend, "auto, cpu, or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU backend worker threads (0: hardware concurrency)")
      ->check(CLI::Range(0u, 1024u))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed for payloads and initial data")->capture_default_str();
  cmd->add_option("--cuda-device", o.cuda_device, "CUDA device index")->capture_default_str();
  cmd->add_flag("--json", o.json, "Print results as JSON on stdout");
}

int selftest_command(const SelftestOptions& o) {
  auto backend = parse_backend(o.backend);
  if (!backend.ok()) return report_error("selftest", backend.status());
  // Resolve the backend once so every check runs on the same one, and an unusable
  // --backend cuda is reported before any check.
  {
    auto probe = Runtime::create(examples::echo_program(), examples::Echo::Params{}, base_options(o, backend.value(), 1));
    if (!probe.ok()) return report_error("selftest", probe.status());
    std::fprintf(stderr, "pkrt: backend %s\n", probe.value()->backend_description().c_str());
    // That probe has one actor, hence one worker: say what the checks get.
    std::fprintf(stderr, "pkrt: (that is the probe's, 1 actor; each check sizes its own grid, --threads %u%s)\n",
                 o.threads, o.threads == 0 ? ": hardware concurrency" : "");
  }
  const std::vector<std::pair<std::string, std::function<Status(std::string&)>>> checks = {
      {"ring round trip", [&](std::string& d) { return check_ring_round_trip(o, backend.value(), d); }},
      {"k2k mailboxes", [&](std::string& d) { return check_k2k(o, backend.value(), d); }},
      {"heat2d vs reference", [&](std::string& d) { return check_heat2d(o, backend.value(), d); }},
      {"replay across backends", [&](std::string& d) { return check_replay(o, backend.value(), d); }},
  };
  std::vector<CheckResult> results;
  bool all = true;
  for (const auto& [name, fn] : checks) {
    CheckResult r;
    r.name = name;
    const auto t0 = std::chrono::steady_clock::now();
    Status st = fn(r.detail);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.passed = st.ok();
    if (!st.ok()) {
      r.detail = st.to_string();
      if (exit_code_for(st) == kExitUsage) return report_error("selftest", st);
    }
    all = all && r.passed;
    if (!o.json) std::fprintf(stdout, "%-22s %s  %s (%.2f s)\n", r.name.c_str(), r.passed ? "PASS" : "FAIL",
                              r.detail.c_str(), r.seconds);
    results.push_back(std::move(r));
  }
  std::size_t passed = 0;
  for (const auto& r : results) passed += r.passed ? 1 : 0;
  if (o.json) {
    nlohmann::json j = {{"backend", o.backend}, {"passed", passed}, {"failed", results.size() - passed}};
    for (const auto& r : results)
      j["checks"].push_back({{"name", r.name}, {"passed", r.passed}, {"detail", r.detail}, {"seconds", r.seconds}});
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("selftest: %zu passed, %zu failed\n", passed, results.size() - passed);
  }
  return all ? kExitOk : kExitFailed;
}

}  // namespace pkrt::cli
