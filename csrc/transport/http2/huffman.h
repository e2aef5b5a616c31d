// HPACK Huffman decoding (RFC 7541 section 5.2 and Appendix B). gRPC clients Huffman-encode
// most header strings; the server never encodes with Huffman.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tritonlite {
namespace http2 {

// Appends the decoded string to `out`. Returns false for an invalid encoding: a code that
// decodes to EOS, padding longer than 7 bits, or padding that is not the EOS prefix (all 1s).
bool HuffmanDecode(const uint8_t* data, size_t size, std::string* out);

}  // namespace http2
}  // namespace tritonlite
