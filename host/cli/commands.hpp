// host/cli/commands.hpp: the subcommands of `pkrt`, each registered on the CLI11 app and run
// with its parsed options.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace pkrt::cli {

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
  int cuda_device = 0;
  bool json = false;
  bool quiet = false;
  std::string checkpoint_dir;        // write checkpoints here
  std::uint64_t checkpoint_every = 0;  // epochs between checkpoints (0: only at the end)
  std::uint32_t checkpoint_keep = 3;
  int zstd_level = 1;
  std::string restore;               // checkpoint file or directory to start from
  std::int64_t restore_epoch = -1;   // with a directory: this epoch instead of the newest
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

void add_selftest_command(CLI::App& app, SelftestOptions& opts);
int selftest_command(const SelftestOptions& opts);

// `pkrt checkpoint list|inspect|verify`; returns the subcommand to dispatch on.
void add_checkpoint_command(CLI::App& app, CheckpointOptions& opts);
int checkpoint_command(const CLI::App& app, const CheckpointOptions& opts);

}  // namespace pkrt::cli
