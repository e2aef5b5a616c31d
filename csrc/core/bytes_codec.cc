#include "core/bytes_codec.h"

#include <algorithm>
#include <cstring>

#include "core/status.h"

namespace tritonlite {

namespace {
uint32_t ReadLength(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

[[noreturn]] void Malformed(const std::string& what, size_t element, size_t pos, size_t size,
                            const char* detail) {
  throw Error(StatusCode::kInvalidArg,
              what + ": malformed BYTES data at element " + std::to_string(element) + " (offset " +
                  std::to_string(pos) + " of " + std::to_string(size) + " bytes): " + detail);
}

// Walks the elements of a serialized buffer, calling `each(offset, size)` for each one.
// Returns the number of elements; throws INVALID_ARG on a malformed buffer.
template <typename Each>
size_t WalkBytes(const uint8_t* data, size_t size, const std::string& what, Each each) {
  size_t pos = 0;
  size_t count = 0;
  while (pos < size) {
    if (size - pos < 4) Malformed(what, count, pos, size, "truncated length prefix");
    const uint32_t len = ReadLength(data + pos);
    pos += 4;
    if (len > size - pos) Malformed(what, count, pos - 4, size, "length runs past the end");
    each(pos, len);
    ++count;
    pos += len;
  }
  return count;
}

[[noreturn]] void CountMismatch(const std::string& what, int64_t expected, size_t got) {
  throw Error(StatusCode::kInvalidArg, what + ": expected " + std::to_string(expected) +
                                           " BYTES elements for its shape, got " +
                                           std::to_string(got));
}
}  // namespace

std::vector<BytesElement> ParseBytes(const uint8_t* data, size_t size, int64_t expected_count,
                                     const std::string& what) {
  std::vector<BytesElement> out;
  // The count is the peer's: reserve no more than the buffer can hold (every element takes at
  // least its 4-byte length prefix), or a tiny request could reserve terabytes.
  if (expected_count > 0) out.reserve(std::min(static_cast<size_t>(expected_count), size / 4));
  WalkBytes(data, size, what,
            [&out](size_t offset, uint32_t len) { out.push_back(BytesElement{offset, len}); });
  if (expected_count >= 0 && static_cast<int64_t>(out.size()) != expected_count) {
    CountMismatch(what, expected_count, out.size());
  }
  return out;
}

void CheckBytes(const uint8_t* data, size_t size, int64_t expected_count, const std::string& what) {
  const size_t count = CountBytesElements(data, size, what);
  if (expected_count >= 0 && static_cast<int64_t>(count) != expected_count) {
    CountMismatch(what, expected_count, count);
  }
}

size_t CountBytesElements(const uint8_t* data, size_t size, const std::string& what) {
  return WalkBytes(data, size, what, [](size_t, uint32_t) {});
}

size_t BytesElementOffset(const uint8_t* data, size_t size, int64_t index) {
  size_t pos = 0;
  for (int64_t i = 0; i < index; ++i) {
    if (size - pos < 4) Malformed("BYTES tensor", static_cast<size_t>(i), pos, size, "truncated");
    uint32_t len = ReadLength(data + pos);
    if (len > size - pos - 4) {
      Malformed("BYTES tensor", static_cast<size_t>(i), pos, size, "length runs past the end");
    }
    pos += 4 + len;
  }
  return pos;
}

void AppendBytesElement(std::string* out, const char* data, size_t size) {
  uint8_t prefix[4] = {static_cast<uint8_t>(size), static_cast<uint8_t>(size >> 8),
                       static_cast<uint8_t>(size >> 16), static_cast<uint8_t>(size >> 24)};
  out->append(reinterpret_cast<const char*>(prefix), 4);
  out->append(data, size);
}

}  // namespace tritonlite
