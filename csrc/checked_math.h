// Overflow-checked size arithmetic. Every element count and byte size computed from a peer's
// numbers (a shape, a length prefix, an offset) goes through these: they report failure
// instead of wrapping, so a hostile shape can never make a small buffer look big enough.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace tritonlite {

// The largest element count or byte size any tensor may have (what int64 and Python hold).
constexpr uint64_t kMaxTensorSize = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// *out = a + b; false on overflow.
inline bool CheckedAdd(size_t a, size_t b, size_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

// *out = a * b; false on overflow.
inline bool CheckedMul(size_t a, size_t b, size_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

// Product of `dims`; false for a negative dimension or a product above kMaxTensorSize.
inline bool CheckedElementCount(const std::vector<int64_t>& dims, int64_t* count) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  *count = n;
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
