// pkrt/detail/futex.hpp: a futex wait with a timeout and a wake, for host threads (Linux).
// std::atomic::wait has no timeout; the pump needs one to keep running its watchdog.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <ctime>

namespace pkrt::detail {

// Sleeps while *word == expected, at most `timeout`; returns on a wake, a change or timeout.
inline void futex_wait_for(std::uint32_t* word, std::uint32_t expected,
                           std::chrono::microseconds timeout) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1000000) * 1000;
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}

inline void futex_wake_all(std::uint32_t* word) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
}

}  // namespace pkrt::detail
