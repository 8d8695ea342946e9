// pkrt/replay.hpp: differential replay of a recorded run (pkrt/replay_log.hpp).
//
// A replay recreates the recorded run from the log's metadata (same app, parameters and
// actors; backend, thread count and chaos seed as the caller chooses), or from a checkpoint
// plus the log's records after it. It re-injects every recorded command with apply_epoch
// set to the epoch at which the original run applied it (the epoch of its acknowledgement,
// reply or error on K2H), so host timing cannot change the result. It records its own K2H
// stream into a second log and compares the two.
//
// What is compared (the observable stream): every K2H slot an actor or a command produced,
// i.e. acknowledgements, replies and errors of the re-injected commands, events the actors
// emitted, and state digests (RuntimeOptions::digest_period). Field by field: epoch, actor,
// opcode, flags, request (mapped to the recorded run's ids) and the 32 data bytes. Not
// compared: wall-clock fields (record time), placement (block, ring position: they follow
// the thread count), host-timing facts (epoch_observed), and the runtime's own traffic
// (park/resume/stop reports, snapshot and staging commands and their answers).
// Observations are ordered by (epoch, actor), keeping the order each actor produced them;
// the first difference in that order is the reported divergence. One rank of a multi-rank
// run replayed with its peers' inbound K2K logs (ReplayOptions::peer_k2k) also compares the
// K2K it sends them, epoch by epoch; a difference there at an earlier epoch than the first
// observation's is the reported divergence.
//
// A replay needs the whole observable stream after its start: a wrapped log is replayed
// only from a checkpoint at or after the first epoch it still fully covers. Logs with live
// restores (kOpRestoreActor) cannot be replayed: the restored image is not in the log.
//
// Thread safety: replay_log() runs one Runtime; concurrent calls are independent.
// Host only.
#pragma once

#include <pkrt/k2k_transfer.hpp>
#include <pkrt/program.hpp>
#include <pkrt/replay_log.hpp>
#include <pkrt/runtime.hpp>
#include <pkrt/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace pkrt {

// The most actors a recorded run can have: Runtime::create's own limit. A log claiming more
// is refused before anything walks its actors.
inline constexpr std::uint32_t kReplayMaxActors = 1u << 24;

// Hash of what determines a run's behaviour apart from its commands: the app's name and
// layout (State size, named regions, K2K channels and payload, global region), its params
// bytes, the actor count, the digest period and the K2K delay (hashed only when not 1, so
// older logs keep their hash). Not the backend or the thread count. It lays the app out, so
// params must have passed the program's check_params (replay_log() checks a log's first).
std::uint64_t replay_config_hash(const Program& program, std::span<const std::byte> params,
                                 std::uint32_t num_actors, std::uint32_t digest_period,
                                 std::uint32_t k2k_delay = 1);

// Whether a K2H slot belongs to the observable stream (see the contract above).
bool replay_observable(const Slot& slot);

struct ReplayDivergence {
  enum class Kind {
    kDiffers,     // both runs produced an observation here, with different values
    kMissing,     // the recorded run has an observation the replay did not produce
    kUnexpected,  // the replay produced an observation the recorded run did not
    // One rank replayed alone with its peers' inbound K2K logs (ReplayOptions::peer_k2k): a
    // K2K message it sent differs from what the receiving rank recorded, or one side has a
    // message the other has not (field: "payload", "not sent" or "not received").
    kK2KSent,
  };
  Kind kind = Kind::kDiffers;
  std::uint64_t epoch = 0;
  std::uint32_t actor = kNoActor;  // the runtime's actor index (a rank's local index)
  // For one rank of a multi-rank run: the actor's global id (kNoActor otherwise, or when the
  // observation is not an actor's).
  std::uint32_t global_actor = kNoActor;
  std::uint16_t opcode = 0;
  std::string field;  // first differing field: "epoch", "actor", "opcode", "flags", "request", "data"
  std::optional<ReplayRecord> expected;  // the recorded observation
  std::optional<ReplayRecord> actual;    // the replay's observation
  std::uint64_t index = 0;               // position in the ordered observable stream
  // The last recorded commands applied at or before the divergent epoch (oldest first),
  // with the epoch each was applied at.
  struct Command {
    ReplayRecord record;
    std::uint64_t applied_epoch = 0;
  };
  std::vector<Command> preceding_commands;
  // kK2KSent: the message as the receiving rank recorded it (expected) and as the replay sent
  // it (actual); one of them is absent when only one side has it. actor / global_actor name
  // the sender.
  struct K2KMessage {
    std::uint32_t rank = 0;  // the receiving rank
    K2KTransfer transfer;
    std::vector<std::byte> payload;
  };
  std::optional<K2KMessage> expected_k2k;
  std::optional<K2KMessage> actual_k2k;
};

const char* replay_divergence_kind_name(ReplayDivergence::Kind kind);

// The comparison of two observable streams.
struct ReplayComparison {
  std::uint64_t compared = 0;  // observations that matched before the first divergence
  std::optional<ReplayDivergence> divergence;
};

// Compares the observable streams of `expected` and `actual` over epochs (after, through].
// `request_map` maps the actual run's request ids to the expected run's (ids not in it
// compare as themselves). Pure; no runtime needed.
ReplayComparison compare_replay_logs(const ReplayLog& expected, const ReplayLog& actual,
                                     std::uint64_t after_epoch, std::uint64_t through_epoch,
                                     const std::vector<std::pair<std::uint64_t, std::uint64_t>>& request_map,
                                     std::size_t context_commands = 5);

struct ReplayOptions {
  BackendKind backend = BackendKind::kCpu;
  std::uint32_t threads = 0;      // CPU workers; 0: as many blocks as the recorded run had
  bool chaos = false;             // CPU chaos mode for the replay (pkrt/runtime.hpp)
  std::uint64_t chaos_seed = 0;
  // A checkpoint directory (pkrt/checkpoint_store.hpp): start from its newest committed set
  // (pkrt/checkpoint_set.hpp, newest by sequence) at or before the log's horizon instead of
  // from the log's start. The set's fingerprint must match the replay's runtime (app,
  // program version, actors, params, chunk size, image layout; refused naming the field
  // otherwise); its run inputs are not compared (the log re-injects the commands). Newer
  // sets passed over as damaged are listed in ReplayResult::notes.
  std::string from_checkpoint;
  // Where the replay records its own log; empty: an unlinked temporary file.
  std::string record_to;
  std::size_t context_commands = 5;  // commands listed before a divergence
  // The inbound K2K log recorded beside a multi-rank run's rank log (pkrt/k2k_log.hpp; `pkrt
  // replay` uses k2k_log_path(LOG) when it exists). Needed for such a log: the rank is
  // replayed alone, its shard runtime receiving exactly the K2K the recording received.
  std::string inbound_k2k;
  // With inbound_k2k: other ranks' inbound K2K logs of the same recording (`pkrt replay`
  // passes every FILE.rank<p>.k2k beside FILE.rank<r>). What the replayed rank sends them each
  // epoch is then compared with what they logged receiving from it, and the first difference
  // is a divergence (kK2KSent) at the epoch it was sent. A log that cannot be read or is not
  // of this recording (its run id, shape or rank) is left out with a note in
  // ReplayResult::notes. Without them, what the rank sends is not checked: a rank whose state
  // stays right but whose messages go wrong would replay identical alone (its receivers, fed
  // from their own logs, would too).
  std::vector<std::string> peer_k2k;
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};
  // Called from the caller's thread while commands are fed: (epoch reached, end epoch).
  std::function<void(std::uint64_t, std::uint64_t)> progress;
};

struct ReplayResult {
  bool identical = false;
  std::string app;
  std::uint64_t start_epoch = 0;  // the replay started after this epoch (log start or checkpoint)
  std::uint64_t end_epoch = 0;    // and compared through this one (the log's horizon)
  bool from_checkpoint = false;
  std::uint64_t commands_injected = 0;
  std::uint64_t observations_compared = 0;  // matching observations before any divergence
  std::uint64_t k2k_sent_compared = 0;      // K2K messages sent that matched the peers' logs
  std::string recorded_run;  // e.g. "cpu, 2 blocks, chaos seed 7"
  std::string replay_run;    // e.g. "cpu (3 worker threads), chaos seed 9"
  std::vector<std::string> notes;  // what the reader noted (torn tail, wrap) and what was skipped
  // One rank of a multi-rank run (its inbound K2K log says which): the rank and the run's rank count.
  std::optional<std::uint32_t> rank;
  std::uint32_t ranks = 0;
  std::optional<ReplayDivergence> divergence;
};

// Replays `log` with the program of the app it recorded, found by name in `programs`
// (an application passes its own; the pkrt CLI passes its built-in examples).
// Errors mean the input cannot be replayed (exit 2 in the CLI): unknown app, parameters or
// layout that do not match this binary's actors, a wrapped log without a covering
// checkpoint, a checkpoint that does not fit, a log no run can have written (kCorruptData:
// e.g. an acknowledgement of more commands than the log recorded, or a record later than
// the grid's stop report), or a runtime failure. A divergence is not an error: it is in
// the result. Work is bounded by the records the log holds, not by counts it claims.
Result<ReplayResult> replay_log(const ReplayLog& log, std::span<const Program* const> programs,
                                const ReplayOptions& options);

// Human-readable report: what `pkrt replay` prints (its --json form is built by the CLI).
std::string format_replay_report(const ReplayResult& result);
// One record on one line: direction, block, epoch, actor, opcode (named when pkrt's own),
// flags, request and the data bytes (a digest shows its CRC).
std::string format_replay_record(const ReplayRecord& record);
std::string replay_opcode_name(std::uint16_t opcode);

}  // namespace pkrt
