// host/cli/main.cpp: the `pkrt` command line: `pkrt run`, `pkrt replay`, `pkrt log`,
// `pkrt selftest`, `pkrt checkpoint`.
#include "host/cli/cli_common.hpp"
#include "host/cli/commands.hpp"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>

namespace pkrt::cli {

ProgressLine::ProgressLine(bool enabled)
    : enabled_(enabled), tty_(isatty(fileno(stderr)) != 0), last_(std::chrono::steady_clock::now()) {}

void ProgressLine::update(const std::string& text) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    std::fflush(stderr);
    printed_ = true;
  } else if (now - last_ >= std::chrono::seconds(2)) {
    std::fprintf(stderr, "%s\n", text.c_str());
    last_ = now;
  }
}

void ProgressLine::finish() {
  if (enabled_ && tty_ && printed_) std::fprintf(stderr, "\r\033[K");
  printed_ = false;
}

namespace {

// No pkrt option takes a negative number, and CLI11 converts "-1" for a 64-bit unsigned
// option to 2^64-1 (a seed, period or count nobody meant): refuse every negative value. It
// also saturates a 64-bit value too large for its type (99999999999999999999 becomes 2^64-1,
// or 2^63-1 for a signed one) where narrower types are refused: refuse those too, by name.
// An empty value (--replay-log '') is refused too (it would silently mean "not given"), and
// one that starts with "--" (an option taken as the value of the one before).
// The validator has no name, so --help shows each option's type as CLI11 writes it.
void check_option_values(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    const std::string type = opt->get_type_name();
    if (type.empty() || opt->get_type_size() == 0) continue;  // flags, --help
    // The type comes first, then the descriptions of checks added before (e.g. "UINT:UINT in [1 - 16]").
    const bool is_signed = type.rfind("INT", 0) == 0, is_unsigned = type.rfind("UINT", 0) == 0;
    opt->check(CLI::Validator(
        [is_signed, is_unsigned](std::string& value) -> std::string {
          if (value.empty()) return "an empty value; give one (see --help)";
          // "--replay-log --quiet" would otherwise record into a file named --quiet.
          if (value.rfind("--", 0) == 0)
            return "the value '" + value + "' looks like an option, not a value. Fix: give this option its value "
                   "(a file of that name: ./" + value + ")";
          // Only what reads as a whole number: a path such as "-1ckpt" is not a value to refuse.
          char* end = nullptr;
          const double v = std::strtod(value.c_str(), &end);
          if (end != value.c_str() + value.size()) return std::string();
          if (v < 0) return "the value " + value + " is negative; it must be 0 or more";
          if (is_signed || is_unsigned) {
            errno = 0;
            if (is_signed) (void)std::strtoll(value.c_str(), nullptr, 10);
            else (void)std::strtoull(value.c_str(), nullptr, 10);
            if (errno == ERANGE)
              return "the value " + value + " is too large (at most " +
                     (is_signed ? std::string("9223372036854775807") : std::string("18446744073709551615")) + ")";
          }
          return std::string();
        },
        ""));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) check_option_values(*sub);
}

// What the command printed must have reached stdout: a summary or JSON written to a full
// disk or a closed pipe is an error, not a success.
int checked_stdout(int rc) {
  errno = 0;
  if (std::fflush(stdout) == 0 && std::ferror(stdout) == 0) return rc;
  const int err = errno;
  std::fprintf(stderr, "pkrt: error: cannot write the output to stdout: %s. Fix: check where stdout goes (a full "
               "disk, a closed pipe)\n", err != 0 ? std::strerror(err) : "write error");
  return rc == kExitOk ? kExitUsage : rc;
}

int dispatch(int argc, char** argv) {
  CLI::App app{"pkrt: persistent GPU actors with checkpointing and differential replay.\n"
               "Exit codes: 0 success, 1 a check or the run failed, 2 bad usage or unusable "
               "input/environment, 130/143 run stopped by SIGINT/SIGTERM."};
  app.require_subcommand(1);
  app.set_version_flag("--version", PKRT_VERSION_STRING);
  RunOptions run;
  add_run_command(app, run);
  SelftestOptions selftest;
  add_selftest_command(app, selftest);
  ReplayOptions replay;
  add_replay_command(app, replay);
  LogDumpOptions log;
  add_log_command(app, log);
  CheckpointOptions checkpoint;
  add_checkpoint_command(app, checkpoint);
  check_option_values(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  json_errors() = run.json || replay.json || log.json || selftest.json || checkpoint.json;
  if (app.got_subcommand("run")) return run_command(run);
  if (app.got_subcommand("replay")) return replay_command(replay);
  if (app.got_subcommand("log")) return log_command(log);
  if (app.got_subcommand("selftest")) return selftest_command(selftest);
  if (app.got_subcommand("checkpoint")) return checkpoint_command(app, checkpoint);
  return kExitUsage;
}

}  // namespace

}  // namespace pkrt::cli

int main(int argc, char** argv) {
  // A write past the file-size limit (ulimit -f) fails with EFBIG, reported where it happens
  // (a checkpoint, the replay log), instead of killing the run with SIGXFSZ before its summary.
  std::signal(SIGXFSZ, SIG_IGN);
  return pkrt::cli::checked_stdout(pkrt::cli::dispatch(argc, argv));
}
