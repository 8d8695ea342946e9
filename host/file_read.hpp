// host/file_read.hpp: reading a whole file into memory for the validating parsers
// (checkpoint files, replay logs). Callers turn a failure into their own Status message.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace pkrt::host {

struct FileReadFailure {
  const char* step = nullptr;  // "open", "fstat", "not a regular file", "allocate", "read"; null: ok
  int error = 0;               // errno of the failing call (0 for "not a regular file")
};

// Reads at most `max_bytes` of the regular file at `path` into `out`. A file that shrinks
// while it is read yields what was there (the parser then reports what is missing).
inline FileReadFailure read_file_bounded(const char* path, std::uint64_t max_bytes, std::vector<std::byte>& out) {
  // O_NONBLOCK: opening a FIFO that has no writer would otherwise wait for one for ever (the
  // fstat below then refuses it); on a regular file it changes nothing.
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return {"open", errno};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return {"fstat", err};
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return {"not a regular file", 0};
  }
  try {
    out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(st.st_size), max_bytes)));
  } catch (const std::bad_alloc&) {
    // A file larger than this machine's memory (a stray file, or a crafted one): refused by
    // the caller with its size, not an abort.
    ::close(fd);
    return {"allocate", ENOMEM};
  }
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return {"read", err};
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return {};
}

}  // namespace pkrt::host
