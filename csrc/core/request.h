// InferRequest / InferResponse and where responses go (ResponseSink). Requests are created by
// the Python layer, owned by the scheduler while queued and by an instance while executing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/cancel_flag.h"
#include "core/status.h"
#include "core/tensor.h"

namespace tritonlite {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

inline uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Sequence flags, as Triton's request flags.
constexpr uint32_t kSequenceStart = 1;
constexpr uint32_t kSequenceEnd = 2;

// Per-request timestamps (steady clock, NowNs) for a traced request (Triton's trace activities
// QUEUE_START .. COMPUTE_END); 0: the request never reached that point.
struct TraceTimes {
  uint64_t queue_start = 0;
  uint64_t compute_start = 0;
  uint64_t compute_input_end = 0;
  uint64_t compute_output_start = 0;
  uint64_t compute_end = 0;
};

struct InferResponse {
  uint64_t token = 0;  // the caller's id for the request this answers
  Status status;
  NamedTensors outputs;
  bool final = true;  // false for all but the last response of a decoupled request
  // Input tensors (and anything else) whose release must happen on the caller's thread, where
  // Python owners are cheap to drop.
  NamedTensors keepalive;
  // Set (with `trace`) only for a traced request (a plain one carries them zeroed, unread).
  bool traced = false;
  TraceTimes trace;
};

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void Complete(InferResponse&& response) = 0;
};

struct InferRequest {
  uint64_t token = 0;
  std::string id;
  NamedTensors inputs;
  std::vector<std::string> requested_outputs;  // empty: every output
  uint64_t priority = 0;                        // 0: the model's default level
  uint64_t timeout_us = 0;                      // 0: the queue policy's default
  int64_t batch_size = 1;                       // rows along dim 0 (1 when not batching)
  // Sequence fields (sequence batcher).
  uint64_t correlation_id = 0;
  std::string correlation_id_str;
  uint32_t flags = 0;
  // The request's own (non-reserved) parameters as a JSON object, what a python_backend model
  // reads from request.parameters(); empty: none.
  std::string parameters;
  // Non-zero for a traced request (its trace's id): its responses carry TraceTimes.
  uint64_t trace_id = 0;
  // Filled by the scheduler.
  uint64_t enqueue_ns = 0;
  uint64_t deadline_ns = 0;  // 0: none
  std::shared_ptr<ResponseSink> sink;
  // Set by whoever may cancel the request (null: nobody can); every stage checks it.
  CancelFlagPtr cancel;
  // A filler the sequence batcher made for an empty slot (Triton's null request): no client
  // waits for it, its responses are dropped and it is not counted as an inference.
  bool null_request = false;

  bool cancelled() const { return cancel != nullptr && cancel->cancelled(); }

  const Tensor* FindInput(const std::string& name) const {
    for (const auto& kv : inputs) {
      if (kv.first == name) return &kv.second;
    }
    return nullptr;
  }

  // Sends a final error response for this request, releasing its inputs on the caller side.
  void Fail(const Status& status) {
    InferResponse r;
    r.token = token;
    r.status = status;
    r.keepalive = std::move(inputs);
    if (trace_id != 0) {
      r.traced = true;
      r.trace.queue_start = enqueue_ns;
    }
    sink->Complete(std::move(r));
  }
  // Fail() for scheduler threads: a sink that throws (out of memory while answering, a Python
  // sink's error) fails only this answer, never the thread that delivers it.
  void FailFromScheduler(const Status& status) noexcept {
    try {
      Fail(status);
    } catch (const std::exception&) {
    }
  }
};

using RequestPtr = std::unique_ptr<InferRequest>;

// Triton's answer to a request cancelled before or while it ran.
inline Status CancelledStatus() { return Status(StatusCode::kCancelled, "Request was cancelled"); }

}  // namespace tritonlite
