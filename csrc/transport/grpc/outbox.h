// Outbox: what other threads have for the calls of one I/O thread. Worker threads post
// finished inferences and the Python loop posts the answers of forwarded calls; the I/O thread
// drains them in one go and writes them out.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "transport/grpc/protocol.h"
#include "util/wakeup_queue.h"

namespace tritonlite {
namespace grpc {

struct Outbound {
  enum class Kind : uint8_t {
    kMessage,  // one response message (more may follow)
    kFinish,   // trailers with `status` and `message`: the call is over
    kReply,    // a unary response: the message, then status OK
    kInflated,  // a request message decompressed off the I/O thread (or `status` refusing it)
    kConsumed,  // Python took the oldest request message of a stream: its credit goes back
  };
  uint64_t connection_id = 0;
  uint32_t stream_id = 0;
  Kind kind = Kind::kMessage;
  std::string framed;  // the message with its 5-byte prefix (kMessage, kReply)
  GrpcStatus status = GrpcStatus::kOk;
  std::string message;  // grpc-message (kFinish, kInflated)
  MessagePtr inflated;  // kInflated with status OK
};

using Outbox = WakeupQueue<Outbound>;

// Where a call's answers go: its I/O thread's outbox, connection and stream; and how its
// response messages are compressed (by whoever frames them, off the I/O thread).
struct CallAddress {
  std::shared_ptr<Outbox> outbox;
  uint64_t connection_id = 0;
  uint32_t stream_id = 0;
  Encoding response_encoding = Encoding::kIdentity;

  // An outbound item of `kind` for this call (the caller fills in the rest).
  Outbound To(Outbound::Kind kind) const {
    Outbound o;
    o.connection_id = connection_id;
    o.stream_id = stream_id;
    o.kind = kind;
    return o;
  }
};

}  // namespace grpc
}  // namespace tritonlite
