// Must not compile: an actor whose State owns heap memory.
#include <pkrt/program.hpp>

#include <vector>

struct BadState {
  static constexpr const char* kName = "bad_state";
  struct Params {};
  struct State {
    std::vector<float> field;
  };
  static void step(State&, pkrt::ActorContext&) {}
};

const pkrt::Program& bad() { return pkrt::make_program<BadState>(); }
