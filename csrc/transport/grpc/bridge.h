// The bridge to Python for calls the native transport does not serve itself: every RPC other
// than the ModelInfer fast path (and ModelInfer requests using features that path leaves out).
// I/O threads post CallEvents; the Python event loop watches fd(), drains them all at once and
// answers through ForwardedCall (Send / Finish / Reply), which posts to the call's I/O thread.
// Nothing here touches Python: python/grpc_server.cc does the conversions while holding the GIL.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "transport/grpc/outbox.h"
#include "transport/grpc/protocol.h"
#include "util/wakeup_queue.h"

namespace tritonlite {
namespace grpc {

using Metadata = std::vector<std::pair<std::string, std::string>>;

class ForwardedCall {
 public:
  ForwardedCall(uint64_t id, CallAddress address, std::string method, std::string path,
                Metadata metadata, uint64_t deadline_ns, bool streaming);
  ForwardedCall(const ForwardedCall&) = delete;
  ForwardedCall& operator=(const ForwardedCall&) = delete;

  uint64_t id() const { return id_; }
  // "ModelInfer" for /inference.GRPCInferenceService/ModelInfer; the path without its leading
  // '/' for other services ("grpc.health.v1.Health/Check").
  const std::string& method() const { return method_; }
  const std::string& path() const { return path_; }
  // Custom request headers (not pseudo-headers, te, content-type or grpc-*), in order.
  const Metadata& metadata() const { return metadata_; }
  uint64_t deadline_ns() const { return deadline_ns_; }  // steady clock (NowNs); 0 = none
  // When the transport made the call (steady clock, NowNs): the request's arrival, for traces.
  uint64_t received_ns() const { return received_ns_; }
  bool streaming() const { return streaming_; }

  // Answers; each returns false (sending nothing) once the call is over: finished, cancelled
  // by the client, past its deadline, or its connection gone.
  bool Send(const void* data, size_t size);       // one response message
  bool Finish(GrpcStatus status, std::string message);
  bool Reply(const void* data, size_t size);      // message + OK, for unary calls
  // Streaming: the oldest request message was taken (flow-control credit goes back for it).
  void Consumed();

  // Whether responses are compressed (in Send and Reply, on the caller's thread).
  bool compresses() const { return address_.response_encoding != Encoding::kIdentity; }

  bool finished() const { return finished_.load(std::memory_order_acquire); }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  // The I/O thread saw the end of the call (reset, deadline, disconnect).
  void MarkCancelled();

 private:
  bool Claim();  // true for the one caller that ends the call
  std::string Frame(const void* data, size_t size) const;  // compressed when configured

  const uint64_t id_;
  const CallAddress address_;
  const std::string method_;
  const std::string path_;
  const Metadata metadata_;
  const uint64_t deadline_ns_;
  const bool streaming_;
  const uint64_t received_ns_;
  std::atomic<bool> finished_{false};
  std::atomic<bool> cancelled_{false};
};

enum class CallEventKind : uint8_t {
  kUnary = 0,      // a unary call with its one request message
  kStart = 1,      // a streaming call begins (messages follow)
  kMessage = 2,    // a request message of a streaming call
  kHalfClose = 3,  // the client of a streaming call sends no more messages
  kCancel = 4,     // the call ended from the client side: reset, deadline, disconnect
};

struct CallEvent {
  CallEventKind kind;
  std::shared_ptr<ForwardedCall> call;
  MessagePtr message;  // kUnary, kMessage
};

using Bridge = WakeupQueue<CallEvent>;

}  // namespace grpc
}  // namespace tritonlite
