// examples/racy_sum/racy_sum_program.cpp: instantiates racy_sum for both backends.
#include "examples/racy_sum/racy_sum.hpp"

#include <pkrt/program.hpp>

namespace pkrt::examples {

const Program& racy_sum_program() { return make_program<RacySum>(); }

}  // namespace pkrt::examples
