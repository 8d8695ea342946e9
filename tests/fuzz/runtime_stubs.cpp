// tests/fuzz/runtime_stubs.cpp: the Runtime accessors that checkpoint/checkpoint_set.cpp's
// checkpoint_fingerprint(const Runtime&) references, for the manifest fuzzer, which links
// checkpoint_set.cpp without the runtime. The fuzzer never calls them; if anything did, it
// aborts (and the fuzzer reports it). Declared in pkrt/runtime.hpp: a changed signature
// fails to compile here rather than link to the wrong thing.
#include <pkrt/runtime.hpp>

#include <cstdlib>

namespace pkrt {

const ImageLayout& Runtime::image_layout() const { std::abort(); }
const Program& Runtime::program() const { std::abort(); }
const RuntimeOptions& Runtime::options() const { std::abort(); }
const std::vector<std::byte>& Runtime::params() const { std::abort(); }

}  // namespace pkrt
