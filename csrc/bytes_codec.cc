#include "bytes_codec.h"

#include <algorithm>
#include <cstring>

#include "status.h"

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
}  // namespace

std::vector<BytesElement> ParseBytes(const uint8_t* data, size_t size, int64_t expected_count,
                                     const std::string& what) {
  std::vector<BytesElement> out;
  // The count comes from a shape on the wire: reserve no more than the buffer can hold (each
  // element takes at least its 4-byte length prefix).
  if (expected_count > 0) {
    out.reserve(std::min(static_cast<size_t>(expected_count), size / 4));
  }
  size_t pos = 0;
  while (pos < size) {
    if (size - pos < 4) Malformed(what, out.size(), pos, size, "truncated length prefix");
    uint32_t len = ReadLength(data + pos);
    pos += 4;
    if (len > size - pos) Malformed(what, out.size(), pos - 4, size, "length runs past the end");
    out.push_back(BytesElement{pos, len});
    pos += len;
  }
  if (expected_count >= 0 && static_cast<int64_t>(out.size()) != expected_count) {
    throw Error(StatusCode::kInvalidArg,
                what + ": expected " + std::to_string(expected_count) +
                    " BYTES elements for its shape, got " + std::to_string(out.size()));
  }
  return out;
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
