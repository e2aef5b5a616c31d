// Triton's BYTES serialization: each element is a 4-byte little-endian length followed by that
// many bytes, elements back to back. Parsing is bounds-checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tritonlite {

struct BytesElement {
  size_t offset;  // of the element's first byte (after its length prefix)
  uint32_t size;
};

// Parses a serialized buffer. Throws INVALID_ARG (naming `what`) if an element's length runs
// past the end, or if the number of elements is not `expected_count` (when >= 0).
std::vector<BytesElement> ParseBytes(const uint8_t* data, size_t size, int64_t expected_count,
                                     const std::string& what = "BYTES tensor");

// ParseBytes' checks without its result: allocates nothing.
void CheckBytes(const uint8_t* data, size_t size, int64_t expected_count,
                const std::string& what = "BYTES tensor");

// The number of elements in a serialized buffer, allocating nothing. Throws INVALID_ARG (naming
// `what`) on a malformed buffer.
size_t CountBytesElements(const uint8_t* data, size_t size,
                          const std::string& what = "BYTES tensor");

// Byte offset where element `index` starts (its length prefix); `index` may equal the count.
// Throws INVALID_ARG on a malformed buffer.
size_t BytesElementOffset(const uint8_t* data, size_t size, int64_t index);

void AppendBytesElement(std::string* out, const char* data, size_t size);

}  // namespace tritonlite
