// host/cli/replay_command.cpp: `pkrt replay FILE` (differential replay of a recorded run of
// a built-in example) and `pkrt log dump FILE` (what a replay log holds).
#include "examples/echo/echo.hpp"
#include "examples/heat2d/heat2d_host.hpp"
#include "examples/racy_sum/racy_sum.hpp"
#include "examples/token_ring/token_ring.hpp"
#include "host/cli/cli_common.hpp"
#include "host/cli/commands.hpp"

#include <pkrt/k2k_log.hpp>
#include <pkrt/replay.hpp>
#include <pkrt/replay_log.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <limits>

namespace pkrt::cli {
namespace {

std::string hex64(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016" PRIx64, v);
  return buf;
}

std::string hex_bytes(const std::byte* data, std::size_t n) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(data[i]));
    out += buf;
  }
  return out;
}

nlohmann::json record_json(const ReplayRecord& r) {
  return {{"seq", r.seq},
          {"time_ns", r.time_ns},
          {"direction", replay_direction_name(static_cast<ReplayDirection>(r.direction))},
          {"block", r.block},
          {"epoch_observed", r.epoch_observed},
          {"epoch_applied", r.epoch_applied},
          {"ring_seq", r.slot.header.seq},
          {"opcode", r.slot.header.opcode},
          {"opcode_name", replay_opcode_name(r.slot.header.opcode)},
          {"flags", r.slot.header.flags},
          {"actor", r.slot.header.actor},
          {"epoch", r.slot.payload.epoch},
          {"request", r.slot.payload.request},
          {"data", hex_bytes(r.slot.payload.data, kEnvelopeDataBytes)}};
}

nlohmann::json run_info_json(const ReplayLog& log) {
  const ReplayRunInfo& i = log.info;
  return {{"app", i.app},
          {"params", hex_bytes(i.params.data(), i.params.size())},
          {"backend", i.backend},
          {"actors", i.num_actors},
          {"blocks", i.blocks},
          {"threads_per_block", i.threads_per_block},
          {"ring_capacity", i.ring_capacity},
          {"digest_period", i.digest_period},
          {"chaos", i.chaos},
          {"chaos_seed", i.chaos_seed},
          {"start_epoch", i.start_epoch},
          {"config_hash", hex64(i.config_hash)},
          {"pkrt_version", i.pkrt_version},
          {"created_unix_ns", i.created_unix_ns},
          {"capacity", log.capacity},
          {"written", log.written},
          {"wrapped", log.wrapped},
          {"first_seq", log.first_seq},
          {"complete_epoch", log.complete_epoch},
          {"closed_cleanly", log.closed_cleanly},
          {"counters_recovered", log.counters_recovered},
          {"stop_note", log.stop_note}};
}

const std::array<const Program*, 4>& builtin_programs() {
  static const std::array<const Program*, 4> programs = {&examples::heat2d_program(), &examples::echo_program(),
                                                         &examples::racy_sum_program(),
                                                         &examples::token_ring_program()};
  return programs;
}

nlohmann::json k2k_message_json(const std::optional<ReplayDivergence::K2KMessage>& m) {
  if (!m) return nullptr;
  std::string hex;
  char b[3];
  for (std::byte x : m->payload) {
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned>(x));
    hex += b;
  }
  return {{"rank", m->rank}, {"dst", m->transfer.dst},     {"channel", m->transfer.channel},
          {"src", m->transfer.src}, {"epoch", m->transfer.epoch}, {"bytes", m->transfer.bytes}, {"payload_hex", hex}};
}

nlohmann::json divergence_json(const ReplayDivergence& d) {
  nlohmann::json commands = nlohmann::json::array();
  for (const auto& c : d.preceding_commands) {
    nlohmann::json j = record_json(c.record);
    j["applied_epoch"] = c.applied_epoch;
    commands.push_back(j);
  }
  return {{"kind", replay_divergence_kind_name(d.kind)},
          {"epoch", d.epoch},
          {"actor", d.actor},
          {"global_actor", d.global_actor == kNoActor ? nlohmann::json(nullptr) : nlohmann::json(d.global_actor)},
          {"opcode", d.opcode},
          {"opcode_name", replay_opcode_name(d.opcode)},
          {"field", d.field},
          {"index", d.index},
          {"expected", d.expected ? record_json(*d.expected) : nlohmann::json(nullptr)},
          {"actual", d.actual ? record_json(*d.actual) : nlohmann::json(nullptr)},
          {"preceding_commands", commands},
          {"expected_k2k", k2k_message_json(d.expected_k2k)},
          {"actual_k2k", k2k_message_json(d.actual_k2k)}};
}

}  // namespace

void add_replay_command(CLI::App& app, ReplayOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "replay",
      "Replay a recorded run of a built-in example and compare it with the recording.\n"
      "Exit codes: 0 identical, 1 diverged (the first divergence is printed), 2 the log cannot be replayed");
  cmd->add_option("FILE", o.log, "Replay log written by `pkrt run --replay-log FILE`")->required();
  cmd->add_option("--backend", o.backend, "cpu, cuda, or auto for the replay")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  cmd->add_option("--threads", o.threads, "CPU worker threads (0: as many blocks as the recording had)")
      ->check(CLI::Range(0u, 1024u))->capture_default_str();
  cmd->add_option("--chaos", o.chaos, "CPU chaos mode for the replay, with this seed")
      ->check(CLI::Range(std::int64_t{0}, std::numeric_limits<std::int64_t>::max()));
  cmd->add_option("--from-checkpoint", o.from_checkpoint,
                  "Start from the newest complete checkpoint in this directory (within the log) instead of the log's "
                  "start; for one rank's log, the run's global checkpoint directory (any rank count)");
  cmd->add_option("--record-to", o.record_to, "Keep the replay's own log in this file");
  cmd->add_option("--context", o.context, "Recorded commands listed before a divergence")->capture_default_str();
  cmd->add_flag("--json", o.json, "Print the verdict as JSON on stdout");
  cmd->add_flag("--quiet", o.quiet, "No progress line");
}

int replay_command(const ReplayOptions& o) {
  // Under mpirun every rank replays its own rank's log (host/cli/run_mpi.cpp).
  if (launched_by_mpirun()) return replay_mpi_command(o);
  ReplayVerdict verdict;
  return replay_one(o, true, verdict);
}

int replay_one(const ReplayOptions& o, bool print, ReplayVerdict& verdict) {
  auto backend = parse_backend(o.backend);
  if (!backend.ok()) return report_error("replay", backend.status());
  std::error_code ec;
  if (!std::filesystem::exists(o.log, ec) && std::filesystem::exists(o.log + ".rank0", ec)) {
    return report_error("replay",
                        Status(StatusCode::kNotFound, "'" + o.log + "' is not a file, but " + o.log +
                                                          ".rank0 is: the recording of a multi-rank run. Fix: mpirun -np "
                                                          "<ranks> pkrt replay " + o.log + " (every rank), or pkrt replay " +
                                                          o.log + ".rank<r> (one rank alone)"),
                        kExitUsage);
  }
  auto log = read_replay_log(o.log);
  if (!log.ok()) return report_error("replay", log.status(), kExitUsage);
  pkrt::ReplayOptions ro;
  ro.backend = backend.value();
  ro.threads = o.threads;
  ro.chaos = o.chaos >= 0;
  ro.chaos_seed = o.chaos >= 0 ? static_cast<std::uint64_t>(o.chaos) : 0;
  ro.from_checkpoint = o.from_checkpoint;
  // One rank of a multi-rank run: the K2K it received was recorded beside its log, and the
  // other ranks' beside theirs (FILE.rank<p>.k2k): what this rank sends them is checked
  // against those that are there.
  std::vector<std::string> cli_notes;
  if (std::filesystem::exists(k2k_log_path(o.log), ec)) {
    ro.inbound_k2k = k2k_log_path(o.log);
    auto own = read_k2k_log(ro.inbound_k2k);
    const std::string suffix = own.ok() ? ".rank" + std::to_string(own->shard.rank) : std::string();
    if (own.ok() && o.log.size() > suffix.size() && o.log.ends_with(suffix)) {
      const std::string base = o.log.substr(0, o.log.size() - suffix.size());
      std::string missing;
      for (std::uint32_t p = 0; p < own->shard.ranks; ++p) {
        if (p == own->shard.rank) continue;
        const std::string peer = k2k_log_path(base + ".rank" + std::to_string(p));
        if (std::filesystem::is_regular_file(peer, ec)) ro.peer_k2k.push_back(peer);
        else missing += (missing.empty() ? "" : ", ") + peer;
      }
      if (!missing.empty())
        cli_notes.push_back("what this rank sent to the ranks of " + missing +
                            " is not checked: those files are not there. Fix: keep every rank's .k2k beside its log");
    } else if (own.ok()) {
      cli_notes.push_back("what this rank sent is not checked: '" + o.log + "' is rank " +
                          std::to_string(own->shard.rank) + "'s log but not named <recording>" + suffix +
                          ", so the other ranks' .k2k files cannot be found. Fix: replay it under the name pkrt run gave it");
    }
  }
  ro.record_to = o.record_to;
  ro.context_commands = o.context;
  ProgressLine progress(!o.quiet && print);
  ro.progress = [&progress](std::uint64_t epoch, std::uint64_t end) {
    progress.update("replay: epoch " + std::to_string(epoch) + "/" + std::to_string(end));
  };
  const auto& programs = builtin_programs();
  auto result = replay_log(log.value(), programs, ro);
  progress.finish();
  if (!result.ok()) {
    // Whatever stops a replay (bad input, a log it cannot cover, a run that failed) means
    // no verdict: exit 2, never 0 or 1. replay_log() sees the log, not its path: name it here.
    return report_error("replay", Status(result.status().code(), o.log + ": " + result.status().message()), kExitUsage);
  }
  ReplayResult& r = result.value();
  r.notes.insert(r.notes.end(), cli_notes.begin(), cli_notes.end());
  // A crash leaves a torn tail, which the replay covers up to; a log closed cleanly holds the
  // whole run, so records it cannot read are damage, and the run was not wholly checked.
  const ReplayLog& l = log.value();
  verdict.log_damaged = l.closed_cleanly && l.records.size() < l.written - l.first_seq;
  verdict.identical = r.identical;
  verdict.end_epoch = r.end_epoch;
  if (r.divergence) {
    verdict.epoch = r.divergence->epoch;
    verdict.actor = r.divergence->global_actor != kNoActor ? r.divergence->global_actor : r.divergence->actor;
  }
  const std::string damage_note =
      verdict.log_damaged ? "the log was closed cleanly, yet records " + std::to_string(l.first_seq + l.records.size()) +
                                ".." + std::to_string(l.written - 1) + " cannot be read (" + l.stop_note +
                                "): the run after epoch " + std::to_string(r.end_epoch) +
                                " was not checked. Fix: replay an intact copy of the log"
                          : std::string();
  const int rc = !r.identical || verdict.log_damaged ? kExitFailed : kExitOk;
  if (!print) {
    if (verdict.log_damaged) std::fprintf(stderr, "pkrt replay: %s: %s\n", o.log.c_str(), damage_note.c_str());
    return rc;
  }
  if (o.json) {
    nlohmann::json j = {{"verdict", r.identical ? "identical" : "diverged"},
                        {"app", r.app},
                        {"log", o.log},
                        {"recorded_run", r.recorded_run},
                        {"replay_run", r.replay_run},
                        {"from_checkpoint", r.from_checkpoint},
                        {"start_epoch", r.start_epoch},
                        {"end_epoch", r.end_epoch},
                        {"commands_injected", r.commands_injected},
                        {"observations_compared", r.observations_compared},
                        {"k2k_sent_compared", r.k2k_sent_compared},
                        {"notes", r.notes},
                        {"rank", r.rank ? nlohmann::json(*r.rank) : nlohmann::json(nullptr)},
                        {"divergence", r.divergence ? divergence_json(*r.divergence) : nlohmann::json(nullptr)},
                        {"log_damaged", verdict.log_damaged},
                        {"log_damage", damage_note}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::fputs(format_replay_report(r).c_str(), stdout);
    if (verdict.log_damaged) std::printf("LOG DAMAGED: %s\n", damage_note.c_str());
  }
  return rc;
}

void add_log_command(CLI::App& app, LogDumpOptions& o) {
  CLI::App* log = app.add_subcommand("log", "Inspect a replay log");
  log->require_subcommand(1);
  CLI::App* dump = log->add_subcommand(
      "dump",
      "Print a replay log's run metadata and records.\n"
      "Exit codes: 0 every counted record intact, 1 the log is damaged (the intact part is printed), 2 unreadable");
  dump->add_option("FILE", o.log, "Replay log")->required();
  dump->add_flag("--json", o.json, "Print as JSON on stdout");
  dump->add_option("--tail", o.tail, "Only the newest N records (0: all)")->capture_default_str();
}

int log_command(const LogDumpOptions& o) {
  auto log = read_replay_log(o.log);
  if (!log.ok()) return report_error("log dump", log.status(), kExitUsage);
  const ReplayLog& l = log.value();
  const std::size_t first = o.tail != 0 && o.tail < l.records.size() ? l.records.size() - o.tail : 0;
  const bool damaged = !l.stop_note.empty();
  if (o.json) {
    nlohmann::json records = nlohmann::json::array();
    for (std::size_t i = first; i < l.records.size(); ++i) records.push_back(record_json(l.records[i]));
    nlohmann::json j = {{"log", o.log}, {"header", run_info_json(l)}, {"records", records}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    const ReplayRunInfo& i = l.info;
    std::string run = i.backend + ", " + std::to_string(i.num_actors) + " actors on " + std::to_string(i.blocks) +
                      " block(s) x " + std::to_string(i.threads_per_block) + " thread(s)";
    if (i.chaos) run += ", chaos seed " + std::to_string(i.chaos_seed);
    std::string records = std::to_string(l.records.size()) + " readable of " + std::to_string(l.written) +
                          " written (capacity " + std::to_string(l.capacity) + ")";
    if (l.wrapped) records += ", wrapped: records before " + std::to_string(l.first_seq) + " were overwritten";
    print_table(stdout, "pkrt replay log " + o.log,
                {{"app", i.app + " (params " + std::to_string(i.params.size()) + " bytes, config " +
                             hex64(i.config_hash) + ")"},
                 {"run", run},
                 {"recorded by", "pkrt " + i.pkrt_version},
                 {"digests", i.digest_period == 0 ? std::string("off") : "every " + std::to_string(i.digest_period) + " epochs"},
                 {"epochs", "after " + std::to_string(i.start_epoch) + ", complete through " + std::to_string(l.complete_epoch)},
                 {"records", records},
                 {"closed", l.closed_cleanly ? "cleanly" : "no (the writer did not finish: crash or still running)"},
                 {"damage", damaged ? l.stop_note : std::string("none")}});
    if (first > 0) std::printf("(showing the newest %zu records)\n", l.records.size() - first);
    const std::uint64_t t0 = l.records.empty() ? 0 : l.records.front().time_ns;
    for (std::size_t k = first; k < l.records.size(); ++k) {
      const ReplayRecord& r = l.records[k];
      std::printf("%10" PRIu64 "  %+12.3f ms  %s\n", r.seq, (static_cast<double>(r.time_ns) - static_cast<double>(t0)) / 1e6,
                  format_replay_record(r).c_str());
    }
  }
  if (damaged) std::fprintf(stderr, "pkrt log dump: %s: %s\n", o.log.c_str(), l.stop_note.c_str());
  return damaged ? kExitFailed : kExitOk;
}

}  // namespace pkrt::cli
