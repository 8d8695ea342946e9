// Must compile: the same shape as the compile_fail cases, done right (guards the harness).
#include <pkrt/program.hpp>

struct Good {
  static constexpr const char* kName = "good";
  struct Params {};
  struct State {
    int x;
  };
  static void step(State&, pkrt::ActorContext&) {}
  static pkrt::StatusCode on_message(State&, const pkrt::Message&, pkrt::MessageContext&) {
    return pkrt::StatusCode::kOk;
  }
};

const pkrt::Program& good() { return pkrt::make_program<Good>(); }
