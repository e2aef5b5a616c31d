#include "grpc_compression.h"

#ifdef TRITONLITE_WITH_ZLIB
#include <zlib.h>
#endif

namespace tritonlite {
namespace grpc {

#ifdef TRITONLITE_WITH_ZLIB

const char* AcceptedEncodings() { return "identity,deflate,gzip"; }

bool CanDecompress(std::string_view encoding) {
  return encoding == "gzip" || encoding == "deflate";
}

DecompressResult Decompress(std::string_view encoding, const uint8_t* data, size_t size,
                            size_t max_bytes, std::string* out) {
  if (!CanDecompress(encoding)) return DecompressResult::kCorrupt;
  z_stream zs{};
  // gzip: RFC 1952 framing (15 + 16); deflate: gRPC means the zlib format (RFC 1950).
  if (inflateInit2(&zs, encoding == "gzip" ? 15 + 16 : 15) != Z_OK) {
    return DecompressResult::kCorrupt;
  }
  struct Guard {
    z_stream* zs;
    ~Guard() { inflateEnd(zs); }
  } guard{&zs};
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  out->clear();
  char chunk[64 * 1024];
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof(chunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) return DecompressResult::kCorrupt;
    const size_t produced = sizeof(chunk) - zs.avail_out;
    if (out->size() + produced > max_bytes) return DecompressResult::kTooLarge;
    out->append(chunk, produced);
    if (rc == Z_STREAM_END) {
      return zs.avail_in == 0 ? DecompressResult::kOk : DecompressResult::kCorrupt;
    }
    if (zs.avail_in == 0 && produced == 0) return DecompressResult::kCorrupt;  // truncated
  }
}

#else  // no zlib: identity only

const char* AcceptedEncodings() { return "identity"; }

bool CanDecompress(std::string_view) { return false; }

DecompressResult Decompress(std::string_view, const uint8_t*, size_t, size_t, std::string*) {
  return DecompressResult::kCorrupt;
}

#endif

}  // namespace grpc
}  // namespace tritonlite
