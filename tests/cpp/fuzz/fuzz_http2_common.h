// Shared by the HTTP/2 connection targets: a handler that answers streams the way the gRPC
// layer does (headers, body, trailers, resets, from inside the callbacks), and a check of
// everything the server wrote: whole frames only, each within the frame size limit, and no
// more DATA than the peer's flow-control windows allowed.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "transport/http2/connection.h"
#include "transport/http2/frame.h"
#include "transport/http2/hpack.h"

namespace fuzz {

using namespace tritonlite::http2;

class FuzzHandler : public ConnectionHandler {
 public:
  // `mode` bits: 1 answer at once, 2 answer with a body larger than the default window,
  // 4 reset the stream instead, 8 answer when the request ends.
  explicit FuzzHandler(uint8_t mode) : mode_(mode) {}
  void set_connection(Connection* c) { conn_ = c; }

  void OnRequestHeaders(uint32_t stream_id, HeaderList&& headers, bool end_stream) override {
    FUZZ_CHECK(stream_id % 2 == 1);
    FUZZ_CHECK(open_.insert(stream_id).second);  // a new stream, once
    FUZZ_CHECK(conn_->stream_open(stream_id));
    bool has_method = false;
    for (const HeaderField& h : headers) has_method = has_method || h.name == ":method";
    FUZZ_CHECK(has_method);
    if (mode_ & 4) {
      conn_->ResetStream(stream_id, ErrorCode::kCancel);
      open_.erase(stream_id);
      return;
    }
    if ((mode_ & 1) || ((mode_ & 8) && end_stream)) Answer(stream_id);
  }
  void OnRequestData(uint32_t stream_id, const uint8_t* data, size_t size,
                     bool end_stream) override {
    FUZZ_CHECK(open_.count(stream_id) == 1 || answered_.count(stream_id) == 1);
    FUZZ_CHECK(size == 0 || data != nullptr);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < size; ++i) sink = sink ^ data[i];  // every byte is readable
    (void)sink;
    if (end_stream && (mode_ & 8) && answered_.count(stream_id) == 0) Answer(stream_id);
  }
  void OnStreamReset(uint32_t stream_id, ErrorCode code) override {
    FUZZ_CHECK(open_.erase(stream_id) == 1 || answered_.count(stream_id) == 1);
  }
  void OnPingAck(uint64_t opaque) override {}

 private:
  void Answer(uint32_t stream_id) {
    answered_.insert(stream_id);
    std::string block;
    HpackAppendIndexed(&block, kStaticStatus200);
    HpackAppendLiteralWithIndexedName(&block, kStaticContentType, "application/grpc");
    conn_->SendHeaders(stream_id, block, false);
    const size_t body = (mode_ & 2) ? 200000 : 10;
    conn_->SendData(stream_id, std::string(body, 'x'), false);
    std::string trailers;
    HpackAppendLiteral(&trailers, "grpc-status", "0");
    conn_->SendTrailers(stream_id, trailers);
  }

  const uint8_t mode_;
  Connection* conn_ = nullptr;
  std::set<uint32_t> open_;
  std::set<uint32_t> answered_;
};

// Checks the server's output, consumed as it is produced.
class OutputChecker {
 public:
  void Take(Connection* c, bool consume) {
    if (!consume) return;
    wire_.append(c->output_data(), c->output_size());
    c->ConsumeOutput(c->output_size());
  }
  // `window_credit`: the most DATA bytes the peer's connection-level WINDOW_UPDATEs allowed
  // beyond the initial 65535.
  void Check(uint64_t window_credit) const {
    size_t pos = 0;
    uint64_t data_bytes = 0;
    const auto* p = reinterpret_cast<const uint8_t*>(wire_.data());
    while (pos < wire_.size()) {
      FUZZ_CHECK(wire_.size() - pos >= kFrameHeaderSize);
      const FrameHeader h = ParseFrameHeader(p + pos);
      pos += kFrameHeaderSize;
      FUZZ_CHECK(h.length <= wire_.size() - pos);
      FUZZ_CHECK(h.type <= static_cast<uint8_t>(FrameType::kContinuation));
      FUZZ_CHECK(h.type != static_cast<uint8_t>(FrameType::kPushPromise));
      if (h.type == static_cast<uint8_t>(FrameType::kData)) {
        FUZZ_CHECK(h.stream_id != 0 && h.stream_id % 2 == 1);
        FUZZ_CHECK(h.length <= kMaxMaxFrameSize);
        data_bytes += h.length;
      } else if (h.type == static_cast<uint8_t>(FrameType::kSettings) ||
                 h.type == static_cast<uint8_t>(FrameType::kPing) ||
                 h.type == static_cast<uint8_t>(FrameType::kGoAway)) {
        FUZZ_CHECK(h.stream_id == 0);
      }
      pos += h.length;
    }
    FUZZ_CHECK(data_bytes <= kDefaultWindowSize + window_credit);
  }

 private:
  std::string wire_;
};

}  // namespace fuzz
