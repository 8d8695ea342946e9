// mpi/commit_fault.hpp: a crash at a chosen step of the coordinated checkpoint's two-phase
// commit, for tests (tests/mpi_test.sh) and for users who want to see their own recovery.
//
//   PKRT_MPI_KILL_AT=<point>:<rank>:<n>
//
// makes rank <rank> (of the ShardedRuntime's communicator) print one line on stderr and kill
// itself with SIGKILL (no cleanup, no flush: as a crash, an OOM kill or a node loss) when it
// reaches <point> of its n-th checkpoint() (counted from 1, per ShardedRuntime, among the calls
// that passed checkpoint()'s own checks: a refused call does not count). The points, in
// the order a checkpoint passes them:
//   set-durable    any rank: its set is durable, not yet reported to rank 0 (end of phase 1);
//   before-commit  rank 0: every set was reported durable, the global manifest is not written;
//   after-commit   rank 0: the global manifest is committed, older ones are not yet retired.
// Unset or empty: nothing happens (one getenv per process). A value that does not parse, or
// names a rank 0-only point for another rank, is reported once on stderr and ignored; so is a
// rank the run does not have (reported by rank 0 at enable_checkpoints()).
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

namespace pkrt::mpi::detail {

enum class CommitPoint { kSetDurable, kBeforeCommit, kAfterCommit };

inline const char* commit_point_name(CommitPoint p) {
  switch (p) {
    case CommitPoint::kSetDurable: return "set-durable";
    case CommitPoint::kBeforeCommit: return "before-commit";
    case CommitPoint::kAfterCommit: return "after-commit";
  }
  return "?";
}

struct CommitKill {
  CommitPoint point = CommitPoint::kSetDurable;
  int rank = 0;
  std::uint64_t checkpoint = 0;  // the n-th checkpoint() call, from 1
};

// Parses "<point>:<rank>:<n>"; nullopt (with the reason in `why`) when it does not.
inline std::optional<CommitKill> parse_commit_kill(const std::string& text, std::string& why) {
  const std::size_t a = text.find(':');
  const std::size_t b = a == std::string::npos ? a : text.find(':', a + 1);
  if (b == std::string::npos) {
    why = "not <point>:<rank>:<n>";
    return std::nullopt;
  }
  CommitKill k;
  const std::string point = text.substr(0, a);
  if (point == "set-durable") k.point = CommitPoint::kSetDurable;
  else if (point == "before-commit") k.point = CommitPoint::kBeforeCommit;
  else if (point == "after-commit") k.point = CommitPoint::kAfterCommit;
  else {
    why = "unknown point '" + point + "' (set-durable, before-commit, after-commit)";
    return std::nullopt;
  }
  const auto number = [](const std::string& s, std::uint64_t& out) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    out = std::stoull(s);
    return true;
  };
  std::uint64_t rank = 0;
  if (!number(text.substr(a + 1, b - a - 1), rank) || !number(text.substr(b + 1), k.checkpoint) || k.checkpoint == 0) {
    why = "the rank and n must be numbers, n from 1";
    return std::nullopt;
  }
  k.rank = static_cast<int>(rank);
  if (k.point != CommitPoint::kSetDurable && k.rank != 0) {
    why = std::string(commit_point_name(k.point)) + " happens on rank 0 only";
    return std::nullopt;
  }
  return k;
}

// PKRT_MPI_KILL_AT, parsed once per process (a bad value reported then, on stderr).
inline const std::optional<CommitKill>& commit_kill_from_environment() {
  static const std::optional<CommitKill> kill = [] {
    const char* v = std::getenv("PKRT_MPI_KILL_AT");
    if (v == nullptr || *v == '\0') return std::optional<CommitKill>();
    std::string why;
    auto k = parse_commit_kill(v, why);
    if (!k) std::fprintf(stderr, "pkrt: PKRT_MPI_KILL_AT=%s ignored: %s\n", v, why.c_str());
    return k;
  }();
  return kill;
}

// At enable_checkpoints(): a bad value is reported before the run, not at its first commit;
// rank 0 also says when the rank named is not in the run.
inline void check_commit_kill(int rank, int size) {
  const std::optional<CommitKill>& kill = commit_kill_from_environment();
  if (kill && rank == 0 && kill->rank >= size) {
    std::fprintf(stderr, "pkrt: PKRT_MPI_KILL_AT names rank %d, but the run has %d rank(s): it will not fire\n",
                 kill->rank, size);
  }
}

// Called at each point: kills this process when PKRT_MPI_KILL_AT names it.
inline void commit_point_reached(CommitPoint point, int rank, std::uint64_t checkpoint) {
  const std::optional<CommitKill>& kill = commit_kill_from_environment();
  if (!kill || kill->point != point || kill->rank != rank || kill->checkpoint != checkpoint) return;
  std::fprintf(stderr, "pkrt: rank %d killed itself at %s of checkpoint %llu (PKRT_MPI_KILL_AT)\n", rank,
               commit_point_name(point), static_cast<unsigned long long>(checkpoint));
  std::raise(SIGKILL);
}

}  // namespace pkrt::mpi::detail
