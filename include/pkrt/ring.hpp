// pkrt/ring.hpp: single-producer single-consumer ring of 64-byte slots shared by host and
// device (H2K: host produces, a block consumes; K2H: a block produces, the host consumes).
//
// Contract
// - Memory: one contiguous region of ring_bytes(capacity): a RingHeader (three cache lines:
//   read-only configuration, producer-owned, consumer-owned) followed by `capacity` slots.
//   On CUDA it is mapped pinned host memory; on the CPU backend ordinary memory.
// - Thread safety: exactly one producer and one consumer at a time. Producer and consumer
//   may be on different agents (host thread, GPU thread); the producer view and the consumer
//   view must each be used by one thread only. Host code that publishes from several threads
//   serialises them itself (pkrt::Runtime holds a lock per H2K ring).
// - Host/device: everything here is PKRT_HD.
// - Ownership: views do not own memory; the runtime allocates and frees the region.
//
// Protocol (per-slot sequence numbers; rigtorp-style cached peer index)
//   position p (monotonic uint64) lives in slot p % capacity. The slot's header.seq is the
//   publication word: it holds p + 1 once position p is readable, and the previous lap's
//   value (p + 1 - capacity, or 0) before that. No ABA: a sequence value is never reused.
//
//   Producer, publishing position p:
//     1. room check: p - cached_head < capacity, else reload head with load_acquire
//        (pairs with the consumer's store_release of head: the consumer is done reading
//        the slot we are about to overwrite). Still full: return false (backpressure).
//     2. write the slot's opcode, flags, actor and payload with plain stores.
//     3. store_release(seq, p + 1)           -- publishes step 2 to the consumer.
//     4. store_release(published, p + 1)     -- the consumer's gate (see below).
//   Consumer, reading position h:
//     0. h < cached_published, else reload published with load_acquire (pairs with
//        producer step 4). Still h: empty; the consumer never touched slot h.
//     1. load_acquire(seq) == h + 1 ?        -- pairs with producer step 3.
//     2. read the slot with plain loads (copy it out).
//     3. store_release(head, h + 1)          -- hands the slot back; pairs with producer 1.
//
//   Why step 0: a consumer that polls the sequence word of the next, unpublished slot pulls
//   that cache line away from the producer while it writes it, so every publish pays a
//   line transfer against a spinning reader (measured here: the producer's slot stores were
//   most of a runtime post's cost). Polling `published` instead, the consumer touches a slot
//   line only once the slot is complete; on the device the empty check stays one read.
//
//   Batches: a producer may reserve room for n slots with one head check, write them, and
//   store each slot's seq (release, in position order) and `published` once; a consumer may
//   advance past several slots (steps 1-2 each) and hand them all back with one store of head
//   (commit). Neither changes the protocol: each slot still has its own release/acquire pair.
//   Steps 1-2 of a run of positions may be done by other threads of the consumer's agent
//   (RingSlotsView) when a barrier orders them before the consumer's commit.
//   A producer may also stage slots one at a time (steps 1-3, try_stage) and store
//   `published` later for all of them (step 4, publish_staged): the consumer's gate, whose
//   line it polls, then moves once per run of slots instead of once per slot. Staged slots
//   are invisible to the consumer, so a producer must publish them before it waits for the
//   consumer (a full ring) or for anything the consumer does after reading them.
//
//   Neither side writes the other's index; no read-modify-write crosses agents; each index
//   sits alone on its cache line so the peers do not false-share.
//
// Assumptions
//   capacity is a power of two between 2 and 2^20; positions never wrap 2^64.
#pragma once

#include <pkrt/config.hpp>
#include <pkrt/detail/system_atomic.hpp>
#include <pkrt/slot.hpp>

#include <cstddef>
#include <cstdint>

namespace pkrt {

inline constexpr std::uint32_t kMinRingCapacity = 2;
inline constexpr std::uint32_t kMaxRingCapacity = 1u << 20;

struct RingHeader {
  // Line 0: configuration, written once before either side starts, then read-only.
  alignas(64) std::uint32_t capacity;
  std::uint32_t mask;
  // Line 1: producer-owned. Written only by the producer.
  alignas(64) std::uint64_t published;  // positions published so far (the consumer's gate)
  // Line 2: consumer-owned. Written only by the consumer.
  alignas(64) std::uint64_t head;  // next position the consumer will read
};
static_assert(sizeof(RingHeader) == 3 * 64, "ring header is three cache lines");

PKRT_HD constexpr bool ring_capacity_valid(std::uint32_t capacity) {
  return capacity >= kMinRingCapacity && capacity <= kMaxRingCapacity &&
         (capacity & (capacity - 1)) == 0;
}

PKRT_HD constexpr std::size_t ring_bytes(std::uint32_t capacity) {
  return sizeof(RingHeader) + std::size_t{capacity} * sizeof(Slot);
}

PKRT_HD inline Slot* ring_slots(RingHeader* ring) { return reinterpret_cast<Slot*>(ring + 1); }

// Prepare a zeroed region of ring_bytes(capacity) bytes. Call before either side starts.
inline void ring_init(RingHeader* ring, std::uint32_t capacity) {
  ring->capacity = capacity;
  ring->mask = capacity - 1;
  ring->published = 0;
  ring->head = 0;
  Slot* slots = ring_slots(ring);
  for (std::uint32_t i = 0; i < capacity; ++i) slots[i] = Slot{};
}

// Producer side. Keeps its position and its cached copy of the consumer's head privately.
class RingProducer {
 public:
  RingProducer() = default;
  PKRT_HD explicit RingProducer(RingHeader* ring)
      : ring_(ring), slots_(ring_slots(ring)), mask_(ring->mask), capacity_(ring->capacity),
        // Relaxed: our own previous value (a resumed producer continues where it stopped).
        tail_(detail::load_relaxed(ring->published)), published_(tail_),
        // Acquire: pairs with the consumer's release of head (slots up to it are free).
        cached_head_(detail::load_acquire(ring->head)) {}

  // Publishes one slot (and any staged before it); false when the ring is full (the caller
  // decides how to wait; slots staged earlier are published either way).
  PKRT_HD bool try_publish(std::uint16_t opcode, std::uint16_t flags, std::uint32_t actor,
                           const Envelope& payload) {
    const bool written = try_stage(opcode, flags, actor, payload);
    publish_staged();
    return written;
  }

  // Writes one slot and its sequence word but not `published`: the consumer sees it only
  // after publish_staged(). False when the ring is full; the caller must then publish what
  // it staged before waiting for room, or the consumer never frees any.
  PKRT_HD bool try_stage(std::uint16_t opcode, std::uint16_t flags, std::uint32_t actor,
                         const Envelope& payload) {
    if (tail_ - cached_head_ >= capacity_) {
      // Acquire: pairs with the consumer's store_release(head) after it copied slots out.
      cached_head_ = detail::load_acquire(ring_->head);
      if (tail_ - cached_head_ >= capacity_) return false;
    }
    Slot& slot = slots_[tail_ & mask_];
    slot.header.opcode = opcode;
    slot.header.flags = flags;
    slot.header.actor = actor;
    slot.payload = payload;
    // Release: makes the fields above visible before the consumer's load_acquire of seq.
    detail::store_release(slot.header.seq, tail_ + 1);
    ++tail_;
    return true;
  }

  // Makes every staged slot readable with one store of `published` (none if nothing is
  // staged, so the consumer's line is left alone).
  PKRT_HD void publish_staged() {
    if (published_ == tail_) return;
    published_ = tail_;
    // Release: the consumer that acquires `published` may read every slot below it (each
    // slot's contents and seq were stored before this).
    detail::store_release(ring_->published, tail_);
  }

  // Slots written but not yet published.
  PKRT_HD std::uint32_t staged() const { return static_cast<std::uint32_t>(tail_ - published_); }

  // Whether a publish would succeed now (reloads the consumer's head if needed).
  PKRT_HD bool has_room() { return room() > 0; }

  // Free slots now: at least what the cached head promises, reloaded when that is short.
  PKRT_HD std::uint32_t room(std::uint32_t wanted = 1) {
    if (tail_ - cached_head_ + wanted > capacity_) {
      // Acquire: pairs with the consumer's store_release(head) after it copied slots out.
      cached_head_ = detail::load_acquire(ring_->head);
    }
    return static_cast<std::uint32_t>(capacity_ - (tail_ - cached_head_));
  }

  // Publishes slots[0..n) in order; the caller checked room() >= n. The payload of every slot
  // is written before its own sequence word, so the consumer may start on the first slot
  // while later ones are still being written.
  PKRT_HD void publish_reserved(const Slot* slots, std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) {
      Slot& slot = slots_[(tail_ + i) & mask_];
      slot.header.opcode = slots[i].header.opcode;
      slot.header.flags = slots[i].header.flags;
      slot.header.actor = slots[i].header.actor;
      slot.payload = slots[i].payload;
      // Release: the fields above are visible before the consumer's load_acquire of seq.
      detail::store_release(slot.header.seq, tail_ + i + 1);
    }
    tail_ += n;
    published_ = tail_;
    // Release: the consumer that acquires `published` may read every slot below it.
    detail::store_release(ring_->published, tail_);
  }

  PKRT_HD std::uint64_t position() const { return tail_; }
  PKRT_HD std::uint32_t capacity() const { return capacity_; }
  PKRT_HD bool valid() const { return ring_ != nullptr; }

 private:
  RingHeader* ring_ = nullptr;
  Slot* slots_ = nullptr;
  std::uint32_t mask_ = 0;
  std::uint32_t capacity_ = 0;
  std::uint64_t tail_ = 0;
  std::uint64_t published_ = 0;  // tail_ as last stored to ring_->published
  std::uint64_t cached_head_ = 0;
};

// Consumer steps 1-2 (copy a published slot) for any position below the consumer's last
// load of `published`. A consumer may have other threads of its own agent do them in parallel
// for a run of positions (a GPU block: one PCIe round trip for a run of slots instead of one
// per slot, pkrt/kernels/h2k_stage.hpp), provided every such copy happens
// before the consumer's commit of those positions (a block barrier between them): the
// consumer's release of head is then cumulative over them, so the producer cannot overwrite
// a slot that a helper thread is still reading.
struct RingSlotsView {
  const Slot* slots;
  std::uint32_t mask;

  // Copies the slot at `pos` into `out`; false when it does not hold position `pos`.
  PKRT_HD bool copy(std::uint64_t pos, Slot& out) const {
    const Slot& slot = slots[pos & mask];
    // Acquire: pairs with the producer's store_release(seq); the copy below sees its writes.
    if (detail::load_acquire(slot.header.seq) != pos + 1) return false;
    out.header.seq = pos + 1;
    out.header.opcode = slot.header.opcode;
    out.header.flags = slot.header.flags;
    out.header.actor = slot.header.actor;
    out.payload = slot.payload;
    return true;
  }
};

// Consumer side. Keeps its position privately and publishes it as the ring's head.
class RingConsumer {
 public:
  RingConsumer() = default;
  PKRT_HD explicit RingConsumer(RingHeader* ring)
      : ring_(ring), slots_(ring_slots(ring)), mask_(ring->mask),
        // Relaxed: our own previous value.
        head_(detail::load_relaxed(ring->head)), committed_(head_), published_(head_) {}

  // Copies the next slot into `out` without consuming it; false when none is published.
  PKRT_HD bool peek(Slot& out) {
    if (!ready()) return false;
    return peek_at(head_, out);
  }

  // Copies the slot at `pos` (position() <= pos < the last published()) without consuming
  // it; false when it is not readable.
  PKRT_HD bool peek_at(std::uint64_t pos, Slot& out) const { return slots().copy(pos, out); }
  // The slots, for threads that copy published slots on this consumer's behalf (see
  // RingSlotsView). The consumer itself still decides how far to read and when to commit.
  PKRT_HD RingSlotsView slots() const { return RingSlotsView{slots_, mask_}; }

  // Reloads the producer's `published` and returns it: the consumer may read every position
  // below it. (A consumer that stops there bounds its work by what was published when it
  // started, however fast the producer refills the ring.)
  PKRT_HD std::uint64_t published() {
    // Acquire: pairs with the producer's store_release(published).
    published_ = detail::load_acquire(ring_->published);
    return published_;
  }

  // Whether the next slot is published (no copy, and no access to the slot's line).
  PKRT_HD bool ready() {
    if (head_ < published_) return true;
    // Acquire: pairs with the producer's store_release(published), made after the seq and
    // contents of every slot below it.
    published_ = detail::load_acquire(ring_->published);
    return head_ < published_;
  }

  // Consumes the slot last returned by peek(): hands it back to the producer.
  PKRT_HD void pop() {
    committed_ = ++head_;
    // Release: our reads of the slot happen before the producer may overwrite it.
    detail::store_release(ring_->head, head_);
  }

  // Batched consumption: advance() moves past the slot last returned by peek() without
  // handing it back; commit() hands back everything advanced past so far with one store.
  // Until commit() the producer sees those slots as still occupied.
  PKRT_HD void advance() { ++head_; }
  PKRT_HD void commit() {
    if (committed_ == head_) return;
    committed_ = head_;
    // Release: our reads of every slot advanced past happen before the producer reuses them.
    detail::store_release(ring_->head, head_);
  }
  // Slots advanced past but not yet handed back.
  PKRT_HD std::uint64_t uncommitted() const { return head_ - committed_; }

  // peek + pop.
  PKRT_HD bool try_consume(Slot& out) {
    if (!peek(out)) return false;
    pop();
    return true;
  }

  PKRT_HD std::uint64_t position() const { return head_; }
  PKRT_HD bool valid() const { return ring_ != nullptr; }

 private:
  RingHeader* ring_ = nullptr;
  Slot* slots_ = nullptr;
  std::uint32_t mask_ = 0;
  std::uint64_t head_ = 0;
  std::uint64_t committed_ = 0;  // head_ as last stored to ring_->head
  std::uint64_t published_ = 0;  // the producer's `published` as last loaded
};

// Slots published but not yet consumed, as seen by an observer (approximate while both
// sides run; exact when they are stopped).
PKRT_HD inline std::uint64_t ring_depth(const RingHeader* ring) {
  // Relaxed (both): diagnostics only; both counters are monotonic.
  const std::uint64_t published = detail::load_relaxed(ring->published);
  const std::uint64_t head = detail::load_relaxed(ring->head);
  return published >= head ? published - head : 0;
}

}  // namespace pkrt
