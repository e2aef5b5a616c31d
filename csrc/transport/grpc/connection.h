// GrpcConnection: gRPC calls over one accepted socket. It reads into the HTTP/2 state machine,
// turns each stream into a call (method routing, grpc-timeout deadline, grpc-encoding,
// length-prefixed messages), serves ModelInfer on the fast path or forwards the call to Python
// through the bridge, and writes the answers that arrive through its I/O thread's outbox. It
// keeps the connection's timers (keepalive PINGs, maximum age: transport/grpc/connection_timers.h)
// on one entry of its I/O thread's deadline heap, and picks each call's response compression. Owned
// and driven by one I/O thread; nothing here is thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/cancel_flag.h"
#include "transport/grpc/bridge.h"
#include "transport/grpc/compression.h"
#include "transport/grpc/connection_timers.h"
#include "transport/grpc/infer_fast_path.h"
#include "transport/grpc/inflate_pool.h"
#include "transport/grpc/model_registry.h"
#include "transport/grpc/outbox.h"
#include "transport/grpc/protocol.h"
#include "transport/http2/connection.h"
#include "util/fifo.h"

namespace tritonlite {
namespace grpc {

struct TransportOptions {
  size_t max_message_bytes = 2147483647;  // INT32_MAX: Triton's (gRPC) receive limit
  http2::ConnectionOptions http2;
  // RPC names (as ForwardedCall::method) that stream; every other method is unary.
  std::vector<std::string> streaming_methods{"ModelStreamInfer"};
  bool fast_infer = true;  // serve ModelInfer in C++ for the models in the registry
  // With a key (lowercase): only ModelInfer calls carrying this header with this value take the
  // fast path (Triton's restricted "inference" protocol group); the others go to Python, which
  // answers them UNAVAILABLE with Triton's text.
  std::string fast_infer_header_key;
  std::string fast_infer_header_value;
  ConnectionTimerOptions timers;  // keepalive and maximum connection age
  // Responses of these methods are compressed at this level with an algorithm the client
  // accepts (grpc-accept-encoding; see EncodingForLevel), as Triton compresses inference
  // responses only.
  CompressionLevel response_compression = CompressionLevel::kNone;
  std::vector<std::string> compressed_methods{"ModelInfer", "ModelStreamInfer"};
  // Bytes one connection may hold (0: unlimited): request messages being assembled or waiting
  // for their call's end, plus responses the peer has not taken yet. Requests alone beyond it
  // fail the stream that brought the last bytes (RESOURCE_EXHAUSTED); requests and responses
  // together beyond it (a peer that does not read, or never opens its windows) end the
  // connection with GOAWAY(ENHANCE_YOUR_CALM).
  size_t max_connection_memory = 256u << 20;
};

// What every connection of a server shares.
struct TransportContext {
  TransportOptions options;
  ModelRegistry registry;
  std::shared_ptr<Bridge> bridge = std::make_shared<Bridge>();
  // Decompresses request messages off the I/O threads.
  std::unique_ptr<InflatePool> inflater = std::make_unique<InflatePool>(2);
  std::atomic<uint64_t> next_call_id{1};
};

// Wakes an I/O thread when a call's deadline passes (OnDeadline), or at a connection's timer
// (stream 0: OnTimer).
class DeadlineScheduler {
 public:
  virtual ~DeadlineScheduler() = default;
  virtual void AddDeadline(uint64_t deadline_ns, uint64_t connection_id, uint32_t stream_id) = 0;
};

class GrpcConnection : private http2::ConnectionHandler {
 public:
  // `now_ns`: the steady-clock time of the accept (the timers start from it).
  GrpcConnection(int fd, uint64_t id, TransportContext* context, std::shared_ptr<Outbox> outbox,
                 DeadlineScheduler* deadlines, uint64_t now_ns);
  // Cancels the calls still open (forwarded ones hear of it) and closes the socket.
  ~GrpcConnection() override;
  GrpcConnection(const GrpcConnection&) = delete;
  GrpcConnection& operator=(const GrpcConnection&) = delete;

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }

  // Reads what the socket has (into `scratch`) and processes it; `now_ns` is the time of the
  // I/O thread's wakeup. Returns false once the peer closed the connection or the socket failed.
  bool OnReadable(uint8_t* scratch, size_t scratch_size, uint64_t now_ns);
  // Writes pending output. Returns false on a socket error.
  bool Flush();
  bool wants_write() const { return h2_.output_size() > 0; }
  // An answer from another thread (the fast path's sink or Python).
  void Deliver(Outbound&& item);
  void OnDeadline(uint32_t stream_id);
  // The connection's timer entry for `at_ns` fired at `now_ns`: keepalive, maximum age.
  // Returns false when the connection must close now (its open calls are cancelled).
  bool OnTimer(uint64_t at_ns, uint64_t now_ns);
  // The time of the timer entry this connection relies on (0: none).
  uint64_t timer_at() const { return timer_at_; }
  // Graceful shutdown: GOAWAY; open calls go on.
  void Shutdown() { h2_.Shutdown(); }
  // Request bytes held (for tests and the memory budget).
  size_t input_bytes() const { return input_bytes_; }
  // Nothing more to do: a connection error (its GOAWAY was written if the socket took it), or
  // drained after shutdown with the output flushed.
  bool finished() const { return h2_.failed() || (!wants_write() && h2_.drained()); }
  size_t call_count() const { return calls_.size(); }
  bool has_call(uint32_t stream_id) const { return calls_.count(stream_id) != 0; }

 private:
  enum class CallKind : uint8_t { kFastInfer, kUnary, kStreaming };
  struct Call {
    CallKind kind = CallKind::kUnary;
    std::string method;
    std::string path;  // "" when inference_path: then it is kInferenceService + method
    bool inference_path = false;
    Metadata metadata;
    uint64_t deadline_ns = 0;
    std::string encoding;  // grpc-encoding of the request messages ("" = identity)
    Encoding response_encoding = Encoding::kIdentity;
    MessageReader reader;
    std::vector<MessagePtr> messages;  // unary: received so far
    std::shared_ptr<ForwardedCall> forwarded;
    CancelFlagPtr cancel;  // the fast-path request while it is queued or running
    MessagePtr read_message;  // a complete request waiting for the end of this read
    bool headers_sent = false;
    // A message is being inflated (InflatePool); what arrives meanwhile waits behind it.
    bool inflating = false;
    size_t inflating_bytes = 0;  // its compressed size
    // Set when the call ends: the InflatePool then skips the call's job instead of inflating it.
    std::shared_ptr<std::atomic<bool>> inflate_cancelled;
    Fifo<ReceivedMessage> backlog;
    bool end_pending = false;  // the client half-closed behind the backlog
    // Streaming: wire sizes of the messages passed on whose credit is withheld until Python
    // has taken them, oldest first.
    Fifo<size_t> unconsumed;
    size_t held = 0;  // request bytes this call holds, as counted in input_bytes_
    explicit Call(size_t max_message_bytes) : reader(max_message_bytes) {}
  };

  void OnRequestHeaders(uint32_t stream_id, http2::HeaderList&& headers, bool end_stream) override;
  void OnRequestData(uint32_t stream_id, const uint8_t* data, size_t size,
                     bool end_stream) override;
  void OnStreamReset(uint32_t stream_id, http2::ErrorCode code) override;
  void OnPingAck(uint64_t opaque) override;
  bool OnRequestHeadersTooLarge(uint32_t stream_id, size_t max_header_list_size) override;

  // Forgets a call (its held bytes with it); the connection is idle once none is left.
  void EraseCall(std::unordered_map<uint32_t, Call>::iterator it);
  // Recounts the request bytes `call` holds.
  void Recount(Call& call);
  // Recount, then the connection's memory budget: false when the call was failed for it.
  bool RecountWithinBudget(uint32_t stream_id, Call& call);
  // Checks the memory budget after output was queued; false after GOAWAY(ENHANCE_YOUR_CALM).
  bool WithinOutputBudget();

  // A complete message as received: compressed ones go to the InflatePool first. False when
  // the call was ended because of it.
  bool Accept(uint32_t stream_id, Call& call, ReceivedMessage&& received);
  // The InflatePool's result for the call's message.
  void OnInflated(uint32_t stream_id, Call& call, Outbound&& item);
  // A complete, uncompressed message; false when the call was ended because of it.
  bool OnMessage(uint32_t stream_id, Call& call, MessagePtr message);
  void OnRequestEnd(uint32_t stream_id, Call& call);
  // A unary call's request is complete: the fast path, else Python.
  void StartUnary(uint32_t stream_id, Call& call, MessagePtr message,
                  DeferredWakeups* wake_later = nullptr);
  // StartUnary for the calls whose requests completed while reading (see OnReadable).
  void QueueReadRequests();
  void Forward(uint32_t stream_id, Call& call, CallEventKind kind, MessagePtr message);
  std::shared_ptr<ForwardedCall> MakeForwardedCall(uint32_t stream_id, Call& call);
  // Ends a call from this side: status to the client, a cancel event to Python.
  void FailCall(uint32_t stream_id, GrpcStatus status, const std::string& message);
  // The call ends unanswered (reset, deadline, connection loss, failure): its fast-path request
  // is cancelled, Python hears of a forwarded call.
  void CancelCall(Call& call);
  void SendHeadersOnce(uint32_t stream_id, Call& call);
  CallAddress AddressOf(uint32_t stream_id, const Call& call) const;
  // Makes sure the deadline heap holds an entry no later than the timers' next time.
  void ArmTimer();

  const int fd_;
  const uint64_t id_;
  TransportContext* const context_;
  const std::shared_ptr<Outbox> outbox_;
  DeadlineScheduler* const deadlines_;
  http2::Connection h2_;
  ConnectionTimers timers_;
  uint64_t timer_at_ = 0;
  std::unordered_map<uint32_t, Call> calls_;
  std::vector<ReceivedMessage> received_;  // scratch for MessageReader
  size_t input_bytes_ = 0;  // request bytes held by calls (see max_connection_memory)
  bool preface_seen_ = false;
  bool reading_ = false;  // inside OnReadable: complete requests wait in read_requests_
  std::vector<uint32_t> read_requests_;
};

}  // namespace grpc
}  // namespace tritonlite
