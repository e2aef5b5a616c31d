// libFuzzer target: the gRPC message reader (length-prefixed framing,
// csrc/transport/grpc/protocol.cc) and message decompression (csrc/transport/grpc/compression.cc),
// plus the small header parsers (grpc-timeout, grpc-accept-encoding, grpc-message encoding).
//
// Input: byte 0 picks the maximum message size (2^(b % 24)) and the grpc-encoding (b / 24 % 3:
// identity, gzip, deflate), bytes 1-2 seed how the body is cut into pieces; the rest is a
// stream's body bytes. Checks: every message has the length its prefix announced and at most
// the maximum; an inflated message stays within the maximum; compression round-trips.
#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "transport/grpc/compression.h"
#include "transport/grpc/protocol.h"

using namespace tritonlite::grpc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t config = in.Byte();
  const size_t max_bytes = size_t{1} << (config % 24);
  static const char* const kEncodings[] = {"identity", "gzip", "deflate"};
  const std::string_view encoding = kEncodings[config / 24 % 3];
  fuzz::Chunker chunker(in.U16());
  const std::string body = in.Rest();

  MessageReader reader(max_bytes);
  std::vector<ReceivedMessage> messages;
  size_t pos = 0;
  bool ok = true;
  while (pos < body.size() && ok) {
    const size_t n = chunker.Next(body.size() - pos);
    std::vector<uint8_t> piece(body.begin() + pos, body.begin() + pos + n);
    pos += n;
    std::string error;
    ok = reader.Append(piece.data(), piece.size(), &messages, &error);
    FUZZ_CHECK(ok || !error.empty());
  }
  // Replays the framing to know what each message must be.
  size_t offset = 0;
  for (const ReceivedMessage& m : messages) {
    FUZZ_CHECK(body.size() - offset >= kMessagePrefixSize);
    const auto* prefix = reinterpret_cast<const uint8_t*>(body.data() + offset);
    const size_t length = (size_t{prefix[1]} << 24) | (size_t{prefix[2]} << 16) |
                          (size_t{prefix[3]} << 8) | size_t{prefix[4]};
    FUZZ_CHECK(m.message->size() == length && length <= max_bytes);
    FUZZ_CHECK(m.compressed == ((prefix[0] & 1) != 0));
    FUZZ_CHECK(std::memcmp(m.message->data(), body.data() + offset + kMessagePrefixSize,
                           length) == 0);
    offset += kMessagePrefixSize + length;
    if (m.compressed && encoding != "identity") {
      std::string out;
      const DecompressResult r =
          Decompress(encoding, m.message->data(), m.message->size(), max_bytes, &out);
      if (r == DecompressResult::kOk) FUZZ_CHECK(out.size() <= max_bytes);
    }
  }
  if (ok) FUZZ_CHECK(reader.partial() == (offset < body.size()));

  // Compression round trip (what the server sends must be what the client reads).
  if (CanDecompress(encoding) && !body.empty()) {
    Encoding e = Encoding::kIdentity;
    FUZZ_CHECK(ParseCompression(encoding, &e));
    std::string framed;
    if (FrameCompressed(e, reinterpret_cast<const uint8_t*>(body.data()), body.size(),
                        &framed)) {
      FUZZ_CHECK(framed.size() < kMessagePrefixSize + body.size());
      std::string out;
      FUZZ_CHECK(Decompress(encoding,
                            reinterpret_cast<const uint8_t*>(framed.data()) + kMessagePrefixSize,
                            framed.size() - kMessagePrefixSize, body.size(),
                            &out) == DecompressResult::kOk);
      FUZZ_CHECK(out == body);
    }
  }

  // Header values from the peer.
  const std::string_view text(body.data(), std::min<size_t>(body.size(), 64));
  uint64_t ns = 0;
  if (ParseGrpcTimeout(text, &ns)) FUZZ_CHECK(ns <= (uint64_t{1} << 62));
  const std::string encoded = PercentEncode(text);
  for (char c : encoded) FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
  (void)AcceptsEncoding(text, "gzip");
  (void)EncodingForLevel(static_cast<CompressionLevel>(config % 4), text);
  return 0;
}
