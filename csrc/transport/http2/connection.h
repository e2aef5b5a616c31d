// Http2Connection: the server side of one HTTP/2 connection (RFC 9113) as a state machine over
// bytes, with no sockets: Feed() takes what was read, the output buffer holds what to write.
// It checks the preface, parses and validates frames, decodes header blocks (HPACK), tracks
// stream states, answers SETTINGS and PING, enforces and replenishes its receive windows,
// respects the peer's send windows and frame size when sending, and turns protocol errors into
// RST_STREAM (stream errors) or GOAWAY (connection errors). Request headers and body bytes go
// to a ConnectionHandler (the gRPC layer), which answers through SendHeaders/SendData/
// SendTrailers. The peer's PINGs are policed as gRPC core does (transport/http2/ping_policy.h); the
// owner may send PINGs of its own (keepalive) and go away gracefully in two steps. Floods of
// frames that cost work but carry nothing (SETTINGS, PING, WINDOW_UPDATE, empty DATA,
// RST_STREAM, endless CONTINUATION) end the connection with GOAWAY(ENHANCE_YOUR_CALM)
// (transport/http2/flood.h); a request whose header list is larger than announced fails alone.
// Single-threaded: the owner serializes every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

#include "transport/http2/flood.h"
#include "transport/http2/frame.h"
#include "transport/http2/hpack.h"
#include "transport/http2/ping_policy.h"
#include "util/fifo.h"

namespace tritonlite {
namespace http2 {

struct ConnectionOptions {
  uint32_t max_concurrent_streams = 1024;
  uint32_t initial_stream_window = 1u << 20;  // our receive window per stream
  uint32_t connection_window = 16u << 20;     // our receive window for the connection
  uint32_t max_frame_size = kMinMaxFrameSize;  // largest frame payload we accept
  uint32_t max_header_list_size = 64u << 10;
  PingPolicyOptions pings;
  FloodOptions flood;
};

class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // A new stream's request headers (pseudo-headers first, names lowercase).
  virtual void OnRequestHeaders(uint32_t stream_id, HeaderList&& headers, bool end_stream) = 0;
  // Request body bytes (DATA payloads without padding), in order; `end_stream` marks the
  // client's half-close (then `size` may be 0).
  virtual void OnRequestData(uint32_t stream_id, const uint8_t* data, size_t size,
                             bool end_stream) = 0;
  // The stream ended abnormally (the peer reset it, or a stream error was found here): no more
  // callbacks for it, and anything sent to it is dropped.
  virtual void OnStreamReset(uint32_t stream_id, ErrorCode code) = 0;
  // The peer acknowledged a PING sent with SendPing(`opaque`).
  virtual void OnPingAck(uint64_t opaque) {}
  // A new stream's request headers decoded to more than max_header_list_size (the HPACK state
  // is intact). Return true after answering the stream (SendHeaders with end_stream, e.g. a
  // trailers-only error); false to have it reset with RST_STREAM(ENHANCE_YOUR_CALM). The rest
  // of the stream's frames are ignored either way.
  virtual bool OnRequestHeadersTooLarge(uint32_t stream_id, size_t max_header_list_size) {
    return false;
  }
};

class Connection {
 public:
  Connection(ConnectionHandler* handler, const ConnectionOptions& options);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues the server's connection preface (SETTINGS and a connection WINDOW_UPDATE).
  void Start();
  // Processes bytes read from the peer at `now_ns` (steady clock: it times the peer's PINGs).
  // After a connection error the rest is ignored.
  void Feed(const uint8_t* data, size_t size, uint64_t now_ns);

  // Response side. Calls for a stream that is gone (reset, closed) do nothing.
  // `block` is an HPACK header block (see transport/http2/hpack.h).
  void SendHeaders(uint32_t stream_id, const std::string& block, bool end_stream);
  // Queues body bytes; they go out as the peer's flow-control windows allow.
  void SendData(uint32_t stream_id, std::string data, bool end_stream);
  // Queues trailers (HEADERS with END_STREAM) after the stream's pending data. If the client
  // is still sending, the stream is then reset with NO_ERROR, as gRPC servers do.
  void SendTrailers(uint32_t stream_id, std::string block);
  // Flow control by consumption: `n` bytes of a stream's data that the handler passed on stay
  // unconsumed; the credit (WINDOW_UPDATE) for them is withheld, for the stream and the
  // connection, until ReleaseData gives it back. Bytes of a stream that ends are released.
  void HoldData(uint32_t stream_id, size_t n);
  void ReleaseData(uint32_t stream_id, size_t n);
  // Resets a stream now, dropping what it had queued (no OnStreamReset callback).
  void ResetStream(uint32_t stream_id, ErrorCode code);
  // Graceful shutdown: GOAWAY(NO_ERROR); newer streams are ignored, open ones go on.
  void Shutdown();
  // Graceful GOAWAY in two steps, as gRPC servers send it: GOAWAY(NO_ERROR, last stream
  // 2^31-1) and a PING; once the PING is acknowledged (streams the client opened before it saw
  // the GOAWAY have arrived by then), or FinishGoAway() is called, the final GOAWAY names the
  // last stream accepted and newer ones are ignored. `debug` is the GOAWAY's debug data.
  void GoAwayGracefully(const std::string& debug);
  void FinishGoAway();
  // Ends the connection now with GOAWAY(`code`, `message`), as a connection error.
  void Abort(ErrorCode code, const std::string& message) { ConnectionError(code, message); }
  // Sends a PING carrying `opaque` (not the graceful GOAWAY's); OnPingAck(`opaque`) follows
  // when the peer answers.
  void SendPing(uint64_t opaque);
  // Moves queued body bytes that the windows allow into the output buffer (up to a high-water
  // mark); call again once the output has been written.
  void PumpData();

  // Output waiting to be written to the socket.
  const char* output_data() const { return out_.data() + out_pos_; }
  size_t output_size() const { return out_.size() - out_pos_; }
  void ConsumeOutput(size_t n);

  // The client's preface and first SETTINGS frame have arrived.
  bool preface_received() const { return settings_seen_; }
  // Response bytes held for the peer: the output buffer and the streams' queued data.
  size_t buffered_output() const { return output_size() + queued_bytes_; }
  // A connection error was sent (GOAWAY): close once the output is flushed.
  bool failed() const { return failed_; }
  // Shutdown() was called and no stream is left.
  bool drained() const { return going_away_ && streams_.empty(); }
  // GoAwayGracefully() was called and its final GOAWAY is still to come.
  bool go_away_pending() const { return go_away_pending_; }
  bool peer_went_away() const { return peer_going_away_; }
  bool stream_open(uint32_t stream_id) const { return streams_.count(stream_id) != 0; }
  size_t stream_count() const { return streams_.size(); }
  uint32_t peer_max_frame_size() const { return peer_max_frame_size_; }
  const std::string& error_message() const { return error_message_; }

 private:
  struct Stream {
    int64_t send_window = 0;
    int64_t recv_window = 0;
    int64_t held = 0;  // received bytes whose credit is withheld (HoldData)
    bool remote_closed = false;
    bool queued = false;  // in send_queue_
    Fifo<std::string> data;
    size_t data_offset = 0;  // bytes of data.front() already sent
    bool end_after_data = false;
    bool has_trailers = false;
    std::string trailers;
    size_t queued_bytes = 0;  // of data and trailers, not yet in the output
  };
  enum class ReadState { kPreface, kFrameHeader, kFramePayload, kDataPadLength, kDataBody,
                         kDataPadding, kClosed };

  void ConnectionError(ErrorCode code, const std::string& message);
  void StreamError(uint32_t stream_id, ErrorCode code);
  void OnFrameHeader();
  void OnFramePayload(const uint8_t* p, size_t n);
  void OnDataStart(uint8_t pad_length);
  void OnDataEnd();
  void OnHeaders(const uint8_t* p, size_t n);
  void OnContinuation(const uint8_t* p, size_t n);
  void OnHeaderBlockComplete();
  void OnRstStream(const uint8_t* p, size_t n);
  void OnSettings(const uint8_t* p, size_t n);
  void OnPing(const uint8_t* p, size_t n);
  void OnGoAway(const uint8_t* p, size_t n);
  void OnWindowUpdate(const uint8_t* p, size_t n);
  bool ValidRequestHeaders(const HeaderList& headers) const;
  void Enqueue(uint32_t stream_id, Stream& s);
  // Sends as much of one stream's queue as the windows allow; returns false when the
  // connection window is exhausted.
  bool PumpStream(uint32_t stream_id, Stream& s);
  void CloseLocal(uint32_t stream_id, Stream& s);
  // Forgets a stream (its queued bytes with it); false when there was none.
  bool EraseStream(uint32_t stream_id);
  // Takes a token of `bucket`; false after a GOAWAY(ENHANCE_YOUR_CALM) naming `what`.
  bool WithinLimit(TokenBucket& bucket, const char* what);
  void EarnWindowUpdates(uint64_t n);
  void SendWindowUpdates();
  // Credits what the stream received beyond its held bytes, once that is a quarter window.
  void ReplenishStream(uint32_t stream_id, Stream& s);
  Stream* Find(uint32_t stream_id);

  ConnectionHandler* const handler_;
  const ConnectionOptions options_;
  HpackDecoder hpack_;

  ReadState state_ = ReadState::kPreface;
  std::string in_;  // partial preface, frame header or non-DATA payload
  FrameHeader frame_;
  bool settings_seen_ = false;  // the peer's preface must start with SETTINGS
  // DATA frame being streamed.
  size_t data_left_ = 0;     // body bytes still to come
  size_t padding_left_ = 0;  // padding bytes still to come
  bool data_to_stream_ = false;  // the frame's stream is open for data
  // Header block being assembled (HEADERS + CONTINUATION).
  uint32_t header_stream_ = 0;  // nonzero while CONTINUATION frames are expected
  bool header_end_stream_ = false;
  std::string header_block_;
  HeaderList header_list_;  // decoded from header_block_ (kept for its capacity)
  size_t last_block_bytes_ = 0;  // the block header_list_ holds
  uint32_t continuation_frames_ = 0;  // of the block being assembled

  std::unordered_map<uint32_t, Stream> streams_;
  std::deque<uint32_t> send_queue_;  // streams with queued output, in arrival order
  uint32_t last_peer_stream_id_ = 0;

  // Flow control: what we may send, and what the peer may still send us.
  int64_t conn_send_window_ = kDefaultWindowSize;
  int64_t conn_recv_window_ = kDefaultWindowSize;
  int64_t conn_held_ = 0;  // the streams' held bytes together
  int64_t peer_initial_window_ = kDefaultWindowSize;
  uint32_t peer_max_frame_size_ = kMinMaxFrameSize;

  PingPolicy pings_;
  TokenBucket settings_flood_;
  TokenBucket ping_flood_;
  TokenBucket window_update_flood_;
  TokenBucket empty_data_flood_;
  TokenBucket other_frame_flood_;  // PRIORITY and unknown types
  TokenBucket reset_flood_;
  uint64_t window_update_credit_ = 0;  // earned by DATA sent and streams opened
  size_t queued_bytes_ = 0;  // sum of the streams' queued_bytes
  uint64_t now_ns_ = 0;  // of the bytes being fed

  bool going_away_ = false;
  // The last-stream-id of the final GOAWAY sent; a later GOAWAY (a connection error) must not
  // name a higher one, though ignored streams still raise last_peer_stream_id_.
  uint32_t announced_last_stream_id_ = kMaxStreamId;
  bool go_away_pending_ = false;  // GoAwayGracefully: the first GOAWAY is out
  std::string go_away_debug_;
  bool peer_going_away_ = false;
  bool failed_ = false;
  std::string error_message_;

  std::string out_;
  size_t out_pos_ = 0;
};

}  // namespace http2
}  // namespace tritonlite
