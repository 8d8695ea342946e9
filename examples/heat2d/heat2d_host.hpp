// examples/heat2d/heat2d_host.hpp: host-side helpers for heat2d: the program, gathering the
// tiles into one field, the serial reference, and the field checksum.
#pragma once

#include "examples/heat2d/heat2d.hpp"

#include <pkrt/runtime.hpp>
#include <pkrt/status.hpp>

#include <cstdint>
#include <vector>

namespace pkrt::examples {

const Program& heat2d_program();

struct Heat2dScheduledInjection {
  std::uint64_t epoch;  // applied at this epoch (after its step, before edges are sent)
  Heat2dInjectData inject;
};

// The plain serial computation the tiled actors must match bit for bit.
std::vector<float> heat2d_reference(const Heat2d::Params& params, std::uint64_t epochs,
                                    const std::vector<Heat2dScheduledInjection>& injections);

// The whole W x H field, row-major, read from a parked or stopped runtime.
Result<std::vector<float>> heat2d_gather(Runtime& runtime, const Heat2d::Params& params);
// The tiles `runtime` runs (all of them, or one shard's: RuntimeOptions::global_ids) written
// into `field` (width x height); other cells are left as they are. Same preconditions.
Status heat2d_gather_into(Runtime& runtime, const Heat2d::Params& params, std::vector<float>& field);

// CRC32 (zlib) of the field's float32 bytes: the checksum the CLI prints.
std::uint32_t heat2d_checksum(const std::vector<float>& field);

}  // namespace pkrt::examples
