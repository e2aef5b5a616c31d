// Overflow-checked size arithmetic. Every element count and byte size computed from a peer's
// numbers (a shape, a length prefix, an offset) goes through these: they report failure
// instead of wrapping, so a hostile shape can never make a small buffer look big enough.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace tritonlite {

// The largest byte size any tensor may have (what int64 and Python hold).
constexpr uint64_t kMaxTensorSize = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
// The most elements a shape may describe, zero dimensions aside: kMaxTensorSize bytes of the
// largest element (8 bytes; also a BYTES element's pointer in a numpy object array). Counting
// zero dimensions aside refuses [0, 2**62] too, a shape numpy cannot build even though it has
// no elements.
constexpr uint64_t kMaxElements = kMaxTensorSize / 8;

// *out = a + b; false on overflow.
inline bool CheckedAdd(size_t a, size_t b, size_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

// *out = a * b; false on overflow.
inline bool CheckedMul(size_t a, size_t b, size_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

// Product of `dims`; false for a negative dimension or when the product of the non-zero
// dimensions exceeds kMaxElements.
inline bool CheckedElementCount(const std::vector<int64_t>& dims, int64_t* count) {
  uint64_t n = 1;
  bool zero = false;
  for (int64_t d : dims) {
    if (d < 0) return false;
    if (d == 0) {
      zero = true;
    } else if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n) || n > kMaxElements) {
      return false;
    }
  }
  *count = zero ? 0 : static_cast<int64_t>(n);
  return true;
}

// Bytes of `dims` elements of `element_size` bytes each; false for a negative dimension or a
// size above kMaxTensorSize.
inline bool CheckedByteSize(const std::vector<int64_t>& dims, size_t element_size, size_t* bytes) {
  int64_t count = 0;
  size_t n = 0;
  if (!CheckedElementCount(dims, &count) ||
      !CheckedMul(static_cast<size_t>(count), element_size, &n) || n > kMaxTensorSize) {
    return false;
  }
  *bytes = n;
  return true;
}

}  // namespace tritonlite
