// host/partition.cpp: ActorPartition (pkrt/partition.hpp).
#include <pkrt/partition.hpp>

#include <cstdio>
#include <limits>

namespace pkrt {
namespace {

Status too_many_ranks(std::uint32_t actors, std::uint32_t ranks, const char* what) {
  return Status(StatusCode::kInvalidArgument, std::to_string(ranks) + " ranks for " + std::to_string(actors) + " " +
                                                  what + ": every rank needs at least one. Fix: run on at most " +
                                                  std::to_string(actors) + " ranks, or with more actors");
}

}  // namespace

Result<ActorPartition> ActorPartition::build(std::uint32_t actors, std::uint32_t ranks, const OwnerFunction& owner,
                                             std::string description) {
  if (actors == 0 || ranks == 0)
    return Status(StatusCode::kInvalidArgument, "a partition needs at least one actor and one rank (got " +
                                                    std::to_string(actors) + " actors, " + std::to_string(ranks) +
                                                    " ranks)");
  if (ranks > actors) return too_many_ranks(actors, ranks, "actors");
  ActorPartition p;
  p.description_ = std::move(description);
  p.owner_.resize(actors);
  p.local_.resize(actors);
  std::vector<std::uint32_t> count(ranks, 0);
  for (std::uint32_t a = 0; a < actors; ++a) {
    const std::uint32_t r = owner(a);
    if (r >= ranks)
      return Status(StatusCode::kInvalidArgument, "partition '" + p.description_ + "' puts actor " + std::to_string(a) +
                                                      " on rank " + std::to_string(r) + "; there are " +
                                                      std::to_string(ranks) + " ranks. Fix: return a rank below " +
                                                      std::to_string(ranks));
    p.owner_[a] = r;
    p.local_[a] = count[r]++;
  }
  p.first_.assign(ranks + 1, 0);
  for (std::uint32_t r = 0; r < ranks; ++r) {
    if (count[r] == 0)
      return Status(StatusCode::kInvalidArgument, "partition '" + p.description_ + "' leaves rank " +
                                                      std::to_string(r) + " without actors. Fix: give every rank at "
                                                      "least one actor, or run on fewer ranks");
    p.first_[r + 1] = p.first_[r] + count[r];
  }
  // Ascending ids within each rank: a counting sort by owner, in id order.
  p.by_rank_.resize(actors);
  for (std::uint32_t a = 0; a < actors; ++a) p.by_rank_[p.first_[p.owner_[a]] + p.local_[a]] = a;
  return p;
}

Result<ActorPartition> ActorPartition::contiguous(std::uint32_t actors, std::uint32_t ranks) {
  if (ranks > actors && actors != 0) return too_many_ranks(actors, ranks, "actors");
  // Largest r with first(r) = r * actors / ranks <= a, in closed form: ((a + 1) * ranks - 1) / actors.
  return build(actors, ranks,
               [&](std::uint32_t a) {
                 return static_cast<std::uint32_t>(((std::uint64_t{a} + 1) * ranks - 1) / actors);
               },
               "contiguous");
}

Result<ActorPartition> ActorPartition::tiles_2d(std::uint32_t tiles_x, std::uint32_t tiles_y, std::uint32_t ranks) {
  const std::uint64_t tiles = std::uint64_t{tiles_x} * tiles_y;
  if (tiles == 0 || tiles > std::numeric_limits<std::uint32_t>::max() || ranks == 0)
    return Status(StatusCode::kInvalidArgument, "a " + std::to_string(tiles_x) + " x " + std::to_string(tiles_y) +
                                                    " tile grid over " + std::to_string(ranks) +
                                                    " ranks cannot be partitioned. Fix: " +
                                                    (tiles == 0 || ranks == 0 ? "at least one tile and one rank"
                                                                              : "at most 2^32 - 1 tiles (actor ids are 32-bit)"));
  // The rank grid px x py = ranks that fits the tiles and whose rectangles are closest to
  // square (their perimeter, the halo they exchange, is then smallest for their area).
  std::uint32_t best_px = 0;
  double best_cost = std::numeric_limits<double>::infinity();
  for (std::uint32_t px = 1; px <= ranks; ++px) {
    if (ranks % px != 0) continue;
    const std::uint32_t py = ranks / px;
    if (px > tiles_x || py > tiles_y) continue;
    const double w = static_cast<double>(tiles_x) / px, h = static_cast<double>(tiles_y) / py;
    const double cost = w + h;  // half a rectangle's perimeter, in tiles
    if (cost < best_cost) {
      best_cost = cost;
      best_px = px;
    }
  }
  if (best_px == 0)
    return Status(StatusCode::kInvalidArgument,
                  std::to_string(ranks) + " ranks do not form a grid over " + std::to_string(tiles_x) + " x " +
                      std::to_string(tiles_y) + " tiles (each rank needs a rectangle of at least one tile). Fix: a "
                      "rank count with a factorisation px x py, px <= " + std::to_string(tiles_x) + ", py <= " +
                      std::to_string(tiles_y) + ", or the contiguous partition");
  const std::uint32_t px = best_px, py = ranks / best_px;
  char desc[96];
  std::snprintf(desc, sizeof desc, "tiles %ux%u over %ux%u ranks", tiles_x, tiles_y, px, py);
  return build(static_cast<std::uint32_t>(tiles), ranks,
               [&](std::uint32_t a) {
                 const std::uint64_t tx = a % tiles_x, ty = a / tiles_x;
                 // Rank column of tile column tx: the largest c with c * tiles_x / px <= tx.
                 const auto rx = static_cast<std::uint32_t>(((tx + 1) * px - 1) / tiles_x);
                 const auto ry = static_cast<std::uint32_t>(((ty + 1) * py - 1) / tiles_y);
                 return ry * px + rx;
               },
               desc);
}

Result<ActorPartition> ActorPartition::custom(std::uint32_t actors, std::uint32_t ranks, const OwnerFunction& owner,
                                              std::string description) {
  if (!owner)
    return Status(StatusCode::kInvalidArgument, "partition '" + description + "' has no owner function");
  return build(actors, ranks, owner, std::move(description));
}

}  // namespace pkrt
