#include "transport/grpc/compression.h"

#include <algorithm>

#ifdef TRITONLITE_WITH_ZLIB
#include <zlib.h>
#endif

#include "transport/grpc/protocol.h"

namespace tritonlite {
namespace grpc {

const char* EncodingName(Encoding encoding) {
  switch (encoding) {
    case Encoding::kDeflate: return "deflate";
    case Encoding::kGzip: return "gzip";
    case Encoding::kIdentity: break;
  }
  return "identity";
}

bool AcceptsEncoding(std::string_view accept_encoding, std::string_view name) {
  size_t start = 0;
  while (start <= accept_encoding.size()) {
    size_t end = accept_encoding.find(',', start);
    if (end == std::string_view::npos) end = accept_encoding.size();
    std::string_view item = accept_encoding.substr(start, end - start);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == name) return true;
    start = end + 1;
  }
  return false;
}

bool ParseCompressionLevel(std::string_view name, CompressionLevel* level) {
  if (name == "none") {
    *level = CompressionLevel::kNone;
  } else if (name == "low") {
    *level = CompressionLevel::kLow;
  } else if (name == "medium") {
    *level = CompressionLevel::kMedium;
  } else if (name == "high") {
    *level = CompressionLevel::kHigh;
  } else {
    return false;
  }
  return true;
}

Encoding EncodingForLevel(CompressionLevel level, std::string_view accept_encoding) {
  if (level == CompressionLevel::kNone) return Encoding::kIdentity;
  Encoding ranked[2];
  size_t n = 0;
  for (Encoding e : {Encoding::kGzip, Encoding::kDeflate}) {
    Encoding usable;
    const char* name = EncodingName(e);
    if (ParseCompression(name, &usable) && AcceptsEncoding(accept_encoding, name)) ranked[n++] = e;
  }
  if (n == 0) return Encoding::kIdentity;
  switch (level) {
    case CompressionLevel::kLow: return ranked[0];
    case CompressionLevel::kMedium: return ranked[n / 2];
    default: return ranked[n - 1];
  }
}

#ifdef TRITONLITE_WITH_ZLIB

const char* AcceptedEncodings() { return "identity,deflate,gzip"; }

bool CanDecompress(std::string_view encoding) {
  return encoding == "gzip" || encoding == "deflate";
}

bool ParseCompression(std::string_view name, Encoding* encoding) {
  if (name == "identity") {
    *encoding = Encoding::kIdentity;
  } else if (name == "deflate") {
    *encoding = Encoding::kDeflate;
  } else if (name == "gzip") {
    *encoding = Encoding::kGzip;
  } else {
    return false;
  }
  return true;
}

namespace {

// gzip: RFC 1952 framing (15 + 16); deflate: gRPC means the zlib format (RFC 1950).
int WindowBits(bool gzip) { return gzip ? 15 + 16 : 15; }

}  // namespace

namespace {

// Inflates [data, data + size) once: into `out` (exactly `out_size` bytes) or, with `out` null,
// only counting the bytes (into *produced_total). kTooLarge as soon as more than `max_bytes`
// come out.
DecompressResult Inflate(bool gzip, const uint8_t* data, size_t size, size_t max_bytes,
                         char* out, size_t out_size, size_t* produced_total) {
  z_stream zs{};
  if (inflateInit2(&zs, WindowBits(gzip)) != Z_OK) return DecompressResult::kCorrupt;
  struct Guard {
    z_stream* zs;
    ~Guard() { inflateEnd(zs); }
  } guard{&zs};
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  char scratch[64 * 1024];
  size_t total = 0;
  while (true) {
    char* target = out == nullptr ? scratch : out + total;
    const size_t room = out == nullptr ? sizeof(scratch)
                                       : std::min<size_t>(out_size - total, 1u << 30);
    char overflow = 0;  // one byte past the expected size: detects a longer stream
    zs.next_out = reinterpret_cast<Bytef*>(room == 0 ? &overflow : target);
    zs.avail_out = static_cast<uInt>(room == 0 ? 1 : room);
    const uInt avail_before = zs.avail_out;
    const int rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) return DecompressResult::kCorrupt;
    const size_t produced = avail_before - zs.avail_out;
    if (room == 0 && produced > 0) return DecompressResult::kCorrupt;  // changed under us
    if (total + produced > max_bytes) return DecompressResult::kTooLarge;
    total += produced;
    if (rc == Z_STREAM_END) {
      *produced_total = total;
      return zs.avail_in == 0 ? DecompressResult::kOk : DecompressResult::kCorrupt;
    }
    if (zs.avail_in == 0 && produced == 0) return DecompressResult::kCorrupt;  // truncated
  }
}

}  // namespace

DecompressResult Decompress(std::string_view encoding, const uint8_t* data, size_t size,
                            size_t max_bytes, std::string* out) {
  if (!CanDecompress(encoding)) return DecompressResult::kCorrupt;
  const bool gzip = encoding == "gzip";
  // Two passes: the first only counts, so a message that inflates past the maximum (a
  // decompression bomb) costs no memory, and a valid one is written once into a buffer of its
  // exact size (no doubling, no copies, nothing kept by the allocator beyond it).
  size_t total = 0;
  DecompressResult r = Inflate(gzip, data, size, max_bytes, nullptr, 0, &total);
  if (r != DecompressResult::kOk) return r;
  out->assign(total, '\0');
  size_t written = 0;
  r = Inflate(gzip, data, size, max_bytes, total ? &(*out)[0] : nullptr, total, &written);
  if (total == 0) return DecompressResult::kOk;
  return r == DecompressResult::kOk && written == total ? r : DecompressResult::kCorrupt;
}

bool FrameCompressed(Encoding encoding, const uint8_t* data, size_t size, std::string* framed) {
  // Messages are at most 4 GiB - 1 (the length prefix); zlib counts in uInt.
  if (encoding == Encoding::kIdentity || size > 0xffffffffull) return false;
  z_stream zs{};
  // gRPC core's settings: the default level, a 32 KiB window, memLevel 8.
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, WindowBits(encoding == Encoding::kGzip),
                   8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return false;
  }
  struct Guard {
    z_stream* zs;
    ~Guard() { deflateEnd(zs); }
  } guard{&zs};
  // Room for less than the message only: output that does not fit is not worth sending.
  if (size < 2) return false;
  const size_t room = size - 1;
  std::string out(kMessagePrefixSize + room, '\0');
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  zs.next_out = reinterpret_cast<Bytef*>(&out[kMessagePrefixSize]);
  zs.avail_out = static_cast<uInt>(room);
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) return false;  // out of room (or an error)
  const size_t produced = room - zs.avail_out;
  out.resize(kMessagePrefixSize + produced);
  WriteMessagePrefix(reinterpret_cast<uint8_t*>(&out[0]), produced);
  out[0] = 1;  // compressed
  *framed = std::move(out);
  return true;
}

#else  // no zlib: identity only

const char* AcceptedEncodings() { return "identity"; }

bool CanDecompress(std::string_view) { return false; }

bool ParseCompression(std::string_view name, Encoding* encoding) {
  if (name != "identity") return false;
  *encoding = Encoding::kIdentity;
  return true;
}

DecompressResult Decompress(std::string_view, const uint8_t*, size_t, size_t, std::string*) {
  return DecompressResult::kCorrupt;
}

bool FrameCompressed(Encoding, const uint8_t*, size_t, std::string*) { return false; }

#endif

}  // namespace grpc
}  // namespace tritonlite
