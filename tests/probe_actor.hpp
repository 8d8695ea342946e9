// tests/probe_actor.hpp: an actor for runtime tests: counts its steps, reports the epoch at
// which commands apply, and can be told to stall (until the runtime aborts) to exercise the
// watchdog.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/runtime.hpp>

#include <cstdint>

namespace pkrt::testing {

enum ProbeOpcode : std::uint16_t {
  kProbeEpoch = kUserOpcodeBase + 0,  // reply: std::uint64_t epoch at which it was applied
  kProbeStall = kUserOpcodeBase + 1,  // spin until abort_requested(), then ack
  kProbeSteps = kUserOpcodeBase + 2,  // reply: std::uint64_t steps taken
  kProbeSilent = kUserOpcodeBase + 3, // no reply: the runtime acks automatically
};

struct Probe {
  static constexpr const char* kName = "probe";
  struct Params {
    std::uint32_t unused = 0;
  };
  struct State {
    std::uint64_t steps;
    std::uint64_t stalls;
  };
  // Untouched after init: snapshots of a probe change only the chunk holding State.
  static constexpr const char* kRegionNames[] = {"ballast"};
  static std::uint64_t region_bytes(const Params&, std::uint32_t, std::uint32_t, std::uint32_t) { return 2048; }

  PKRT_HD static void step(State& s, ActorContext& ctx) {
    if (ctx.leader()) ++s.steps;
  }

  PKRT_HD static StatusCode on_message(State& s, const Message& m, MessageContext& ctx) {
    switch (m.opcode) {
      case kProbeEpoch:
        ctx.reply(m.epoch);
        return StatusCode::kOk;
      case kProbeStall: {
        ++s.stalls;
        detail::Backoff backoff;
        while (!ctx.abort_requested()) backoff.pause();
        return StatusCode::kOk;
      }
      case kProbeSteps:
        ctx.reply(s.steps);
        return StatusCode::kOk;
      case kProbeSilent:
        return StatusCode::kOk;
      default:
        return StatusCode::kUnknownOpcode;
    }
  }
};

const Program& probe_program();

}  // namespace pkrt::testing
