// pkrt/reply_future.hpp: Event, Reply, and ReplyFuture, what a Runtime::send() returns.
//
// Contract
// - ReplyFuture has std::future<Reply>'s interface (get, wait, wait_for, wait_until, valid)
//   without its shared state: it names a record in the runtime's request table (a fixed pool,
//   grown in blocks of records, never per message), so a send allocates nothing on the heap.
//   Move-only. It converts to std::future<Reply> (from an rvalue) for code that names that
//   type; that conversion allocates the std::promise, which is then completed like a reply
//   callback (on the pump thread; at shutdown on the thread that shuts down).
// - Waiting without hand-offs: a thread in get()/wait*() first spins on its record's
//   completion word for a short budget (RuntimeOptions::poll), and while it spins it drains
//   its actor's K2H ring itself: replies for futures found there (its own, or another
//   thread's) are completed in place; anything else (events, callbacks, snapshots, park
//   reports) is left to the pump thread, which it wakes. Then it parks on a futex and the
//   pump completes the record. A reply a few microseconds away therefore costs no thread
//   hand-off at all.
// - wait_for(0) and ready() poll: they check the record and drain once, never block.
// - Every future completes: with the actor's reply, an acknowledgement (event.opcode kOpAck),
//   an error from the kernel (status not ok, event.opcode kOpError), or a host-side error
//   (ring full, runtime failed or shut down: status kRingFull, kAborted, ...). A future may
//   outlive its Runtime; it then holds the kAborted reply shutdown gave it.
// - Thread safety: one ReplyFuture is used by one thread at a time, like std::future;
//   different futures may be waited on from different threads at once.
// - Host only.
#pragma once

#include <pkrt/slot.hpp>
#include <pkrt/status.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <type_traits>

namespace pkrt {

// One K2H slot as the host sees it. In a Reply: a handler's reply has the command's own
// opcode and kFlagReply in flags; a command applied without a reply has kOpAck (also when
// the kernel acknowledged it in a kOpAckRange run); a rejected one kOpError.
struct Event {
  std::uint16_t opcode = 0;
  std::uint16_t flags = 0;
  std::uint32_t actor = kNoActor;
  std::uint32_t block = 0;
  std::uint64_t epoch = 0;
  std::uint64_t request = 0;
  std::array<std::byte, kEnvelopeDataBytes> data{};

  template <class T>
  T as() const {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: event data is at most 32 trivially copyable bytes");
    T value;
    std::memcpy(&value, data.data(), sizeof(T));
    return value;
  }
};

// What completes a send(): the actor's reply, an automatic ack, or an error (status not ok;
// event holds the kOpError slot when the kernel produced it).
struct Reply {
  Status status;
  Event event;
};

namespace detail {
class RequestTable;
}

class ReplyFuture {
 public:
  ReplyFuture() = default;
  ReplyFuture(ReplyFuture&& other) noexcept { *this = std::move(other); }
  ReplyFuture& operator=(ReplyFuture&& other) noexcept;
  ReplyFuture(const ReplyFuture&) = delete;
  ReplyFuture& operator=(const ReplyFuture&) = delete;
  ~ReplyFuture();  // a future dropped unanswered frees its record when the reply arrives

  // Whether this future refers to a reply (false after get(), after a move, or by default).
  bool valid() const { return table_ != nullptr; }

  // Waits for the reply and returns it; valid() is false afterwards. On an invalid future:
  // a Reply with kFailedPrecondition.
  Reply get();
  void wait() const;
  // std::future_status::ready or ::timeout (never ::deferred).
  std::future_status wait_for(std::chrono::nanoseconds timeout) const;
  template <class Rep, class Period>
  std::future_status wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return wait_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  template <class Clock, class Duration>
  std::future_status wait_until(const std::chrono::time_point<Clock, Duration>& deadline) const {
    const auto left = deadline - Clock::now();
    return wait_for(left.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
                                     : std::chrono::nanoseconds(0));
  }
  // Non-blocking: whether get() would return at once (drains the actor's K2H once).
  bool ready() const;

  // For code written against std::future<Reply> (vectors of them, say). Allocates.
  operator std::future<Reply>() &&;  // NOLINT: implicit by design (source compatibility)

 private:
  friend class detail::RequestTable;
  ReplyFuture(detail::RequestTable* table, std::uint32_t index) : table_(table), index_(index) {}

  detail::RequestTable* table_ = nullptr;
  std::uint32_t index_ = 0;
};

}  // namespace pkrt
