#include "transport/http2/connection.h"

#include <algorithm>
#include <cstring>
#include <string_view>

namespace tritonlite {
namespace http2 {

// Header names are compared as string_views against literals of known size (per request: no
// strlen, and a length mismatch answers at once).
using namespace std::string_view_literals;

namespace {

// Output beyond which PumpData stops moving body bytes in (the socket is slower than us).
constexpr size_t kOutputHighWater = 1u << 20;
// Output beyond which a peer that keeps provoking replies (PING, SETTINGS) without reading is
// cut off.
constexpr size_t kMaxBufferedControlOutput = 64u << 20;
// Body bytes one stream may send before the next queued stream gets a turn.
constexpr size_t kStreamTurnBytes = 256u << 10;
// WINDOW_UPDATE frames beyond the time budget that each DATA frame sent, and each stream
// opened, allows (see OnFrameHeader).
constexpr uint64_t kWindowUpdatesPerDataFrame = 10;
constexpr uint64_t kWindowUpdatesPerStream = 2;
constexpr uint64_t kMaxWindowUpdateCredit = 1u << 20;
// The opaque data of GoAwayGracefully's PING ("goaway").
// A header block up to this size leaves its decoded fields' strings in place for the next.
constexpr size_t kKeptHeaderBlockBytes = 4096;
constexpr uint64_t kGoAwayPingOpaque = 0x676f61776179ull;

bool IsConnectionSpecific(std::string_view name) {
  return name == "connection"sv || name == "keep-alive"sv || name == "proxy-connection"sv ||
         name == "transfer-encoding"sv || name == "upgrade"sv;
}

}  // namespace

Connection::Connection(ConnectionHandler* handler, const ConnectionOptions& options)
    : handler_(handler),
      options_(options),
      pings_(options.pings),
      settings_flood_(options.flood.control_frames_per_second),
      ping_flood_(options.flood.control_frames_per_second),
      window_update_flood_(options.flood.control_frames_per_second),
      empty_data_flood_(options.flood.control_frames_per_second),
      other_frame_flood_(options.flood.control_frames_per_second),
      reset_flood_(options.flood.resets_per_second) {}

void Connection::Start() {
  std::string entries;
  AppendSetting(&entries, SettingId::kMaxConcurrentStreams, options_.max_concurrent_streams);
  AppendSetting(&entries, SettingId::kInitialWindowSize, options_.initial_stream_window);
  if (options_.max_frame_size != kMinMaxFrameSize) {
    AppendSetting(&entries, SettingId::kMaxFrameSize, options_.max_frame_size);
  }
  AppendSetting(&entries, SettingId::kMaxHeaderListSize, options_.max_header_list_size);
  AppendSettingsFrame(&out_, entries);
  if (options_.connection_window > kDefaultWindowSize) {
    AppendWindowUpdate(&out_, 0, options_.connection_window - kDefaultWindowSize);
    conn_recv_window_ = options_.connection_window;
  }
}

bool Connection::EraseStream(uint32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return false;
  queued_bytes_ -= it->second.queued_bytes;
  conn_held_ -= it->second.held;
  streams_.erase(it);
  return true;
}

void Connection::HoldData(uint32_t stream_id, size_t n) {
  Stream* s = Find(stream_id);
  if (s == nullptr) return;
  s->held += static_cast<int64_t>(n);
  conn_held_ += static_cast<int64_t>(n);
}

void Connection::ReleaseData(uint32_t stream_id, size_t n) {
  Stream* s = Find(stream_id);
  if (s == nullptr) return;  // ended: its bytes were released with it
  const int64_t released = std::min<int64_t>(s->held, static_cast<int64_t>(n));
  s->held -= released;
  conn_held_ -= released;
  if (!s->remote_closed && !failed()) ReplenishStream(stream_id, *s);
  if (!failed()) SendWindowUpdates();
}

void Connection::ReplenishStream(uint32_t stream_id, Stream& s) {
  const int64_t window = options_.initial_stream_window;
  const int64_t due = window - s.recv_window - s.held;
  if (due > 0 && due >= window / 4) {
    AppendWindowUpdate(&out_, stream_id, static_cast<uint32_t>(due));
    s.recv_window += due;
  }
}

void Connection::EarnWindowUpdates(uint64_t n) {
  window_update_credit_ = std::min(window_update_credit_ + n, kMaxWindowUpdateCredit);
}

bool Connection::WithinLimit(TokenBucket& bucket, const char* what) {
  if (bucket.Take(now_ns_)) return true;
  ConnectionError(ErrorCode::kEnhanceYourCalm, std::string("too many ") + what);
  return false;
}

Connection::Stream* Connection::Find(uint32_t stream_id) {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : &it->second;
}

void Connection::ConsumeOutput(size_t n) {
  out_pos_ += n;
  if (out_pos_ >= out_.size()) {
    out_pos_ = 0;
    if (out_.capacity() > (4u << 20)) {
      std::string().swap(out_);  // do not keep a huge buffer after a large response
    } else {
      out_.clear();
    }
  } else if (out_pos_ > (1u << 20)) {
    out_.erase(0, out_pos_);
    out_pos_ = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

void Connection::ConnectionError(ErrorCode code, const std::string& message) {
  if (failed_) return;
  failed_ = true;
  error_message_ = std::string(ErrorCodeName(code)) + ": " + message;
  state_ = ReadState::kClosed;
  AppendGoAway(&out_, std::min(last_peer_stream_id_, announced_last_stream_id_), code, message);
}

void Connection::StreamError(uint32_t stream_id, ErrorCode code) {
  // Resets the peer provokes cost as much as its own ("MadeYouReset"): the same budget.
  if (!WithinLimit(reset_flood_, "stream resets")) return;
  AppendRstStream(&out_, stream_id, code);
  if (EraseStream(stream_id)) handler_->OnStreamReset(stream_id, code);
}

// ---------------------------------------------------------------------------------------------
// Input

void Connection::Feed(const uint8_t* data, size_t size, uint64_t now_ns) {
  now_ns_ = now_ns;
  const uint8_t* p = data;
  const uint8_t* const end = data + size;
  while (p < end && state_ != ReadState::kClosed) {
    const size_t avail = static_cast<size_t>(end - p);
    switch (state_) {
      case ReadState::kPreface: {
        const size_t take = std::min(kClientPrefaceSize - in_.size(), avail);
        in_.append(reinterpret_cast<const char*>(p), take);
        p += take;
        if (std::memcmp(in_.data(), kClientPreface, in_.size()) != 0) {
          ConnectionError(ErrorCode::kProtocolError, "invalid HTTP/2 connection preface");
        } else if (in_.size() == kClientPrefaceSize) {
          in_.clear();
          state_ = ReadState::kFrameHeader;
        }
        break;
      }
      case ReadState::kFrameHeader: {
        if (in_.empty() && avail >= kFrameHeaderSize) {
          frame_ = ParseFrameHeader(p);
          p += kFrameHeaderSize;
        } else {
          const size_t take = std::min(kFrameHeaderSize - in_.size(), avail);
          in_.append(reinterpret_cast<const char*>(p), take);
          p += take;
          if (in_.size() < kFrameHeaderSize) break;
          frame_ = ParseFrameHeader(reinterpret_cast<const uint8_t*>(in_.data()));
          in_.clear();
        }
        OnFrameHeader();
        break;
      }
      case ReadState::kFramePayload: {
        if (in_.empty() && avail >= frame_.length) {
          state_ = ReadState::kFrameHeader;
          const uint8_t* payload = p;
          p += frame_.length;
          OnFramePayload(payload, frame_.length);
        } else {
          const size_t take = std::min<size_t>(frame_.length - in_.size(), avail);
          in_.append(reinterpret_cast<const char*>(p), take);
          p += take;
          if (in_.size() == frame_.length) {
            state_ = ReadState::kFrameHeader;
            std::string payload;
            payload.swap(in_);
            OnFramePayload(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
          }
        }
        break;
      }
      case ReadState::kDataPadLength: {
        const uint8_t pad = *p++;
        OnDataStart(pad);
        break;
      }
      case ReadState::kDataBody: {
        const size_t take = std::min(data_left_, avail);
        data_left_ -= take;
        if (data_to_stream_ && Find(frame_.stream_id) != nullptr) {
          handler_->OnRequestData(frame_.stream_id, p, take, false);
        }
        p += take;
        if (data_left_ == 0) {
          if (padding_left_ > 0) {
            state_ = ReadState::kDataPadding;
          } else {
            OnDataEnd();
          }
        }
        break;
      }
      case ReadState::kDataPadding: {
        const size_t take = std::min(padding_left_, avail);
        padding_left_ -= take;
        p += take;
        if (padding_left_ == 0) OnDataEnd();
        break;
      }
      case ReadState::kClosed:
        break;
    }
  }
  if (state_ != ReadState::kClosed) SendWindowUpdates();
  if (output_size() > kMaxBufferedControlOutput) {
    ConnectionError(ErrorCode::kEnhanceYourCalm, "peer does not read its responses");
  }
}

void Connection::OnFrameHeader() {
  if (frame_.length > options_.max_frame_size) {
    ConnectionError(ErrorCode::kFrameSizeError,
                    "frame of " + std::to_string(frame_.length) + " bytes exceeds the maximum of " +
                        std::to_string(options_.max_frame_size));
    return;
  }
  const auto type = static_cast<FrameType>(frame_.type);
  if (!settings_seen_) {
    if (type != FrameType::kSettings || (frame_.flags & flags::kAck)) {
      ConnectionError(ErrorCode::kProtocolError, "the connection preface must start with SETTINGS");
      return;
    }
    settings_seen_ = true;
  }
  if (header_stream_ != 0 &&
      (type != FrameType::kContinuation || frame_.stream_id != header_stream_)) {
    ConnectionError(ErrorCode::kProtocolError, "expected CONTINUATION of the header block");
    return;
  }
  // Frames that cost work but carry nothing: each kind has its budget.
  switch (type) {
    case FrameType::kData:
      if (frame_.length == 0 && !(frame_.flags & flags::kEndStream) &&
          !WithinLimit(empty_data_flood_, "empty DATA frames")) {
        return;
      }
      break;
    case FrameType::kHeaders:
    case FrameType::kRstStream:  // counted once valid (OnRstStream)
    case FrameType::kSettings:  // counted once valid (OnSettings, OnPing)
    case FrameType::kPushPromise:
    case FrameType::kPing:
    case FrameType::kGoAway:
    case FrameType::kContinuation:  // counted per header block (OnContinuation)
      break;
    case FrameType::kWindowUpdate:
      // A client that reads what it is sent answers with WINDOW_UPDATEs (gRPC core sends many
      // under load): beyond the time budget, each DATA frame sent earns a few more, as in
      // Envoy's max_inbound_window_update_frames_per_data_frame_sent.
      if (!window_update_flood_.Take(now_ns_)) {
        if (window_update_credit_ == 0) {
          ConnectionError(ErrorCode::kEnhanceYourCalm, "too many WINDOW_UPDATE frames");
          return;
        }
        --window_update_credit_;
      }
      break;
    default:  // PRIORITY and unknown types
      if (!WithinLimit(other_frame_flood_, "PRIORITY or unknown frames")) return;
      break;
  }
  if (type != FrameType::kData) {
    state_ = ReadState::kFramePayload;
    if (frame_.length == 0) {
      state_ = ReadState::kFrameHeader;
      OnFramePayload(nullptr, 0);
    }
    return;
  }
  // DATA: flow control counts the whole payload, padding included.
  const uint32_t id = frame_.stream_id;
  if (id == 0) {
    ConnectionError(ErrorCode::kProtocolError, "DATA on stream 0");
    return;
  }
  if (id > last_peer_stream_id_) {
    ConnectionError(ErrorCode::kProtocolError, "DATA on idle stream " + std::to_string(id));
    return;
  }
  conn_recv_window_ -= frame_.length;
  if (conn_recv_window_ < 0) {
    ConnectionError(ErrorCode::kFlowControlError, "DATA exceeds the connection window");
    return;
  }
  data_to_stream_ = false;
  if (Stream* s = Find(id)) {
    if (s->remote_closed) {
      StreamError(id, ErrorCode::kStreamClosed);
    } else {
      s->recv_window -= frame_.length;
      if (s->recv_window < 0) {
        StreamError(id, ErrorCode::kFlowControlError);
      } else {
        data_to_stream_ = true;
      }
    }
  }
  if (frame_.flags & flags::kPadded) {
    if (frame_.length == 0) {
      ConnectionError(ErrorCode::kFrameSizeError, "padded DATA frame without a pad length");
      return;
    }
    state_ = ReadState::kDataPadLength;
  } else {
    data_left_ = frame_.length;
    padding_left_ = 0;
    state_ = ReadState::kDataBody;
    if (data_left_ == 0) OnDataEnd();
  }
}

void Connection::OnDataStart(uint8_t pad_length) {
  if (pad_length >= frame_.length) {
    ConnectionError(ErrorCode::kProtocolError, "DATA padding exceeds the frame");
    return;
  }
  data_left_ = frame_.length - 1 - pad_length;
  padding_left_ = pad_length;
  if (data_left_ > 0) {
    state_ = ReadState::kDataBody;
  } else if (padding_left_ > 0) {
    state_ = ReadState::kDataPadding;
  } else {
    OnDataEnd();
  }
}

void Connection::OnDataEnd() {
  state_ = ReadState::kFrameHeader;
  if (!data_to_stream_) return;
  Stream* s = Find(frame_.stream_id);
  if (s == nullptr) return;
  if (frame_.flags & flags::kEndStream) {
    s->remote_closed = true;
    handler_->OnRequestData(frame_.stream_id, nullptr, 0, true);
  } else {
    ReplenishStream(frame_.stream_id, *s);
  }
}

void Connection::SendWindowUpdates() {
  const int64_t consumed =
      static_cast<int64_t>(options_.connection_window) - conn_recv_window_ - conn_held_;
  if (consumed > 0 && consumed >= static_cast<int64_t>(options_.connection_window / 4)) {
    AppendWindowUpdate(&out_, 0, static_cast<uint32_t>(consumed));
    conn_recv_window_ += consumed;
    pings_.SentData();
  }
}

void Connection::OnFramePayload(const uint8_t* p, size_t n) {
  switch (static_cast<FrameType>(frame_.type)) {
    case FrameType::kHeaders: OnHeaders(p, n); break;
    case FrameType::kContinuation: OnContinuation(p, n); break;
    case FrameType::kPriority:
      if (frame_.stream_id == 0) {
        ConnectionError(ErrorCode::kProtocolError, "PRIORITY on stream 0");
      } else if (n != 5) {
        StreamError(frame_.stream_id, ErrorCode::kFrameSizeError);
      }
      break;  // priorities are advisory: ignored
    case FrameType::kRstStream: OnRstStream(p, n); break;
    case FrameType::kSettings: OnSettings(p, n); break;
    case FrameType::kPushPromise:
      ConnectionError(ErrorCode::kProtocolError, "PUSH_PROMISE from a client");
      break;
    case FrameType::kPing: OnPing(p, n); break;
    case FrameType::kGoAway: OnGoAway(p, n); break;
    case FrameType::kWindowUpdate: OnWindowUpdate(p, n); break;
    default: break;  // unknown frame types are ignored (section 4.1)
  }
}

void Connection::OnHeaders(const uint8_t* p, size_t n) {
  if (frame_.stream_id == 0) {
    ConnectionError(ErrorCode::kProtocolError, "HEADERS on stream 0");
    return;
  }
  size_t offset = 0;
  size_t pad = 0;
  if (frame_.flags & flags::kPadded) {
    if (n < 1) {
      ConnectionError(ErrorCode::kFrameSizeError, "padded HEADERS frame without a pad length");
      return;
    }
    pad = p[0];
    offset = 1;
  }
  if (frame_.flags & flags::kPriority) {
    if (n < offset + 5) {
      ConnectionError(ErrorCode::kFrameSizeError, "HEADERS frame too short for its priority");
      return;
    }
    offset += 5;
  }
  if (pad > n - offset) {
    ConnectionError(ErrorCode::kProtocolError, "HEADERS padding exceeds the frame");
    return;
  }
  header_block_.assign(reinterpret_cast<const char*>(p + offset), n - offset - pad);
  header_end_stream_ = (frame_.flags & flags::kEndStream) != 0;
  header_stream_ = frame_.stream_id;
  continuation_frames_ = 0;
  if (frame_.flags & flags::kEndHeaders) OnHeaderBlockComplete();
}

void Connection::OnContinuation(const uint8_t* p, size_t n) {
  if (header_stream_ == 0) {
    ConnectionError(ErrorCode::kProtocolError, "CONTINUATION without HEADERS");
    return;
  }
  if (++continuation_frames_ > options_.flood.max_continuation_frames &&
      options_.flood.max_continuation_frames != 0) {  // 0: unlimited, as the binding documents
    ConnectionError(ErrorCode::kEnhanceYourCalm,
                    "header block spans more than " +
                        std::to_string(options_.flood.max_continuation_frames) +
                        " CONTINUATION frames");
    return;
  }
  header_block_.append(reinterpret_cast<const char*>(p), n);
  // A compressed block larger than the decoded limit allows can only be abuse.
  if (header_block_.size() > std::max<size_t>(options_.max_header_list_size, 64u << 10)) {
    ConnectionError(ErrorCode::kEnhanceYourCalm, "header block too large");
    return;
  }
  if (frame_.flags & flags::kEndHeaders) OnHeaderBlockComplete();
}

bool Connection::ValidRequestHeaders(const HeaderList& headers) const {
  bool regular_seen = false;
  bool method = false, path = false, scheme = false, authority = false;
  for (const HeaderField& h : headers) {
    if (h.name.empty()) return false;
    for (char c : h.name) {
      if (c >= 'A' && c <= 'Z') return false;
    }
    const std::string_view name = h.name;
    if (name[0] == ':') {
      if (regular_seen) return false;
      bool* seen = name == ":method"sv ? &method : name == ":path"sv ? &path
                 : name == ":scheme"sv ? &scheme : name == ":authority"sv ? &authority : nullptr;
      if (seen == nullptr || *seen) return false;  // unknown or repeated pseudo-header
      *seen = true;
    } else {
      regular_seen = true;
      if (IsConnectionSpecific(name)) return false;
      if (name == "te"sv && std::string_view(h.value) != "trailers"sv) return false;
    }
  }
  return method && path && scheme;
}

void Connection::OnHeaderBlockComplete() {
  const uint32_t id = header_stream_;
  header_stream_ = 0;
  // The connection's list, reused from block to block: its elements and their strings keep
  // their capacity (no allocation per field); Decode overwrites them. Not kept after a block of
  // many fields or bytes (a connection holds no more than an ordinary block's worth).
  HeaderList& headers = header_list_;
  if (headers.capacity() > 64 || last_block_bytes_ > kKeptHeaderBlockBytes) {
    HeaderList().swap(headers);
  }
  last_block_bytes_ = header_block_.size();
  std::string error;
  bool too_large = false;  // then the block was decoded (the table is in step) but not kept
  const bool ok = hpack_.Decode(reinterpret_cast<const uint8_t*>(header_block_.data()),
                                header_block_.size(), options_.max_header_list_size, &headers,
                                &error, &too_large);
  if (header_block_.capacity() > (64u << 10)) {
    std::string().swap(header_block_);
  } else {
    header_block_.clear();
  }
  if (!ok) {
    ConnectionError(ErrorCode::kCompressionError, error);
    return;
  }
  if (Stream* s = Find(id)) {  // trailers from the client: they must end the stream
    if (too_large) {
      StreamError(id, ErrorCode::kEnhanceYourCalm);
      return;
    }
    if (!header_end_stream_ || s->remote_closed) {
      StreamError(id, ErrorCode::kProtocolError);
      return;
    }
    s->remote_closed = true;
    handler_->OnRequestData(id, nullptr, 0, true);
    return;
  }
  if (id <= last_peer_stream_id_) {
    StreamError(id, ErrorCode::kStreamClosed);
    return;
  }
  if (id % 2 == 0) {
    ConnectionError(ErrorCode::kProtocolError, "client stream ids must be odd");
    return;
  }
  last_peer_stream_id_ = id;
  if (going_away_) return;  // beyond our GOAWAY's last stream: ignored, the client retries
  if (streams_.size() >= options_.max_concurrent_streams) {
    if (WithinLimit(reset_flood_, "stream resets")) {
      AppendRstStream(&out_, id, ErrorCode::kRefusedStream);
    }
    return;
  }
  if (!too_large && !ValidRequestHeaders(headers)) {
    if (WithinLimit(reset_flood_, "stream resets")) {
      AppendRstStream(&out_, id, ErrorCode::kProtocolError);
    }
    return;
  }
  EarnWindowUpdates(kWindowUpdatesPerStream);
  Stream& s = streams_[id];
  s.send_window = peer_initial_window_;
  s.recv_window = options_.initial_stream_window;
  s.remote_closed = header_end_stream_;
  if (too_large) {
    // One stream fails; the connection (and its HPACK state) goes on. Its DATA is dropped.
    if (!handler_->OnRequestHeadersTooLarge(id, options_.max_header_list_size) &&
        EraseStream(id)) {
      AppendRstStream(&out_, id, ErrorCode::kEnhanceYourCalm);
    }
    return;
  }
  handler_->OnRequestHeaders(id, std::move(headers), header_end_stream_);
}

void Connection::OnRstStream(const uint8_t* p, size_t n) {
  const uint32_t id = frame_.stream_id;
  if (id == 0) {
    ConnectionError(ErrorCode::kProtocolError, "RST_STREAM on stream 0");
  } else if (n != 4) {
    ConnectionError(ErrorCode::kFrameSizeError, "RST_STREAM payload must be 4 bytes");
  } else if (id > last_peer_stream_id_) {
    ConnectionError(ErrorCode::kProtocolError, "RST_STREAM on idle stream " + std::to_string(id));
  } else if (!WithinLimit(reset_flood_, "stream resets")) {
    return;
  } else if (EraseStream(id)) {
    handler_->OnStreamReset(id, static_cast<ErrorCode>(ReadUint32(p)));
  }
}

void Connection::OnSettings(const uint8_t* p, size_t n) {
  if (frame_.stream_id != 0) {
    ConnectionError(ErrorCode::kProtocolError, "SETTINGS on a stream");
    return;
  }
  if (!WithinLimit(settings_flood_, "SETTINGS frames")) return;  // ACKs included
  if (frame_.flags & flags::kAck) {
    if (n != 0) ConnectionError(ErrorCode::kFrameSizeError, "SETTINGS ACK with a payload");
    return;
  }
  if (n % 6 != 0) {
    ConnectionError(ErrorCode::kFrameSizeError, "SETTINGS payload is not a multiple of 6");
    return;
  }
  // INITIAL_WINDOW_SIZE changes every stream's window: the walk is done once per frame (with
  // the frame's last value), and SETTINGS frames are budgeted, so it stays bounded.
  int64_t new_initial_window = -1;
  for (size_t i = 0; i < n; i += 6) {
    const auto id = static_cast<SettingId>((uint16_t{p[i]} << 8) | p[i + 1]);
    const uint32_t value = ReadUint32(p + i + 2);
    switch (id) {
      case SettingId::kEnablePush:
        if (value > 1) {
          ConnectionError(ErrorCode::kProtocolError, "SETTINGS_ENABLE_PUSH must be 0 or 1");
          return;
        }
        break;
      case SettingId::kInitialWindowSize: {
        if (value > kMaxWindowSize) {
          ConnectionError(ErrorCode::kFlowControlError, "SETTINGS_INITIAL_WINDOW_SIZE too large");
          return;
        }
        new_initial_window = value;
        break;
      }
      case SettingId::kMaxFrameSize:
        if (value < kMinMaxFrameSize || value > kMaxMaxFrameSize) {
          ConnectionError(ErrorCode::kProtocolError, "SETTINGS_MAX_FRAME_SIZE out of range");
          return;
        }
        peer_max_frame_size_ = value;
        break;
      default:
        // HEADER_TABLE_SIZE: the encoder never indexes, so any size is honoured.
        // MAX_CONCURRENT_STREAMS: the server opens no streams. MAX_HEADER_LIST_SIZE: advisory.
        break;
    }
  }
  bool window_grew = false;
  if (new_initial_window >= 0 && new_initial_window != peer_initial_window_) {
    const int64_t delta = new_initial_window - peer_initial_window_;
    peer_initial_window_ = new_initial_window;
    for (auto& kv : streams_) {
      kv.second.send_window += delta;
      if (kv.second.send_window > kMaxWindowSize) {
        ConnectionError(ErrorCode::kFlowControlError, "stream window overflow");
        return;
      }
    }
    window_grew = delta > 0;
  }
  AppendSettingsAck(&out_);
  if (window_grew) {
    for (auto& kv : streams_) {
      if (kv.second.send_window > 0 && (!kv.second.data.empty() || kv.second.has_trailers)) {
        Enqueue(kv.first, kv.second);
      }
    }
    PumpData();
  }
}

void Connection::OnPing(const uint8_t* p, size_t n) {
  if (frame_.stream_id != 0) {
    ConnectionError(ErrorCode::kProtocolError, "PING on a stream");
  } else if (n != 8) {
    ConnectionError(ErrorCode::kFrameSizeError, "PING payload must be 8 bytes");
  } else if (!WithinLimit(ping_flood_, "PING frames")) {  // ACKs included
    return;
  } else if (frame_.flags & flags::kAck) {
    const uint64_t opaque = ReadUint64(p);
    if (go_away_pending_ && opaque == kGoAwayPingOpaque) {
      FinishGoAway();
    } else {
      handler_->OnPingAck(opaque);
    }
  } else if (pings_.ReceivedPing(now_ns_, !streams_.empty())) {
    ConnectionError(ErrorCode::kEnhanceYourCalm, "too_many_pings");
  } else {
    AppendPingAck(&out_, p);
  }
}

void Connection::OnGoAway(const uint8_t* p, size_t n) {
  if (frame_.stream_id != 0) {
    ConnectionError(ErrorCode::kProtocolError, "GOAWAY on a stream");
  } else if (n < 8) {
    ConnectionError(ErrorCode::kFrameSizeError, "GOAWAY payload shorter than 8 bytes");
  } else {
    peer_going_away_ = true;  // streams already open still complete
  }
}

void Connection::OnWindowUpdate(const uint8_t* p, size_t n) {
  const uint32_t id = frame_.stream_id;
  if (n != 4) {
    ConnectionError(ErrorCode::kFrameSizeError, "WINDOW_UPDATE payload must be 4 bytes");
    return;
  }
  const uint32_t increment = ReadUint32(p) & 0x7fffffffu;
  if (id == 0) {
    if (increment == 0) {
      ConnectionError(ErrorCode::kProtocolError, "WINDOW_UPDATE with a zero increment");
      return;
    }
    conn_send_window_ += increment;
    if (conn_send_window_ > kMaxWindowSize) {
      ConnectionError(ErrorCode::kFlowControlError, "connection window overflow");
      return;
    }
    PumpData();
    return;
  }
  if (id > last_peer_stream_id_) {
    ConnectionError(ErrorCode::kProtocolError,
                    "WINDOW_UPDATE on idle stream " + std::to_string(id));
    return;
  }
  Stream* s = Find(id);
  if (s == nullptr) return;  // closed: ignored
  if (increment == 0) {
    StreamError(id, ErrorCode::kProtocolError);
    return;
  }
  s->send_window += increment;
  if (s->send_window > kMaxWindowSize) {
    StreamError(id, ErrorCode::kFlowControlError);
    return;
  }
  if (!s->data.empty() || s->has_trailers) {
    Enqueue(id, *s);
    PumpData();
  }
}

// ---------------------------------------------------------------------------------------------
// Output

void Connection::SendHeaders(uint32_t stream_id, const std::string& block, bool end_stream) {
  Stream* s = Find(stream_id);
  if (s == nullptr || failed_) return;
  AppendHeaderBlock(&out_, stream_id, block, end_stream, peer_max_frame_size_);
  pings_.SentData();
  if (end_stream) CloseLocal(stream_id, *s);
}

void Connection::SendData(uint32_t stream_id, std::string data, bool end_stream) {
  Stream* s = Find(stream_id);
  if (s == nullptr || failed_) return;
  s->queued_bytes += data.size();
  queued_bytes_ += data.size();
  s->data.push_back(std::move(data));
  s->end_after_data = s->end_after_data || end_stream;
  Enqueue(stream_id, *s);
  PumpData();
}

void Connection::SendTrailers(uint32_t stream_id, std::string block) {
  Stream* s = Find(stream_id);
  if (s == nullptr || failed_) return;
  if (s->has_trailers) {
    s->queued_bytes -= s->trailers.size();
    queued_bytes_ -= s->trailers.size();
  }
  s->has_trailers = true;
  s->queued_bytes += block.size();
  queued_bytes_ += block.size();
  s->trailers = std::move(block);
  Enqueue(stream_id, *s);
  PumpData();
}

void Connection::ResetStream(uint32_t stream_id, ErrorCode code) {
  if (EraseStream(stream_id) && !failed_) AppendRstStream(&out_, stream_id, code);
}

void Connection::Shutdown() {
  if (going_away_ || failed_) return;
  going_away_ = true;
  go_away_pending_ = false;
  announced_last_stream_id_ = last_peer_stream_id_;
  AppendGoAway(&out_, last_peer_stream_id_, ErrorCode::kNoError, "server shutting down");
}

void Connection::GoAwayGracefully(const std::string& debug) {
  if (going_away_ || go_away_pending_ || failed_) return;
  go_away_pending_ = true;
  go_away_debug_ = debug;
  AppendGoAway(&out_, kMaxStreamId, ErrorCode::kNoError, debug);
  AppendPing(&out_, kGoAwayPingOpaque);
}

void Connection::FinishGoAway() {
  if (!go_away_pending_ || going_away_ || failed_) return;
  go_away_pending_ = false;
  going_away_ = true;
  announced_last_stream_id_ = last_peer_stream_id_;
  AppendGoAway(&out_, last_peer_stream_id_, ErrorCode::kNoError, go_away_debug_);
}

void Connection::SendPing(uint64_t opaque) {
  if (!failed_) AppendPing(&out_, opaque);
}

void Connection::Enqueue(uint32_t stream_id, Stream& s) {
  if (s.queued) return;
  s.queued = true;
  send_queue_.push_back(stream_id);
}

void Connection::CloseLocal(uint32_t stream_id, Stream& s) {
  // The client is still sending: tell it to stop (gRPC servers reset with NO_ERROR).
  if (!s.remote_closed) AppendRstStream(&out_, stream_id, ErrorCode::kNoError);
  EraseStream(stream_id);
}

bool Connection::PumpStream(uint32_t stream_id, Stream& s) {
  size_t sent = 0;
  while (!s.data.empty()) {
    const std::string& chunk = s.data.front();
    const size_t left = chunk.size() - s.data_offset;
    const bool last_chunk = s.data.size() == 1;
    if (left == 0) {
      if (last_chunk && s.end_after_data && !s.has_trailers) {
        AppendDataFrame(&out_, stream_id, nullptr, 0, true);
        pings_.SentData();
        CloseLocal(stream_id, s);
        return true;
      }
      s.data.pop_front();
      s.data_offset = 0;
      continue;
    }
    const int64_t allowed = std::min<int64_t>(
        {conn_send_window_, s.send_window, static_cast<int64_t>(peer_max_frame_size_)});
    if (allowed <= 0) {
      s.queued = conn_send_window_ <= 0;  // connection-blocked streams keep their place
      return conn_send_window_ > 0;
    }
    const size_t n = std::min<size_t>(left, static_cast<size_t>(allowed));
    const bool end = n == left && last_chunk && s.end_after_data && !s.has_trailers;
    const auto* bytes = reinterpret_cast<const uint8_t*>(chunk.data()) + s.data_offset;
    AppendDataFrame(&out_, stream_id, bytes, n, end);
    EarnWindowUpdates(kWindowUpdatesPerDataFrame);
    pings_.SentData();
    conn_send_window_ -= static_cast<int64_t>(n);
    s.send_window -= static_cast<int64_t>(n);
    s.queued_bytes -= n;
    queued_bytes_ -= n;
    s.data_offset += n;
    sent += n;
    if (s.data_offset == chunk.size()) {
      s.data.pop_front();
      s.data_offset = 0;
    }
    if (end) {
      CloseLocal(stream_id, s);
      return true;
    }
    if (output_size() >= kOutputHighWater || sent >= kStreamTurnBytes) {
      if (s.data.empty() && !s.has_trailers) break;
      send_queue_.push_back(stream_id);  // another turn later; stays queued
      return true;
    }
  }
  s.queued = false;
  if (s.has_trailers) {
    s.queued_bytes -= s.trailers.size();
    queued_bytes_ -= s.trailers.size();
    AppendHeaderBlock(&out_, stream_id, s.trailers, true, peer_max_frame_size_);
    pings_.SentData();
    CloseLocal(stream_id, s);
  }
  return true;
}

void Connection::PumpData() {
  while (!send_queue_.empty() && output_size() < kOutputHighWater && !failed_) {
    const uint32_t id = send_queue_.front();
    send_queue_.pop_front();
    Stream* s = Find(id);
    if (s == nullptr) continue;
    if (!PumpStream(id, *s)) {
      send_queue_.push_front(id);  // connection window exhausted: wait for WINDOW_UPDATE
      return;
    }
  }
}

}  // namespace http2
}  // namespace tritonlite
