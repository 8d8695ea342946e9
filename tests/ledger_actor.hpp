// tests/ledger_actor.hpp: an actor for messaging tests. It keeps, per sender, the last
// sequence number it was given and counts every command that arrives out of order, so a test
// can check exactly-once, in-order delivery per sender after the fact.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/runtime.hpp>

#include <cstdint>

namespace pkrt::testing {

inline constexpr std::uint32_t kLedgerSenders = 8;

enum LedgerOpcode : std::uint16_t {
  kLedgerAppend = kUserOpcodeBase + 0,  // data: LedgerEntry; no reply (acknowledged)
  kLedgerQuery = kUserOpcodeBase + 1,   // reply: LedgerTotals
  kLedgerEcho = kUserOpcodeBase + 2,    // reply: the same 32 bytes
  kLedgerReject = kUserOpcodeBase + 3,  // fails with kInvalidArgument
};

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
      default:
        return StatusCode::kUnknownOpcode;
    }
  }
};

const Program& ledger_program();

}  // namespace pkrt::testing
