#include "transport/grpc/connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "transport/grpc/compression.h"
#include "transport/grpc/infer_fast_path.h"

namespace tritonlite {
namespace grpc {

using namespace std::string_view_literals;

namespace {

constexpr char kInferenceService[] = "/inference.GRPCInferenceService/";
constexpr size_t kInferenceServiceSize = sizeof(kInferenceService) - 1;
constexpr int kMaxReadsPerWakeup = 16;

// Whether the call's metadata has header `key` (lowercase, as HTTP/2 sends names) with `value`;
// true when no header is required (`key` empty).
bool CarriesHeader(const Metadata& metadata, const std::string& key, const std::string& value) {
  if (key.empty()) return true;
  for (const auto& [name, v] : metadata) {
    if (name == key && v == value) return true;
  }
  return false;
}

const std::string& OkTrailers() {
  static const std::string block = TrailerBlock(GrpcStatus::kOk, "", false);
  return block;
}

// A fixed value in [-1, 1] per connection (splitmix64 of its id): the spread of its max age.
double AgeJitter(uint64_t id) {
  uint64_t z = id + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) / static_cast<double>(1ull << 52) - 1.0;
}

}  // namespace

GrpcConnection::GrpcConnection(int fd, uint64_t id, TransportContext* context,
                               std::shared_ptr<Outbox> outbox, DeadlineScheduler* deadlines,
                               uint64_t now_ns)
    : fd_(fd),
      id_(id),
      context_(context),
      outbox_(std::move(outbox)),
      deadlines_(deadlines),
      h2_(this, context->options.http2),
      timers_(context->options.timers, now_ns, AgeJitter(id)) {
  h2_.Start();
  ArmTimer();
}

namespace {
constexpr size_t kMaxDrainOnClose = size_t{4} << 20;
}  // namespace

GrpcConnection::~GrpcConnection() {
  for (auto& kv : calls_) CancelCall(kv.second);
  // Closing with unread input makes the kernel answer with RST, and an RST can destroy the
  // GOAWAY still waiting in the peer's receive buffer: discard what has arrived (bounded,
  // without waiting) so the peer reads our last frames, then FIN.
  uint8_t sink[16384];
  for (size_t drained = 0; drained < kMaxDrainOnClose;) {
    const ssize_t n = recv(fd_, sink, sizeof sink, MSG_DONTWAIT);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
  close(fd_);
}

// ---------------------------------------------------------------------------------------------
// Socket

bool GrpcConnection::OnReadable(uint8_t* scratch, size_t scratch_size, uint64_t now_ns) {
  timers_.OnRead(now_ns);
  // Requests completed by what this wakeup reads are queued after all of it is processed, so
  // one reset right behind its request (rapid reset) never reaches the core.
  struct QueueAfterReading {
    GrpcConnection* self;
    explicit QueueAfterReading(GrpcConnection* c) : self(c) { self->reading_ = true; }
    ~QueueAfterReading() {
      self->reading_ = false;
      self->QueueReadRequests();
    }
  } queue_after(this);
  for (int i = 0; i < kMaxReadsPerWakeup; ++i) {
    const ssize_t n = recv(fd_, scratch, scratch_size, 0);
    if (n > 0) {
      h2_.Feed(scratch, static_cast<size_t>(n), now_ns);
      if (!preface_seen_ && h2_.preface_received()) {
        preface_seen_ = true;
        timers_.PrefaceReceived();
      }
      if (h2_.failed() || !WithinOutputBudget()) return true;
      if (static_cast<size_t>(n) < scratch_size) return true;
    } else if (n == 0) {
      return false;
    } else if (errno == EINTR) {
      continue;
    } else {
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }
  return true;  // more may be waiting: level-triggered epoll calls again
}

bool GrpcConnection::Flush() {
  while (true) {
    if (h2_.output_size() == 0) {
      h2_.PumpData();
      if (h2_.output_size() == 0) return true;
    }
    const ssize_t n = send(fd_, h2_.output_data(), h2_.output_size(), MSG_NOSIGNAL);
    if (n > 0) {
      h2_.ConsumeOutput(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

void GrpcConnection::OnRequestHeaders(uint32_t stream_id, http2::HeaderList&& headers,
                                      bool end_stream) {
  const TransportOptions& options = context_->options;
  // Views into `headers` (which outlives this call): the list keeps its strings for the next
  // block (http2::HpackDecoder::Decode), so only what the call keeps is copied out.
  std::string_view http_method, content_type, timeout, encoding, accept_encoding, path;
  // Built in place (a Call is large: moving one in costs more than filling it there); erased
  // again if the headers refuse the call before it starts.
  const auto [slot, inserted] = calls_.try_emplace(stream_id, options.max_message_bytes);
  if (!inserted) return;  // the HTTP/2 layer opens each stream id once: never taken
  Call& call = slot->second;
  for (http2::HeaderField& h : headers) {
    const std::string_view name = h.name;  // vs literals of known size: no strlen per header
    if (name == ":method"sv) {
      http_method = h.value;
    } else if (name == ":path"sv) {
      path = h.value;
    } else if (name[0] == ':') {
      continue;
    } else if (name == "content-type"sv) {
      content_type = h.value;
    } else if (name == "grpc-timeout"sv) {
      timeout = h.value;
    } else if (name == "grpc-encoding"sv) {
      encoding = h.value;
    } else if (name == "grpc-accept-encoding"sv) {
      accept_encoding = h.value;
    } else if (name == "te"sv || name.substr(0, 5) == "grpc-"sv) {
      continue;  // transport headers, not call metadata
    } else {
      call.metadata.emplace_back(std::move(h.name), std::move(h.value));
    }
  }
  if (http_method != "POST") {
    calls_.erase(slot);
    h2_.SendHeaders(stream_id, HttpErrorBlock(405, GrpcStatus::kUnimplemented,
                                              "gRPC requires HTTP POST"), true);
    return;
  }
  if (content_type.substr(0, 16) != "application/grpc"sv) {
    calls_.erase(slot);
    h2_.SendHeaders(stream_id, HttpErrorBlock(415, GrpcStatus::kInternal,
                                              "invalid gRPC content-type '" +
                                                  std::string(content_type) + "'"),
                    true);
    return;
  }
  // The path of an inference call is kInferenceService + method: only the method is kept
  // (ForwardedPath rebuilds the path when the call goes to Python).
  if (path.substr(0, kInferenceServiceSize) == std::string_view(kInferenceService, kInferenceServiceSize)) {
    call.method = std::string(path.substr(kInferenceServiceSize));
    call.inference_path = true;
  } else {
    call.path = std::string(path);
    call.method = path.empty() ? std::string() : std::string(path.substr(1));
  }
  const auto& streaming = options.streaming_methods;
  if (std::find(streaming.begin(), streaming.end(), call.method) != streaming.end()) {
    call.kind = CallKind::kStreaming;
  } else if (options.fast_infer && call.method == "ModelInfer" &&
             CarriesHeader(call.metadata, options.fast_infer_header_key,
                           options.fast_infer_header_value)) {
    call.kind = CallKind::kFastInfer;
  }
  if (options.response_compression != CompressionLevel::kNone) {
    const auto& compressed = options.compressed_methods;
    if (std::find(compressed.begin(), compressed.end(), call.method) != compressed.end()) {
      call.response_encoding = EncodingForLevel(options.response_compression, accept_encoding);
    }
  }
  uint64_t timeout_ns = 0;
  if (!timeout.empty() && ParseGrpcTimeout(timeout, &timeout_ns)) {
    call.deadline_ns = NowNs() + timeout_ns;
    deadlines_->AddDeadline(call.deadline_ns, id_, stream_id);
  }
  if (!encoding.empty() && encoding != "identity") {
    if (!CanDecompress(encoding)) {
      calls_.erase(slot);  // never started: FailCall answers the stream alone
      FailCall(stream_id, GrpcStatus::kUnimplemented,
               "message compression '" + std::string(encoding) + "' is not supported (this server accepts " +
                   AcceptedEncodings() + ")");
      return;
    }
    call.encoding = std::string(encoding);
  }
  if (call.kind == CallKind::kStreaming) Forward(stream_id, call, CallEventKind::kStart, nullptr);
  if (end_stream) OnRequestEnd(stream_id, call);
}

void GrpcConnection::OnRequestData(uint32_t stream_id, const uint8_t* data, size_t size,
                                   bool end_stream) {
  auto it = calls_.find(stream_id);
  if (it == calls_.end()) return;  // already answered: the rest is ignored
  Call& call = it->second;
  if (size > 0) {
    received_.clear();
    std::string error;
    const bool ok = call.reader.Append(data, size, &received_, &error);
    for (ReceivedMessage& m : received_) {
      if (call.kind == CallKind::kStreaming) {
        // Its credit comes back once Python has taken the message (Deliver, kConsumed): a
        // stream whose requests are not read stops being able to send.
        const size_t wire = kMessagePrefixSize + m.message->size();
        h2_.HoldData(stream_id, wire);
        call.unconsumed.push_back(wire);
      }
      if (!Accept(stream_id, call, std::move(m))) {
        received_.clear();
        return;
      }
    }
    received_.clear();
    if (!ok) {
      FailCall(stream_id, GrpcStatus::kResourceExhausted, error);
      return;
    }
    if (!RecountWithinBudget(stream_id, call)) return;
  }
  if (end_stream) {
    if (call.inflating) {
      call.end_pending = true;  // once the messages before it are in
    } else {
      OnRequestEnd(stream_id, call);
    }
  }
}

bool GrpcConnection::Accept(uint32_t stream_id, Call& call, ReceivedMessage&& received) {
  if (call.inflating) {  // in order behind the message being inflated
    call.backlog.push_back(std::move(received));
    return true;
  }
  if (!received.compressed) return OnMessage(stream_id, call, std::move(received.message));
  if (call.encoding.empty()) {
    FailCall(stream_id, GrpcStatus::kInternal,
             "a compressed message arrived on a call without grpc-encoding");
    return false;
  }
  // Inflating may take long (up to the maximum message size): not on the I/O thread. What it
  // may inflate to is bounded by the connection's memory budget too (a message beyond it would
  // be refused once inflated): a small compressed message never costs more than the budget.
  size_t max_inflated = context_->options.max_message_bytes;
  const size_t budget = context_->options.max_connection_memory;
  if (budget != 0) max_inflated = std::min(max_inflated, budget);
  call.inflating = true;
  call.inflating_bytes = received.message->size();
  call.inflate_cancelled = std::make_shared<std::atomic<bool>>(false);
  if (!context_->inflater->Submit(InflatePool::Job{
          AddressOf(stream_id, call), call.encoding, std::move(received.message),
          max_inflated, call.inflate_cancelled})) {
    FailCall(stream_id, GrpcStatus::kResourceExhausted,
             "too many compressed request bytes are waiting to be inflated");
    return false;
  }
  return true;
}

void GrpcConnection::OnInflated(uint32_t stream_id, Call& call, Outbound&& item) {
  call.inflating = false;
  call.inflating_bytes = 0;
  call.inflate_cancelled.reset();
  if (item.status != GrpcStatus::kOk) {
    FailCall(stream_id, item.status, item.message);
    return;
  }
  if (!OnMessage(stream_id, call, std::move(item.inflated))) return;
  while (!call.inflating && !call.backlog.empty()) {
    ReceivedMessage next = std::move(call.backlog.front());
    call.backlog.pop_front();
    if (!Accept(stream_id, call, std::move(next))) return;
  }
  if (!RecountWithinBudget(stream_id, call)) return;  // what it inflated to counts too
  if (!call.inflating && call.end_pending) {
    call.end_pending = false;
    OnRequestEnd(stream_id, call);
  }
}

bool GrpcConnection::OnMessage(uint32_t stream_id, Call& call, MessagePtr message) {
  if (call.kind == CallKind::kStreaming) {
    Forward(stream_id, call, CallEventKind::kMessage, std::move(message));
    return true;
  }
  call.messages.push_back(std::move(message));
  if (call.messages.size() > 1) {
    FailCall(stream_id, GrpcStatus::kInternal,
             "received more than one request message for unary method '" + call.method + "'");
    return false;
  }
  return true;
}

void GrpcConnection::OnRequestEnd(uint32_t stream_id, Call& call) {
  if (call.reader.partial()) {
    FailCall(stream_id, GrpcStatus::kInternal, "the request ended in the middle of a message");
    return;
  }
  if (call.kind == CallKind::kStreaming) {
    Forward(stream_id, call, CallEventKind::kHalfClose, nullptr);
    return;
  }
  if (call.messages.size() != 1) {
    FailCall(stream_id, GrpcStatus::kInternal,
             "received no request message for unary method '" + call.method + "'");
    return;
  }
  MessagePtr message = std::move(call.messages[0]);
  call.messages.clear();
  Recount(call);  // the message now belongs to the request's path
  if (reading_) {
    call.read_message = std::move(message);
    read_requests_.push_back(stream_id);
    return;
  }
  StartUnary(stream_id, call, std::move(message));
}

void GrpcConnection::QueueReadRequests() {
  // The workers of the models these requests go to are woken once, after the last of them is
  // queued: a worker woken per request would take the CPU from this thread after the first (on
  // one core, every time) and run batches of one.
  // Within an I/O thread's pass, they join the pass's wakeups (one per model over all the
  // connections read in that pass).
  DeferredWakeups own;
  DeferredWakeups* wake_later = DeferredWakeups::Current();
  if (wake_later == nullptr) wake_later = &own;
  for (uint32_t stream_id : read_requests_) {
    auto it = calls_.find(stream_id);
    if (it == calls_.end() || it->second.read_message == nullptr) continue;  // reset meanwhile
    StartUnary(stream_id, it->second, std::move(it->second.read_message), wake_later);
  }
  read_requests_.clear();
}

void GrpcConnection::StartUnary(uint32_t stream_id, Call& call, MessagePtr message,
                                DeferredWakeups* wake_later) {
  if (call.kind == CallKind::kFastInfer) {
    FastInferResult r =
        TryFastInfer(message, context_->registry, AddressOf(stream_id, call), wake_later);
    if (r.outcome == FastInferResult::Outcome::kQueued) {
      call.cancel = std::move(r.cancel);
      return;
    }
    if (r.outcome == FastInferResult::Outcome::kRejected) {
      FailCall(stream_id, GrpcStatusFromCore(r.status.code()), r.status.message());
      return;
    }
  }
  Forward(stream_id, call, CallEventKind::kUnary, std::move(message));
}

CallAddress GrpcConnection::AddressOf(uint32_t stream_id, const Call& call) const {
  return CallAddress{outbox_, id_, stream_id, call.response_encoding};
}

std::shared_ptr<ForwardedCall> GrpcConnection::MakeForwardedCall(uint32_t stream_id, Call& call) {
  return std::make_shared<ForwardedCall>(
      context_->next_call_id.fetch_add(1, std::memory_order_relaxed), AddressOf(stream_id, call),
      call.method,
      call.inference_path ? std::string(kInferenceService, kInferenceServiceSize) + call.method
                          : call.path,
      std::move(call.metadata), call.deadline_ns,
      call.kind == CallKind::kStreaming);
}

void GrpcConnection::Forward(uint32_t stream_id, Call& call, CallEventKind kind,
                             MessagePtr message) {
  if (call.forwarded == nullptr) call.forwarded = MakeForwardedCall(stream_id, call);
  context_->bridge->Post(CallEvent{kind, call.forwarded, std::move(message)});
}

// ---------------------------------------------------------------------------------------------
// Answers

void GrpcConnection::SendHeadersOnce(uint32_t stream_id, Call& call) {
  if (call.headers_sent) return;
  call.headers_sent = true;
  h2_.SendHeaders(stream_id, ResponseHeaderBlock(call.response_encoding), false);
}

void GrpcConnection::Deliver(Outbound&& item) {
  auto it = calls_.find(item.stream_id);
  if (it == calls_.end()) return;  // cancelled, expired or already answered
  Call& call = it->second;
  const uint32_t id = item.stream_id;
  switch (item.kind) {
    case Outbound::Kind::kMessage:
      SendHeadersOnce(id, call);
      h2_.SendData(id, std::move(item.framed), false);
      break;
    case Outbound::Kind::kReply:
      SendHeadersOnce(id, call);
      EraseCall(it);
      h2_.SendData(id, std::move(item.framed), false);
      h2_.SendTrailers(id, OkTrailers());
      break;
    case Outbound::Kind::kInflated:
      OnInflated(id, call, std::move(item));
      break;
    case Outbound::Kind::kConsumed:
      if (!call.unconsumed.empty()) {
        h2_.ReleaseData(id, call.unconsumed.front());
        call.unconsumed.pop_front();
      }
      break;
    case Outbound::Kind::kFinish: {
      const bool headers_sent = call.headers_sent;
      EraseCall(it);
      if (headers_sent) {
        h2_.SendTrailers(id, TrailerBlock(item.status, item.message, false));
      } else {
        h2_.SendHeaders(id, TrailerBlock(item.status, item.message, true), true);
      }
      break;
    }
  }
  WithinOutputBudget();  // a peer that does not read its responses is cut off
}

void GrpcConnection::CancelCall(Call& call) {
  if (call.cancel != nullptr) {
    call.cancel->Cancel();  // a fast-path request still queued or running: dropped or told
    call.cancel.reset();
  }
  if (call.forwarded == nullptr || call.forwarded->finished()) return;
  call.forwarded->MarkCancelled();
  context_->bridge->Post(CallEvent{CallEventKind::kCancel, call.forwarded, nullptr});
}

void GrpcConnection::FailCall(uint32_t stream_id, GrpcStatus status, const std::string& message) {
  bool headers_sent = false;
  auto it = calls_.find(stream_id);
  if (it != calls_.end()) {
    headers_sent = it->second.headers_sent;
    CancelCall(it->second);
    EraseCall(it);
  }
  if (headers_sent) {
    h2_.SendTrailers(stream_id, TrailerBlock(status, message, false));
  } else {
    h2_.SendHeaders(stream_id, TrailerBlock(status, message, true), true);
  }
}

void GrpcConnection::OnStreamReset(uint32_t stream_id, http2::ErrorCode) {
  auto it = calls_.find(stream_id);
  if (it == calls_.end()) return;
  CancelCall(it->second);
  EraseCall(it);
}

void GrpcConnection::EraseCall(std::unordered_map<uint32_t, Call>::iterator it) {
  if (it->second.inflate_cancelled) it->second.inflate_cancelled->store(true);
  input_bytes_ -= it->second.held;
  calls_.erase(it);
  if (calls_.empty()) timers_.CallsEnded(NowNs());
}

void GrpcConnection::Recount(Call& call) {
  size_t held = call.reader.buffered_bytes() + call.inflating_bytes;
  for (const MessagePtr& m : call.messages) held += m->size();
  for (const ReceivedMessage& m : call.backlog) held += m.message->size();
  input_bytes_ = input_bytes_ - call.held + held;
  call.held = held;
}

bool GrpcConnection::RecountWithinBudget(uint32_t stream_id, Call& call) {
  Recount(call);
  const size_t budget = context_->options.max_connection_memory;
  if (budget == 0 || input_bytes_ <= budget) return true;
  FailCall(stream_id, GrpcStatus::kResourceExhausted,
           "connection memory budget exceeded: " + std::to_string(input_bytes_) +
               " bytes of requests held, the limit is " + std::to_string(budget) +
               " (--grpc-max-connection-memory)");
  return false;
}

bool GrpcConnection::WithinOutputBudget() {
  const size_t budget = context_->options.max_connection_memory;
  if (budget == 0 || h2_.failed()) return true;
  const size_t held = input_bytes_ + h2_.buffered_output();
  if (held <= budget) return true;
  h2_.Abort(http2::ErrorCode::kEnhanceYourCalm,
            "connection memory budget exceeded: " + std::to_string(held) +
                " bytes of requests and unread responses held, the limit is " +
                std::to_string(budget));
  return false;
}

bool GrpcConnection::OnRequestHeadersTooLarge(uint32_t stream_id, size_t max_header_list_size) {
  // gRPC core answers RESOURCE_EXHAUSTED for metadata over its limit.
  h2_.SendHeaders(stream_id,
                  TrailerBlock(GrpcStatus::kResourceExhausted,
                               "received metadata size exceeds limit (max " +
                                   std::to_string(max_header_list_size) +
                                   " bytes, SETTINGS_MAX_HEADER_LIST_SIZE)",
                               true),
                  true);
  return true;
}

void GrpcConnection::OnDeadline(uint32_t stream_id) {
  if (calls_.count(stream_id) != 0) {
    FailCall(stream_id, GrpcStatus::kDeadlineExceeded, "Deadline Exceeded");
  }
}

// ---------------------------------------------------------------------------------------------
// Timers

void GrpcConnection::ArmTimer() {
  const uint64_t next = timers_.next_ns();
  if (next == kNever || (timer_at_ != 0 && timer_at_ <= next)) return;
  timer_at_ = next;
  deadlines_->AddDeadline(next, id_, 0);
}

bool GrpcConnection::OnTimer(uint64_t at_ns, uint64_t now_ns) {
  if (at_ns == timer_at_) timer_at_ = 0;  // else a superseded entry: nothing relies on it
  const ConnectionTimers::Due due =
      timers_.Poll(now_ns, h2_.stream_count() != 0 || !calls_.empty());
  if (due.close != nullptr) return false;
  if (due.go_away) h2_.GoAwayGracefully("max_age");
  if (due.idle_go_away) h2_.GoAwayGracefully("max_idle");
  if (due.finish_go_away) h2_.FinishGoAway();
  if (due.ping) {
    h2_.SendPing(timers_.ping_id());
    timers_.PingSent(now_ns);
  }
  ArmTimer();
  return true;
}

void GrpcConnection::OnPingAck(uint64_t opaque) {
  timers_.OnPingAck(opaque);
  ArmTimer();  // the next keepalive PING may be due before the armed entry (the ping timeout)
}

}  // namespace grpc
}  // namespace tritonlite
