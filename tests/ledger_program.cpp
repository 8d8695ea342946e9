// tests/ledger_program.cpp: the ledger actor's program (host compiler: tests run on the CPU
// backend).
#include "tests/ledger_actor.hpp"

#include <pkrt/program.hpp>

namespace pkrt::testing {

const Program& ledger_program() { return make_program<Ledger>(); }

}  // namespace pkrt::testing
