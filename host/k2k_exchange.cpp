// host/k2k_exchange.cpp: a shard's K2K traffic with other shards (scale-out; pkrt/mpi.hpp
// drives it): collecting what this runtime's actors sent to actors it does not run, and
// delivering what theirs sent to ours, then opening the grid's next epochs.
//
// Protocol (one epoch e, K2K delay D; kernels/persistent_loop.hpp holds the grid side):
//   1. Every block commits epoch e's K2K into mailbox buffer e % (D + 1), rows by global id,
//      then releases its heartbeat (e). Rows of actors other shards run are the outbound ones.
//   2. collect_outbound_k2k(e): after acquiring every heartbeat >= e (and, for a fresh run's
//      start epoch, every block's `initialized`), copies buffer e % (D + 1)
//      and lists the remote rows' slots whose header says epoch e.
//   3. The caller exchanges them (MPI); deliver_inbound_k2k(e) writes the messages for our
//      actors into the same buffer (slot payload, then header), then stores
//      k2k_open_epoch = e + D (release), a new generation (release) and rings the doorbell:
//      block 0 starts epoch e + D only after that, and its acquire of k2k_open_epoch makes
//      the delivered slots visible to every block through the grid barrier that follows.
// Why the buffer is intact at step 2 and free at step 3: it is written again only in epoch
// e + D + 1, which the grid cannot start before the delivery of e + 1; and it is read in
// e + D, which it cannot start before this delivery.
#include "host/runtime_impl.hpp"

#include <algorithm>

namespace pkrt {

bool Runtime::epoch_completed(std::uint64_t epoch) const {
  const Impl& m = *impl_;
  // Zero until the kernel stores it: false before start() too.
  for (std::uint32_t b = 0; b < m.plan.blocks; ++b) {
    // Acquire: pairs with the block's store_release after its actors' init.
    if (detail::load_acquire(m.heartbeats[b].initialized) == 0) return false;
  }
  return m.acquire_min_heartbeat() >= epoch;
}

std::uint64_t Runtime::first_exchange_epoch() const {
  return impl_->args.run_init != 0 ? impl_->args.start_epoch : impl_->args.start_epoch + 1;
}

Status Runtime::collect_outbound_k2k(std::uint64_t epoch, std::vector<K2KTransfer>& out,
                                     std::vector<std::byte>& payload) {
  Impl& m = *impl_;
  const detail::KernelArgs& a = m.args;
  if (a.k2k_gated == 0) return Status();  // every actor is ours: nothing leaves
  std::lock_guard<std::mutex> lock(m.exchange_mu);
  if (epoch < m.next_delivery || epoch < first_exchange_epoch()) {
    return Status(StatusCode::kFailedPrecondition,
                  "K2K of epoch " + std::to_string(epoch) + " was already delivered (next: " +
                      std::to_string(m.next_delivery) + "); its mailboxes may be reused. Fix: collect each epoch once, in order");
  }
  if (epoch > m.next_delivery) {
    return Status(StatusCode::kFailedPrecondition,
                  "K2K of epoch " + std::to_string(epoch) + " collected before epoch " + std::to_string(m.next_delivery) +
                      " was delivered: the grid cannot have reached it. Fix: deliver every epoch in order");
  }
  if (!epoch_completed(epoch)) {
    return Status(StatusCode::kFailedPrecondition,
                  "the grid has not completed epoch " + std::to_string(epoch) + ". Fix: wait until epoch_completed(epoch)");
  }
  if (a.k2k_channels == 0) return Status();  // an app without K2K: nothing to collect
  const std::uint64_t mailbox = std::uint64_t{a.k2k_channels} * a.k2k_slot_stride;
  const std::uint32_t buffer = detail::k2k_buffer_of(a, epoch);
  // Only the rows of actors other shards run (our own may be written by a live restore),
  // each run of consecutive ones in one copy; rows land at their own offsets.
  m.exchange_scratch.resize(mailbox * a.global_actors);
  std::vector<host::HostCopy> copies;
  std::size_t next_local = 0;  // global_ids is ascending: walk it beside the rows
  for (std::uint32_t row = 0; row < a.global_actors;) {
    if (next_local < m.global_ids.size() && m.global_ids[next_local] == row) {
      ++next_local;
      ++row;
      continue;
    }
    const std::uint32_t first = row;
    while (row < a.global_actors && !(next_local < m.global_ids.size() && m.global_ids[next_local] == row)) ++row;
    copies.push_back({m.exchange_scratch.data() + first * mailbox, m.k2k_mailbox_device(buffer, first),
                      (row - first) * mailbox});
  }
  PKRT_RETURN_IF_ERROR(m.backend->gather_to_host(copies));
  next_local = 0;
  for (std::uint32_t row = 0; row < a.global_actors; ++row) {
    if (next_local < m.global_ids.size() && m.global_ids[next_local] == row) {
      ++next_local;
      continue;
    }
    for (std::uint32_t c = 0; c < a.k2k_channels; ++c) {
      const std::byte* slot = m.exchange_scratch.data() + row * mailbox + c * a.k2k_slot_stride;
      detail::K2KSlotHeader h;
      std::memcpy(&h, slot, sizeof h);
      if (h.epoch != epoch) continue;  // nothing sent to this slot in `epoch`
      if (h.bytes > a.k2k_payload_bytes) {
        return Status(StatusCode::kInternal, "K2K slot of actor " + std::to_string(row) + " channel " +
                                                 std::to_string(c) + " claims " + std::to_string(h.bytes) +
                                                 " bytes, over the mailbox's " + std::to_string(a.k2k_payload_bytes));
      }
      out.push_back({row, c, h.src, h.bytes, epoch});
      payload.insert(payload.end(), slot + detail::kK2KHeaderBytes, slot + detail::kK2KHeaderBytes + h.bytes);
    }
  }
  return Status();
}

Status Runtime::deliver_inbound_k2k(std::uint64_t epoch, std::span<const K2KTransfer> messages,
                                    std::span<const std::byte> payload) {
  Impl& m = *impl_;
  const detail::KernelArgs& a = m.args;
  if (a.k2k_gated == 0) {
    if (messages.empty()) return Status();
    return Status(StatusCode::kInvalidArgument,
                  "K2K delivered to a runtime that runs every actor of its program. Fix: deliver only to shards "
                  "(RuntimeOptions::global_ids)");
  }
  std::lock_guard<std::mutex> lock(m.exchange_mu);
  if (epoch != m.next_delivery) {
    return Status(StatusCode::kFailedPrecondition,
                  "K2K of epoch " + std::to_string(epoch) + " delivered, but epoch " + std::to_string(m.next_delivery) +
                      " is next. Fix: deliver every epoch once, in order, from first_exchange_epoch()");
  }
  std::uint64_t total = 0;
  for (const K2KTransfer& t : messages) {
    const bool ours = std::binary_search(m.global_ids.begin(), m.global_ids.end(), t.dst);
    if (!ours || t.channel >= a.k2k_channels || t.bytes > a.k2k_payload_bytes || t.epoch != epoch) {
      return Status(StatusCode::kInvalidArgument,
                    "K2K message to actor " + std::to_string(t.dst) + " channel " + std::to_string(t.channel) + " of " +
                        std::to_string(t.bytes) + " bytes from epoch " + std::to_string(t.epoch) +
                        " does not fit this shard (" + (ours ? "" : "not one of its actors; ") + std::to_string(a.k2k_channels) +
                        " channels of " + std::to_string(a.k2k_payload_bytes) + " bytes, epoch " + std::to_string(epoch) +
                        "). Fix: route each message to the rank the partition gives its destination");
    }
    total += t.bytes;
  }
  if (total != payload.size()) {
    return Status(StatusCode::kInvalidArgument, "K2K payload of " + std::to_string(payload.size()) + " bytes for messages of " +
                                                    std::to_string(total) + ". Fix: pass the payloads back to back, in order");
  }
  if (!epoch_completed(epoch)) {
    return Status(StatusCode::kFailedPrecondition,
                  "the grid has not completed epoch " + std::to_string(epoch) + ": its own epoch-" + std::to_string(epoch) +
                      " commits would race the delivery. Fix: wait until epoch_completed(epoch)");
  }
  const std::uint32_t buffer = detail::k2k_buffer_of(a, epoch);
  // Every slot (header, then payload) staged back to back, then one scatter: on CUDA one
  // stream synchronisation for the whole epoch's messages. The grid reads none of them before
  // the gate opens below.
  std::size_t staged = 0;
  for (const K2KTransfer& t : messages) staged += detail::kK2KHeaderBytes + t.bytes;
  m.exchange_scratch.assign(staged, std::byte{0});
  std::vector<host::DeviceCopy> copies;
  copies.reserve(messages.size());
  std::uint64_t offset = 0;
  std::size_t at = 0;
  for (const K2KTransfer& t : messages) {
    const detail::K2KSlotHeader h{epoch, t.src, t.bytes};
    std::memcpy(m.exchange_scratch.data() + at, &h, sizeof h);
    if (t.bytes > 0) std::memcpy(m.exchange_scratch.data() + at + detail::kK2KHeaderBytes, payload.data() + offset, t.bytes);
    offset += t.bytes;
    copies.push_back({m.k2k_mailbox_device(buffer, t.dst) + t.channel * a.k2k_slot_stride, m.exchange_scratch.data() + at,
                      detail::kK2KHeaderBytes + t.bytes});
    at += detail::kK2KHeaderBytes + t.bytes;
  }
  PKRT_RETURN_IF_ERROR(m.backend->scatter_to_device(copies));
  ++m.next_delivery;
  // A control change: k2k_open_epoch, then the generation (release), then the doorbell.
  m.set_control(&HostControl::k2k_open_epoch, epoch + a.k2k_delay);
  return Status();
}

}  // namespace pkrt
