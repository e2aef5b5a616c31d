#include "transport/grpc/bridge.h"

#include <cstring>

#include "core/request.h"  // NowNs
#include "transport/grpc/compression.h"

namespace tritonlite {
namespace grpc {

ForwardedCall::ForwardedCall(uint64_t id, CallAddress address, std::string method,
                             std::string path, Metadata metadata, uint64_t deadline_ns,
                             bool streaming)
    : id_(id),
      address_(std::move(address)),
      method_(std::move(method)),
      path_(std::move(path)),
      metadata_(std::move(metadata)),
      deadline_ns_(deadline_ns),
      streaming_(streaming),
      received_ns_(NowNs()) {}

bool ForwardedCall::Claim() {
  bool expected = false;
  return finished_.compare_exchange_strong(expected, true, std::memory_order_acq_rel);
}

std::string ForwardedCall::Frame(const void* data, size_t size) const {
  std::string framed;
  if (!FrameCompressed(address_.response_encoding, static_cast<const uint8_t*>(data), size,
                       &framed)) {
    framed = FrameMessage(data, size);
  }
  return framed;
}

bool ForwardedCall::Send(const void* data, size_t size) {
  if (finished()) return false;
  Outbound o = address_.To(Outbound::Kind::kMessage);
  o.framed = Frame(data, size);
  return address_.outbox->Post(std::move(o));
}

void ForwardedCall::Consumed() {
  if (finished()) return;
  Outbound o = address_.To(Outbound::Kind::kConsumed);
  address_.outbox->Post(std::move(o));
}

bool ForwardedCall::Finish(GrpcStatus status, std::string message) {
  if (!Claim()) return false;
  Outbound o = address_.To(Outbound::Kind::kFinish);
  o.status = status;
  o.message = std::move(message);
  return address_.outbox->Post(std::move(o));
}

bool ForwardedCall::Reply(const void* data, size_t size) {
  if (!Claim()) return false;
  Outbound o = address_.To(Outbound::Kind::kReply);
  o.framed = Frame(data, size);
  return address_.outbox->Post(std::move(o));
}

void ForwardedCall::MarkCancelled() {
  cancelled_.store(true, std::memory_order_release);
  finished_.store(true, std::memory_order_release);
}

}  // namespace grpc
}  // namespace tritonlite
