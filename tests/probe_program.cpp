// tests/probe_program.cpp: compiled by the host compiler on purpose: a CPU-only program,
// which the CUDA backend must refuse with a clear message.
#include "tests/probe_actor.hpp"

#include <pkrt/program.hpp>

namespace pkrt::testing {

const Program& probe_program() { return make_program<Probe>(); }

}  // namespace pkrt::testing
