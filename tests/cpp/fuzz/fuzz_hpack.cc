// libFuzzer target: the HPACK decoder (csrc/transport/http2/hpack.cc) and Huffman decoding
// (csrc/transport/http2/huffman.cc).
//
// Input: byte 0 picks the SETTINGS_HEADER_TABLE_SIZE this side announces (x64); then header
// blocks, each a 2-byte big-endian length and that many bytes (the last may be short), decoded
// one after another by one decoder so its dynamic table carries over, as on a connection.
// Checks: a failed decode names its error; a successful one stays within the list size limit;
// the dynamic table never exceeds the announced size; what the encoders write decodes back.
#include <cstring>
#include <vector>

#include "fuzz_common.h"
#include "transport/http2/hpack.h"
#include "transport/http2/huffman.h"

using namespace tritonlite::http2;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint32_t limit = uint32_t{in.Byte()} * 64;
  constexpr size_t kMaxList = 16u << 10;
  HpackDecoder decoder(limit);
  while (!in.empty()) {
    const size_t length = in.U16();
    // An exact-size copy: ASan sees any read past the block.
    const std::string chunk = in.Bytes(length);
    std::vector<uint8_t> block(chunk.begin(), chunk.end());
    HeaderList headers;
    std::string error;
    const bool ok = decoder.Decode(block.data(), block.size(), kMaxList, &headers, &error);
    FUZZ_CHECK(decoder.table_size() <= limit);
    if (!ok) {
      FUZZ_CHECK(!error.empty());
      break;  // a COMPRESSION_ERROR ends the connection, and its decoder
    }
    size_t list_size = 0;
    for (const HeaderField& h : headers) list_size += HeaderFieldSize(h.name, h.value);
    FUZZ_CHECK(list_size <= kMaxList);

    // The server's encoders, fed with what was decoded, must produce a block that decodes to
    // the same fields (fresh decoder: these encoders never index).
    std::string encoded;
    for (const HeaderField& h : headers) HpackAppendLiteral(&encoded, h.name, h.value);
    HpackDecoder fresh(4096);
    HeaderList again;
    std::string error2;
    FUZZ_CHECK(fresh.Decode(reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size(),
                            SIZE_MAX, &again, &error2));
    FUZZ_CHECK(again.size() == headers.size());
    for (size_t i = 0; i < again.size(); ++i) {
      FUZZ_CHECK(again[i].name == headers[i].name && again[i].value == headers[i].value);
    }
    FUZZ_CHECK(fresh.table_entries() == 0);
  }

  // Huffman decoding of the whole input, as one string literal.
  std::vector<uint8_t> copy(data, data + size);
  std::string decoded;
  if (HuffmanDecode(copy.data(), copy.size(), &decoded)) {
    // Every symbol is at least 5 bits long: at most 8/5 output bytes per input byte.
    FUZZ_CHECK(decoded.size() <= size * 8 / 5);
  }
  return 0;
}
