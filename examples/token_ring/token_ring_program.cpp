// examples/token_ring/token_ring_program.cpp: instantiates token_ring for both backends.
#include "examples/token_ring/token_ring.hpp"

#include <pkrt/program.hpp>

namespace pkrt::examples {

const Program& token_ring_program() { return make_program<TokenRing>(); }

}  // namespace pkrt::examples
