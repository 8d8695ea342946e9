// bench/blob_program.cpp: instantiates the benchmark blob actor for both backends (compiled
// as CUDA when the build has nvcc).
#include "bench/blob_actor.hpp"

#include <pkrt/program.hpp>

namespace pkrt::bench {

const Program& blob_program() { return make_program<Blob>(); }

}  // namespace pkrt::bench
