// Must not compile: an actor without a step function.
#include <pkrt/program.hpp>

struct NoStep {
  static constexpr const char* kName = "no_step";
  struct Params {};
  struct State {
    int x;
  };
};

const pkrt::Program& bad() { return pkrt::make_program<NoStep>(); }
