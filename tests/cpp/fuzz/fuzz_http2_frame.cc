// libFuzzer target: the HTTP/2 frame parser and connection state machine
// (csrc/transport/http2/connection.cc, csrc/transport/http2/frame.cc) fed well-framed input.
//
// Input: byte 0 picks the handler's behaviour (fuzz_http2_common.h), byte 1 the connection's
// limits and how output is consumed, bytes 2-3 seed the chunking of the byte stream; then
// frames as records: type, flags, a stream id byte (0xff: 4 more bytes follow), a 2-byte
// payload length and the payload. The harness writes the client preface, a SETTINGS frame and
// the records with correct frame headers, so mutations reach frame handling rather than being
// stopped by the framing. Oracles: fuzz_http2_common.h's output and handler checks.
#include <vector>

#include "fuzz_common.h"
#include "fuzz_http2_common.h"

using namespace tritonlite::http2;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte();
  const uint8_t limits = in.Byte();
  const uint32_t seed = in.U16();

  ConnectionOptions options;
  if (limits & 1) {
    options.initial_stream_window = 1024;
    options.connection_window = 4096;
  }
  if (limits & 2) options.max_concurrent_streams = 2;
  if (limits & 4) options.max_header_list_size = 256;
  if (limits & 8) options.max_frame_size = 1u << 20;
  const bool consume = (limits & 16) == 0;

  // The stream the peer sends: preface, SETTINGS, then the records as frames.
  std::string wire(kClientPreface, kClientPrefaceSize);
  AppendSettingsFrame(&wire, "");
  uint64_t window_credit = 0;
  while (!in.empty()) {
    const uint8_t type = in.Byte();
    const uint8_t flags = in.Byte();
    uint32_t stream = in.Byte();
    if (stream == 0xff) stream = in.U32() & 0x7fffffffu;
    const size_t length = in.U16();
    const std::string payload = in.Bytes(length);
    AppendFrameHeader(&wire, static_cast<uint32_t>(payload.size()),
                      static_cast<FrameType>(type), flags, stream);
    wire.append(payload);
    if (type == static_cast<uint8_t>(FrameType::kWindowUpdate) && stream == 0 &&
        payload.size() == 4) {
      window_credit += ReadUint32(reinterpret_cast<const uint8_t*>(payload.data())) & 0x7fffffffu;
    }
  }

  fuzz::FuzzHandler handler(mode);
  Connection conn(&handler, options);
  handler.set_connection(&conn);
  fuzz::OutputChecker checker;
  conn.Start();
  checker.Take(&conn, true);
  fuzz::Chunker chunker(seed);
  size_t pos = 0;
  uint64_t now = 1;
  while (pos < wire.size() && !conn.failed()) {
    const size_t n = chunker.Next(wire.size() - pos);
    // An exact-size copy of each piece: a read past it is an ASan report.
    std::vector<uint8_t> piece(wire.begin() + pos, wire.begin() + pos + n);
    pos += n;
    now += 1000000;
    conn.Feed(piece.data(), piece.size(), now);
    checker.Take(&conn, consume);
    if (mode & 0x10) conn.PumpData();
    if ((mode & 0x20) && pos > wire.size() / 2) conn.GoAwayGracefully("fuzz");
    if ((mode & 0x40) && pos > wire.size() / 2) conn.Shutdown();
    if (mode & 0x80) conn.SendPing(now);
    checker.Take(&conn, consume);
  }
  checker.Take(&conn, true);
  checker.Check(window_credit);
  return 0;
}
