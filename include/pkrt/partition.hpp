// pkrt/partition.hpp: which rank owns which actor when one run is spread over several ranks
// (processes, one runtime each; docs/scale-out.md).
//
// Contract
// - Actors keep their global ids 0..N-1 on every rank; a partition maps each id to exactly
//   one owner rank in 0..R-1 and gives every rank at least one actor.
// - A partition is a pure function of its inputs: every rank builds the same one from the
//   same arguments, so the map is never sent. Its owner function is called once per actor, at
//   construction; queries never call it again.
// - Kinds: contiguous() (equal blocks of ids in order, the default), tiles_2d() (a 2-D grid
//   of tiles split into rectangles of tiles, so that neighbours mostly share a rank: fewer
//   halo messages cross ranks), and custom() (any owner function, validated).
// - Host only. Immutable after construction: queries are safe from any thread.
#pragma once

#include <pkrt/status.hpp>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace pkrt {

class ActorPartition {
 public:
  using OwnerFunction = std::function<std::uint32_t(std::uint32_t actor)>;

  // Ranks own contiguous, equal (to one actor) blocks of ids: rank r owns
  // [r * N / R, (r + 1) * N / R).
  static Result<ActorPartition> contiguous(std::uint32_t actors, std::uint32_t ranks);
  // Actors are the tiles of a tiles_x x tiles_y grid, id = ty * tiles_x + tx (heat2d's
  // layout). The ranks form a px x py grid (px * py = R, the factorisation whose rank
  // rectangles are closest to square in tiles); each owns one rectangle of tiles.
  static Result<ActorPartition> tiles_2d(std::uint32_t tiles_x, std::uint32_t tiles_y, std::uint32_t ranks);
  // `owner(a)` for every actor; refused when it names a rank outside 0..R-1 or leaves a rank
  // without actors.
  static Result<ActorPartition> custom(std::uint32_t actors, std::uint32_t ranks, const OwnerFunction& owner,
                                       std::string description);

  std::uint32_t actors() const { return static_cast<std::uint32_t>(owner_.size()); }
  std::uint32_t ranks() const { return static_cast<std::uint32_t>(first_.size() - 1); }
  // The rank that owns `actor` (< actors()).
  std::uint32_t owner(std::uint32_t actor) const { return owner_[actor]; }
  // The global ids `rank` owns, ascending. A rank's runtime hosts them as its local actors
  // 0..n-1 in this order.
  std::span<const std::uint32_t> actors_of(std::uint32_t rank) const {
    return std::span<const std::uint32_t>(by_rank_).subspan(first_[rank], first_[rank + 1] - first_[rank]);
  }
  // `actor`'s index among actors_of(owner(actor)).
  std::uint32_t local_index(std::uint32_t actor) const { return local_[actor]; }
  // e.g. "contiguous", "tiles 8x8 over 2x2 ranks".
  const std::string& description() const { return description_; }

 private:
  ActorPartition() = default;
  static Result<ActorPartition> build(std::uint32_t actors, std::uint32_t ranks, const OwnerFunction& owner,
                                      std::string description);

  std::vector<std::uint32_t> owner_;    // by global id
  std::vector<std::uint32_t> local_;    // by global id: index within its rank's list
  std::vector<std::uint32_t> by_rank_;  // global ids, grouped by rank, ascending within each
  std::vector<std::uint32_t> first_;    // ranks + 1 offsets into by_rank_
  std::string description_;
};

}  // namespace pkrt
