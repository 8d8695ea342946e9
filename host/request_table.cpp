// host/request_table.cpp: RequestTable and ReplyFuture (see host/request_table.hpp for the
// protocol of the record's completion word).
#include "host/request_table.hpp"

#include <pkrt/detail/block_platform.hpp>
#include <pkrt/detail/futex.hpp>

#include <cstdio>
#include <thread>
#include <utility>
#include <vector>

namespace pkrt::detail {
namespace {

constexpr std::uint32_t kIndexBits = 24;
constexpr std::uint64_t kIndexMask = (std::uint64_t{1} << kIndexBits) - 1;
constexpr std::uint32_t kGenerationMask = 0xFFFFFFu;
// A parked waiter re-checks its record this often even without a wake-up, and drains once:
// a pump stuck in a long user callback cannot hold a reply back for ever.
constexpr std::chrono::milliseconds kParkSlice{10};

static_assert(RequestTable::kMaxChunks * std::uint64_t{RequestTable::kChunkRecords} == kIndexMask + 1,
              "record indices fill the 24 bits a window entry has for them");
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "waiters futex-wait on a record's completion word");

// The table whose pump runs on this thread (mark_pump_thread), if any.
thread_local const RequestTable* tls_pump_table = nullptr;

std::uint32_t phase(std::uint32_t s) { return s & RequestTable::kPhaseMask; }
std::uint32_t generation_of(std::uint32_t s) { return s >> RequestTable::kGenerationShift; }

std::uint32_t* futex_word(std::atomic<std::uint32_t>& word) {
  return reinterpret_cast<std::uint32_t*>(&word);
}

}  // namespace

RequestTable* RequestTable::create(std::uint32_t blocks, std::uint32_t window, bool count_outstanding) {
  return new RequestTable(blocks, window, count_outstanding);
}

RequestTable::RequestTable(std::uint32_t blocks, std::uint32_t window, bool count_outstanding)
    : blocks_(blocks),
      window_(window),
      count_outstanding_(count_outstanding),
      windows_(std::make_unique<std::atomic<std::uint64_t>[]>(std::size_t{blocks} * window)),
      chunks_(std::make_unique<std::atomic<Record*>[]>(kMaxChunks)) {
  // The first chunk now, so that the first sends never take the grow path.
  (void)grow();
}

RequestTable::~RequestTable() {
  for (std::uint32_t c = 0; c < chunk_count_; ++c)
    // Relaxed: the last reference is gone; no other thread touches the table.
    delete[] chunks_[c].load(std::memory_order_relaxed);
}

void RequestTable::drop_reference() {
  // Acq_rel: every use of the table by the dropping threads happens before the delete.
  if (references_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void RequestTable::release_runtime_reference() { drop_reference(); }

// ---- free list ----------------------------------------------------------------------------

void RequestTable::push_free(std::uint32_t first, std::uint32_t last) {
  // Relaxed: the CAS below orders; a stale value only makes it retry.
  std::uint64_t head = free_head_.load(std::memory_order_relaxed);
  for (;;) {
    // Relaxed: published by the release CAS below together with the record's state.
    record(last).next_free.store(static_cast<std::uint32_t>(head), std::memory_order_relaxed);
    const std::uint64_t desired = (((head >> 32) + 1) << 32) | (std::uint64_t{first} + 1);
    // Release: the records' state and links are visible to the thread that pops them (its
    // acquire CAS). The tag in the high half defeats ABA.
    if (free_head_.compare_exchange_weak(head, desired, std::memory_order_release,
                                         std::memory_order_relaxed))
      return;
  }
}

bool RequestTable::grow() {
  std::lock_guard lock(grow_mutex_);
  // Acquire: another thread may have grown while we waited for the mutex.
  if (static_cast<std::uint32_t>(free_head_.load(std::memory_order_acquire)) != 0) return true;
  if (chunk_count_ == kMaxChunks) return false;
  auto* chunk = new Record[kChunkRecords];
  const std::uint32_t base = chunk_count_ * kChunkRecords;
  for (std::uint32_t j = 0; j + 1 < kChunkRecords; ++j)
    // Relaxed: published by push_free's release CAS.
    chunk[j].next_free.store(base + j + 2, std::memory_order_relaxed);
  // Release: record() readers that acquire the pointer see constructed records.
  chunks_[chunk_count_].store(chunk, std::memory_order_release);
  ++chunk_count_;
  push_free(base, base + kChunkRecords - 1);
  return true;
}

std::uint32_t RequestTable::allocate() {
  // Acquire: pairs with push_free's release CAS (the record's state and link).
  std::uint64_t head = free_head_.load(std::memory_order_acquire);
  for (;;) {
    const auto top = static_cast<std::uint32_t>(head);
    if (top == 0) {
      if (!grow()) return kNoRecord;
      // Acquire: as above.
      head = free_head_.load(std::memory_order_acquire);
      continue;
    }
    const std::uint32_t index = top - 1;
    // Relaxed: if another thread popped this record meanwhile, the tag makes the CAS fail.
    const std::uint32_t next = record(index).next_free.load(std::memory_order_relaxed);
    const std::uint64_t desired = (((head >> 32) + 1) << 32) | next;
    // Acquire (success and failure): the popped record's state as its last free left it.
    if (free_head_.compare_exchange_weak(head, desired, std::memory_order_acquire,
                                         std::memory_order_acquire)) {
      // Relaxed: a count; the delete that depends on it is ordered by drop_reference.
      references_.fetch_add(1, std::memory_order_relaxed);
      return index;
    }
  }
}

std::size_t RequestTable::allocate_many(std::uint32_t* out, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    // Acquire: pairs with push_free's release CAS (the records' states and links).
    std::uint64_t head = free_head_.load(std::memory_order_acquire);
    for (;;) {
      const auto top = static_cast<std::uint32_t>(head);
      if (top == 0) break;
      // Walk up to n - got links from the head. A record is only relinked after it was
      // popped, which moves the head's tag: if the CAS below succeeds, nothing on the walked
      // part of the list changed while we read it.
      std::size_t taken = 0;
      std::uint32_t link = top;
      while (link != 0 && got + taken < n) {
        out[got + taken++] = link - 1;
        // Relaxed: a stale link only means the tag moved and the CAS fails.
        link = record(link - 1).next_free.load(std::memory_order_relaxed);
      }
      const std::uint64_t desired = (((head >> 32) + 1) << 32) | link;
      // Acquire (success and failure): as in allocate().
      if (free_head_.compare_exchange_weak(head, desired, std::memory_order_acquire,
                                           std::memory_order_acquire)) {
        // Relaxed: a count; see allocate().
        references_.fetch_add(static_cast<std::int64_t>(taken), std::memory_order_relaxed);
        got += taken;
        break;
      }
    }
    if (got < n && static_cast<std::uint32_t>(free_head_.load(std::memory_order_relaxed)) == 0 && !grow())
      break;  // Relaxed: only decides whether to grow; grow() re-checks under its mutex.
  }
  return got;
}

void RequestTable::free_record(std::uint32_t index) {
  Record& r = record(index);
  if (!r.reply.status.ok()) r.reply.status = Status();
  // Relaxed (both): the record is ours alone; push_free's release CAS publishes the new
  // generation to the next allocator.
  const std::uint32_t s = r.state.load(std::memory_order_relaxed);
  r.state.store(((generation_of(s) + 1) & kGenerationMask) << kGenerationShift | kFree,
                std::memory_order_relaxed);
  push_free(index, index);
  drop_reference();
}

// ---- send side ----------------------------------------------------------------------------

ReplyFuture RequestTable::prepare(std::uint32_t index, std::uint64_t request, std::uint32_t actor,
                                  std::uint16_t opcode, Runtime::ReplyCallback* callback) {
  Record& r = record(index);
  r.actor = actor;
  r.opcode = opcode;
  // Relaxed: read by completers only after they acquire the state stored below.
  r.request.store(request, std::memory_order_relaxed);
  std::uint32_t flags = kPending;
  if (callback != nullptr) {
    r.callback = std::move(*callback);
    flags |= kCallback;
  }
  // Relaxed: only a hint for the pump's poll policy.
  if (count_outstanding_) outstanding_.fetch_add(1, std::memory_order_relaxed);
  // Relaxed: our own last store (free_record), made visible to us by allocate's acquire.
  const std::uint32_t generation = generation_of(r.state.load(std::memory_order_relaxed));
  // Release: the fields above are visible to the completer that acquires this state
  // (through the window entry bound next, or fail_all's scan).
  r.state.store(generation << kGenerationShift | flags, std::memory_order_release);
  if (callback != nullptr) return ReplyFuture();
  return ReplyFuture(this, index);
}

void RequestTable::bind(std::uint64_t request, std::uint32_t index) {
  const std::uint64_t seq = command_request_seq(request);
  std::atomic<std::uint64_t>& slot =
      windows_[std::size_t{command_request_block(request)} * window_ + (seq & (window_ - 1))];
  // Relaxed: only the lane holder (us) stores nonzero here; a zero we read is final until
  // we store, and a nonzero one (possibly being cleared right now) sends us to the overflow.
  if (slot.load(std::memory_order_relaxed) == 0) {
    // Release: the record's pending state (prepare) is visible to the completer that
    // acquires this entry.
    slot.store((seq << kIndexBits) | index, std::memory_order_release);
    return;
  }
  std::lock_guard lock(overflow_mutex_);
  overflow_.emplace(request, index);
  // Release: a completer that sees the size acquires the map through the mutex anyway; the
  // size only lets it skip the mutex when the map is empty.
  overflow_size_.store(static_cast<std::uint32_t>(overflow_.size()), std::memory_order_release);
}

ReplyFuture RequestTable::complete_unbound(std::uint32_t index, std::uint32_t actor, std::uint16_t opcode,
                                           Runtime::ReplyCallback* callback, Status status) {
  Record& r = record(index);
  Reply reply{std::move(status), Event{}};
  reply.event.actor = actor;
  reply.event.opcode = opcode;
  if (callback != nullptr) {
    Runtime::ReplyCallback cb = std::move(*callback);
    free_record(index);
    if (cb) cb(reply);
    return ReplyFuture();
  }
  r.actor = actor;
  r.opcode = opcode;
  // Relaxed: nobody but us knows this record; the release below publishes it.
  r.request.store(0, std::memory_order_relaxed);
  r.reply = std::move(reply);
  // Relaxed: our own last store (free_record), made visible to us by allocate's acquire.
  const std::uint32_t generation = generation_of(r.state.load(std::memory_order_relaxed));
  // Release: the reply is visible to the future's acquire of kDone.
  r.state.store(generation << kGenerationShift | kDone, std::memory_order_release);
  return ReplyFuture(this, index);
}

// ---- completion side ----------------------------------------------------------------------

std::uint32_t RequestTable::lookup(std::uint64_t request) const {
  const std::uint32_t block = command_request_block(request);
  if (!is_command_request(request) || block >= blocks_) return kNoRecord;
  const std::uint64_t seq = command_request_seq(request);
  // Acquire: pairs with bind()'s release (the record is prepared).
  const std::uint64_t key =
      windows_[std::size_t{block} * window_ + (seq & (window_ - 1))].load(std::memory_order_acquire);
  if (key != 0 && (key >> kIndexBits) == seq) return static_cast<std::uint32_t>(key & kIndexMask);
  // Acquire: pairs with bind()'s release of the size; the mutex orders the map itself.
  if (overflow_size_.load(std::memory_order_acquire) == 0) return kNoRecord;
  std::lock_guard lock(overflow_mutex_);
  const auto it = overflow_.find(request);
  return it == overflow_.end() ? kNoRecord : it->second;
}

std::uint32_t RequestTable::unbind(std::uint64_t request) {
  const std::uint32_t block = command_request_block(request);
  if (!is_command_request(request) || block >= blocks_) return kNoRecord;
  const std::uint64_t seq = command_request_seq(request);
  std::atomic<std::uint64_t>& slot = windows_[std::size_t{block} * window_ + (seq & (window_ - 1))];
  // Acquire: pairs with bind()'s release (the record is prepared).
  std::uint64_t key = slot.load(std::memory_order_acquire);
  if (key != 0 && (key >> kIndexBits) == seq) {
    // Relaxed: the zero publishes nothing. No RMW needed: while the entry holds our key no
    // sender writes it (bind only writes an entry it reads as 0), and only this block's K2H
    // consumer (us) clears it.
    slot.store(0, std::memory_order_relaxed);
    return static_cast<std::uint32_t>(key & kIndexMask);
  }
  // Acquire: as in lookup().
  if (overflow_size_.load(std::memory_order_acquire) == 0) return kNoRecord;
  std::lock_guard lock(overflow_mutex_);
  const auto it = overflow_.find(request);
  if (it == overflow_.end()) return kNoRecord;
  const std::uint32_t index = it->second;
  overflow_.erase(it);
  // Release: as in bind().
  overflow_size_.store(static_cast<std::uint32_t>(overflow_.size()), std::memory_order_release);
  return index;
}

RequestTable::Waiter RequestTable::waiter_of(std::uint64_t request) const {
  const std::uint32_t index = lookup(request);
  if (index == kNoRecord) return Waiter::kNone;
  const Record& r = record(index);
  // Acquire: pairs with prepare's release; the request check below then reads its value.
  const std::uint32_t s = r.state.load(std::memory_order_acquire);
  // Relaxed: ordered by the acquire above.
  if (phase(s) != kPending || r.request.load(std::memory_order_relaxed) != request) return Waiter::kNone;
  return (s & kCallback) != 0 ? Waiter::kCallback : Waiter::kFuture;
}

bool RequestTable::claim(Record& r, std::uint64_t request, std::uint32_t& claimed_state) {
  // Acquire: pairs with prepare's release (fields) and with the waiter's parking CAS.
  std::uint32_t s = r.state.load(std::memory_order_acquire);
  for (;;) {
    // Relaxed: ordered by the acquire of the state; a recycled record fails the CAS below
    // (its generation moved) even if this reads the new request.
    if (phase(s) != kPending || r.request.load(std::memory_order_relaxed) != request) return false;
    const std::uint32_t claimed = (s & ~kPhaseMask) | kClaimed;
    // Acq_rel: one completer wins; the loser (or a parking waiter's change) re-reads.
    if (r.state.compare_exchange_weak(s, claimed, std::memory_order_acq_rel, std::memory_order_acquire)) {
      claimed_state = claimed;
      return true;
    }
  }
}

void RequestTable::finish(std::uint32_t index, std::uint32_t claimed_state) {
  Record& r = record(index);
  // Relaxed: a hint for the poll policy.
  if (count_outstanding_) outstanding_.fetch_sub(1, std::memory_order_relaxed);
  if ((claimed_state & kCallback) != 0) {
    Runtime::ReplyCallback callback = std::move(r.callback);
    r.callback = nullptr;
    const Reply reply = std::move(r.reply);
    free_record(index);
    if (callback) callback(reply);
    return;
  }
  const std::uint32_t done = generation_of(claimed_state) << kGenerationShift | kDone;
  // Acq_rel: release publishes the reply to the waiter's acquire of kDone; acquire pairs
  // with the future's release of kDetached / kParked.
  const std::uint32_t before = r.state.exchange(done, std::memory_order_acq_rel);
  if ((before & kDetached) != 0) {
    free_record(index);
    return;
  }
  if ((before & kParked) != 0) futex_wake_all(futex_word(r.state));
}

void RequestTable::fail_all(const Status& status, const std::string& program_name) {
  std::uint32_t chunks;
  {
    std::lock_guard lock(grow_mutex_);
    chunks = chunk_count_;
  }
  auto failed = [&](const Record& r) {
    char opcode[16];
    std::snprintf(opcode, sizeof opcode, "0x%04x", r.opcode);
    return Reply{Status(status.code(), status.message() + " (the command to actor " + std::to_string(r.actor) +
                                           " of app '" + program_name + "', opcode " + opcode + ", was not answered)"),
                 Event{}};
  };
  // Phase 1: claim every pending record; complete the futures now, keep the callbacks.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> callbacks;  // (index, claimed state)
  for (std::uint32_t index = 0; index < chunks * kChunkRecords; ++index) {
    Record& r = record(index);
    // Acquire: as in claim(); a record that is not pending is skipped.
    if (phase(r.state.load(std::memory_order_acquire)) != kPending) continue;
    std::uint32_t claimed;
    // Relaxed: claim() re-checks it against the state it acquires.
    if (!claim(r, r.request.load(std::memory_order_relaxed), claimed)) continue;
    if ((claimed & kCallback) != 0) {
      callbacks.emplace_back(index, claimed);
    } else {
      r.reply = failed(r);
      finish(index, claimed);
    }
  }
  // Phase 2: the callbacks, which may now wait on any of those futures.
  for (const auto& [index, claimed] : callbacks) {
    Record& r = record(index);
    r.reply = failed(r);
    finish(index, claimed);
  }
}

// ---- waiting ------------------------------------------------------------------------------

bool RequestTable::enter_gate() {
  // Seq_cst (both): pairs with close_drain's store and load; either it sees us inside, or
  // we see the gate closed.
  inside_gate_.fetch_add(1, std::memory_order_seq_cst);
  if (drain_open_.load(std::memory_order_seq_cst)) return true;
  // Release: nothing was touched; pairs with close_drain's acquire.
  inside_gate_.fetch_sub(1, std::memory_order_release);
  return false;
}

void RequestTable::leave_gate() {
  // Release: our drains happen before close_drain's acquire of zero.
  inside_gate_.fetch_sub(1, std::memory_order_release);
}

void RequestTable::open_drain(ReplyDrainer* drainer, WaitPolicy policy) {
  drainer_ = drainer;
  policy_ = policy;
  // Seq_cst: see enter_gate; also publishes drainer_ and policy_ to threads that enter.
  drain_open_.store(true, std::memory_order_seq_cst);
}

void RequestTable::close_drain() {
  // Seq_cst (store and loads): the other half of enter_gate's pair, so the two are in one
  // total order; the loads also acquire leave_gate's release (the drains are finished).
  drain_open_.store(false, std::memory_order_seq_cst);
  while (inside_gate_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
}

bool RequestTable::poll(std::uint32_t index) {
  Record& r = record(index);
  // Acquire (both): pairs with finish()'s release of kDone.
  if (phase(r.state.load(std::memory_order_acquire)) == kDone) return true;
  if (enter_gate()) {
    // Relaxed: ours since prepare, which this thread (or the one that moved the future to
    // us) ordered before.
    drainer_->drain_for_waiter(command_request_block(r.request.load(std::memory_order_relaxed)));
    leave_gate();
  }
  return phase(r.state.load(std::memory_order_acquire)) == kDone;
}

void RequestTable::mark_pump_thread() { tls_pump_table = this; }
bool RequestTable::on_pump_thread() const { return tls_pump_table == this; }

bool RequestTable::wait_on_pump_thread(Record& r, std::optional<std::chrono::steady_clock::time_point> deadline) {
  // Acquire: pairs with finish()'s release of kDone.
  auto done = [&r] { return phase(r.state.load(std::memory_order_acquire)) == kDone; };
  if (!enter_gate()) return done();
  bool result = false;
  for (std::uint32_t i = 0;; ++i) {
    if (done()) {
      result = true;
      break;
    }
    // We are the pump: do its work (the rest of the current pass first, then new passes)
    // until our reply is in; there is nobody else to wait for.
    if (!drainer_->pump_step()) std::this_thread::yield();
    if (deadline && (i & 63) == 63 && std::chrono::steady_clock::now() >= *deadline) break;
  }
  leave_gate();
  return result;
}

bool RequestTable::wait(std::uint32_t index, std::optional<std::chrono::steady_clock::time_point> deadline) {
  Record& r = record(index);
  // Acquire: pairs with finish()'s release of kDone (the reply is readable).
  auto done = [&r] { return phase(r.state.load(std::memory_order_acquire)) == kDone; };
  if (done()) return true;
  // Relaxed: see poll().
  const std::uint32_t block = command_request_block(r.request.load(std::memory_order_relaxed));
  if (tls_pump_table == this) return wait_on_pump_thread(r, deadline);

  // Spin on our own word, draining our block's K2H ring: no hand-off when the reply is close.
  if (enter_gate()) {
    // Leaves the gate and the drainers count on every way out (a drain can throw bad_alloc
    // while it builds an error message; close_drain would otherwise wait for ever).
    struct Leave {
      RequestTable* table;
      ~Leave() {
        table->drainer_->drainer_leaves();
        table->leave_gate();
      }
    };
    drainer_->drainer_arrives();
    const Leave leave{this};
    auto spin_end = std::chrono::steady_clock::now() + policy_.spin;
    if (deadline && *deadline < spin_end) spin_end = *deadline;
    bool completed = false;
    for (std::uint32_t i = 0;; ++i) {
      if (done()) {
        completed = true;
        break;
      }
      drainer_->drain_for_waiter(block);
      // Pause first; then yield, so that the block (or pump) that will answer us gets the
      // core at once if the scheduler put it on ours (see kHostPureSpins).
      if (i < kHostPureSpins) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
      if ((i & 15) == 15 && std::chrono::steady_clock::now() >= spin_end) break;
    }
    // Replies for other waiters that arrived with ours: complete them now rather than leave
    // them for the pump, which drainer_leaves would otherwise have to wake.
    if (completed) {
      drainer_->drain_for_waiter(block);
      return true;
    }
  }

  // Park: the pump completes the record and wakes us.
  for (;;) {
    // Acquire: as in done().
    std::uint32_t s = r.state.load(std::memory_order_acquire);
    if (phase(s) == kDone) return true;
    const auto now = std::chrono::steady_clock::now();
    if (deadline && now >= *deadline) return false;
    if ((s & kParked) == 0) {
      // Acq_rel: the completer's exchange acquires it and then wakes us.
      if (!r.state.compare_exchange_weak(s, s | kParked, std::memory_order_acq_rel,
                                         std::memory_order_acquire))
        continue;
      s |= kParked;
    }
    auto slice = std::chrono::duration_cast<std::chrono::microseconds>(
        deadline ? std::min<std::chrono::steady_clock::duration>(kParkSlice, *deadline - now)
                 : std::chrono::steady_clock::duration(kParkSlice));
    if (slice.count() < 1) slice = std::chrono::microseconds(1);
    futex_wait_for(futex_word(r.state), s, slice);
    if (!done() && enter_gate()) {
      drainer_->drain_for_waiter(block);
      leave_gate();
    }
  }
}

Reply RequestTable::take(std::uint32_t index) {
  Reply reply = std::move(record(index).reply);
  free_record(index);
  return reply;
}

void RequestTable::detach(std::uint32_t index) {
  Record& r = record(index);
  // Acquire: pairs with finish()'s release (a done record is ours to free).
  std::uint32_t s = r.state.load(std::memory_order_acquire);
  for (;;) {
    if (phase(s) == kDone) {
      free_record(index);
      return;
    }
    // Acq_rel: the completer's exchange sees kDetached and frees the record.
    if (r.state.compare_exchange_weak(s, s | kDetached, std::memory_order_acq_rel,
                                      std::memory_order_acquire))
      return;
  }
}

std::future<Reply> RequestTable::to_std_future(std::uint32_t index) {
  auto promise = std::make_shared<std::promise<Reply>>();
  std::future<Reply> future = promise->get_future();
  Record& r = record(index);
  // The callback is written before kCallback is set; a completer reads it only after it
  // claimed a state with kCallback (the CAS below happened before its claim).
  r.callback = [promise](const Reply& reply) { promise->set_value(reply); };
  // Acquire: pairs with finish()'s release.
  std::uint32_t s = r.state.load(std::memory_order_acquire);
  for (;;) {
    if (phase(s) == kPending) {
      // Release: the callback written above is visible to the completer's acquiring claim.
      if (r.state.compare_exchange_weak(s, s | kCallback, std::memory_order_release,
                                        std::memory_order_acquire))
        return future;
      continue;
    }
    if (phase(s) == kDone) break;
    cpu_relax();  // kClaimed: the reply is being written right now
    // Acquire: as above.
    s = r.state.load(std::memory_order_acquire);
  }
  r.callback = nullptr;
  promise->set_value(take(index));
  return future;
}

}  // namespace pkrt::detail

namespace pkrt {

ReplyFuture& ReplyFuture::operator=(ReplyFuture&& other) noexcept {
  if (this != &other) {
    if (table_ != nullptr) table_->detach(index_);
    table_ = other.table_;
    index_ = other.index_;
    other.table_ = nullptr;
  }
  return *this;
}

ReplyFuture::~ReplyFuture() {
  if (table_ != nullptr) table_->detach(index_);
}

namespace {

Reply empty_future_reply() {
  return Reply{Status(StatusCode::kFailedPrecondition,
                      "this ReplyFuture holds no reply (default-constructed, moved from, or already "
                      "read). Fix: call get() once on the future a send() returned"),
               Event{}};
}

}  // namespace

Reply ReplyFuture::get() {
  if (table_ == nullptr) return empty_future_reply();
  detail::RequestTable* table = table_;
  table_ = nullptr;
  if (!table->wait(index_, std::nullopt)) {
    // Only on the pump thread, once the runtime closed its drain gate (shut down).
    table->detach(index_);
    return Reply{Status(StatusCode::kAborted,
                        "the runtime shut down while a callback waited in get() for this reply"),
                 Event{}};
  }
  return table->take(index_);
}

void ReplyFuture::wait() const {
  // On the pump thread this may return before the reply (see get()); ready() tells.
  if (table_ != nullptr) table_->wait(index_, std::nullopt);
}

std::future_status ReplyFuture::wait_for(std::chrono::nanoseconds timeout) const {
  if (table_ == nullptr) return std::future_status::ready;  // get() reports the misuse
  if (timeout.count() <= 0)
    return table_->poll(index_) ? std::future_status::ready : std::future_status::timeout;
  return table_->wait(index_, std::chrono::steady_clock::now() + timeout)
             ? std::future_status::ready
             : std::future_status::timeout;
}

bool ReplyFuture::ready() const { return table_ != nullptr && table_->poll(index_); }

ReplyFuture::operator std::future<Reply>() && {
  if (table_ == nullptr) {
    std::promise<Reply> p;
    p.set_value(empty_future_reply());
    return p.get_future();
  }
  detail::RequestTable* table = table_;
  table_ = nullptr;
  return table->to_std_future(index_);
}

}  // namespace pkrt
