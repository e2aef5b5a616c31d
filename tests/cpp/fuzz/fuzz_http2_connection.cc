// libFuzzer target: Connection::Feed (csrc/transport/http2/connection.cc) over arbitrary byte
// streams.
//
// Input: byte 0 picks the handler's behaviour (fuzz_http2_common.h), byte 1 bit 0 whether the
// client preface is put in front (so mutations are not all stopped there), bytes 2-3 seed how
// the stream is cut into reads; the rest is what the peer sends, byte for byte.
#include <vector>

#include "fuzz_common.h"
#include "fuzz_http2_common.h"

using namespace tritonlite::http2;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const uint8_t flags = in.Byte();
  const uint32_t seed = in.U16();
  std::string wire;
  if (flags & 1) wire.assign(kClientPreface, kClientPrefaceSize);
  wire += in.Rest();

  fuzz::FuzzHandler handler(mode);
  Connection conn(&handler, ConnectionOptions{});
  handler.set_connection(&conn);
  fuzz::OutputChecker checker;
  conn.Start();
  fuzz::Chunker chunker(seed);
  size_t pos = 0;
  uint64_t now = 1;
  while (pos < wire.size()) {
    const size_t n = chunker.Next(wire.size() - pos);
    std::vector<uint8_t> piece(wire.begin() + pos, wire.begin() + pos + n);
    pos += n;
    now += 250000000;
    conn.Feed(piece.data(), piece.size(), now);
    checker.Take(&conn, (flags & 2) == 0);
    if (conn.failed()) {
      FUZZ_CHECK(!conn.error_message().empty());
      // Bytes after a connection error are ignored.
      conn.Feed(piece.data(), piece.size(), now);
    }
  }
  checker.Take(&conn, true);
  // No connection-level WINDOW_UPDATE credit is known here: any DATA beyond the initial window
  // needed one, so count them from the input loosely (every 4-byte value could be one).
  checker.Check(UINT64_MAX / 2);
  return 0;
}
