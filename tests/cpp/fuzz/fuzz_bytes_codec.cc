// libFuzzer target: the BYTES codec (csrc/core/bytes_codec.cc) and BYTES tensor views
// (Tensor::View, csrc/core/tensor.cc).
//
// Input: byte 0 picks the expected element count (0xff: none; 0xfe: the next 8 bytes, any
// value, as a shape from the wire may be; else the value itself); the rest is a serialized
// BYTES buffer. Checks: every element lies inside the buffer, elements tile it exactly, the
// count matches, offsets agree with the parse, and re-encoding gives the same bytes.
#include <cstring>
#include <vector>

#include "core/bytes_codec.h"
#include "core/status.h"
#include "core/tensor.h"
#include "fuzz_common.h"

using namespace tritonlite;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t pick = in.Byte();
  int64_t expected = pick;
  if (pick == 0xff) {
    expected = -1;
  } else if (pick == 0xfe) {
    expected = static_cast<int64_t>((uint64_t{in.U32()} << 32) | in.U32());
  }
  const std::string rest = in.Rest();
  const std::vector<uint8_t> buffer(rest.begin(), rest.end());
  std::vector<BytesElement> elements;
  try {
    elements = ParseBytes(buffer.data(), buffer.size(), expected);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == StatusCode::kInvalidArg);
    elements.clear();
    try {
      elements = ParseBytes(buffer.data(), buffer.size(), -1);
    } catch (const Error&) {
      return 0;
    }
  }
  size_t pos = 0;
  std::string reencoded;
  for (size_t i = 0; i < elements.size(); ++i) {
    const BytesElement& e = elements[i];
    FUZZ_CHECK(e.offset == pos + 4);
    FUZZ_CHECK(e.size <= buffer.size() - e.offset);
    FUZZ_CHECK(BytesElementOffset(buffer.data(), buffer.size(), static_cast<int64_t>(i)) == pos);
    AppendBytesElement(&reencoded, reinterpret_cast<const char*>(buffer.data()) + e.offset,
                       e.size);
    pos = e.offset + e.size;
  }
  FUZZ_CHECK(pos == buffer.size());
  FUZZ_CHECK(reencoded == rest);
  FUZZ_CHECK(BytesElementOffset(buffer.data(), buffer.size(),
                                static_cast<int64_t>(elements.size())) == buffer.size());

  // A BYTES tensor over the buffer with a one-dimensional shape of `expected` elements.
  if (expected >= 0) {
    try {
      Tensor t = Tensor::View(DataType::kBytes, Shape{expected}, buffer.data(), buffer.size(),
                              nullptr);
      FUZZ_CHECK(t.element_count() == static_cast<int64_t>(elements.size()));
    } catch (const Error& e) {
      FUZZ_CHECK(e.code() == StatusCode::kInvalidArg);
    }
  }
  return 0;
}
