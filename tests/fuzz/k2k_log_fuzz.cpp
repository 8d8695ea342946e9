// libFuzzer entry for the inbound K2K log reader (built by scripts/fuzz.sh with clang).
#include "tests/fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  pkrt::fuzz::k2k_log_reader(data, size);
  return 0;
}
