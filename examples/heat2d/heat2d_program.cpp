// examples/heat2d/heat2d_program.cpp: instantiates heat2d for both backends. Compiled as
// CUDA when the build has nvcc (this is what gives the program its CUDA kernel).
#include "examples/heat2d/heat2d_host.hpp"

#include <pkrt/program.hpp>

namespace pkrt::examples {

const Program& heat2d_program() { return make_program<Heat2d>(); }

}  // namespace pkrt::examples
