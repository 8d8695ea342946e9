// bench/blob_actor.hpp: the actor the snapshot benchmarks checkpoint: one named region of a
// chosen size (the "state"), filled at init with a float field that compresses like a
// simulation's (smooth high bytes, noisy low mantissa bits), and a command that changes a
// chosen set of snapshot chunks so that a delta has a known size.
//
// Contract
// - Params::bytes is the size of the whole snapshot image (State padded to 256 bytes plus
//   the "blob" region); at least 512.
// - kBlobTouch {stride, salt}: changes one float in every `stride`-th chunk of the image
//   (chunks of Params::chunk_bytes), starting at chunk 0, and replies with the number of
//   chunks it changed. stride 1 changes every chunk (a full snapshot's worth).
// - Event-driven: an idle grid waits on the host, so a parked benchmark costs no CPU.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/config.hpp>
#include <pkrt/runtime.hpp>
#include <pkrt/slot.hpp>

#include <cstdint>
#include <cstring>

namespace pkrt::bench {

enum BlobOpcode : std::uint16_t {
  kBlobTouch = kUserOpcodeBase + 0,  // data: BlobTouchData; reply: std::uint32_t chunks changed
};

struct BlobTouchData {
  std::uint32_t stride;  // every stride-th chunk of the image changes (>= 1)
  std::uint32_t salt;    // makes each touch write a new value
};

struct Blob {
  static constexpr const char* kName = "bench_blob";
  static constexpr bool kStepsWhenIdle = false;
  static constexpr std::uint64_t kStateAlign = 256;  // the runtime's region alignment

  struct Params {
    std::uint64_t bytes = 1 << 20;       // image bytes (State slot + region)
    std::uint32_t chunk_bytes = 64 * 1024;  // the runtime's snapshot chunk size
  };
  struct State {
    std::uint64_t touches;
  };
  static constexpr const char* kRegionNames[] = {"blob"};

  PKRT_HD static std::uint64_t blob_bytes(const Params& p) {
    return p.bytes > 2 * kStateAlign ? p.bytes - kStateAlign : kStateAlign;
  }
  static std::uint64_t region_bytes(const Params& p, std::uint32_t, std::uint32_t, std::uint32_t) {
    return blob_bytes(p);
  }
  static const char* check_params(const Params& p, std::uint32_t num_actors) {
    if (num_actors != 1) return "the benchmark blob has exactly one actor";
    if (p.chunk_bytes < 256 || (p.chunk_bytes & (p.chunk_bytes - 1)) != 0)
      return "chunk_bytes must be a power of two >= 256";
    return nullptr;
  }

  // Smooth in the high bytes, noisy in the low 8 mantissa bits: a float field after a few
  // diffusion steps looks like this to zstd.
  PKRT_HD static float value(std::uint64_t i, std::uint32_t salt) {
    const std::uint32_t x = static_cast<std::uint32_t>(i % 1024), y = static_cast<std::uint32_t>(i / 1024);
    std::uint64_t z = (i + salt) * 0x9E3779B97F4A7C15ull;
    z ^= z >> 29;
    const float smooth = fadd(fmul(static_cast<float>(x), 1.0f / 1024.0f),
                              fmul(static_cast<float>(y % 4096), 1.0f / 4096.0f));
    std::uint32_t bits;
    std::memcpy(&bits, &smooth, sizeof bits);
    bits ^= static_cast<std::uint32_t>(z) & 0xFFu;
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
  }

  PKRT_HD static void init(State& s, ActorContext& ctx) {
    if (ctx.leader()) s.touches = 0;
    const Params& p = ctx.params<Params>();
    float* f = ctx.region<float>(0);
    const std::uint64_t n = blob_bytes(p) / sizeof(float);
    for (std::uint64_t i = ctx.thread_rank(); i < n; i += ctx.num_threads()) f[i] = value(i, 0);
    ctx.sync();
  }

  PKRT_HD static void step(State&, ActorContext&) {}

  PKRT_HD static StatusCode on_message(State& s, const Message& m, MessageContext& ctx) {
    if (m.opcode != kBlobTouch) return StatusCode::kUnknownOpcode;
    const auto touch = m.as<BlobTouchData>();
    if (touch.stride == 0) return StatusCode::kInvalidArgument;
    const Params& p = ctx.params<Params>();
    const std::uint64_t image = kStateAlign + blob_bytes(p);
    const std::uint64_t chunks = (image + p.chunk_bytes - 1) / p.chunk_bytes;
    float* f = ctx.region<float>(0);
    const std::uint64_t floats = blob_bytes(p) / sizeof(float);
    std::uint32_t changed = 0;
    ++s.touches;  // the State lives in chunk 0: it changes with every touch
    for (std::uint64_t c = 0; c < chunks; c += touch.stride) {
      // A float inside chunk c (chunk 0's is the State; any region float in it will do).
      const std::uint64_t at = c == 0 ? 0 : (c * p.chunk_bytes - kStateAlign) / sizeof(float);
      if (at < floats) f[at] = value(at, touch.salt + 1);
      ++changed;
    }
    ctx.reply(changed);
    return StatusCode::kOk;
  }
};

const Program& blob_program();

}  // namespace pkrt::bench
