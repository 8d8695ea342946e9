// host/cli/commands.hpp: the subcommands of `pkrt`, each registered on the CLI11 app and run
// with its parsed options.
#pragma once

#include "examples/heat2d/heat2d_host.hpp"

#include <pkrt/runtime.hpp>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace pkrt::cli {

inline constexpr std::uint64_t kDefaultReplayLogCapacity = std::uint64_t{1} << 18;  // 32 MiB of records

struct RunOptions {
  std::string app = "heat2d";
  std::string backend = "auto";
  std::uint32_t actors = 16;
  std::uint32_t threads = 0;
  std::uint64_t epochs = 500;
  std::string grid = "256x256";
  std::uint64_t seed = 1;
  std::uint64_t messages = 10000;  // echo: pings to send
  std::uint32_t injections = 0;    // heat2d: random heat injections during the run
  std::uint32_t stats_every = 50;
  std::uint32_t watchdog_ms = 10000;
  std::uint32_t ring_capacity = 1024;
  std::string poll = "auto";         // poll policy: auto, latency, balanced, low_power
  int cuda_device = 0;
  std::uint32_t cuda_blocks_per_sm = 1;
  std::uint64_t staging_mib = 0;     // device snapshot staging pool (0: the runtime's default)
  bool json = false;
  bool quiet = false;
  std::string checkpoint_dir;        // write checkpoints here
  std::uint64_t checkpoint_every = 0;  // epochs between checkpoints (0: only at the end)
  std::uint32_t checkpoint_keep = 3;   // committed sets kept
  std::string on_checkpoint_error = "stop";  // stop | continue
  int zstd_level = 1;
  std::string restore;               // checkpoint file or directory to start from
  std::int64_t restore_epoch = -1;   // with a directory: this epoch instead of the newest
  std::string replay_log;            // record every ring slot into this replay log
  std::uint64_t replay_log_capacity = kDefaultReplayLogCapacity;  // records
  std::uint32_t replay_log_sync_ms = 0;  // background msync period (0: at the end only)
  bool replay_log_replace = false;   // an existing file at --replay-log is replaced once the new log is ready
  std::uint32_t digest_every = 10;   // with --replay-log: state digests every N epochs (0: none)
  std::int64_t chaos = -1;           // CPU chaos seed (-1: off)
  std::uint32_t k2k_delay = 1;       // RuntimeOptions::k2k_delay
  std::string partition = "tiles";   // under mpirun: tiles | contiguous
};

struct ReplayOptions {
  std::string log;
  std::string backend = "cpu";
  std::uint32_t threads = 0;
  std::int64_t chaos = -1;
  std::string from_checkpoint;
  std::string record_to;
  std::uint32_t context = 5;
  bool json = false;
  bool quiet = false;
};

struct LogDumpOptions {
  std::string log;
  bool json = false;
  std::uint64_t tail = 0;  // only the newest N records (0: all)
};

struct CheckpointOptions {
  std::string path;
  bool json = false;
};

struct SelftestOptions {
  std::string backend = "auto";
  std::uint32_t threads = 0;
  std::uint64_t seed = 1;
  int cuda_device = 0;
  bool json = false;
};

void add_run_command(CLI::App& app, RunOptions& opts);
int run_command(const RunOptions& opts);
// The random heat2d injections `pkrt run --injections` sends (seeded by --seed), sorted by
// epoch so none waits behind a later one in a ring: the same on any rank count.
std::vector<examples::Heat2dScheduledInjection> heat2d_injection_schedule(const RunOptions& opts,
                                                                        const examples::Heat2d::Params& params);
// heat2d's Params from `pkrt run`'s flags (--grid, --actors, --seed, --stats-every), or the
// bad flag and its fix.
Result<examples::Heat2d::Params> heat2d_params_from_flags(const RunOptions& opts);
// The runtime options `pkrt run` derives from its flags (no replay log).
RuntimeOptions run_runtime_options(const RunOptions& opts, BackendKind backend);
// Whether this process is one rank of an mpirun launch of more than one rank.
bool launched_by_mpirun();
// Whether `directory` holds global checkpoints (a multi-rank run's *.pkglobal manifests).
bool holds_global_checkpoints(const std::string& directory);
// `pkrt run` as one rank of an mpirun launch (host/cli/run_mpi.cpp): heat2d over the ranks.
int run_mpi_command(const RunOptions& opts);

void add_selftest_command(CLI::App& app, SelftestOptions& opts);
int selftest_command(const SelftestOptions& opts);

void add_replay_command(CLI::App& app, ReplayOptions& opts);
int replay_command(const ReplayOptions& opts);
// What one replay concluded (for `pkrt replay` under mpirun, which gathers them).
struct ReplayVerdict {
  bool identical = false;
  std::uint64_t end_epoch = 0;
  std::uint64_t epoch = 0;   // the first divergence's, when not identical
  std::uint32_t actor = 0;   // the first divergence's actor (its global id for a rank's log)
  // The log was closed cleanly but records are unreadable (damage, not a crash's torn tail):
  // what was compared matched, yet part of the run went unchecked. Exit 1.
  bool log_damaged = false;
};
// Replays opts.log; prints the report when `print`; returns the command's exit code.
int replay_one(const ReplayOptions& opts, bool print, ReplayVerdict& verdict);
// `pkrt replay FILE` as one rank of an mpirun launch: replays FILE.rank<r>, rank 0 prints
// every rank's verdict and the first divergence (rank, actor, epoch).
int replay_mpi_command(const ReplayOptions& opts);

// `pkrt log dump`.
void add_log_command(CLI::App& app, LogDumpOptions& opts);
int log_command(const LogDumpOptions& opts);

// `pkrt checkpoint list|inspect|verify`; returns the subcommand to dispatch on.
void add_checkpoint_command(CLI::App& app, CheckpointOptions& opts);
int checkpoint_command(const CLI::App& app, const CheckpointOptions& opts);

}  // namespace pkrt::cli
