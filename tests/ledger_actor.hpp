// tests/ledger_actor.hpp: an actor for messaging tests. It keeps, per sender, the last
// sequence number it was given and counts every command that arrives out of order, so a test
// can check exactly-once, in-order delivery per sender after the fact.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/runtime.hpp>

#include <cstdint>
#if !PKRT_DEVICE_PASS
#include <atomic>
#include <chrono>
#include <thread>
#endif

namespace pkrt::testing {

inline constexpr std::uint32_t kLedgerSenders = 8;

enum LedgerOpcode : std::uint16_t {
  kLedgerAppend = kUserOpcodeBase + 0,  // data: LedgerEntry; no reply (acknowledged)
  kLedgerQuery = kUserOpcodeBase + 1,   // reply: LedgerTotals
  kLedgerEcho = kUserOpcodeBase + 2,    // reply: the same 32 bytes
  kLedgerReject = kUserOpcodeBase + 3,  // fails with kInvalidArgument
  kLedgerHold = kUserOpcodeBase + 4,    // CPU backend: returns once ledger_hold_released() is
                                        // set (or after 20 s, or on abort); no reply
};

#if !PKRT_DEVICE_PASS
// The flag kLedgerHold waits for: lets a test keep a block inside one run of commands while
// it watches what the host sees. Host memory, so the CPU backend only (a GPU applies
// kLedgerHold at once).
inline std::atomic<bool>& ledger_hold_released() {
  static std::atomic<bool> released{false};
  return released;
}
#endif

struct LedgerEntry {
  std::uint32_t sender;  // < kLedgerSenders
  std::uint32_t reserved;
  std::uint64_t seq;     // 1, 2, 3 ... per sender and actor
};

struct LedgerTotals {
  std::uint64_t count;       // appends received
  std::uint64_t violations;  // appends whose seq was not the sender's previous + 1
};

struct Ledger {
  static constexpr const char* kName = "ledger";
  static constexpr bool kStepsWhenIdle = false;
  struct Params {
    std::uint32_t unused = 0;
  };
  struct State {
    std::uint64_t count;
    std::uint64_t violations;
    std::uint64_t last[kLedgerSenders];
  };

  PKRT_HD static void step(State&, ActorContext&) {}

  PKRT_HD static StatusCode on_message(State& s, const Message& m, MessageContext& ctx) {
    switch (m.opcode) {
      case kLedgerAppend: {
        const auto e = m.as<LedgerEntry>();
        if (e.sender >= kLedgerSenders) return StatusCode::kOutOfRange;
        if (e.seq != s.last[e.sender] + 1) ++s.violations;
        s.last[e.sender] = e.seq;
        ++s.count;
        return StatusCode::kOk;
      }
      case kLedgerQuery: {
        const LedgerTotals t{s.count, s.violations};
        ctx.reply(t);
        return StatusCode::kOk;
      }
      case kLedgerEcho:
        ctx.reply(m.data, kEnvelopeDataBytes);
        return StatusCode::kOk;
      case kLedgerReject:
        return StatusCode::kInvalidArgument;
      case kLedgerHold: {
#if !PKRT_DEVICE_PASS
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        // Acquire: pairs with the test's release store; nothing else is read after it.
        while (!ledger_hold_released().load(std::memory_order_acquire) && !ctx.abort_requested() &&
               std::chrono::steady_clock::now() < give_up)
          std::this_thread::yield();
#endif
        return StatusCode::kOk;
      }
      default:
        return StatusCode::kUnknownOpcode;
    }
  }
};

const Program& ledger_program();

}  // namespace pkrt::testing
