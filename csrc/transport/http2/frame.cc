#include "transport/http2/frame.h"

#include <algorithm>

namespace tritonlite {
namespace http2 {

namespace {

void AppendUint32(std::string* out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(bytes, 4);
}

}  // namespace

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNoError: return "NO_ERROR";
    case ErrorCode::kProtocolError: return "PROTOCOL_ERROR";
    case ErrorCode::kInternalError: return "INTERNAL_ERROR";
    case ErrorCode::kFlowControlError: return "FLOW_CONTROL_ERROR";
    case ErrorCode::kSettingsTimeout: return "SETTINGS_TIMEOUT";
    case ErrorCode::kStreamClosed: return "STREAM_CLOSED";
    case ErrorCode::kFrameSizeError: return "FRAME_SIZE_ERROR";
    case ErrorCode::kRefusedStream: return "REFUSED_STREAM";
    case ErrorCode::kCancel: return "CANCEL";
    case ErrorCode::kCompressionError: return "COMPRESSION_ERROR";
    case ErrorCode::kConnectError: return "CONNECT_ERROR";
    case ErrorCode::kEnhanceYourCalm: return "ENHANCE_YOUR_CALM";
    case ErrorCode::kInadequateSecurity: return "INADEQUATE_SECURITY";
    case ErrorCode::kHttp11Required: return "HTTP_1_1_REQUIRED";
  }
  return "UNKNOWN_ERROR";
}

FrameHeader ParseFrameHeader(const uint8_t* p) {
  FrameHeader h;
  h.length = (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | uint32_t{p[2]};
  h.type = p[3];
  h.flags = p[4];
  h.stream_id = ReadUint32(p + 5) & 0x7fffffffu;
  return h;
}

void AppendFrameHeader(std::string* out, uint32_t length, FrameType type, uint8_t flags,
                       uint32_t stream_id) {
  const char bytes[kFrameHeaderSize] = {
      static_cast<char>(length >> 16),    static_cast<char>(length >> 8),
      static_cast<char>(length),          static_cast<char>(type),
      static_cast<char>(flags),           static_cast<char>((stream_id >> 24) & 0x7f),
      static_cast<char>(stream_id >> 16), static_cast<char>(stream_id >> 8),
      static_cast<char>(stream_id)};
  out->append(bytes, kFrameHeaderSize);
}

void AppendSetting(std::string* payload, SettingId id, uint32_t value) {
  const auto v = static_cast<uint16_t>(id);
  payload->push_back(static_cast<char>(v >> 8));
  payload->push_back(static_cast<char>(v));
  AppendUint32(payload, value);
}

void AppendSettingsFrame(std::string* out, const std::string& entries) {
  AppendFrameHeader(out, static_cast<uint32_t>(entries.size()), FrameType::kSettings, 0, 0);
  out->append(entries);
}

void AppendSettingsAck(std::string* out) {
  AppendFrameHeader(out, 0, FrameType::kSettings, flags::kAck, 0);
}

void AppendPingAck(std::string* out, const uint8_t* opaque8) {
  AppendFrameHeader(out, 8, FrameType::kPing, flags::kAck, 0);
  out->append(reinterpret_cast<const char*>(opaque8), 8);
}

void AppendPing(std::string* out, uint64_t opaque) {
  AppendFrameHeader(out, 8, FrameType::kPing, 0, 0);
  AppendUint32(out, static_cast<uint32_t>(opaque >> 32));
  AppendUint32(out, static_cast<uint32_t>(opaque));
}

void AppendWindowUpdate(std::string* out, uint32_t stream_id, uint32_t increment) {
  AppendFrameHeader(out, 4, FrameType::kWindowUpdate, 0, stream_id);
  AppendUint32(out, increment & 0x7fffffffu);
}

void AppendRstStream(std::string* out, uint32_t stream_id, ErrorCode code) {
  AppendFrameHeader(out, 4, FrameType::kRstStream, 0, stream_id);
  AppendUint32(out, static_cast<uint32_t>(code));
}

void AppendGoAway(std::string* out, uint32_t last_stream_id, ErrorCode code,
                  const std::string& debug) {
  AppendFrameHeader(out, static_cast<uint32_t>(8 + debug.size()), FrameType::kGoAway, 0, 0);
  AppendUint32(out, last_stream_id & 0x7fffffffu);
  AppendUint32(out, static_cast<uint32_t>(code));
  out->append(debug);
}

void AppendHeaderBlock(std::string* out, uint32_t stream_id, const std::string& block,
                       bool end_stream, uint32_t max_frame_size) {
  size_t offset = 0;
  FrameType type = FrameType::kHeaders;
  do {
    const size_t chunk = std::min<size_t>(block.size() - offset, max_frame_size);
    const bool last = offset + chunk == block.size();
    uint8_t f = last ? flags::kEndHeaders : 0;
    if (type == FrameType::kHeaders && end_stream) f |= flags::kEndStream;
    AppendFrameHeader(out, static_cast<uint32_t>(chunk), type, f, stream_id);
    out->append(block, offset, chunk);
    offset += chunk;
    type = FrameType::kContinuation;
  } while (offset < block.size());
}

void AppendDataFrame(std::string* out, uint32_t stream_id, const uint8_t* data, size_t size,
                     bool end_stream) {
  AppendFrameHeader(out, static_cast<uint32_t>(size), FrameType::kData,
                    end_stream ? flags::kEndStream : 0, stream_id);
  out->append(reinterpret_cast<const char*>(data), size);
}

}  // namespace http2
}  // namespace tritonlite
