// gRPC message compression (grpc-encoding): gzip and deflate through zlib when the build found
// it (TRITONLITE_WITH_ZLIB), identity always. The server decompresses requests and never
// compresses responses (it sends no grpc-encoding, which every client accepts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tritonlite {
namespace grpc {

// The grpc-accept-encoding value this build announces, e.g. "identity,deflate,gzip".
const char* AcceptedEncodings();
// Whether compressed messages in `encoding` can be read.
bool CanDecompress(std::string_view encoding);

enum class DecompressResult { kOk, kTooLarge, kCorrupt };

// Inflates one compressed message into `out`, refusing output beyond `max_bytes`.
DecompressResult Decompress(std::string_view encoding, const uint8_t* data, size_t size,
                            size_t max_bytes, std::string* out);

}  // namespace grpc
}  // namespace tritonlite
