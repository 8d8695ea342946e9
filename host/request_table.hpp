// host/request_table.hpp: RequestTable, where replies meet the threads and callbacks waiting
// for them (the runtime's half of pkrt::ReplyFuture).
//
// Contract
// - Records: a pool of fixed records, allocated in chunks of kChunkRecords (never per message)
//   and recycled through a lock-free free list. A record is taken by send(), bound to its
//   request id, completed once (by the pump, a draining waiter, or fail_all), then freed by
//   whoever consumes the reply last: the ReplyFuture (get, or its destructor) or, for a
//   callback, the completer right before it calls the callback.
// - Request id -> record: one window per block, indexed by the id's sequence number (ids of
//   one block are contiguous: see make_command_request), written by the holder of that
//   block's H2K lane lock, cleared by the holder of its K2H lane lock. At most 65536 slots
//   per block (4 x the ring capacity, at least 1024). A slot still held by
//   an older unanswered request (one due far in the future) sends the new binding to an
//   overflow map under a mutex: correct, just slower, and rare.
// - Lifetime: the runtime holds one reference and every allocated record one more; the table
//   deletes itself when the last is gone, so a ReplyFuture may outlive its Runtime.
// - Draining: a waiting thread may drain its block's K2H ring through the ReplyDrainer the
//   runtime registered, only while the drain gate is open; close_drain() (shutdown) waits
//   until every thread inside the gate has left, so no waiter touches a runtime being freed.
// - Thread safety: every member function may be called from any thread unless it says
//   otherwise. Host only.
//
// Record completion word (Record::state), 32 bits so that a waiter can futex-wait on it:
//   bits 0-1 phase: kFree, kPending (bound, unanswered), kClaimed (a completer won the CAS
//            and is writing the reply), kDone (reply readable)
//   bit 2    kParked: a waiter sleeps on this word (the completer must futex-wake it)
//   bit 3    kDetached: the future was dropped (the completer frees the record)
//   bit 4    kCallback: completed by calling Record::callback (on the pump thread, or on the
//            thread that fails it in fail_all)
//   bits 8-31 generation, bumped at every free: a completion for a recycled record fails
//            its CAS (completers check the request id the record holds, then CAS the state
//            they read, so a record freed and reused in between fails the CAS).
#pragma once

#include <pkrt/reply_future.hpp>
#include <pkrt/runtime.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_map>

namespace pkrt::detail {

// The runtime's side of draining for a waiter (Runtime::Impl implements it).
class ReplyDrainer {
 public:
  virtual ~ReplyDrainer() = default;
  // Completes what block `block`'s K2H ring holds that a waiting thread may complete itself
  // (future replies and acknowledgements), stopping at the first slot only the pump may
  // handle; never blocks (skips when another thread drains that ring). Returns true when it
  // stopped at such a slot.
  virtual bool drain_for_waiter(std::uint32_t block) = 0;
  // A thread starts / stops spinning with drains (PumpDoorbell::drainers).
  virtual void drainer_arrives() = 0;
  virtual void drainer_leaves() = 0;
  // On the pump thread only: one step of the pump's own work (handle the next slot of the
  // current pass, or run a new pass, with the watchdog). False when there was nothing to do.
  virtual bool pump_step() = 0;
};

// How long a waiter spins (draining) before it parks, per poll policy.
struct WaitPolicy {
  std::chrono::nanoseconds spin{20000};
};

class RequestTable {
 public:
  static constexpr std::uint32_t kChunkRecords = 1024;
  static constexpr std::uint32_t kMaxChunks = 16384;  // 16M records: the 24-bit index space
  static constexpr std::uint32_t kNoRecord = ~0u;

  enum : std::uint32_t {
    kPhaseMask = 0x3,
    kFree = 0,
    kPending = 1,
    kClaimed = 2,
    kDone = 3,
    kParked = 1u << 2,
    kDetached = 1u << 3,
    kCallback = 1u << 4,
    kGenerationShift = 8,
  };

  struct alignas(64) Record {
    std::atomic<std::uint32_t> state{0};
    std::atomic<std::uint32_t> next_free{0};  // free list link: index + 1, 0 = end
    std::atomic<std::uint64_t> request{0};    // bound request id (checked by completers)
    std::uint32_t actor = 0;                  // written before binding, read after a claim
    std::uint16_t opcode = 0;
    Reply reply;                              // written by the claimer, read after kDone
    Runtime::ReplyCallback callback;          // kCallback records only
  };

  // windows: per block, a power of two >= 2. count_outstanding: keep outstanding() (two
  // relaxed RMWs per request); only a pump that must poll (CUDA) reads it.
  static RequestTable* create(std::uint32_t blocks, std::uint32_t window, bool count_outstanding);
  // The runtime's reference; the table is deleted once every record is freed too.
  void release_runtime_reference();

  // ---- send side ------------------------------------------------------------------------
  // A free record (kNoRecord when 16M are in use). The record is the caller's until bind().
  std::uint32_t allocate();
  // Up to n free records into out[0..), with one free-list CAS and one reference update per
  // run of the list instead of one each per record (send_batch). Returns how many: fewer
  // than n only when 16M are in use.
  std::size_t allocate_many(std::uint32_t* out, std::size_t n);
  // Makes the record pending for `request` (0: an immediate failure that is never bound).
  // `callback` non-null: completes by calling it. Returns the future for a future record.
  ReplyFuture prepare(std::uint32_t index, std::uint64_t request, std::uint32_t actor,
                      std::uint16_t opcode, Runtime::ReplyCallback* callback);
  // Binds a prepared record to its request id. Caller holds the block's H2K lane lock.
  void bind(std::uint64_t request, std::uint32_t index);
  // A send that never reached a ring: completes the allocated record at once with `status`,
  // without ever making it pending (so no completer can see it): a callback runs here and
  // the record is freed; a future gets a record that is already done.
  ReplyFuture complete_unbound(std::uint32_t index, std::uint32_t actor, std::uint16_t opcode,
                               Runtime::ReplyCallback* callback, Status status);

  // ---- completion side (holder of the block's K2H lane lock) ----------------------------
  enum class Waiter { kNone, kFuture, kCallback };
  // Who waits for `request`, without changing anything.
  Waiter waiter_of(std::uint64_t request) const;
  // Completes `request`, unbinding it: fill(record) writes the reply in place into
  // record.reply (its status, and every field of its event: the record is reused, so the
  // event holds an older reply's values), then the waiter is released. In place because a
  // Reply built elsewhere and moved in costs copies whose wide loads stall on the fresh
  // narrow stores. False when nobody waits (a post, an id already failed by fail_all, a
  // stale id). A callback runs in this call.
  template <class FillReply>
  bool complete(std::uint64_t request, FillReply&& fill) {
    static_assert(std::is_void_v<std::invoke_result_t<FillReply&, Record&>>,
                  "complete(): fill writes record.reply in place; a Reply it returned would be lost");
    const std::uint32_t index = unbind(request);
    if (index == kNoRecord) return false;
    Record& r = record(index);
    std::uint32_t s;
    if (!claim(r, request, s)) return false;
    fill(r);
    finish(index, s);
    return true;
  }
  // Completes every pending record with `status` (shutdown, a fatal runtime error), in two
  // phases: every future first, then the callbacks, so a callback that waits on a future
  // finds it done (it runs on the caller's thread).
  void fail_all(const Status& status, const std::string& program_name);

  // Requests sent and not yet answered (the pump's poll policy spins while this is > 0); 0
  // when the table was created without count_outstanding.
  std::int64_t outstanding() const {
    // Relaxed: a hint for how long to spin; nothing is read through it.
    return outstanding_.load(std::memory_order_relaxed);
  }

  // ---- waiting (ReplyFuture) -------------------------------------------------------------
  // The pump thread calls this once: a wait on that thread (a callback waiting on a future)
  // never parks, since the thread that would wake it is itself; it does the pump's work
  // instead (ReplyDrainer::pump_step) until its reply is in.
  void mark_pump_thread();
  bool on_pump_thread() const;  // whether the calling thread is this table's pump
  // True once the record is done; false at the deadline (none: wait for ever), or when the
  // runtime closed the drain gate under a wait on the pump thread.
  bool wait(std::uint32_t index, std::optional<std::chrono::steady_clock::time_point> deadline);
  bool poll(std::uint32_t index);  // ready() / wait_for(0)
  Reply take(std::uint32_t index);                            // after wait() said done
  void detach(std::uint32_t index);  // future dropped
  std::future<Reply> to_std_future(std::uint32_t index);

  // ---- drain gate ------------------------------------------------------------------------
  void open_drain(ReplyDrainer* drainer, WaitPolicy policy);
  void close_drain();  // returns once no thread is inside the gate

 private:
  RequestTable(std::uint32_t blocks, std::uint32_t window, bool count_outstanding);
  ~RequestTable();

  Record& record(std::uint32_t index) const {
    // Acquire: pairs with grow()'s release of the chunk pointer (the records are constructed).
    return chunks_[index / kChunkRecords].load(std::memory_order_acquire)[index % kChunkRecords];
  }
  std::uint32_t unbind(std::uint64_t request);
  std::uint32_t lookup(std::uint64_t request) const;
  bool claim(Record& r, std::uint64_t request, std::uint32_t& claimed_state);
  void finish(std::uint32_t index, std::uint32_t claimed_state);  // the reply is in the record
  void free_record(std::uint32_t index);
  void push_free(std::uint32_t first, std::uint32_t last);
  bool grow();  // false when the index space is used up
  void drop_reference();
  bool enter_gate();
  void leave_gate();
  bool wait_on_pump_thread(Record& r, std::optional<std::chrono::steady_clock::time_point> deadline);

  const std::uint32_t blocks_;
  const std::uint32_t window_;  // power of two
  const bool count_outstanding_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> windows_;  // blocks_ x window_: (seq << 24) | index

  std::unique_ptr<std::atomic<Record*>[]> chunks_;  // kMaxChunks entries, filled in order
  std::mutex grow_mutex_;
  std::uint32_t chunk_count_ = 0;  // guarded by grow_mutex_
  alignas(64) std::atomic<std::uint64_t> free_head_{0};  // (tag << 32) | (index + 1)
  alignas(64) std::atomic<std::int64_t> outstanding_{0};
  alignas(64) std::atomic<std::int64_t> references_{1};

  mutable std::mutex overflow_mutex_;
  std::unordered_map<std::uint64_t, std::uint32_t> overflow_;  // guarded by overflow_mutex_
  std::atomic<std::uint32_t> overflow_size_{0};

  alignas(64) std::atomic<std::int32_t> inside_gate_{0};
  std::atomic<bool> drain_open_{false};
  ReplyDrainer* drainer_ = nullptr;  // set before the gate opens, read inside it
  WaitPolicy policy_;
};

}  // namespace pkrt::detail
