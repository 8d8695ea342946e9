// Must not compile: on_message returning void instead of pkrt::StatusCode.
#include <pkrt/program.hpp>

struct BadHandler {
  static constexpr const char* kName = "bad_handler";
  struct Params {};
  struct State {
    int x;
  };
  static void step(State&, pkrt::ActorContext&) {}
  static void on_message(State&, const pkrt::Message&, pkrt::MessageContext&) {}
};

const pkrt::Program& bad() { return pkrt::make_program<BadHandler>(); }
