// replay/sent_k2k_check.cpp: see sent_k2k_check.hpp.
#include "replay/sent_k2k_check.hpp"

#include <algorithm>
#include <cstring>
#include <tuple>

namespace pkrt::detail {
namespace {

bool before(const K2KTransfer& a, const K2KTransfer& b) {
  return std::tie(a.dst, a.channel, a.src) < std::tie(b.dst, b.channel, b.src);
}

bool same_key(const K2KTransfer& a, const K2KTransfer& b) {
  return a.dst == b.dst && a.channel == b.channel && a.src == b.src;
}

}  // namespace

SentK2KCheck SentK2KCheck::create(const K2KLogShard& own, std::vector<K2KLog> peers, const std::vector<std::string>& names,
                                  std::vector<std::string>& skipped) {
  std::vector<Peer> kept;
  std::vector<bool> seen(own.ranks, false);
  std::vector<std::uint32_t> taken = own.global_ids;  // actors some log (or this rank) has, ascending
  for (std::size_t i = 0; i < peers.size(); ++i) {
    const K2KLogShard& s = peers[i].shard;
    const std::string name = i < names.size() ? names[i] : "peer log " + std::to_string(i);
    std::string why;
    if (s.run_id != 0 && own.run_id != 0 && s.run_id != own.run_id) {
      why = "is of another recording (run id " + std::to_string(s.run_id) + ", this rank's " + std::to_string(own.run_id) +
            ")";
    } else if (s.ranks != own.ranks || s.global_actors != own.global_actors || s.k2k_delay != own.k2k_delay) {
      why = "is of a run of " + std::to_string(s.ranks) + " ranks, " + std::to_string(s.global_actors) + " actors, K2K delay " +
            std::to_string(s.k2k_delay) + ", not " + std::to_string(own.ranks) + ", " + std::to_string(own.global_actors) +
            ", " + std::to_string(own.k2k_delay) + " as this rank's";
    } else if (s.rank == own.rank) {
      why = "is of rank " + std::to_string(s.rank) + ", the rank being replayed";
    } else if (s.rank >= own.ranks || seen[s.rank]) {
      why = "is of rank " + std::to_string(s.rank) + ", given twice or out of range";
    } else {
      for (std::uint32_t id : s.global_ids) {
        if (!std::binary_search(taken.begin(), taken.end(), id)) continue;
        why = "gives rank " + std::to_string(s.rank) + " actor " + std::to_string(id) + ", which " +
              (std::binary_search(own.global_ids.begin(), own.global_ids.end(), id) ? "this rank runs"
                                                                                     : "another peer log gives its rank");
        break;
      }
    }
    if (!why.empty()) {
      skipped.push_back("what this rank sent is not checked against '" + name + "': it " + why +
                        ". Fix: keep the .k2k files one recording wrote beside each other");
      continue;
    }
    seen[s.rank] = true;
    taken.insert(taken.end(), s.global_ids.begin(), s.global_ids.end());
    std::sort(taken.begin(), taken.end());
    // Only what came from this rank is ever compared: the rest (most of a log, with many
    // ranks) is dropped now, so that R ranks replaying side by side do not each hold every
    // other rank's whole log.
    for (K2KLogEpoch& e : peers[i].epochs) {
      K2KLogEpoch from_us;
      from_us.epoch = e.epoch;
      std::size_t offset = 0;
      for (const K2KTransfer& t : e.messages) {
        if (std::binary_search(own.global_ids.begin(), own.global_ids.end(), t.src)) {
          from_us.messages.push_back(t);
          from_us.payload.insert(from_us.payload.end(), e.payload.begin() + static_cast<std::ptrdiff_t>(offset),
                                 e.payload.begin() + static_cast<std::ptrdiff_t>(offset + t.bytes));
        }
        offset += t.bytes;
      }
      e = std::move(from_us);
    }
    kept.push_back(Peer{std::move(peers[i]), name});
  }
  // By rank: when several receivers disagree at one epoch, the lowest rank's is reported.
  std::sort(kept.begin(), kept.end(), [](const Peer& a, const Peer& b) { return a.log.shard.rank < b.log.shard.rank; });
  return SentK2KCheck(own, std::move(kept));
}

SentK2KCheck::SentK2KCheck(const K2KLogShard& own, std::vector<Peer> peers)
    : own_ids_(own.global_ids), own_rank_(own.rank), peers_(std::move(peers)) {}

const SentK2KCheck::Peer* SentK2KCheck::owner_of(std::uint32_t global_actor) const {
  for (const Peer& p : peers_) {
    const auto& ids = p.log.shard.global_ids;
    if (std::binary_search(ids.begin(), ids.end(), global_actor)) return &p;
  }
  return nullptr;
}

bool SentK2KCheck::covers(const Peer& peer, std::uint64_t epoch) const {
  const auto& e = peer.log.epochs;  // consecutive, in order (read_k2k_log)
  return !e.empty() && epoch >= e.front().epoch && epoch <= e.back().epoch;
}

std::vector<SentK2KCheck::Received> SentK2KCheck::received(const Peer& peer, std::uint64_t epoch) const {
  std::vector<Received> out;
  if (!covers(peer, epoch)) return out;
  const K2KLogEpoch& e = peer.log.epochs[epoch - peer.log.epochs.front().epoch];
  std::size_t offset = 0;
  for (const K2KTransfer& t : e.messages) {
    // read_k2k_log checked that the payloads add up to the record's bytes.
    const std::span<const std::byte> bytes(e.payload.data() + offset, t.bytes);
    offset += t.bytes;
    out.push_back({t, bytes});  // create() kept only messages from this rank's actors
  }
  std::sort(out.begin(), out.end(), [](const Received& a, const Received& b) { return before(a.transfer, b.transfer); });
  return out;
}

void SentK2KCheck::compare(std::uint64_t epoch, std::span<const K2KTransfer> sent, std::span<const std::byte> payload) {
  if (divergence_ || peers_.empty()) return;
  // What the replay sent, by receiving peer (only peers whose logs cover this epoch).
  std::vector<std::vector<Received>> actual(peers_.size());
  std::size_t offset = 0;
  for (const K2KTransfer& t : sent) {
    const std::span<const std::byte> bytes = payload.subspan(offset, t.bytes);
    offset += t.bytes;
    const Peer* p = owner_of(t.dst);
    if (p != nullptr && covers(*p, epoch)) actual[static_cast<std::size_t>(p - peers_.data())].push_back({t, bytes});
  }
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    const Peer& peer = peers_[i];
    if (!covers(peer, epoch)) continue;
    std::vector<Received>& got = actual[i];
    std::sort(got.begin(), got.end(), [](const Received& a, const Received& b) { return before(a.transfer, b.transfer); });
    const std::vector<Received> want = received(peer, epoch);
    std::size_t w = 0, g = 0;
    while (w < want.size() || g < got.size()) {
      if (g == got.size() || (w < want.size() && before(want[w].transfer, got[g].transfer))) {
        return diverge(epoch, peer, &want[w], nullptr, "not sent");
      }
      if (w == want.size() || before(got[g].transfer, want[w].transfer)) {
        return diverge(epoch, peer, nullptr, &got[g], "not received");
      }
      const bool equal = same_key(want[w].transfer, got[g].transfer) && want[w].transfer.bytes == got[g].transfer.bytes &&
                         std::equal(want[w].payload.begin(), want[w].payload.end(), got[g].payload.begin());
      if (!equal) return diverge(epoch, peer, &want[w], &got[g], "payload");
      ++matched_;
      ++w;
      ++g;
    }
  }
}

void SentK2KCheck::diverge(std::uint64_t epoch, const Peer& peer, const Received* expected, const Received* actual,
                           const char* field) {
  ReplayDivergence d;
  d.kind = ReplayDivergence::Kind::kK2KSent;
  d.epoch = epoch;
  d.field = field;
  const K2KTransfer& t = expected != nullptr ? expected->transfer : actual->transfer;
  d.global_actor = t.src;
  d.actor = static_cast<std::uint32_t>(std::lower_bound(own_ids_.begin(), own_ids_.end(), t.src) - own_ids_.begin());
  const auto message = [&](const Received& r) {
    return ReplayDivergence::K2KMessage{peer.log.shard.rank, r.transfer, {r.payload.begin(), r.payload.end()}};
  };
  if (expected != nullptr) d.expected_k2k = message(*expected);
  if (actual != nullptr) d.actual_k2k = message(*actual);
  divergence_ = std::move(d);
}

std::string SentK2KCheck::describe() const {
  std::string ranks;
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    const Peer& p = peers_[i];
    ranks += (i == 0 ? "" : i + 1 == peers_.size() ? " and " : ", ") + std::to_string(p.log.shard.rank);
    if (!p.log.epochs.empty()) {
      ranks += " (epochs " + std::to_string(p.log.epochs.front().epoch) + ".." + std::to_string(p.log.epochs.back().epoch) +
               ")";
    }
  }
  return "the K2K rank " + std::to_string(own_rank_) + " sends is compared with what rank" +
         (peers_.size() == 1 ? " " : "s ") + ranks + " logged receiving";
}

}  // namespace pkrt::detail
