// counter_program.cpp: the one TU that instantiates the counter actor for both backends.
#include "counter.hpp"

#include <pkrt/program.hpp>

const pkrt::Program& counter_program() { return pkrt::make_program<Counter>(); }
