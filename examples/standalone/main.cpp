// main.cpp: runs 6 counters for 100 epochs on the best available backend, checks them, and
// replays its own recorded run on the CPU backend (another thread count, chaos on): an
// application replays its logs with its own programs through pkrt::replay_log.
#include "counter.hpp"

#include <pkrt/replay.hpp>
#include <pkrt/runtime.hpp>

#include <array>
#include <filesystem>
#include <string>
#include <chrono>
#include <cstdio>
#include <future>
#include <vector>

int main() {
  pkrt::RuntimeOptions options;
  options.num_actors = 6;
  options.threads = 2;
  const std::string log_path = (std::filesystem::temp_directory_path() / "counter_app.replay").string();
  pkrt::ReplayLogOptions log_options;
  log_options.capacity_records = 4096;  // 512 KiB: plenty for this run's slots
  log_options.replace_existing = true;  // this app's own scratch log, rewritten every run
  auto log_writer = pkrt::ReplayLogWriter::create(log_path, log_options);
  if (!log_writer.ok()) {
    std::fprintf(stderr, "counter_app: %s\n", log_writer.status().to_string().c_str());
    return 2;
  }
  options.replay_log = std::move(log_writer.value());
  options.digest_period = 10;
  Counter::Params params;
  params.step = 3;
  auto created = pkrt::Runtime::create(counter_program(), params, options);
  if (!created.ok()) {
    std::fprintf(stderr, "counter_app: %s\n", created.status().to_string().c_str());
    return 2;
  }
  pkrt::Runtime& rt = *created.value();
  std::printf("counter_app: backend %s\n", rt.backend_description().c_str());
  // Park after epoch 100 however fast the grid runs (set before start: no overshoot).
  if (pkrt::Status st = rt.set_target_epoch(100); !st.ok()) return 1;
  if (pkrt::Status st = rt.start(); !st.ok()) {
    std::fprintf(stderr, "counter_app: %s\n", st.to_string().c_str());
    return 1;
  }
  if (pkrt::Status st = rt.run_until(100, std::chrono::seconds(60)); !st.ok()) {
    std::fprintf(stderr, "counter_app: %s\n", st.to_string().c_str());
    return 1;
  }
  // Queued while the grid is parked at 100; they apply at the start of epoch 101, before its
  // step, once the target moves there.
  std::vector<pkrt::ReplyFuture> replies;
  for (std::uint32_t a = 0; a < options.num_actors; ++a)
    replies.push_back(rt.send(a, kCounterGet, std::uint64_t{0}));
  if (pkrt::Status st = rt.set_target_epoch(101); !st.ok()) return 1;
  int failures = 0;
  for (std::uint32_t a = 0; a < options.num_actors; ++a) {
    pkrt::Reply r = replies[a].get();
    const auto report = r.event.as<CounterReport>();
    if (!r.status.ok() || report.value != 300 || report.neighbour_mismatches != 0) {
      std::fprintf(stderr, "counter_app: actor %u: value %llu, mismatches %llu, %s\n", a,
                   static_cast<unsigned long long>(report.value),
                   static_cast<unsigned long long>(report.neighbour_mismatches),
                   r.status.to_string().c_str());
      ++failures;
    }
  }
  if (pkrt::Status st = rt.shutdown(); !st.ok()) {
    std::fprintf(stderr, "counter_app: %s\n", st.to_string().c_str());
    return 1;
  }
  if (pkrt::Status st = options.replay_log->close(); !st.ok()) {
    std::fprintf(stderr, "counter_app: %s\n", st.to_string().c_str());
    return 1;
  }
  auto log = pkrt::read_replay_log(log_path);
  std::filesystem::remove(log_path);
  if (!log.ok()) {
    std::fprintf(stderr, "counter_app: %s\n", log.status().to_string().c_str());
    return 1;
  }
  pkrt::ReplayOptions replay;
  replay.backend = pkrt::BackendKind::kCpu;
  replay.threads = 3;
  replay.chaos = true;
  replay.chaos_seed = 17;
  const std::array<const pkrt::Program*, 1> programs = {&counter_program()};
  auto verdict = pkrt::replay_log(log.value(), programs, replay);
  if (!verdict.ok()) {
    std::fprintf(stderr, "counter_app: replay: %s\n", verdict.status().to_string().c_str());
    return 1;
  }
  if (!verdict->identical) std::fputs(pkrt::format_replay_report(verdict.value()).c_str(), stderr);
  std::printf("counter_app: %u counters at 300 after 100 epochs, K2K intact: %s, replay: %s\n",
              options.num_actors, failures == 0 ? "ok" : "FAILED", verdict->identical ? "identical" : "DIVERGED");
  return failures == 0 && verdict->identical ? 0 : 1;
}
