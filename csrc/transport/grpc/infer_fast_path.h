// The ModelInfer fast path: a received ModelInferRequest is decoded in C++ into Tensor views
// over its own receive buffer, queued on the model's ModelRunner, and its response encoded in
// C++ on the worker thread and handed to the connection's I/O thread. No Python, no GIL (except
// where a backend's output arrays are released, on the worker thread).
//
// Requests using what the path leaves out go to Python unchanged, which answers them exactly
// as the Python frontend does: typed `contents`, any tensor-level parameter (shared memory,
// classification, ...), request parameters other than priority, timeout, sequence_id,
// sequence_start, sequence_end and triton_enable_empty_final_response (or of an unexpected
// type), a raw_input_contents count that does not match the inputs, byte sizes that do not
// match the shapes (computed overflow-checked, util/checked_math.h), unknown datatypes, models or
// versions the registry does not hold, and bytes that do not parse.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "core/request.h"
#include "transport/grpc/infer_codec.h"
#include "transport/grpc/model_registry.h"
#include "transport/grpc/outbox.h"
#include "transport/grpc/protocol.h"
#include "util/spin_wait.h"

namespace tritonlite {
namespace grpc {

// Encodes the response to one fast-path request and posts it to the call's I/O thread.
class InferResponseSink : public ResponseSink {
 public:
  InferResponseSink(CallAddress address, std::string model_name, std::string model_version,
                    std::string request_id);
  // The first response answers the call (fast-path models are not decoupled); any later one
  // is dropped.
  void Complete(InferResponse&& response) override;

 private:
  void Answer(const InferResponse& response);

  const CallAddress address_;
  const std::string model_name_;
  const std::string model_version_;
  const std::string request_id_;
  std::atomic<bool> answered_{false};
};

// Builds the core request for a decoded ModelInferRequest whose tensors view `message`; nullptr
// when the request needs Python (see above).
RequestPtr BuildInferRequest(const WireInferRequest& wire, const MessagePtr& message);

struct FastInferResult {
  enum class Outcome { kQueued, kForward, kRejected };
  Outcome outcome = Outcome::kForward;
  Status status;  // kRejected: what the core said (validation, full queue, stopping)
  CancelFlagPtr cancel;  // kQueued: cancels the request (the call was reset or expired)
};

// The models a thread queued requests to without waking their workers (TryFastInfer with
// `wake_later`); WakeAll (or the destructor) wakes each once — or, with `inline_batches` other
// than kNone, has each run its ready batches on this thread (ModelRunner::RunReady: all of them
// with kAll, the I/O thread on a one-CPU budget; only a model's short ones with kShort), whose
// responses are posted to their calls' outboxes from here.
class DeferredWakeups {
 public:
  explicit DeferredWakeups(InlineBatches inline_batches = InlineBatches::kNone)
      : inline_(inline_batches) {}
  DeferredWakeups(const DeferredWakeups&) = delete;
  DeferredWakeups& operator=(const DeferredWakeups&) = delete;
  ~DeferredWakeups() { WakeAll(); }
  void Add(const std::shared_ptr<ModelRunner>& runner) {
    for (const auto& r : runners_) {
      if (r == runner) return;
    }
    runners_.push_back(runner);
  }
  void WakeAll() noexcept;
  bool empty() const { return runners_.empty(); }
  // Whether WakeAll would run a batch of one of the models on this thread (not just wake it).
  bool RunsAnyHere() const;
  // After WakeAll with kAll: requests of this pass wait behind a batch that another thread is
  // running (ModelRunner::RunReady), on the CPU this thread shares with it.
  bool behind_running_batch() const { return behind_running_batch_; }

  // The wakeups of the pass an I/O thread has open (Scope), which the requests it reads join:
  // one wakeup (or one run) per model per pass over all its connections. Null when none.
  static DeferredWakeups* Current() { return current(); }
  class Scope {
   public:
    explicit Scope(DeferredWakeups* pass) : saved_(current()) { current() = pass; }
    ~Scope() { current() = saved_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    DeferredWakeups* const saved_;
  };

 private:
  static DeferredWakeups*& current() {
    thread_local DeferredWakeups* pass = nullptr;
    return pass;
  }
  const InlineBatches inline_;
  bool behind_running_batch_ = false;
  std::vector<std::shared_ptr<ModelRunner>> runners_;
};

// Tries the fast path for one complete request message.
// With `wake_later`, the request is queued without waking the model's worker; the caller wakes
// it through `wake_later` once it has queued everything it read (one wakeup, one batch).
FastInferResult TryFastInfer(const MessagePtr& message, const ModelRegistry& registry,
                             const CallAddress& address, DeferredWakeups* wake_later = nullptr);

}  // namespace grpc
}  // namespace tritonlite
