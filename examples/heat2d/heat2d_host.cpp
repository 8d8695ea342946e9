// examples/heat2d/heat2d_host.cpp: see heat2d_host.hpp.
#include "examples/heat2d/heat2d_host.hpp"

#include <pkrt/crc32.hpp>

#include <cstring>

namespace pkrt::examples {

std::vector<float> heat2d_reference(const Heat2d::Params& p, std::uint64_t epochs,
                                    const std::vector<Heat2dScheduledInjection>& injections) {
  const std::uint32_t W = p.width, H = p.height;
  // Padded by one zero cell on every side: the Dirichlet boundary.
  const std::uint64_t pitch = W + 2;
  std::vector<float> cur(pitch * (H + 2), 0.0f), next(cur.size(), 0.0f);
  for (std::uint32_t y = 0; y < H; ++y)
    for (std::uint32_t x = 0; x < W; ++x)
      cur[(y + 1) * pitch + x + 1] = Heat2d::initial_value(p.seed, W, x, y);
  for (std::uint64_t e = 1; e <= epochs; ++e) {
    for (std::uint32_t y = 0; y < H; ++y) {
      for (std::uint32_t x = 0; x < W; ++x) {
        const std::uint64_t k = (y + 1) * pitch + x + 1;
        next[k] = Heat2d::update(cur[k], cur[k - pitch], cur[k + pitch], cur[k + 1], cur[k - 1],
                                 p.alpha);
      }
    }
    for (const auto& inj : injections) {
      if (inj.epoch != e) continue;
      const std::uint64_t k = (inj.inject.y + 1ull) * pitch + inj.inject.x + 1;
      next[k] = fadd(next[k], inj.inject.amount);
    }
    cur.swap(next);
  }
  std::vector<float> field(std::uint64_t{W} * H);
  for (std::uint32_t y = 0; y < H; ++y)
    std::memcpy(&field[std::uint64_t{y} * W], &cur[(y + 1) * pitch + 1], W * sizeof(float));
  return field;
}

Result<std::vector<float>> heat2d_gather(Runtime& runtime, const Heat2d::Params& p) {
  std::vector<float> field(std::uint64_t{p.width} * p.height);
  PKRT_RETURN_IF_ERROR(heat2d_gather_into(runtime, p, field));
  return field;
}

Status heat2d_gather_into(Runtime& runtime, const Heat2d::Params& p, std::vector<float>& field) {
  if (field.size() != std::uint64_t{p.width} * p.height)
    return Status(StatusCode::kInvalidArgument, "heat2d field of " + std::to_string(field.size()) +
                                                    " cells for a " + std::to_string(p.width) + "x" +
                                                    std::to_string(p.height) + " grid");
  std::vector<float> buf(runtime.region_bytes(0) / sizeof(float));
  for (std::uint32_t a = 0; a < runtime.options().num_actors; ++a) {
    Heat2d::State s{};
    PKRT_RETURN_IF_ERROR(runtime.read_region(a, -1, &s, sizeof s));
    PKRT_RETURN_IF_ERROR(runtime.read_region(a, 0, buf.data(), buf.size() * sizeof(float)));
    const float* f = buf.data() + std::uint64_t{s.cur} * s.pitch * (s.tile.h + 2);
    for (std::uint32_t y = 0; y < s.tile.h; ++y)
      std::memcpy(&field[(std::uint64_t{s.tile.y0} + y) * p.width + s.tile.x0],
                  f + (y + 1ull) * s.pitch + 1, s.tile.w * sizeof(float));
  }
  return Status();
}

std::uint32_t heat2d_checksum(const std::vector<float>& field) {
  return crc32(field.data(), field.size() * sizeof(float));
}

}  // namespace pkrt::examples
