// examples/echo/echo.hpp: the smallest useful actor: replies to every kEchoPing with the
// same 32 bytes. Event-driven (kStepsWhenIdle = false): an idle grid waits on the host's
// doorbell instead of spinning through empty epochs. Used for the ring round-trip check
// and latency benchmarks.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/runtime.hpp>

#include <cstdint>

namespace pkrt::examples {

enum EchoOpcode : std::uint16_t {
  kEchoPing = kUserOpcodeBase + 0,   // reply: the same 32 bytes
  kEchoCount = kUserOpcodeBase + 1,  // reply: std::uint64_t pings answered by this actor
};

struct Echo {
  static constexpr const char* kName = "echo";
  static constexpr bool kStepsWhenIdle = false;
  struct Params {};
  struct State {
    std::uint64_t answered;
  };

  PKRT_HD static void step(State&, ActorContext&) {}

  PKRT_HD static StatusCode on_message(State& s, const Message& m, MessageContext& ctx) {
    if (m.opcode == kEchoPing) {
      ++s.answered;
      ctx.reply(m.data, kEnvelopeDataBytes);
      return StatusCode::kOk;
    }
    if (m.opcode == kEchoCount) {
      ctx.reply(s.answered);
      return StatusCode::kOk;
    }
    return StatusCode::kUnknownOpcode;
  }
};

const Program& echo_program();

}  // namespace pkrt::examples
