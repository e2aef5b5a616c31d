// HTTP/2 frames (RFC 9113 section 4 and 6): frame types, flags, error codes, settings
// identifiers, the 9-byte frame header, and writers that append whole frames to an output
// buffer. No state: the connection (transport/http2/connection.h) decides what to send and when.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tritonlite {
namespace http2 {

constexpr size_t kFrameHeaderSize = 9;
constexpr char kClientPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kClientPrefaceSize = sizeof(kClientPreface) - 1;

constexpr uint32_t kDefaultWindowSize = 65535;
constexpr uint32_t kMaxWindowSize = 0x7fffffff;
constexpr uint32_t kMinMaxFrameSize = 16384;
constexpr uint32_t kMaxMaxFrameSize = 16777215;
constexpr uint32_t kDefaultHeaderTableSize = 4096;
constexpr uint32_t kMaxStreamId = 0x7fffffff;

enum class FrameType : uint8_t {
  kData = 0x0,
  kHeaders = 0x1,
  kPriority = 0x2,
  kRstStream = 0x3,
  kSettings = 0x4,
  kPushPromise = 0x5,
  kPing = 0x6,
  kGoAway = 0x7,
  kWindowUpdate = 0x8,
  kContinuation = 0x9,
};

namespace flags {
constexpr uint8_t kEndStream = 0x1;  // DATA, HEADERS
constexpr uint8_t kAck = 0x1;        // SETTINGS, PING
constexpr uint8_t kEndHeaders = 0x4;  // HEADERS, CONTINUATION
constexpr uint8_t kPadded = 0x8;      // DATA, HEADERS
constexpr uint8_t kPriority = 0x20;   // HEADERS
}  // namespace flags

enum class ErrorCode : uint32_t {
  kNoError = 0x0,
  kProtocolError = 0x1,
  kInternalError = 0x2,
  kFlowControlError = 0x3,
  kSettingsTimeout = 0x4,
  kStreamClosed = 0x5,
  kFrameSizeError = 0x6,
  kRefusedStream = 0x7,
  kCancel = 0x8,
  kCompressionError = 0x9,
  kConnectError = 0xa,
  kEnhanceYourCalm = 0xb,
  kInadequateSecurity = 0xc,
  kHttp11Required = 0xd,
};

const char* ErrorCodeName(ErrorCode code);

enum class SettingId : uint16_t {
  kHeaderTableSize = 0x1,
  kEnablePush = 0x2,
  kMaxConcurrentStreams = 0x3,
  kInitialWindowSize = 0x4,
  kMaxFrameSize = 0x5,
  kMaxHeaderListSize = 0x6,
};

struct FrameHeader {
  uint32_t length = 0;  // payload bytes (24 bits)
  uint8_t type = 0;     // a FrameType, or an unknown type to ignore
  uint8_t flags = 0;
  uint32_t stream_id = 0;  // reserved bit cleared
};

// Reads a frame header from kFrameHeaderSize bytes.
FrameHeader ParseFrameHeader(const uint8_t* p);

inline uint32_t ReadUint32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline uint64_t ReadUint64(const uint8_t* p) {
  return (uint64_t{ReadUint32(p)} << 32) | ReadUint32(p + 4);
}

// Frame writers: each appends one complete frame to `out`.
void AppendFrameHeader(std::string* out, uint32_t length, FrameType type, uint8_t flags,
                       uint32_t stream_id);
void AppendSetting(std::string* payload, SettingId id, uint32_t value);  // one 6-byte entry
void AppendSettingsFrame(std::string* out, const std::string& entries);
void AppendSettingsAck(std::string* out);
void AppendPingAck(std::string* out, const uint8_t* opaque8);
// A PING (not an ACK) carrying `opaque` as 8 big-endian bytes.
void AppendPing(std::string* out, uint64_t opaque);
void AppendWindowUpdate(std::string* out, uint32_t stream_id, uint32_t increment);
void AppendRstStream(std::string* out, uint32_t stream_id, ErrorCode code);
void AppendGoAway(std::string* out, uint32_t last_stream_id, ErrorCode code,
                  const std::string& debug);
// A header block as HEADERS (+ CONTINUATION frames when it exceeds `max_frame_size`).
void AppendHeaderBlock(std::string* out, uint32_t stream_id, const std::string& block,
                       bool end_stream, uint32_t max_frame_size);
// One DATA frame carrying [data, data + size).
void AppendDataFrame(std::string* out, uint32_t stream_id, const uint8_t* data, size_t size,
                     bool end_stream);

}  // namespace http2
}  // namespace tritonlite
