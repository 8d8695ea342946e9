// tests/fuzz/fuzz_targets.hpp: the bodies of pkrt's fuzz targets, shared by the libFuzzer
// binaries (scripts/fuzz.sh) and the regression test that replays every corpus and crash
// file in every build (tests/fuzz_regression_test.cpp).
#pragma once

#include <pkrt/checkpoint.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace pkrt::fuzz {

// Parses and, when the structure is valid, decodes a checkpoint file image. Must never
// crash, hang or read out of bounds, whatever the bytes.
inline void checkpoint_reader(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  auto parsed = parse_checkpoint(file, "fuzz.pkck");
  if (!parsed.ok()) return;
  // A valid structure may still describe a state far larger than the input (zstd expands);
  // decode only states a test machine can hold.
  if (parsed->info.state_bytes > (std::uint64_t{64} << 20)) return;
  std::vector<std::byte> state(parsed->info.state_bytes);
  (void)decode_chunks(parsed.value(), file, "fuzz.pkck", state).ok();
}

}  // namespace pkrt::fuzz
