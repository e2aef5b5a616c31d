// Helpers shared by the libFuzzer targets: a reader that takes typed values off the front of
// the fuzz input, and checks that abort (a crash libFuzzer saves) when an invariant breaks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(cond)                                                               \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

namespace fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  bool empty() const { return p_ >= end_; }
  const uint8_t* data() const { return p_; }
  uint8_t Byte() { return p_ < end_ ? *p_++ : 0; }
  uint16_t U16() { return static_cast<uint16_t>((Byte() << 8) | Byte()); }
  uint32_t U32() { return (uint32_t{U16()} << 16) | U16(); }
  // Up to `n` bytes.
  std::string Bytes(size_t n) {
    n = n < left() ? n : left();
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  std::string Rest() { return Bytes(left()); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Deterministic chunk sizes for feeding a stream in pieces (xorshift32).
class Chunker {
 public:
  explicit Chunker(uint32_t seed) : state_(seed | 1) {}
  size_t Next(size_t left) {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    size_t n;
    switch (state_ % 4) {
      case 0: n = 1 + state_ % 8; break;
      case 1: n = 1 + state_ % 64; break;
      case 2: n = 1 + state_ % 4096; break;
      default: n = left; break;
    }
    return n < left ? n : left;
  }

 private:
  uint32_t state_;
};

}  // namespace fuzz
