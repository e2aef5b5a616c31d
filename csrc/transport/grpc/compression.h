// gRPC message compression (grpc-encoding): gzip and deflate through zlib when the build found
// it (TRITONLITE_WITH_ZLIB), identity always. The server decompresses requests, and compresses
// the responses of the calls it was configured to compress (Triton's
// --grpc-infer-response-compression-level) with an algorithm the client accepts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tritonlite {
namespace grpc {

enum class Encoding : uint8_t { kIdentity = 0, kDeflate = 1, kGzip = 2 };

// The grpc-accept-encoding value this build announces, e.g. "identity,deflate,gzip".
const char* AcceptedEncodings();
// Whether compressed messages in `encoding` can be read.
bool CanDecompress(std::string_view encoding);

// "identity", "deflate", "gzip".
const char* EncodingName(Encoding encoding);
// The encoding named `name`; false for names this build cannot compress with.
bool ParseCompression(std::string_view name, Encoding* encoding);
// Whether a grpc-accept-encoding value ("identity,deflate,gzip", spaces allowed) names `name`.
bool AcceptsEncoding(std::string_view accept_encoding, std::string_view name);

// A server's default response compression level (gRPC's grpc_compression_level; Triton's
// --grpc-infer-response-compression-level).
enum class CompressionLevel : uint8_t { kNone = 0, kLow = 1, kMedium = 2, kHigh = 3 };
// "none", "low", "medium", "high".
bool ParseCompressionLevel(std::string_view name, CompressionLevel* level);
// The algorithm gRPC core picks for `level` given the client's grpc-accept-encoding: of gzip
// and deflate (in that order) those the client accepts and this build can compress with, low
// takes the first, medium the middle one, high the last; identity when none is left.
Encoding EncodingForLevel(CompressionLevel level, std::string_view accept_encoding);

enum class DecompressResult { kOk, kTooLarge, kCorrupt };

// Inflates one compressed message into `out`, refusing output beyond `max_bytes`.
DecompressResult Decompress(std::string_view encoding, const uint8_t* data, size_t size,
                            size_t max_bytes, std::string* out);

// Frames one message compressed with `encoding` (the 5-byte prefix with the compressed flag,
// then the compressed bytes) into `framed`. Returns false, leaving `framed` as it was, when
// compression would not make the message smaller (gRPC core then sends it uncompressed, which
// the flag allows on any call) or `encoding` is identity.
bool FrameCompressed(Encoding encoding, const uint8_t* data, size_t size, std::string* framed);

}  // namespace grpc
}  // namespace tritonlite
