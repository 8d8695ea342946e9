// counter.hpp: a user-defined actor, compiled into both backends by the application's own
// build. Each actor adds `step` every epoch and passes its running total to the next actor
// over K2K, which checks it: a small but complete use of the actor API.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/runtime.hpp>

#include <cstdint>

enum CounterOpcode : std::uint16_t {
  kCounterGet = pkrt::kUserOpcodeBase + 0,  // reply: CounterReport
};

struct CounterReport {
  std::uint64_t value;
  std::uint64_t neighbour_mismatches;
};

struct Counter {
  static constexpr const char* kName = "counter";
  static constexpr std::uint32_t kK2KChannels = 1;
  struct Params {
    std::uint64_t step = 3;
  };
  struct State {
    std::uint64_t value;
    std::uint64_t neighbour_mismatches;
  };

  static std::uint64_t k2k_payload_bytes(const Params&) { return sizeof(std::uint64_t); }

  PKRT_HD static void init(State& s, pkrt::ActorContext& ctx) {
    if (ctx.leader()) s.value = 0;
  }

  PKRT_HD static void step(State& s, pkrt::ActorContext& ctx) {
    if (!ctx.leader()) return;
    const pkrt::K2KMessage in = ctx.k2k_inbox(0);
    // Every counter has the same value at the same epoch, so last epoch's neighbour value
    // must equal ours before this step.
    if (ctx.epoch() > 1 &&
        (in.empty() || *reinterpret_cast<const std::uint64_t*>(in.data) != s.value))
      ++s.neighbour_mismatches;
    s.value += ctx.params<Params>().step;
    const std::uint32_t next = (ctx.actor() + 1) % ctx.num_actors();
    *reinterpret_cast<std::uint64_t*>(ctx.k2k_outbox(next, 0)) = s.value;
    ctx.k2k_commit(next, 0, sizeof(std::uint64_t));
  }

  PKRT_HD static pkrt::StatusCode on_message(State& s, const pkrt::Message& m,
                                             pkrt::MessageContext& ctx) {
    if (m.opcode != kCounterGet) return pkrt::StatusCode::kUnknownOpcode;
    ctx.reply(CounterReport{s.value, s.neighbour_mismatches});
    return pkrt::StatusCode::kOk;
  }
};

const pkrt::Program& counter_program();
