// pkrt/command.hpp: Command, one host-to-actor command as a value: what Runtime::send_batch
// and post_batch take, and what a checkpoint set holds of the commands queued at its epoch
// (pkrt/checkpoint_set.hpp, encode_queued_commands).
//
// Contract: a plain value (trivially copyable data, no ownership); host only.
#pragma once

#include <pkrt/slot.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace pkrt {

// What the typed send/post overloads take as a message's value: not a pointer, nullptr or a
// C array (those mean "data, bytes" and go to the untyped overloads).
template <class T>
inline constexpr bool kMessageValue = !std::is_pointer_v<T> && !std::is_null_pointer_v<T> && !std::is_array_v<T>;

// One command of a batch (Runtime::send_batch, Runtime::post_batch).
struct Command {
  std::uint32_t actor = 0;
  std::uint16_t opcode = 0;
  std::uint64_t apply_epoch = 0;  // 0: the next epoch
  std::array<std::byte, kEnvelopeDataBytes> data{};

  template <class T>
    requires kMessageValue<T>
  static Command make(std::uint32_t actor, std::uint16_t opcode, const T& value,
                      std::uint64_t apply_epoch = 0) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= kEnvelopeDataBytes,
                  "pkrt: message data is at most 32 trivially copyable bytes");
    Command c;
    c.actor = actor;
    c.opcode = opcode;
    c.apply_epoch = apply_epoch;
    std::memcpy(c.data.data(), &value, sizeof(T));
    return c;
  }
};

}  // namespace pkrt
