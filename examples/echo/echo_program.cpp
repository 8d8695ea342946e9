// examples/echo/echo_program.cpp: instantiates echo for both backends.
#include "examples/echo/echo.hpp"

#include <pkrt/program.hpp>

namespace pkrt::examples {

const Program& echo_program() { return make_program<Echo>(); }

}  // namespace pkrt::examples
