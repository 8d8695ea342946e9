// replay/replayer.cpp: differential replay (pkrt/replay.hpp): re-run a recorded log's
// commands at the epochs they were applied, record the new K2H stream, diff the two.
#include <pkrt/replay.hpp>

#include <pkrt/checkpoint_manager.hpp>
#include <pkrt/checkpoint_store.hpp>
#include <pkrt/global_checkpoint.hpp>
#include <pkrt/k2k_log.hpp>

#include "replay/sent_k2k_check.hpp"

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unistd.h>
#include <unordered_map>

namespace pkrt {
namespace {

// FNV-1a, 64-bit: stable across builds and platforms (the hash is stored in logs).
class ConfigHasher {
 public:
  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001B3ull;
    }
  }
  void u64(std::uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    bytes(b, 8);
  }
  void str(const char* s) {
    const std::size_t n = s == nullptr ? 0 : std::strlen(s);
    u64(n);
    bytes(s, n);
  }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 0xCBF29CE484222325ull;
};

bool is_infrastructure_command(std::uint16_t opcode) {
  return opcode == kOpSnapshotActor || opcode == kOpReleaseStaging || opcode == kOpRestoreActor;
}

std::uint16_t data_u16(const Slot& s, std::size_t offset) {
  std::uint16_t v;
  std::memcpy(&v, s.payload.data + offset, sizeof v);
  return v;
}

bool is_completion(const Slot& s) { return (s.header.flags & kFlagReply) != 0 && s.payload.request != 0; }

// Observable K2H records of `log` in (after, through], ordered by (epoch, actor), each
// actor's observations in the order it produced them (log order within one ring).
std::vector<const ReplayRecord*> observations(const ReplayLog& log, std::uint64_t after, std::uint64_t through) {
  std::vector<const ReplayRecord*> out;
  for (const ReplayRecord& r : log.records) {
    if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kK2H)) continue;
    if (r.slot.payload.epoch <= after || r.slot.payload.epoch > through) continue;
    if (!replay_observable(r.slot)) continue;
    out.push_back(&r);
  }
  std::stable_sort(out.begin(), out.end(), [](const ReplayRecord* a, const ReplayRecord* b) {
    if (a->slot.payload.epoch != b->slot.payload.epoch) return a->slot.payload.epoch < b->slot.payload.epoch;
    return a->slot.header.actor < b->slot.header.actor;
  });
  return out;
}

// A recorded command with the epoch at which the recorded run applied it.
struct AppliedCommand {
  const ReplayRecord* record;
  std::uint64_t applied_epoch;
  std::uint64_t completion_index;  // position of its completion in the log
};

// The requests a K2H record completes, [first, first + count): its own (a reply or error),
// or every request of a kOpAckRange. count 0: none. The span never wraps past 2^64 - 1.
struct RequestSpan {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  std::uint64_t last() const { return first + (count - 1); }
};

RequestSpan completed_span(const ReplayRecord& r) {
  if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kK2H)) return {};
  if (r.slot.header.opcode == kOpAckRange) {
    AckRangeData range;
    std::memcpy(&range, r.slot.payload.data, sizeof range);
    RequestSpan s{range.first_request, range.count};
    const std::uint64_t room = ~std::uint64_t{0} - s.first;  // requests after `first`
    if (s.count != 0 && s.count - 1 > room) s.count = room + 1;
    return s;
  }
  if (is_completion(r.slot)) return {r.slot.payload.request, 1};
  return {};
}

// The request ids of the commands (H2K records) the log holds, sorted, each once. A
// command's record is appended before the kernel can see the command (host/send_path.cpp),
// so every request a kept acknowledgement completes is in here unless the log lost it when
// it wrapped: work over an acknowledgement is bounded by this list, never by the count the
// acknowledgement claims (a crafted kOpAckRange may claim 2^32 - 1).
std::vector<std::uint64_t> held_requests(const ReplayLog& log) {
  std::vector<std::uint64_t> ids;
  for (const ReplayRecord& r : log.records)
    if (r.direction == static_cast<std::uint8_t>(ReplayDirection::kH2K)) ids.push_back(r.slot.payload.request);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// The positions in `held` of the requests in `span`: [begin, end).
std::pair<std::size_t, std::size_t> held_in(const std::vector<std::uint64_t>& held, const RequestSpan& span) {
  if (span.count == 0) return {0, 0};
  const auto lo = std::lower_bound(held.begin(), held.end(), span.first);
  const auto hi = std::upper_bound(lo, held.end(), span.last());
  return {static_cast<std::size_t>(lo - held.begin()), static_cast<std::size_t>(hi - held.begin())};
}

// The first request of `span` that `held` lacks, if any: a walk over the held requests in
// it, never over the span.
std::optional<std::uint64_t> first_unheld(const std::vector<std::uint64_t>& held, const RequestSpan& span) {
  const auto [begin, end] = held_in(held, span);
  if (end - begin == span.count) return std::nullopt;
  std::uint64_t expected = span.first;
  for (std::size_t i = begin; i < end && held[i] == expected; ++i) ++expected;
  return expected;
}

// Every non-infrastructure H2K command of `log` that has a completion, in application
// order: (applied epoch, completion order). A request's first completion counts. Each
// completion only visits held requests it has not matched yet (a skip list over `held`),
// so the work is bounded by the records, whatever the ranges claim or how they overlap.
std::vector<AppliedCommand> applied_commands(const ReplayLog& log) {
  const std::vector<std::uint64_t> held = held_requests(log);
  std::vector<std::size_t> next(held.size() + 1);  // next unmatched position at or after i
  for (std::size_t i = 0; i < next.size(); ++i) next[i] = i;
  auto unmatched = [&next](std::size_t i) {
    while (next[i] != i) {
      next[i] = next[next[i]];
      i = next[i];
    }
    return i;
  };
  std::vector<std::pair<std::uint64_t, std::uint64_t>> completion(held.size());  // (epoch, index)
  std::vector<bool> completed(held.size(), false);
  std::uint64_t index = 0;  // completion order: records in log order, a range's requests in theirs
  for (const ReplayRecord& r : log.records) {
    const auto [begin, end] = held_in(held, completed_span(r));
    for (std::size_t i = unmatched(begin); i < end; i = unmatched(i + 1)) {
      completion[i] = {r.slot.payload.epoch, index++};
      completed[i] = true;
      next[i] = i + 1;
    }
  }
  std::vector<AppliedCommand> out;
  for (const ReplayRecord& r : log.records) {
    if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kH2K)) continue;
    if (is_infrastructure_command(r.slot.header.opcode) || r.slot.payload.request == 0) continue;
    const std::size_t i = static_cast<std::size_t>(
        std::lower_bound(held.begin(), held.end(), r.slot.payload.request) - held.begin());
    if (!completed[i]) continue;
    out.push_back({&r, completion[i].first, completion[i].second});
  }
  std::sort(out.begin(), out.end(), [](const AppliedCommand& a, const AppliedCommand& b) {
    return a.applied_epoch != b.applied_epoch ? a.applied_epoch < b.applied_epoch
                                              : a.completion_index < b.completion_index;
  });
  return out;
}

std::string hex(std::uint64_t v, int width = 0) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*" PRIx64, width, v);
  return buf;
}

std::string describe_run(const ReplayRunInfo& info) {
  std::string s = info.backend + ", " + std::to_string(info.blocks) + " block" + (info.blocks == 1 ? "" : "s");
  if (info.chaos) s += ", chaos seed " + std::to_string(info.chaos_seed);
  return s;
}

// The first epoch after which a wrapped log still holds every K2H slot, or nullopt when the
// kept records cannot bound what was lost.
// - Per ring: a ring's epochs never decrease, so if its oldest kept slot is not its first,
//   its lost slots are of epochs up to that slot's epoch.
// - Rings with no kept slot at all (a quiet block) are bounded through the pump's labels:
//   K2H records carry the horizon the pump had read one pass before appending them, and the
//   labels only grow. A record whose label is the second increase after the oldest kept
//   record's label was appended at least two passes later, so its label was read after
//   every lost slot was appended, when every block had completed all but the epoch it was
//   in: lost slots are of epochs up to that label + 1.
std::optional<std::uint64_t> covered_from(const ReplayLog& log) {
  std::uint64_t from = log.info.start_epoch;
  if (!log.wrapped) return from;
  std::map<std::uint32_t, bool> seen;
  std::optional<std::uint64_t> first_label, second_label, third_label;
  for (const ReplayRecord& r : log.records) {
    if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kK2H)) continue;
    if (!first_label) {
      first_label = r.epoch_observed;
    } else if (!second_label && r.epoch_observed > *first_label) {
      second_label = r.epoch_observed;
    } else if (second_label && !third_label && r.epoch_observed > *second_label) {
      third_label = r.epoch_observed;
    }
    if (seen[r.block]) continue;
    seen[r.block] = true;
    if (r.slot.header.seq > 1) from = std::max(from, r.slot.payload.epoch);
  }
  if (!third_label) return std::nullopt;
  return std::max(from, *third_label + 1);
}

std::uint64_t next_pow2(std::uint64_t v) {
  std::uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

Status crafted(const ReplayRecord& r, const std::string& what) {
  return Status(StatusCode::kCorruptData,
                "record " + std::to_string(r.seq) + " (" + format_replay_record(r) + ") " + what +
                    ": the log is crafted or damaged. Fix: replay a log written by `pkrt run --replay-log`");
}

// An acknowledgement covers only commands the log recorded before it (a command's record is
// appended before the kernel can see the command), and the only commands a log can lack are
// the first_seq oldest records it lost when it wrapped (its records are contiguous from
// there). So a kOpAckRange may name at most first_seq requests the log does not hold; one
// that names more (e.g. count = 2^32 - 1) cannot come from a run, and is refused here, before
// anything walks it. (The walks are bounded by the held requests anyway: held_in.)
Status check_acknowledgements(const ReplayLog& log) {
  const std::vector<std::uint64_t> held = held_requests(log);
  for (const ReplayRecord& r : log.records) {
    if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kK2H) || r.slot.header.opcode != kOpAckRange)
      continue;
    const RequestSpan span = completed_span(r);
    const auto [begin, end] = held_in(held, span);
    const std::uint64_t missing = span.count - (end - begin);
    if (missing > log.first_seq) {
      return crafted(r, "acknowledges " + std::to_string(span.count) + " requests, but the log holds only " +
                            std::to_string(end - begin) + " of those commands" +
                            (log.first_seq == 0 ? std::string(" and never wrapped")
                                                : " and lost only " + std::to_string(log.first_seq) +
                                                      " records when it wrapped") +
                            "; an acknowledgement covers only commands recorded before it");
    }
  }
  return Status();
}

// The grid's kOpStopped (block 0's last report, published when the kernel exits at its
// final epoch F, after every block passed the last barrier) bounds every K2H slot of the
// run: no block steps past F. A record of a later epoch cannot come from the run, and would
// have the replay drive its grid toward it (a crafted epoch near 2^62 runs until the
// timeout): it is refused. One epoch of slack is allowed, so that this can never refuse a log
// pkrt wrote. Without a stop report (a run that crashed), the epochs are bounded by the
// header's complete_epoch and the newest K2H record only (see replay_log): a log crafted
// whole can still claim a long quiet run, which ReplayOptions::timeout bounds.
Status check_epochs_against_stop(const ReplayLog& log) {
  const ReplayRecord* stop = nullptr;
  for (const ReplayRecord& r : log.records)
    if (r.direction == static_cast<std::uint8_t>(ReplayDirection::kK2H) && r.slot.header.opcode == kOpStopped) stop = &r;
  if (stop == nullptr) return Status();
  const std::uint64_t final_epoch = stop->slot.payload.epoch;
  for (const ReplayRecord& r : log.records) {
    if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kK2H)) continue;
    if (r.slot.payload.epoch > final_epoch && r.slot.payload.epoch - final_epoch > 1) {
      return crafted(r, "is of epoch " + std::to_string(r.slot.payload.epoch) + ", but the grid's stop report (record " +
                            std::to_string(stop->seq) + ") says the run ended at epoch " +
                            std::to_string(final_epoch) + ", and no slot of a run is later than its end");
    }
  }
  return Status();
}

// A single runtime's replay from a checkpoint set: the newest committed set with at least one
// complete epoch of the log (through `end`) after it; when every set is past the log's
// horizon, that is said.
Result<RestorePoint> find_set_restore_point(const std::string& directory, const Runtime& rt, const std::string& app,
                                            std::uint64_t end) {
  auto store = FileCheckpointStore::open_existing(directory);
  if (!store.ok()) return store.status();
  RestoreQuery query;
  query.fingerprint = checkpoint_fingerprint(rt);
  query.match_inputs = false;  // the log re-injects the recorded commands itself
  query.max_epoch = end > 0 ? end - 1 : 0;
  auto found = find_restore_point(*store.value(), query);
  if (found.ok()) return found;
  std::optional<std::uint64_t> newest_past;
  bool any_within = false;
  if (auto sets = scan_checkpoint_sets(*store.value()); sets.ok()) {
    for (const CheckpointSetRecord& set : sets.value()) {
      if (!set.status.ok() || set.manifest.fingerprint.app != app) continue;
      if (set.manifest.epoch >= end) newest_past = std::max(newest_past.value_or(0), set.manifest.epoch);
      else any_within = true;
    }
  }
  if (newest_past && !any_within) {
    return Status(StatusCode::kFailedPrecondition,
                  "its newest checkpoint (epoch " + std::to_string(*newest_past) +
                      ") is at or past the log's last complete epoch " + std::to_string(end) +
                      " and none lies within the log (" + found.status().message() +
                      "). Fix: keep older checkpoints or record a longer log");
  }
  return found.status();
}

// One rank of a multi-rank run, replayed from a global checkpoint: the newest committed one
// at or before `max_epoch` (and not before `min_epoch`), its images read for the shard's
// actors whatever rank count wrote it. Newer ones that cannot be read are passed over and
// listed in `skipped`. The queued commands are not read: the log re-injects every command.
Result<RestorePoint> find_global_restore_point(const std::string& directory, const Runtime& rt,
                                               const K2KLogShard& shard, std::uint64_t min_epoch,
                                               std::uint64_t max_epoch) {
  // list_global_checkpoints reads a missing directory as one without checkpoints; here it is a
  // wrong path.
  if (auto dir = FileCheckpointStore::open_existing(directory); !dir.ok()) return dir.status();
  auto globals = list_global_checkpoints(directory, rt.program().name);
  if (!globals.ok()) return globals.status();
  GlobalRestoreRequest request;
  request.app = rt.program().name;
  request.params = rt.params();
  request.global_actors = shard.global_actors;
  request.k2k_delay = shard.k2k_delay;
  request.image_bytes = rt.image_layout().image_bytes;
  request.chunk_bytes = rt.image_layout().chunk_bytes;
  request.global_ids = shard.global_ids;
  request.queued_commands = false;
  RestorePoint point;
  std::optional<std::uint64_t> newest_past;
  for (auto it = globals.value().rbegin(); it != globals.value().rend(); ++it) {
    const GlobalCheckpointManifest& g = it->second;
    if (g.epoch > max_epoch) {
      newest_past = std::max(newest_past.value_or(0), g.epoch);
      continue;
    }
    if (g.epoch < min_epoch) continue;
    auto read = read_global_checkpoint(directory, it->first, request);
    if (!read.ok()) {
      // A mismatch (another program or layout) is the caller's to fix, not a damaged file.
      if (read.status().code() == StatusCode::kInvalidArgument) return read.status();
      point.skipped.push_back("global checkpoint " + it->first + " (" + read.status().message() + ")");
      continue;
    }
    point.epoch = read->epoch;
    point.manifest = it->first;
    point.sequence = g.sequence;
    point.images = std::move(read->images);
    return point;
  }
  if (newest_past) {
    return Status(StatusCode::kFailedPrecondition,
                  "its newest global checkpoint (epoch " + std::to_string(*newest_past) +
                      ") is at or past the log's last complete epoch " + std::to_string(max_epoch + 1) +
                      " and none lies within the log. Fix: keep older checkpoints or record a longer log");
  }
  return Status(StatusCode::kNotFound,
                "no committed global checkpoint of '" + std::string(rt.program().name) + "' between epochs " +
                    std::to_string(min_epoch) + " and " + std::to_string(max_epoch) + " in " + directory + " (" +
                    std::to_string(globals.value().size()) + " committed in all" +
                    (point.skipped.empty() ? std::string() : ", " + std::to_string(point.skipped.size()) + " unreadable") +
                    "). Fix: `pkrt checkpoint list " + directory + "` shows them");
}

}  // namespace

std::uint64_t replay_config_hash(const Program& program, std::span<const std::byte> params,
                                 std::uint32_t num_actors, std::uint32_t digest_period,
                                 std::uint32_t k2k_delay) {
  ConfigHasher h;
  h.str(program.name);
  h.u64(params.size());
  h.bytes(params.data(), params.size());
  h.u64(num_actors);
  h.u64(digest_period);
  if (k2k_delay != 1) h.u64(k2k_delay);
  if (params.size() == program.params_bytes) {
    const ProgramLayout lay = program.layout(params.data(), num_actors);
    h.u64(lay.state_bytes);
    h.u64(lay.region_count);
    for (std::uint32_t r = 0; r < lay.region_count && r < detail::kMaxRegions; ++r) {
      h.str(lay.region_names[r]);
      h.u64(lay.region_bytes[r]);
    }
    h.u64(lay.k2k_channels);
    h.u64(lay.k2k_payload_bytes);
    h.u64(lay.global_bytes);
  }
  return h.value();
}

bool replay_observable(const Slot& slot) {
  switch (slot.header.opcode) {
    case kOpPaused:
    case kOpResumed:
    case kOpStopped:
    case kOpSnapshotReady:
    case kOpQueuedCommands:  // snapshots belong to the recording process, not the run's history
    case kOpAckRange:  // how acknowledgements group follows blocks and timing; each command's
                       // applied epoch is what the replay re-injects at
      return false;
    case kOpAck:  // acknowledgements are not compared (in version 2 logs commands sent or
                  // posted are acknowledged in kOpAckRange runs instead; a version 1 log's
                  // kOpAck would then have nothing to match): their applied epochs drive the
                  // re-injection, and a command that failed instead shows as its kOpError
      return false;
    case kOpError:  // ErrorData::opcode at byte 2
      return !is_infrastructure_command(data_u16(slot, 2));
    default:
      return true;
  }
}

const char* replay_divergence_kind_name(ReplayDivergence::Kind kind) {
  switch (kind) {
    case ReplayDivergence::Kind::kDiffers: return "differs";
    case ReplayDivergence::Kind::kMissing: return "missing";
    case ReplayDivergence::Kind::kUnexpected: return "unexpected";
    case ReplayDivergence::Kind::kK2KSent: return "k2k_sent";
  }
  return "unknown";
}

std::string replay_opcode_name(std::uint16_t opcode) {
  switch (opcode) {
    case kOpNop: return "nop";
    case kOpPing: return "ping";
    case kOpSnapshotActor: return "snapshot_actor";
    case kOpReleaseStaging: return "release_staging";
    case kOpRestoreActor: return "restore_actor";
    case kOpAck: return "ack";
    case kOpError: return "error";
    case kOpReply: return "reply";
    case kOpPaused: return "paused";
    case kOpResumed: return "resumed";
    case kOpStopped: return "stopped";
    case kOpEvent: return "event";
    case kOpSnapshotReady: return "snapshot_ready";
    case kOpQueuedCommands: return "queued_commands";
    case kOpDigest: return "digest";
    case kOpAckRange: return "ack_range";
    default: break;
  }
  return opcode >= kUserOpcodeBase ? "app+" + hex(opcode - kUserOpcodeBase) : hex(opcode, 4);
}

std::string format_replay_record(const ReplayRecord& r) {
  const Slot& s = r.slot;
  const bool h2k = r.direction == static_cast<std::uint8_t>(ReplayDirection::kH2K);
  std::string out = replay_direction_name(static_cast<ReplayDirection>(r.direction));
  out += (h2k ? " apply_epoch " : " epoch ") + std::to_string(s.payload.epoch) + " actor ";
  out += s.header.actor == kNoActor ? std::string("-") : std::to_string(s.header.actor);
  out += " block " + std::to_string(r.block) + " " + replay_opcode_name(s.header.opcode);
  if (s.header.flags != 0) out += " flags " + hex(s.header.flags) + ((s.header.flags & kFlagPost) != 0 && h2k ? " (post)" : "");
  if (s.payload.request != 0) out += " request " + std::to_string(s.payload.request);
  if (s.header.opcode == kOpDigest) {
    DigestData d;
    std::memcpy(&d, s.payload.data, sizeof d);
    out += " crc " + hex(d.crc, 8) + " over " + std::to_string(d.bytes) + " bytes";
  } else if (s.header.opcode == kOpAckRange) {
    AckRangeData range;
    std::memcpy(&range, s.payload.data, sizeof range);
    out += " requests " + std::to_string(range.first_request) + ".." +
           std::to_string(range.first_request + range.count - 1) + " (" + std::to_string(range.count) + ")";
  } else if (s.header.opcode == kOpAck || s.header.opcode == kOpError) {
    const std::uint16_t of = data_u16(s, s.header.opcode == kOpAck ? 0 : 2);
    out += " (of " + replay_opcode_name(of) + ")";
    if (s.header.opcode == kOpError)
      out += std::string(" code ") + status_code_name(static_cast<StatusCode>(data_u16(s, 0)));
  } else {
    out += " data";
    for (std::size_t i = 0; i < kEnvelopeDataBytes; i += 8) {
      std::uint64_t w;
      std::memcpy(&w, s.payload.data + i, 8);
      out += ' ';
      out += hex(w, 16);
    }
  }
  return out;
}

ReplayComparison compare_replay_logs(const ReplayLog& expected, const ReplayLog& actual,
                                     std::uint64_t after_epoch, std::uint64_t through_epoch,
                                     const std::vector<std::pair<std::uint64_t, std::uint64_t>>& request_map,
                                     std::size_t context_commands) {
  const auto exp = observations(expected, after_epoch, through_epoch);
  const auto act = observations(actual, after_epoch, through_epoch);
  std::unordered_map<std::uint64_t, std::uint64_t> to_expected(request_map.begin(), request_map.end());
  auto mapped = [&](std::uint64_t request) {
    auto it = to_expected.find(request);
    return it == to_expected.end() ? request : it->second;
  };

  ReplayComparison cmp;
  const std::size_t n = std::max(exp.size(), act.size());
  for (std::size_t i = 0; i < n; ++i) {
    const ReplayRecord* e = i < exp.size() ? exp[i] : nullptr;
    const ReplayRecord* a = i < act.size() ? act[i] : nullptr;
    std::string field;
    if (e != nullptr && a != nullptr) {
      const Slot& x = e->slot;
      const Slot& y = a->slot;
      if (x.payload.epoch != y.payload.epoch) field = "epoch";
      else if (x.header.actor != y.header.actor) field = "actor";
      else if (x.header.opcode != y.header.opcode) field = "opcode";
      else if (x.header.flags != y.header.flags) field = "flags";
      else if (x.payload.request != mapped(y.payload.request)) field = "request";
      else if (std::memcmp(x.payload.data, y.payload.data, kEnvelopeDataBytes) != 0) field = "data";
      if (field.empty()) {
        ++cmp.compared;
        continue;
      }
    }
    ReplayDivergence d;
    d.index = i;
    if (e != nullptr) d.expected = *e;
    if (a != nullptr) d.actual = *a;
    d.field = field;
    if (a == nullptr) {
      d.kind = ReplayDivergence::Kind::kMissing;
    } else if (e == nullptr) {
      d.kind = ReplayDivergence::Kind::kUnexpected;
    } else if (field == "epoch" || field == "actor") {
      // The streams are ordered by (epoch, actor): the side with the smaller key has an
      // observation the other lacks.
      const bool expected_first = std::make_pair(e->slot.payload.epoch, e->slot.header.actor) <
                                  std::make_pair(a->slot.payload.epoch, a->slot.header.actor);
      d.kind = expected_first ? ReplayDivergence::Kind::kMissing : ReplayDivergence::Kind::kUnexpected;
    } else {
      d.kind = ReplayDivergence::Kind::kDiffers;
    }
    const ReplayRecord& at = d.kind == ReplayDivergence::Kind::kUnexpected ? *a : *e;
    d.epoch = at.slot.payload.epoch;
    d.actor = at.slot.header.actor;
    d.opcode = at.slot.header.opcode;
    for (const AppliedCommand& c : applied_commands(expected)) {
      if (c.applied_epoch > d.epoch) break;
      d.preceding_commands.push_back({*c.record, c.applied_epoch});
    }
    if (d.preceding_commands.size() > context_commands) {
      d.preceding_commands.erase(d.preceding_commands.begin(),
                                 d.preceding_commands.end() - static_cast<std::ptrdiff_t>(context_commands));
    }
    cmp.divergence = std::move(d);
    break;
  }
  return cmp;
}

Result<ReplayResult> replay_log(const ReplayLog& log, std::span<const Program* const> programs,
                                const ReplayOptions& options) {
  const ReplayRunInfo& info = log.info;
  const Program* program = nullptr;
  std::string known;
  for (const Program* p : programs) {
    if (p->name == info.app) program = p;
    known += (known.empty() ? "" : ", ") + std::string(p->name);
  }
  if (program == nullptr) {
    return Status(StatusCode::kInvalidArgument,
                  "the log records app '" + info.app + "', which this binary does not register (it has: " +
                      known + "). Fix: replay it with the application's own binary, which passes its "
                      "programs to pkrt::replay_log");
  }
  if (info.params.size() != program->params_bytes) {
    return Status(StatusCode::kInvalidArgument,
                  "the log's parameters for app '" + info.app + "' are " + std::to_string(info.params.size()) +
                      " bytes; this binary's " + info.app + " takes " + std::to_string(program->params_bytes) +
                      ". The log was recorded by a different build of the app. Fix: replay with the binary "
                      "that recorded it (pkrt " + info.pkrt_version + ")");
  }
  // replay_config_hash() lays the app out, which visits every actor: a count no run can have
  // (the header is not proof against a crafted file) must be refused before that walk.
  if (info.num_actors == 0 || info.num_actors > kReplayMaxActors) {
    return Status(StatusCode::kCorruptData,
                  "the log's num_actors is " + std::to_string(info.num_actors) + ", but a pkrt run has 1.." +
                      std::to_string(kReplayMaxActors) + " actors: the log is crafted or damaged. Fix: replay "
                      "a log written by `pkrt run --replay-log`");
  }
  // A shard's log holds its share of the actors; the app's params describe the whole run.
  if (info.global_actors != 0 && (info.global_actors < info.num_actors || info.global_actors > kReplayMaxActors)) {
    return Status(StatusCode::kCorruptData,
                  "the log's global actor count is " + std::to_string(info.global_actors) + " for a shard of " +
                      std::to_string(info.num_actors) + " actors (a run has at most " +
                      std::to_string(kReplayMaxActors) + "): the log is crafted or damaged. Fix: replay a log "
                      "written by `pkrt run --replay-log`");
  }
  // The app's own check comes before anything lays it out: its layout code may divide by, or
  // loop over, parameters it relies on check_params to have bounded.
  if (program->check_params != nullptr) {
    const std::uint32_t run_actors = info.global_actors != 0 ? info.global_actors : info.num_actors;
    if (const char* problem = program->check_params(info.params.data(), run_actors)) {
      return Status(StatusCode::kCorruptData,
                    "the log's parameters for app '" + info.app + "' with " + std::to_string(run_actors) +
                        " actors are rejected by the app (" + problem + "), so no run recorded them: the log is "
                        "crafted or damaged. Fix: replay a log written by `pkrt run --replay-log`");
    }
  }
  const std::uint64_t hash = replay_config_hash(*program, info.params, info.num_actors, info.digest_period, info.k2k_delay);
  if (hash != info.config_hash) {
    return Status(StatusCode::kInvalidArgument,
                  "the log's configuration hash " + hex(info.config_hash, 16) + " does not match app '" +
                      info.app + "' in this binary (" + hex(hash, 16) + "): its state layout, regions, "
                      "channels or parameters differ from the recording's. Fix: replay with the binary that "
                      "recorded it (pkrt " + info.pkrt_version + ")");
  }
  for (const ReplayRecord& r : log.records) {
    if (r.direction == static_cast<std::uint8_t>(ReplayDirection::kH2K) && r.slot.header.opcode == kOpRestoreActor) {
      return Status(StatusCode::kUnsupported,
                    "the log contains a live restore of actor " + std::to_string(r.slot.header.actor) +
                        " (record " + std::to_string(r.seq) + "); the restored image is not in the log, so "
                        "the run cannot be replayed across it. Fix: replay from a checkpoint taken after it "
                        "(--from-checkpoint)");
    }
  }
  PKRT_RETURN_IF_ERROR(check_acknowledgements(log));
  PKRT_RETURN_IF_ERROR(check_epochs_against_stop(log));

  // One rank of a multi-rank run: replayed alone, its shard fed from the inbound K2K log.
  std::optional<K2KLog> inbound;
  if (info.global_actors != 0) {
    if (options.inbound_k2k.empty()) {
      return Status(StatusCode::kFailedPrecondition,
                    "the log is one rank's of a multi-rank run (" + std::to_string(info.num_actors) + " of " +
                        std::to_string(info.global_actors) + " actors): replaying it alone needs the K2K it received. "
                        "Fix: keep the '.k2k' file recorded beside it (pkrt replay finds LOG.k2k)");
    }
    auto read = read_k2k_log(options.inbound_k2k);
    if (!read.ok()) return read.status();
    const K2KLogShard& s = read->shard;
    if (s.global_actors != info.global_actors || s.global_ids.size() != info.num_actors || s.k2k_delay != info.k2k_delay) {
      return Status(StatusCode::kInvalidArgument,
                    "inbound K2K log '" + options.inbound_k2k + "' is of rank " + std::to_string(s.rank) + " with " +
                        std::to_string(s.global_ids.size()) + " of " + std::to_string(s.global_actors) +
                        " actors (delay " + std::to_string(s.k2k_delay) + "), not of this log's shard. Fix: pass the "
                        ".k2k file recorded beside this log");
    }
    // Epoch 0 is the first exchange of a run from its start (init's K2K), start + 1 that of a
    // run restored at `start`: a log that starts elsewhere would leave the replayed grid
    // waiting for an exchange that never comes. A run restored at epoch 0 also has start 0
    // (the replay log does not say it was restored): its K2K log, which records every
    // exchange from the first, starts at 1, and it replays only from its checkpoint.
    const bool restored_at_zero = info.start_epoch == 0 && !read->epochs.empty() && read->epochs.front().epoch == 1;
    if (restored_at_zero && options.from_checkpoint.empty()) {
      return Status(StatusCode::kFailedPrecondition,
                    "the recorded run was restored from a checkpoint at epoch 0 (its inbound K2K log '" +
                        options.inbound_k2k + "' starts at epoch 1), which the log does not hold. Fix: pass "
                        "--from-checkpoint DIR with that run's checkpoints");
    }
    const std::uint64_t first_exchange = info.start_epoch == 0 && !restored_at_zero ? 0 : info.start_epoch + 1;
    if (!read->epochs.empty() && read->epochs.front().epoch != first_exchange) {
      return Status(StatusCode::kCorruptData, "inbound K2K log '" + options.inbound_k2k + "' starts at epoch " +
                                                  std::to_string(read->epochs.front().epoch) + ", not " +
                                                  std::to_string(first_exchange) +
                                                  ". Fix: pass the .k2k file recorded beside this log");
    }
    // Every message must be deliverable to this shard (else the replay would wait for ever).
    for (const K2KLogEpoch& e : read->epochs) {
      for (const K2KTransfer& t : e.messages) {
        if (t.epoch != e.epoch || !std::binary_search(s.global_ids.begin(), s.global_ids.end(), t.dst)) {
          return Status(StatusCode::kCorruptData, "inbound K2K log '" + options.inbound_k2k + "' holds a message to actor " +
                                                      std::to_string(t.dst) + " at epoch " + std::to_string(e.epoch) +
                                                      " that this shard cannot receive. Fix: pass the .k2k file recorded "
                                                      "beside this log");
        }
      }
    }
    inbound = std::move(read.value());
  }
  // The other ranks' inbound logs: what this rank sends them is checked against them. The
  // check is an extra: a peer log that cannot be read or is not of this recording is left
  // out, with a note, and the rank replays all the same.
  std::optional<detail::SentK2KCheck> sent_check;
  std::vector<std::string> peer_notes;
  if (!options.peer_k2k.empty()) {
    if (!inbound) {
      return Status(StatusCode::kInvalidArgument,
                    "peer K2K logs were given, but the log is not one rank's of a multi-rank run. Fix: pass them only "
                    "with a rank's log (and its inbound K2K log)");
    }
    std::vector<K2KLog> peers;
    std::vector<std::string> names;
    for (const std::string& path : options.peer_k2k) {
      auto read = read_k2k_log(path);
      if (!read.ok()) {
        peer_notes.push_back("what this rank sent is not checked against '" + path + "': " + read.status().message());
        continue;
      }
      if (!read->stop_note.empty()) peer_notes.push_back("peer K2K log '" + path + "': " + read->stop_note);
      peers.push_back(std::move(read.value()));
      names.push_back(path);
    }
    sent_check = detail::SentK2KCheck::create(inbound->shard, std::move(peers), names, peer_notes);
    if (sent_check->empty()) sent_check.reset();
  }

  ReplayResult result;
  result.app = info.app;
  result.recorded_run = describe_run(info);
  if (inbound) {
    result.recorded_run += ", rank " + std::to_string(inbound->shard.rank) + " of " + std::to_string(inbound->shard.ranks) +
                           " (replayed alone)";
    if (!inbound->stop_note.empty()) result.notes.push_back("inbound K2K log: " + inbound->stop_note);
  }
  if (!log.stop_note.empty()) result.notes.push_back("log: " + log.stop_note);
  if (log.wrapped) {
    result.notes.push_back("log wrapped: " + std::to_string(log.written - log.capacity) +
                           " oldest records were overwritten; it keeps records " + std::to_string(log.first_seq) +
                           ".." + std::to_string(log.written - 1));
  }
  std::uint64_t end = log.complete_epoch;
  // The grid is run to `end`, so it must not come from the header's counter alone (a crafted
  // one would run it for years): it is bounded by the newest epoch the K2H records reach. A
  // run's last records are its grid's park or stop reports at its final epoch, so a log pkrt
  // wrote loses nothing by this.
  std::uint64_t newest_k2h = info.start_epoch;
  for (const ReplayRecord& r : log.records)
    if (r.direction == static_cast<std::uint8_t>(ReplayDirection::kK2H)) newest_k2h = std::max(newest_k2h, r.slot.payload.epoch);
  if (end > newest_k2h) {
    result.notes.push_back("the header's complete_epoch is " + std::to_string(end) +
                           ", but the newest K2H record is of epoch " + std::to_string(newest_k2h) +
                           "; compared only through epoch " + std::to_string(newest_k2h));
    end = newest_k2h;
  }
  if (log.records.size() < log.written - log.first_seq) {
    // The log ends early (torn or damaged): the stream is known complete only through the
    // epoch the last intact record says had been drained when it was appended.
    end = std::min(end, log.records.empty() ? info.start_epoch : log.records.back().epoch_observed);
    result.notes.push_back("the readable log ends at record " + std::to_string(log.first_seq + log.records.size()) +
                           "; compared only through epoch " + std::to_string(end) +
                           ", the last one complete before it");
  }
  if (inbound) {
    // The grid parks at an epoch only once that epoch's exchange is in: the last logged
    // exchange bounds the replay.
    if (inbound->epochs.empty()) {
      return Status(StatusCode::kFailedPrecondition, "inbound K2K log '" + options.inbound_k2k +
                                                         "' holds no epoch: nothing of this rank can be replayed. Fix: "
                                                         "record a run that reaches its first exchange");
    }
    const std::uint64_t runnable = inbound->epochs.back().epoch;
    if (runnable < end) {
      result.notes.push_back("the inbound K2K log reaches epoch " + std::to_string(runnable) +
                             "; compared only through it");
      end = runnable;
    }
  }
  const std::optional<std::uint64_t> coverage = covered_from(log);
  if (!coverage) {
    return Status(StatusCode::kFailedPrecondition,
                  "the log wrapped and what it kept is too short to tell which epochs it still holds "
                  "completely. Fix: record with a larger --replay-log-capacity");
  }
  const std::uint64_t covered = *coverage;
  if (info.start_epoch != 0 && options.from_checkpoint.empty()) {
    return Status(StatusCode::kFailedPrecondition,
                  "the recorded run started from a checkpoint at epoch " + std::to_string(info.start_epoch) +
                      ", which the log does not hold. Fix: pass --from-checkpoint DIR with that run's "
                      "checkpoints");
  }

  // Every recorded command and the epoch it was applied at. The rings are sized for the
  // busiest epoch after the log's start: a checkpoint only drops epochs from that.
  const std::vector<AppliedCommand> applied = applied_commands(log);
  std::uint64_t busiest = 0;
  {
    std::map<std::uint64_t, std::uint64_t> per_epoch;
    for (const AppliedCommand& c : applied)
      if (c.applied_epoch > info.start_epoch && c.applied_epoch <= end) busiest = std::max(busiest, ++per_epoch[c.applied_epoch]);
  }

  RuntimeOptions ro;
  ro.backend = options.backend;
  ro.num_actors = info.num_actors;
  ro.threads = options.threads != 0 ? options.threads : info.blocks;
  ro.digest_period = info.digest_period;
  ro.k2k_delay = info.k2k_delay;
  if (inbound) {
    ro.global_actors = inbound->shard.global_actors;
    ro.global_ids = inbound->shard.global_ids;
  }
  ro.chaos = options.chaos;
  ro.chaos_seed = options.chaos_seed;
  ro.snapshots = false;
  ro.ring_capacity = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(kMaxRingCapacity, std::max<std::uint64_t>(info.ring_capacity, next_pow2(busiest + 1))));

  // The replay's own log.
  std::string record_path = options.record_to;
  bool temporary = false;
  if (record_path.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    static std::atomic<std::uint64_t> counter{0};
    // Relaxed: only uniqueness matters.
    record_path = dir + "/pkrt-replay-" + std::to_string(::getpid()) + "-" +
                  std::to_string(counter.fetch_add(1, std::memory_order_relaxed)) + ".log";
    temporary = true;
  }
  // A temporary log always goes; a --record-to log (which create() made: it never replaces a
  // file) goes too when the replay is refused before its grid starts, so that a refusal
  // leaves nothing behind. Declared before the runtime, so that the runtime goes first.
  struct Unlink {
    std::string path;
    bool temporary;
    bool started = false;
    ~Unlink() {
      if (temporary || !started) {
        std::error_code ec;
        std::filesystem::remove(path, ec);
      }
    }
  } cleanup{record_path, temporary};
  ReplayLogOptions lo;
  lo.capacity_records = std::max<std::uint64_t>(4096, 2 * log.records.size() + 1024);
  auto writer = ReplayLogWriter::create(record_path, lo);
  if (!writer.ok()) {
    cleanup.started = true;  // nothing of ours is there
    return writer.status();
  }
  std::shared_ptr<ReplayLogWriter> actual_log(std::move(writer.value()));
  ro.replay_log = actual_log;

  // The runtime exists before the restore point is chosen: the set must match its
  // fingerprint (app, program version, actors, image layout, chunk size, params).
  auto created = Runtime::create(*program, info.params.data(), info.params.size(), ro);
  if (!created.ok()) return created.status();
  std::unique_ptr<Runtime> rt = std::move(created.value());
  result.replay_run = rt->backend_description();

  // Where to start: the log's start, or a checkpoint set within the log's horizon.
  std::uint64_t start = info.start_epoch;
  RestorePoint point;
  if (!options.from_checkpoint.empty()) {
    const std::string where = "--from-checkpoint " + options.from_checkpoint + ": ";
    // One rank's log: its actors' images come from a global checkpoint.
    Result<RestorePoint> found =
        inbound ? find_global_restore_point(options.from_checkpoint, *rt, inbound->shard, info.start_epoch,
                                            end > 0 ? end - 1 : 0)
                : find_set_restore_point(options.from_checkpoint, *rt, info.app, end);
    if (!found.ok()) return Status(found.status().code(), where + found.status().message());
    point = std::move(found.value());
    for (const std::string& skipped : point.skipped)
      result.notes.push_back(where + "passed over the " + skipped);
    if (point.epoch < info.start_epoch) {
      return Status(StatusCode::kFailedPrecondition,
                    where + "its checkpoint is at epoch " + std::to_string(point.epoch) +
                        ", before the recorded run started (epoch " + std::to_string(info.start_epoch) +
                        "). Fix: use a checkpoint of this run");
    }
    start = point.epoch;
    result.from_checkpoint = true;
  }
  if (start < covered) {
    return Status(StatusCode::kFailedPrecondition,
                  "the log wrapped: it lost the oldest " + std::to_string(log.written - log.capacity) +
                      " records and holds the whole stream only after epoch " + std::to_string(covered) +
                      (result.from_checkpoint ? ", but the checkpoint is at epoch " + std::to_string(start)
                                              : ", so it cannot be replayed from the run's start") +
                      ". Fix: pass --from-checkpoint DIR with a checkpoint at or after epoch " +
                      std::to_string(covered) + ", or record with a larger --replay-log-capacity");
  }
  if (end <= start) {
    return Status(StatusCode::kFailedPrecondition,
                  "the log holds no complete epoch after epoch " + std::to_string(start) +
                      " (its K2H stream is complete through epoch " + std::to_string(end) +
                      "), so there is nothing to compare. Fix: record a longer run, or replay from an "
                      "earlier checkpoint");
  }
  result.start_epoch = start;
  result.end_epoch = end;

  // The commands to re-inject: applied after `start`, through `end`.
  std::vector<AppliedCommand> commands;
  for (const AppliedCommand& c : applied)
    if (c.applied_epoch > start && c.applied_epoch <= end) commands.push_back(c);
  // Every completion in range must have its command: a wrapped log may have lost it.
  {
    const std::vector<std::uint64_t> held = held_requests(log);
    for (const ReplayRecord& r : log.records) {
      if (r.slot.payload.epoch <= start || r.slot.payload.epoch > end) continue;
      if (r.slot.header.opcode != kOpAckRange && !replay_observable(r.slot)) continue;
      const std::optional<std::uint64_t> lost = first_unheld(held, completed_span(r));
      if (lost) {
        return Status(StatusCode::kFailedPrecondition,
                      "the command with request " + std::to_string(*lost) + " (applied at epoch " +
                          std::to_string(r.slot.payload.epoch) + ") is not in the log: it was overwritten when the "
                          "log wrapped. Fix: replay from a later checkpoint, or record with a larger "
                          "--replay-log-capacity");
      }
    }
  }

  std::vector<std::pair<std::uint64_t, std::uint64_t>> request_map;
  {
    if (result.from_checkpoint) PKRT_RETURN_IF_ERROR(rt->restore_before_start(point.epoch, point.images, point.global));
    cleanup.started = true;

    std::mutex failure_mu;
    Status failure;
    auto on_reply = [&failure_mu, &failure](const Reply& reply) {
      // A kernel-produced error is part of the compared stream; anything else (ring full,
      // shutdown) means the command never reached the replay.
      if (reply.status.ok() || reply.event.opcode == kOpError) return;
      std::lock_guard<std::mutex> lock(failure_mu);
      if (failure.ok()) failure = reply.status;
    };
    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    auto target_for = [&](std::size_t next) {
      return next < commands.size() ? std::min(commands[next].applied_epoch - 1, end) : end;
    };
    PKRT_RETURN_IF_ERROR(rt->set_target_epoch(target_for(0)));
    PKRT_RETURN_IF_ERROR(rt->start());
    // A rank replayed alone: this thread plays the other ranks, delivering each epoch's logged
    // K2K once the grid has completed it; what it sends them is collected, and compared with
    // their logs when the caller gave them (sent_check), else dropped.
    std::atomic<bool> feeding{true};
    std::thread feeder;
    if (inbound) {
      feeder = std::thread([&] {
        std::vector<K2KTransfer> out;
        std::vector<std::byte> out_payload;
        for (const K2KLogEpoch& e : inbound->epochs) {
          if (e.epoch < rt->first_exchange_epoch()) continue;
          // Through `end` itself: the grid parks at `end` only once that epoch's exchange is
          // in (a cut holds every message in flight after it: cut_waits_for_exchange).
          if (e.epoch > end) break;
          // Relaxed: a stop flag; the runtime's own calls order what matters.
          while (!rt->epoch_completed(e.epoch)) {
            if (!feeding.load(std::memory_order_relaxed) || !rt->health().ok()) return;
            std::this_thread::sleep_for(std::chrono::microseconds(20));
          }
          out.clear();
          out_payload.clear();
          Status st = rt->collect_outbound_k2k(e.epoch, out, out_payload);
          if (st.ok() && sent_check) sent_check->compare(e.epoch, out, out_payload);
          if (st.ok()) st = rt->deliver_inbound_k2k(e.epoch, e.messages, e.payload);
          if (!st.ok()) {
            std::lock_guard<std::mutex> lock(failure_mu);
            if (failure.ok()) failure = Status(st.code(), "delivering the logged K2K of epoch " + std::to_string(e.epoch) + ": " + st.message());
            return;
          }
        }
      });
    }
    // Stops and joins the feeder: before every shutdown (it must not call into a runtime that
    // is stopping) and, whatever happens, when the block ends.
    struct JoinFeeder {
      std::atomic<bool>& feeding;
      std::thread& feeder;
      void operator()() {
        // Relaxed: see above.
        feeding.store(false, std::memory_order_relaxed);
        if (feeder.joinable()) feeder.join();
      }
      ~JoinFeeder() { (*this)(); }
    } join_feeder{feeding, feeder};
    std::size_t i = 0;
    while (i < commands.size()) {
      // The grid is held at or before applied_epoch - 1 until this epoch's commands are in.
      const std::uint64_t epoch = commands[i].applied_epoch;
      for (; i < commands.size() && commands[i].applied_epoch == epoch; ++i) {
        const Slot& s = commands[i].record->slot;
        // Posted commands are posted again: their acknowledgements (and dropped replies)
        // then follow the same rules as in the recording.
        if ((s.header.flags & kFlagPost) != 0) {
          Status posted = rt->post(s.header.actor, s.header.opcode, s.payload.data, kEnvelopeDataBytes, epoch);
          if (!posted.ok()) {
            std::lock_guard<std::mutex> lock(failure_mu);
            if (failure.ok()) failure = posted;
          }
        } else {
          rt->send(s.header.actor, s.header.opcode, s.payload.data, kEnvelopeDataBytes, epoch, on_reply);
        }
        ++result.commands_injected;
      }
      {
        std::lock_guard<std::mutex> lock(failure_mu);
        if (!failure.ok()) {
          join_feeder();
          (void)rt->shutdown();
          return Status(failure.code(), "replay could not inject the command for epoch " + std::to_string(epoch) +
                                            ": " + failure.message());
        }
      }
      PKRT_RETURN_IF_ERROR(rt->set_target_epoch(target_for(i)));
      if (options.progress) options.progress(rt->epoch(), end);
      if (std::chrono::steady_clock::now() > deadline) {
        join_feeder();
        (void)rt->shutdown();
        return Status(StatusCode::kTimeout, "replay did not finish within the timeout");
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    Status ran = rt->run_until(end, std::max(left, std::chrono::milliseconds(1)));
    if (options.progress) options.progress(rt->epoch(), end);
    join_feeder();
    Status stopped = rt->shutdown();
    {
      // A feeder that could not deliver left the grid waiting: its reason, not the timeout.
      std::lock_guard<std::mutex> lock(failure_mu);
      if (!failure.ok() && !ran.ok()) return Status(failure.code(), "replay run: " + failure.message());
    }
    if (!ran.ok()) return Status(ran.code(), "replay run: " + ran.message());
    if (!stopped.ok()) return Status(stopped.code(), "replay run: " + stopped.message());
    std::lock_guard<std::mutex> lock(failure_mu);
    if (!failure.ok()) return Status(failure.code(), "replay could not inject a command: " + failure.message());
  }
  rt.reset();
  PKRT_RETURN_IF_ERROR(actual_log->close());
  auto actual = read_replay_log(record_path);
  if (!actual.ok()) return Status(actual.status().code(), "reading the replay's own log: " + actual.status().message());

  // Map the replay's request ids to the recording's: the replay sent the commands in order,
  // one thread, so its H2K records (minus runtime traffic) are that order.
  std::size_t k = 0;
  for (const ReplayRecord& r : actual->records) {
    if (r.direction != static_cast<std::uint8_t>(ReplayDirection::kH2K) || is_infrastructure_command(r.slot.header.opcode))
      continue;
    if (k == commands.size()) break;
    request_map.emplace_back(r.slot.payload.request, commands[k++].record->slot.payload.request);
  }
  if (k != commands.size()) {
    return Status(StatusCode::kInternal, "the replay's log holds " + std::to_string(k) + " of the " +
                                             std::to_string(commands.size()) + " commands it sent");
  }
  ReplayComparison cmp = compare_replay_logs(log, actual.value(), start, end, request_map, options.context_commands);
  result.observations_compared = cmp.compared;
  result.divergence = std::move(cmp.divergence);
  if (inbound) {
    result.rank = inbound->shard.rank;
    result.ranks = inbound->shard.ranks;
    if (result.divergence && result.divergence->actor < inbound->shard.global_ids.size())
      result.divergence->global_actor = inbound->shard.global_ids[result.divergence->actor];
  }
  result.notes.insert(result.notes.end(), peer_notes.begin(), peer_notes.end());
  if (sent_check) {
    // The feeder is joined: its results are ours to read.
    result.k2k_sent_compared = sent_check->matched();
    result.notes.push_back(sent_check->describe());
    // A message sent wrong at an epoch before the first observation that differs is where the
    // run went wrong first (at the same epoch the observation, with its context, is kept).
    const auto& sent = sent_check->divergence();
    if (sent && (!result.divergence || sent->epoch < result.divergence->epoch)) result.divergence = sent;
  }
  result.identical = !result.divergence.has_value();
  return result;
}

std::string format_replay_report(const ReplayResult& r) {
  std::string out;
  const std::string range = "epochs " + std::to_string(r.start_epoch + 1) + ".." + std::to_string(r.end_epoch);
  const std::string from = r.from_checkpoint ? "from the checkpoint at epoch " + std::to_string(r.start_epoch)
                                             : "from the log's start";
  for (const std::string& n : r.notes) out += "note: " + n + "\n";
  out += "recorded: " + r.app + " on " + r.recorded_run + "\n";
  out += "replayed: " + r.replay_run + ", " + from + ", " + std::to_string(r.commands_injected) +
         " commands re-injected\n";
  if (r.identical) {
    out += "verdict: identical (" + std::to_string(r.observations_compared) + " observations over " + range + " match" +
           (r.k2k_sent_compared != 0 ? ", and " + std::to_string(r.k2k_sent_compared) + " K2K messages sent" : "") +
           ")\n";
    return out;
  }
  const ReplayDivergence& d = *r.divergence;
  std::string actor = d.actor == kNoActor ? std::string("-") : std::to_string(d.actor);
  if (d.global_actor != kNoActor) actor = std::to_string(d.global_actor) + " (local index " + actor + ")";
  if (r.rank) actor += " of rank " + std::to_string(*r.rank) + " of " + std::to_string(r.ranks);
  if (d.kind == ReplayDivergence::Kind::kK2KSent) {
    const ReplayDivergence::K2KMessage& m = d.expected_k2k ? *d.expected_k2k : *d.actual_k2k;
    const std::string what = "a K2K message to actor " + std::to_string(m.transfer.dst) + " (rank " +
                             std::to_string(m.rank) + "), channel " + std::to_string(m.transfer.channel);
    out += "verdict: diverged at epoch " + std::to_string(d.epoch) + ", actor " + actor + ": " +
           (d.field == "not sent"       ? "rank " + std::to_string(m.rank) + " recorded receiving " + what +
                                              " that the replay did not send"
            : d.field == "not received" ? "the replay sent " + what + " that rank " + std::to_string(m.rank) +
                                              " did not record receiving"
                                        : "the replay sent " + what + " whose payload differs from what rank " +
                                              std::to_string(m.rank) + " recorded receiving") +
           " (" + std::to_string(r.k2k_sent_compared) + " K2K messages sent matched before it)\n";
    const auto bytes = [](const std::optional<ReplayDivergence::K2KMessage>& k) {
      if (!k) return std::string("(none)");
      std::string hex = std::to_string(k->transfer.bytes) + " bytes:";
      char b[4];
      for (std::size_t i = 0; i < k->payload.size() && i < 32; ++i) {
        std::snprintf(b, sizeof b, " %02x", static_cast<unsigned>(k->payload[i]));
        hex += b;
      }
      return hex + (k->payload.size() > 32 ? " ..." : "");
    };
    out += "  expected (received): " + bytes(d.expected_k2k) + "\n";
    out += "  actual (sent):       " + bytes(d.actual_k2k) + "\n";
    return out;
  }
  out += "verdict: diverged at epoch " + std::to_string(d.epoch) + ", actor " + actor + ", opcode " +
         replay_opcode_name(d.opcode) + " (" + std::to_string(r.observations_compared) +
         " observations matched before it, " + range + ")\n";
  switch (d.kind) {
    case ReplayDivergence::Kind::kDiffers:
      out += "  the " + d.field + " differs\n";
      break;
    case ReplayDivergence::Kind::kMissing:
      out += "  the recorded run has an observation the replay did not produce\n";
      break;
    case ReplayDivergence::Kind::kUnexpected:
      out += "  the replay produced an observation the recorded run did not\n";
      break;
    case ReplayDivergence::Kind::kK2KSent:
      break;  // reported above
  }
  out += "  expected: " + (d.expected ? format_replay_record(*d.expected) : std::string("(none)")) + "\n";
  out += "  actual:   " + (d.actual ? format_replay_record(*d.actual) : std::string("(none)")) + "\n";
  if (d.preceding_commands.empty()) {
    out += "  no recorded command was applied before it\n";
  } else {
    out += "  last commands before it:\n";
    for (const auto& c : d.preceding_commands)
      out += "    applied at epoch " + std::to_string(c.applied_epoch) + ": " + format_replay_record(c.record) + "\n";
  }
  return out;
}

}  // namespace pkrt
