// libFuzzer entry for the global checkpoint manifest parser (built by scripts/fuzz.sh with clang).
#include "tests/fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  pkrt::fuzz::global_manifest_reader(data, size);
  return 0;
}
