#include "transport/grpc/infer_fast_path.h"

#include <limits>
#include <string_view>
#include <utility>

#include "core/datatype.h"
#include "transport/grpc/compression.h"

namespace tritonlite {
namespace grpc {

namespace {

// An InferParameter as an unsigned integer (int64 >= 0 or uint64); false otherwise.
bool UnsignedParameter(const WireParameter& p, uint64_t* value) {
  if (p.kind == WireParameter::Kind::kInt64 && p.int64_value >= 0) {
    *value = static_cast<uint64_t>(p.int64_value);
    return true;
  }
  if (p.kind == WireParameter::Kind::kUint64) {
    *value = p.uint64_value;
    return true;
  }
  return false;
}

// Request-level parameters into the request; false for anything the fast path leaves to Python.
// A key given more than once counts with its last value (protobuf map semantics): one pass
// from the end, skipping keys already applied, so a request repeating keys costs linear time.
bool ApplyParameters(const WireParameters& parameters, InferRequest* r) {
  enum Key : size_t { kPriority, kTimeout, kSequenceId, kStart, kEnd, kEmptyFinal, kKeyCount };
  static constexpr std::string_view kNames[kKeyCount] = {
      "priority",       "timeout",      "sequence_id",
      "sequence_start", "sequence_end", "triton_enable_empty_final_response"};
  bool applied[kKeyCount] = {};
  for (auto it = parameters.rbegin(); it != parameters.rend(); ++it) {
    size_t key = 0;
    while (key < kKeyCount && kNames[key] != it->first) ++key;
    if (key == kKeyCount) return false;  // left to Python
    if (applied[key]) continue;          // an earlier value, overridden
    applied[key] = true;
    const WireParameter& p = it->second;
    uint64_t u = 0;
    switch (key) {
      case kPriority:
        if (!UnsignedParameter(p, &u)) return false;
        r->priority = u;
        break;
      case kTimeout:  // int64 only, as Triton
        if (p.kind != WireParameter::Kind::kInt64 || p.int64_value < 0) return false;
        r->timeout_us = static_cast<uint64_t>(p.int64_value);
        break;
      case kSequenceId:
        if (p.kind == WireParameter::Kind::kString) {
          r->correlation_id_str = std::string(p.string_value);
          r->correlation_id = 0;
        } else if (UnsignedParameter(p, &u)) {
          r->correlation_id = u;
          r->correlation_id_str.clear();
        } else {
          return false;
        }
        break;
      case kStart:
      case kEnd: {
        if (p.kind != WireParameter::Kind::kBool) return false;
        const uint32_t flag = key == kStart ? kSequenceStart : kSequenceEnd;
        r->flags = p.bool_value ? (r->flags | flag) : (r->flags & ~flag);
        break;
      }
      default:  // kEmptyFinal: only decoupled models answer with an empty final response,
                // and they never take the fast path (perf_analyzer sends it on every request)
        if (p.kind != WireParameter::Kind::kBool) return false;
        break;
    }
  }
  return true;
}

void ClearForReuse(WireInferRequest* wire) {
  constexpr size_t kKeep = 64;  // entries of each list kept across requests
  if (wire->inputs.capacity() > kKeep || wire->outputs.capacity() > kKeep ||
      wire->raw_input_contents.capacity() > kKeep || wire->parameters.capacity() > kKeep) {
    *wire = WireInferRequest();
    return;
  }
  wire->model_name = wire->model_version = wire->id = std::string_view();
  wire->parameters.clear();
  wire->inputs.clear();
  wire->outputs.clear();
  wire->raw_input_contents.clear();
}

// A fast-path request's response sink and cancel flag, which live as long as each other.
struct SinkAndCancelFlag {
  SinkAndCancelFlag(const CallAddress& address, const std::string& model_name,
                    std::string model_version, const std::string& request_id)
      : sink(address, model_name, std::move(model_version), request_id) {}
  InferResponseSink sink;
  CancelFlag flag;
};

}  // namespace

bool DeferredWakeups::RunsAnyHere() const {
  if (inline_ == InlineBatches::kNone) return false;
  for (const auto& r : runners_) {
    if (r->RunsReadyHere(inline_ == InlineBatches::kAll)) return true;
  }
  return false;
}

void DeferredWakeups::WakeAll() noexcept {
  // Moved out first: a batch run here may queue nothing more to this pass, but be safe.
  std::vector<std::shared_ptr<ModelRunner>> runners;
  runners.swap(runners_);
  for (const auto& r : runners) {
    if (inline_ != InlineBatches::kNone) {
      try {
        const bool one_cpu = inline_ == InlineBatches::kAll;
        if (r->RunReady(one_cpu) && one_cpu) behind_running_batch_ = true;
        continue;
      } catch (const std::exception&) {
        // Out of memory forming or running a batch: its worker takes it from here.
      }
    }
    r->Wake();
  }
}

InferResponseSink::InferResponseSink(CallAddress address, std::string model_name,
                                     std::string model_version, std::string request_id)
    : address_(std::move(address)),
      model_name_(std::move(model_name)),
      model_version_(std::move(model_version)),
      request_id_(std::move(request_id)) {}

void InferResponseSink::Complete(InferResponse&& response) {
  InferResponse done = std::move(response);  // released here, after the answer is posted
  if (answered_.exchange(true)) return;
  try {
    Answer(done);
  } catch (const std::exception&) {
    // Out of memory while encoding or posting: the call ends with its deadline or connection;
    // the worker thread must not die for it.
  }
}

void InferResponseSink::Answer(const InferResponse& done) {
  Outbound o;
  o.connection_id = address_.connection_id;
  o.stream_id = address_.stream_id;
  if (done.status.ok()) {
    try {
      o.framed.assign(kMessagePrefixSize, '\0');
      EncodeModelInferResponse(model_name_, model_version_, request_id_, done.outputs, &o.framed);
      WriteMessagePrefix(reinterpret_cast<uint8_t*>(&o.framed[0]),
                         o.framed.size() - kMessagePrefixSize);
      if (address_.response_encoding != Encoding::kIdentity) {  // compressed here, off I/O
        std::string compressed;
        const auto* message = reinterpret_cast<const uint8_t*>(o.framed.data());
        if (FrameCompressed(address_.response_encoding, message + kMessagePrefixSize,
                            o.framed.size() - kMessagePrefixSize, &compressed)) {
          o.framed = std::move(compressed);
        }
      }
      o.kind = Outbound::Kind::kReply;
    } catch (const Error& e) {  // e.g. a GPU output in a build without CUDA
      o.framed = std::string();
      o.kind = Outbound::Kind::kFinish;
      o.status = GrpcStatusFromCore(e.code());
      o.message = e.what();
    }
  } else {
    o.kind = Outbound::Kind::kFinish;
    o.status = GrpcStatusFromCore(done.status.code());
    o.message = done.status.message();
  }
  address_.outbox->Post(std::move(o));
}

RequestPtr BuildInferRequest(const WireInferRequest& wire, const MessagePtr& message) {
  if (wire.raw_input_contents.size() != wire.inputs.size()) return nullptr;
  auto r = std::make_unique<InferRequest>();
  if (!ApplyParameters(wire.parameters, r.get())) return nullptr;
  r->id = std::string(wire.id);
  // The tensors' owner is the message buffer (aliasing: the pointer is the bytes).
  const std::shared_ptr<const void> owner(message, message->data());
  r->inputs.reserve(wire.inputs.size());
  for (size_t i = 0; i < wire.inputs.size(); ++i) {
    const WireInferInput& in = wire.inputs[i];
    if (in.has_contents || !in.parameters.empty()) return nullptr;
    const std::string_view datatype = in.datatype;
    if (datatype.substr(0, 5) == std::string_view("TYPE_")) return nullptr;  // config spelling
    const DataType dtype = DataTypeFromName(datatype);
    if (dtype == DataType::kInvalid) return nullptr;
    const std::string_view raw = wire.raw_input_contents[i];
    try {
      Tensor t = Tensor::View(dtype, in.shape, raw.data(), raw.size(), owner);
      t.set_read_only();
      r->inputs.emplace_back(std::string(in.name), std::move(t));
    } catch (const std::exception&) {
      // Byte size or BYTES layout does not match (or memory ran out): Python words the error.
      // Nothing may escape to the I/O thread, where it would end the process.
      return nullptr;
    }
  }
  r->requested_outputs.reserve(wire.outputs.size());
  for (const WireRequestedOutput& out : wire.outputs) {
    if (!out.parameters.empty()) return nullptr;
    r->requested_outputs.emplace_back(out.name);
  }
  return r;
}

FastInferResult TryFastInfer(const MessagePtr& message, const ModelRegistry& registry,
                             const CallAddress& address, DeferredWakeups* wake_later) {
  FastInferResult result;
  // The I/O thread's decode scratch: its vectors keep their capacity from request to request
  // (its views are of the message being decoded only; dropped when it grew unusually large).
  thread_local WireInferRequest wire;
  ClearForReuse(&wire);
  if (!DecodeModelInferRequest(message->data(), message->size(), &wire)) return result;
  std::shared_ptr<ModelRunner> runner = registry.Find(wire.model_name, wire.model_version);
  // Two tries: a version retired between the lookup and the enqueue refuses the request as
  // UNAVAILABLE; by then the registry holds its successor (or nothing: then Python answers).
  for (int attempt = 0; attempt < 2 && runner != nullptr; ++attempt) {
    RequestPtr request = BuildInferRequest(wire, message);
    if (request == nullptr) return result;
    const ModelSpec& spec = runner->spec();
    // The sink and the cancel flag in one allocation (each pointer keeps both alive).
    auto both = std::make_shared<SinkAndCancelFlag>(address, spec.name,
                                                    std::to_string(spec.version), request->id);
    request->sink = std::shared_ptr<InferResponseSink>(both, &both->sink);
    CancelFlagPtr cancel(both, &both->flag);
    request->cancel = cancel;
    try {
      if (wake_later != nullptr) {
        wake_later->Add(runner);  // first: a queued request is always woken for
        runner->EnqueueDeferred(std::move(request));
      } else {
        runner->Enqueue(std::move(request));
      }
      result.outcome = FastInferResult::Outcome::kQueued;
      result.cancel = std::move(cancel);
      return result;
    } catch (const Error& e) {
      std::shared_ptr<ModelRunner> now = registry.Find(wire.model_name, wire.model_version);
      if (e.code() == StatusCode::kUnavailable && attempt == 0 && now != runner) {
        runner = std::move(now);
        continue;
      }
      result.outcome = FastInferResult::Outcome::kRejected;
      result.status = Status(e.code(), e.what());
      return result;
    }
  }
  return result;  // kForward
}

}  // namespace grpc
}  // namespace tritonlite
