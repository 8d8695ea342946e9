// pkrt/status.hpp: the one status type of pkrt: a stable code plus a message with the fix.
//
// Contract
// - Every fallible library call returns Status or Result<T>; both are [[nodiscard]].
// - A message says what failed, on what (path, actor, epoch, ring), and what to do.
// - Codes are stable: their numeric values are part of the CLI's --json output and of the
//   on-disk formats that record errors. New codes are appended, never renumbered.
// - status_code_name() is usable on host and device (kernels report codes in K2H events).
// - Thread safety: a Status is a value; copies are independent.
#pragma once

#include <pkrt/config.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace pkrt {

// Each code says whether retrying the same call can help.
enum class StatusCode : std::uint16_t {
  kOk = 0,
  kInvalidArgument = 1,     // bad argument or configuration; retry: no, fix the input
  kOutOfRange = 2,          // index (actor, block, epoch) outside its range; retry: no
  kUnknownOpcode = 3,       // a command's opcode is not handled by the app; retry: no
  kRingFull = 4,            // a ring stayed full past the bounded wait; retry: yes, later
  kTimeout = 5,             // a bounded wait expired; retry: maybe
  kDeviceUnavailable = 6,   // no usable GPU/driver for the CUDA backend; retry: no
  kDeviceFault = 7,         // the device reported an error (sticky); retry: no, restart
  kWatchdogTimeout = 8,     // a block stopped heart-beating; retry: no, investigate
  kCorruptData = 9,         // a file or message failed validation; retry: no
  kIoError = 10,            // an OS-level I/O call failed; retry: maybe
  kFailedPrecondition = 11, // the runtime is not in a state that allows the call
  kAborted = 12,            // the operation was cancelled by shutdown or abort
  kUnsupported = 13,        // the build or device lacks the feature; retry: no
  kInternal = 14,           // a pkrt bug; please report it with the message
  kNotFound = 15,           // a named file or object does not exist (e.g. removed meanwhile)
  kBusy = 16,               // another process holds the resource (e.g. a directory lock)
};

PKRT_HD constexpr const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kOutOfRange: return "out_of_range";
    case StatusCode::kUnknownOpcode: return "unknown_opcode";
    case StatusCode::kRingFull: return "ring_full";
    case StatusCode::kTimeout: return "timeout";
    case StatusCode::kDeviceUnavailable: return "device_unavailable";
    case StatusCode::kDeviceFault: return "device_fault";
    case StatusCode::kWatchdogTimeout: return "watchdog_timeout";
    case StatusCode::kCorruptData: return "corrupt_data";
    case StatusCode::kIoError: return "io_error";
    case StatusCode::kFailedPrecondition: return "failed_precondition";
    case StatusCode::kAborted: return "aborted";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kInternal: return "internal";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kBusy: return "busy";
  }
  return "unknown_status_code";
}

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "<code name>: <message>", or "ok".
  std::string to_string() const {
    if (ok()) return "ok";
    return std::string(status_code_name(code_)) + ": " + message_;
  }

  // Explicitly discard a status where failure is harmless; says so at the call site.
  void ignore() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status saying why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace pkrt

// Propagate a non-ok Status from the current function.
#define PKRT_RETURN_IF_ERROR(expr)              \
  do {                                          \
    ::pkrt::Status pkrt_status_ = (expr);       \
    if (!pkrt_status_.ok()) return pkrt_status_; \
  } while (0)
