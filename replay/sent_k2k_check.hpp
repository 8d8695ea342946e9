// replay/sent_k2k_check.hpp: what one rank of a multi-rank run, replayed alone, sends to the
// other ranks, checked against what they logged receiving from it (their inbound K2K logs,
// pkrt/k2k_log.hpp). Used by replay_log() (ReplayOptions::peer_k2k).
//
// Per epoch e and per peer p whose log covers e: the messages the replay collected for p's
// actors, and the messages p's log holds from this rank's actors at e, each sorted by
// (destination, channel, source), must be the same list with the same payloads. The first
// difference becomes a ReplayDivergence of kind kK2KSent. Sorting makes the comparison blind
// to the order the outbox was collected in (it follows the thread count), not to content.
//
// Thread safety: one thread (the replay's feeder) calls compare(); read the results after it
// has been joined.
#pragma once

#include <pkrt/k2k_log.hpp>
#include <pkrt/replay.hpp>
#include <pkrt/status.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace pkrt::detail {

class SentK2KCheck {
 public:
  // `own`: the replayed rank's shard (from its inbound log). `peers`: other ranks' logs of the
  // same run, `names` their paths. A log that cannot be one of them (another recording's run
  // id, another rank count, actor count or K2K delay, this rank itself, a rank given twice,
  // actors another log or this rank already has) is left out, with the reason naming the
  // file appended to `skipped`: the check is an extra, and the rank replays without it. Of
  // each log only the messages from this rank's actors are kept.
  static SentK2KCheck create(const K2KLogShard& own, std::vector<K2KLog> peers, const std::vector<std::string>& names,
                             std::vector<std::string>& skipped);

  // Compares epoch `epoch`'s outbound K2K (Runtime::collect_outbound_k2k's output). After the
  // first difference it compares nothing more.
  void compare(std::uint64_t epoch, std::span<const K2KTransfer> sent, std::span<const std::byte> payload);

  std::uint64_t matched() const { return matched_; }  // messages equal on both sides
  const std::optional<ReplayDivergence>& divergence() const { return divergence_; }
  bool empty() const { return peers_.empty(); }
  // "... ranks 0 (epochs 0..40) and 2 (...) logged receiving": what was compared against,
  // for the report's notes.
  std::string describe() const;

 private:
  struct Received {  // one message from this rank, as a peer logged it
    K2KTransfer transfer;
    std::span<const std::byte> payload;
  };
  struct Peer {
    K2KLog log;  // only messages from this rank's actors
    std::string name;
  };
  SentK2KCheck(const K2KLogShard& own, std::vector<Peer> peers);
  const Peer* owner_of(std::uint32_t global_actor) const;
  // Messages from this rank's actors in `peer`'s log at `epoch` (empty when it does not
  // cover it), sorted.
  std::vector<Received> received(const Peer& peer, std::uint64_t epoch) const;
  bool covers(const Peer& peer, std::uint64_t epoch) const;
  void diverge(std::uint64_t epoch, const Peer& peer, const Received* expected, const Received* actual,
               const char* field);

  std::vector<std::uint32_t> own_ids_;  // ascending
  std::uint32_t own_rank_ = 0;
  std::vector<Peer> peers_;
  std::uint64_t matched_ = 0;
  std::optional<ReplayDivergence> divergence_;
};

}  // namespace pkrt::detail
