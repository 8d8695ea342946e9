// host/cli/cli_common.hpp: what the pkrt subcommands share: exit codes, the summary table,
// the progress line, and mapping a Status to an exit code.
#pragma once

#include <pkrt/status.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace pkrt::cli {

// Exit codes: each means one thing.
enum ExitCode : int {
  kExitOk = 0,       // success / identical / intact
  kExitFailed = 1,   // a check failed, or the run failed while running (watchdog, device fault)
  kExitUsage = 2,    // bad usage, unusable input or environment (e.g. no GPU for --backend cuda)
};

// Statuses that mean "the input or the environment cannot be used" map to 2, others to 1.
inline int exit_code_for(const Status& st) {
  if (st.ok()) return kExitOk;
  switch (st.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kDeviceUnavailable:
    case StatusCode::kUnsupported:
    case StatusCode::kCorruptData:
    case StatusCode::kIoError:
    case StatusCode::kNotFound:
    case StatusCode::kBusy:
      return kExitUsage;
    default:
      return kExitFailed;
  }
}

// A --replay-log path the writer refused: what is there (a file, link, FIFO or directory) is
// unusable input for the CLI, exit 2, though ReplayLogWriter::create names it a failed
// precondition.
inline Status replay_log_refused(const Status& st) {
  const StatusCode code = st.code() == StatusCode::kFailedPrecondition ? StatusCode::kInvalidArgument : st.code();
  return Status(code, "--replay-log: " + st.message());
}

// With --json, errors go to stdout too, as one JSON object ({"error": {...}, "exit_code": N}),
// so that a script reading stdout gets a document on every exit. main() sets it from the
// command's --json flag; MPI ranks other than 0 clear it (their stdout joins rank 0's).
inline bool& json_errors() {
  static bool on = false;
  return on;
}

// Prints the error (stderr, and stdout as JSON under --json) and returns `rc`.
inline int report_error(const char* command, const Status& st, int rc) {
  std::fprintf(stderr, "pkrt %s: error: %s\n", command, st.to_string().c_str());
  if (json_errors()) {
    const nlohmann::json j = {
        {"error", {{"command", command}, {"code", status_code_name(st.code())}, {"message", st.message()}}},
        {"exit_code", rc}};
    std::printf("%s\n", j.dump(2).c_str());
  }
  return rc;
}

inline int report_error(const char* command, const Status& st) { return report_error(command, st, exit_code_for(st)); }

// Two-column table with a title, aligned on the widest key.
inline void print_table(std::FILE* out, const std::string& title,
                        const std::vector<std::pair<std::string, std::string>>& rows) {
  std::size_t w = 0;
  for (const auto& [k, v] : rows) w = std::max(w, k.size());
  std::fprintf(out, "%s\n", title.c_str());
  for (const auto& [k, v] : rows) std::fprintf(out, "  %-*s  %s\n", static_cast<int>(w), k.c_str(), v.c_str());
}

inline std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Progress on stderr: a rewritten line on a terminal, an occasional plain line otherwise.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  void update(const std::string& text);
  void finish();

 private:
  bool enabled_;
  bool tty_;
  std::chrono::steady_clock::time_point last_;
  bool printed_ = false;
};

}  // namespace pkrt::cli
