// examples/token_ring/token_ring.hpp: every actor sends a token to the next actor each epoch
// through K2K and checks the one it got from the previous actor: sender, epoch and value.
// It is the K2K check of `pkrt selftest`: any break of the double-buffered mailbox contract
// (a message read in the wrong epoch, lost, or torn) shows up as a counted mismatch.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/runtime.hpp>

#include <cstdint>

namespace pkrt::examples {

enum TokenRingOpcode : std::uint16_t {
  kTokenRingReport = kUserOpcodeBase + 0,  // reply: TokenRingReportData
};

struct TokenRingReportData {
  std::uint64_t received;    // tokens that arrived intact
  std::uint64_t mismatches;  // tokens missing, stale or wrong
};

struct TokenRing {
  static constexpr const char* kName = "token_ring";
  static constexpr std::uint32_t kK2KChannels = 1;
  struct Params {
    std::uint64_t seed = 1;
  };
  struct State {
    std::uint64_t received;
    std::uint64_t mismatches;
  };
  struct Token {
    std::uint64_t epoch;
    std::uint64_t value;
    std::uint32_t src;
  };

  static std::uint64_t k2k_payload_bytes(const Params&) { return sizeof(Token); }

  PKRT_HD static std::uint64_t token_value(std::uint64_t seed, std::uint32_t src, std::uint64_t epoch) {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (epoch + 1) + src;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 31);
  }

  PKRT_HD static void send(ActorContext& ctx) {
    if (!ctx.leader()) return;
    const std::uint32_t dst = (ctx.actor() + 1) % ctx.num_actors();
    Token t{ctx.epoch(), token_value(ctx.params<Params>().seed, ctx.actor(), ctx.epoch()), ctx.actor()};
    auto* out = reinterpret_cast<Token*>(ctx.k2k_outbox(dst, 0));
    *out = t;
    ctx.k2k_commit(dst, 0, sizeof(Token));
  }

  PKRT_HD static void init(State&, ActorContext& ctx) { send(ctx); }

  PKRT_HD static void step(State& s, ActorContext& ctx) {
    if (ctx.leader()) {
      const K2KMessage m = ctx.k2k_inbox(0);
      const std::uint32_t expected_src = (ctx.actor() + ctx.num_actors() - 1) % ctx.num_actors();
      const std::uint64_t prev = ctx.epoch() - 1;
      const auto* t = reinterpret_cast<const Token*>(m.data);
      if (!m.empty() && m.bytes == sizeof(Token) && m.src == expected_src && t->src == expected_src &&
          t->epoch == prev && t->value == token_value(ctx.params<Params>().seed, expected_src, prev)) {
        ++s.received;
      } else {
        ++s.mismatches;
      }
    }
    send(ctx);
  }

  PKRT_HD static StatusCode on_message(State& s, const Message& m, MessageContext& ctx) {
    if (m.opcode != kTokenRingReport) return StatusCode::kUnknownOpcode;
    ctx.reply(TokenRingReportData{s.received, s.mismatches});
    return StatusCode::kOk;
  }
};

const Program& token_ring_program();

}  // namespace pkrt::examples
