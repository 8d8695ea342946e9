// checkpoint/byte_io.hpp: the byte writer and bounds-checked reader the checkpoint file and
// the set manifest share. Fields are stored in host byte order, which on every platform pkrt
// builds for (x86-64, AArch64, NVIDIA GPUs) is little-endian, as both formats specify.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <vector>

namespace pkrt::detail {

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::byte>& out) : out_(out) {}
  template <class T>
  void put(T v) {
    const std::size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));
  }
  void bytes(const void* p, std::size_t n) {
    const std::size_t at = out_.size();
    out_.resize(at + n);
    if (n > 0) std::memcpy(out_.data() + at, p, n);
  }

 private:
  std::vector<std::byte>& out_;
};

// Bounds-checked reader; a read past the end sets failed() (for good) and returns zeros.
class ByteReader {
 public:
  ByteReader(std::span<const std::byte> in) : in_(in) {}
  template <class T>
  T get() {
    T v{};
    if (pos_ + sizeof(T) > in_.size()) {
      failed_ = true;
      return v;
    }
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::span<const std::byte> take(std::size_t n) {
    if (n > in_.size() - std::min(pos_, in_.size())) {
      failed_ = true;
      return {};
    }
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  bool failed() const { return failed_; }
  std::size_t pos() const { return pos_; }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace pkrt::detail
