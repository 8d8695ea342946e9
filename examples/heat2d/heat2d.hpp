// examples/heat2d/heat2d.hpp: explicit 2D heat diffusion, one actor per tile, halos
// exchanged through K2K. The field after any number of epochs is bit-identical to the serial
// reference (heat2d_reference.hpp) for any tiling, block count and thread count.
//
// Model: u' = u + alpha * ((n + s) + (e + w) - 4u) on a W x H grid, zero (Dirichlet) outside,
// alpha <= 0.25 for stability. Epoch e: every tile reads the neighbours' edges sent in e-1,
// computes the new field, adds the heat injected for epoch e (in command order), then sends
// its new edges. Every `stats_every` epochs each tile emits kHeat2dStats.
// Limit: at most kMaxPendingInjections injections per tile per epoch; more are rejected
// (kRingFull error reply), so a schedule that dense depends on the tiling.
#pragma once

#include <pkrt/actor.hpp>
#include <pkrt/config.hpp>
#include <pkrt/slot.hpp>

#include <cstdint>

namespace pkrt::examples {

enum Heat2dOpcode : std::uint16_t {
  kHeat2dInject = kUserOpcodeBase + 0,  // H2K: Heat2dInjectData; acknowledged
  kHeat2dStats = kUserOpcodeBase + 1,   // K2H event: Heat2dStatsData
};

struct Heat2dInjectData {
  std::uint32_t x, y;  // global cell
  float amount;
};

// Event data is compared byte for byte by replays: no padding (an explicit reserved word
// instead), so no indeterminate byte is ever emitted.
struct Heat2dStatsData {
  double sum;  // sum of the tile's cells, row-major, in double
  float min, max;
  std::uint32_t cells;
  std::uint32_t reserved;  // zero
};
static_assert(sizeof(Heat2dStatsData) == 24, "Heat2dStatsData has no padding");

struct Heat2dTile {
  std::uint32_t x0, y0, w, h;
};

PKRT_HD inline std::uint64_t heat2d_mix(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Heat2d {
  static constexpr const char* kName = "heat2d";
  static constexpr std::uint32_t kMaxPendingInjections = 16;

  struct Params {
    std::uint32_t width = 256;
    std::uint32_t height = 256;
    std::uint32_t tiles_x = 1;
    std::uint32_t tiles_y = 1;
    float alpha = 0.2f;
    std::uint32_t stats_every = 50;  // 0: no statistics events
    std::uint64_t seed = 1;
  };

  struct Injection {
    std::uint32_t index;  // cell inside the tile's padded buffer
    float amount;
  };

  struct State {
    Heat2dTile tile;
    std::uint32_t pitch;  // tile width + 2 (halo columns)
    std::uint32_t cur;    // which of the two buffers holds the current field
    std::uint32_t pending;
    Injection injections[kMaxPendingInjections];
  };

  // Region 0: two (w+2) x (h+2) float buffers.
  static constexpr const char* kRegionNames[] = {"field"};
  static constexpr std::uint32_t kK2KChannels = 4;
  enum Channel : std::uint32_t { kFromNorth = 0, kFromSouth = 1, kFromWest = 2, kFromEast = 3 };

  PKRT_HD static Heat2dTile tile_of(const Params& p, std::uint32_t actor) {
    const std::uint32_t tx = actor % p.tiles_x, ty = actor / p.tiles_x;
    Heat2dTile t;
    t.x0 = static_cast<std::uint32_t>(std::uint64_t{tx} * p.width / p.tiles_x);
    t.y0 = static_cast<std::uint32_t>(std::uint64_t{ty} * p.height / p.tiles_y);
    t.w = static_cast<std::uint32_t>(std::uint64_t{tx + 1} * p.width / p.tiles_x) - t.x0;
    t.h = static_cast<std::uint32_t>(std::uint64_t{ty + 1} * p.height / p.tiles_y) - t.y0;
    return t;
  }

  // Owner of a global cell.
  PKRT_HD static std::uint32_t actor_of(const Params& p, std::uint32_t x, std::uint32_t y) {
    std::uint32_t tx = static_cast<std::uint32_t>(std::uint64_t{x} * p.tiles_x / p.width);
    std::uint32_t ty = static_cast<std::uint32_t>(std::uint64_t{y} * p.tiles_y / p.height);
    while (tx > 0 && tile_of(p, ty * p.tiles_x + tx).x0 > x) --tx;
    while (tx + 1 < p.tiles_x && tile_of(p, ty * p.tiles_x + tx + 1).x0 <= x) ++tx;
    while (ty > 0 && tile_of(p, ty * p.tiles_x + tx).y0 > y) --ty;
    while (ty + 1 < p.tiles_y && tile_of(p, (ty + 1) * p.tiles_x + tx).y0 <= y) ++ty;
    return ty * p.tiles_x + tx;
  }

  // Initial temperature of a global cell: uniform in [0, 1), exactly representable.
  PKRT_HD static float initial_value(std::uint64_t seed, std::uint32_t width, std::uint32_t x,
                                     std::uint32_t y) {
    const std::uint64_t r = heat2d_mix(seed * 0x100000001B3ull ^ (std::uint64_t{y} * width + x));
    return static_cast<float>(r >> 40) * (1.0f / 16777216.0f);
  }

  // One explicit step of a cell: the only formula both the tiles and the reference use.
  PKRT_HD static float update(float c, float n, float s, float e, float w, float alpha) {
    const float lap = fsub(fadd(fadd(n, s), fadd(e, w)), fmul(4.0f, c));
    return fadd(c, fmul(alpha, lap));
  }

  static const char* check_params(const Params& p, std::uint32_t num_actors) {
    if (p.tiles_x == 0 || p.tiles_y == 0 || std::uint64_t{p.tiles_x} * p.tiles_y != num_actors)
      return "tiles_x * tiles_y must equal the number of actors (use heat2d_choose_tiles)";
    if (p.tiles_x > p.width || p.tiles_y > p.height)
      return "more tiles than cells along a side would leave empty tiles; use fewer actors or a "
             "larger grid";
    if (!(p.alpha > 0.0f && p.alpha <= 0.25f))
      return "alpha must be in (0, 0.25] for the explicit scheme to be stable";
    return nullptr;
  }

  static std::uint64_t region_bytes(const Params& p, std::uint32_t, std::uint32_t actor,
                                    std::uint32_t) {
    const Heat2dTile t = tile_of(p, actor);
    return 2ull * (t.w + 2) * (t.h + 2) * sizeof(float);
  }

  static std::uint64_t k2k_payload_bytes(const Params& p) {
    std::uint64_t edge = 0;
    for (std::uint32_t a = 0; a < p.tiles_x * p.tiles_y; ++a) {
      const Heat2dTile t = tile_of(p, a);
      edge = t.w > edge ? t.w : edge;
      edge = t.h > edge ? t.h : edge;
    }
    return edge * sizeof(float);
  }

  PKRT_HD static float* buffer(const State& s, ActorContext& ctx, std::uint32_t which) {
    return ctx.region<float>(0) + std::uint64_t{which} * s.pitch * (s.tile.h + 2);
  }

  // Sends the current field's edges to the neighbours (read by them next epoch).
  PKRT_HD static void send_edges(const State& s, ActorContext& ctx) {
    const Params& p = ctx.params<Params>();
    const std::uint32_t a = ctx.actor();
    const std::uint32_t tx = a % p.tiles_x, ty = a / p.tiles_x;
    const float* f = buffer(s, ctx, s.cur);
    const std::uint32_t w = s.tile.w, h = s.tile.h, pitch = s.pitch;
    struct Edge {
      bool exists;
      std::uint32_t dst, channel, count;
      std::uint64_t start, stride;
    };
    const Edge edges[4] = {
        {ty > 0, a - p.tiles_x, kFromSouth, w, 1ull * pitch + 1, 1},             // top row
        {ty + 1 < p.tiles_y, a + p.tiles_x, kFromNorth, w, 1ull * h * pitch + 1, 1},  // bottom
        {tx > 0, a - 1, kFromEast, h, 1ull * pitch + 1, pitch},                  // left column
        {tx + 1 < p.tiles_x, a + 1, kFromWest, h, 1ull * pitch + w, pitch},      // right column
    };
    for (const Edge& e : edges) {
      if (!e.exists) continue;
      float* out = reinterpret_cast<float*>(ctx.k2k_outbox(e.dst, e.channel));
      for (std::uint32_t i = ctx.thread_rank(); i < e.count; i += ctx.num_threads())
        out[i] = f[e.start + i * e.stride];
    }
    ctx.sync();
    if (ctx.leader()) {
      for (const Edge& e : edges)
        if (e.exists) ctx.k2k_commit(e.dst, e.channel, e.count * sizeof(float));
    }
  }

  PKRT_HD static void init(State& s, ActorContext& ctx) {
    const Params& p = ctx.params<Params>();
    if (ctx.leader()) {
      s.tile = tile_of(p, ctx.actor());
      s.pitch = s.tile.w + 2;
      s.cur = 0;
      s.pending = 0;
    }
    ctx.sync();
    float* f = buffer(s, ctx, 0);
    const std::uint32_t cells = s.tile.w * s.tile.h;
    for (std::uint32_t i = ctx.thread_rank(); i < cells; i += ctx.num_threads()) {
      const std::uint32_t lx = i % s.tile.w, ly = i / s.tile.w;
      f[(ly + 1) * s.pitch + lx + 1] = initial_value(p.seed, p.width, s.tile.x0 + lx, s.tile.y0 + ly);
    }
    ctx.sync();
    send_edges(s, ctx);
  }

  PKRT_HD static void step(State& s, ActorContext& ctx) {
    const Params& p = ctx.params<Params>();
    const std::uint32_t w = s.tile.w, h = s.tile.h, pitch = s.pitch;
    float* cur = buffer(s, ctx, s.cur);
    float* next = buffer(s, ctx, s.cur ^ 1u);

    // Halo cells from last epoch's neighbour edges; zero at the grid boundary.
    const K2KMessage in[4] = {ctx.k2k_inbox(kFromNorth), ctx.k2k_inbox(kFromSouth),
                              ctx.k2k_inbox(kFromWest), ctx.k2k_inbox(kFromEast)};
    const std::uint64_t halo_start[4] = {1, 1ull * (h + 1) * pitch + 1, 1ull * pitch,
                                         1ull * pitch + w + 1};
    const std::uint64_t halo_stride[4] = {1, 1, pitch, pitch};
    const std::uint32_t halo_count[4] = {w, w, h, h};
    for (std::uint32_t c = 0; c < 4; ++c) {
      const float* src = reinterpret_cast<const float*>(in[c].data);
      for (std::uint32_t i = ctx.thread_rank(); i < halo_count[c]; i += ctx.num_threads())
        cur[halo_start[c] + i * halo_stride[c]] = src != nullptr ? src[i] : 0.0f;
    }
    ctx.sync();

    const std::uint32_t cells = w * h;
    for (std::uint32_t i = ctx.thread_rank(); i < cells; i += ctx.num_threads()) {
      const std::uint64_t k = (i / w + 1ull) * pitch + i % w + 1;
      next[k] = update(cur[k], cur[k - pitch], cur[k + pitch], cur[k + 1], cur[k - 1], p.alpha);
    }
    ctx.sync();
    if (ctx.leader()) {
      for (std::uint32_t j = 0; j < s.pending; ++j)
        next[s.injections[j].index] = fadd(next[s.injections[j].index], s.injections[j].amount);
      s.pending = 0;
      s.cur ^= 1u;
    }
    ctx.sync();
    send_edges(s, ctx);

    if (p.stats_every != 0 && ctx.epoch() % p.stats_every == 0 && ctx.leader()) {
      const float* f = buffer(s, ctx, s.cur);
      Heat2dStatsData st{0.0, f[pitch + 1], f[pitch + 1], cells, 0};
      for (std::uint32_t y = 0; y < h; ++y) {
        for (std::uint32_t x = 0; x < w; ++x) {
          const float v = f[(y + 1ull) * pitch + x + 1];
          st.sum += v;
          st.min = v < st.min ? v : st.min;
          st.max = v > st.max ? v : st.max;
        }
      }
      ctx.emit(kHeat2dStats, st);
    }
  }

  PKRT_HD static StatusCode on_message(State& s, const Message& m, MessageContext&) {
    if (m.opcode != kHeat2dInject) return StatusCode::kUnknownOpcode;
    const auto inj = m.as<Heat2dInjectData>();
    if (inj.x < s.tile.x0 || inj.x >= s.tile.x0 + s.tile.w || inj.y < s.tile.y0 ||
        inj.y >= s.tile.y0 + s.tile.h)
      return StatusCode::kOutOfRange;
    if (s.pending == kMaxPendingInjections) return StatusCode::kRingFull;
    s.injections[s.pending++] = {(inj.y - s.tile.y0 + 1) * s.pitch + (inj.x - s.tile.x0 + 1),
                                 inj.amount};
    return StatusCode::kOk;
  }
};

// Splits `actors` into a tiles_x x tiles_y grid as close to square as the counts allow.
inline void heat2d_choose_tiles(Heat2d::Params& p, std::uint32_t actors) {
  std::uint32_t best = 1;
  for (std::uint32_t d = 1; d * d <= actors; ++d)
    if (actors % d == 0) best = d;
  // The longer grid side gets the larger tile count.
  const std::uint32_t other = actors / best;
  if (p.width >= p.height) {
    p.tiles_x = other;
    p.tiles_y = best;
  } else {
    p.tiles_x = best;
    p.tiles_y = other;
  }
}

}  // namespace pkrt::examples
