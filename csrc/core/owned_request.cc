#include "core/owned_request.h"

#include <algorithm>

namespace tritonlite {

OwnedRequest::OwnedRequest(RequestPtr request, std::shared_ptr<ModelStats> stats,
                           std::string model_name, uint64_t execute_start_ns, bool ensemble)
    : request_(std::move(request)),
      stats_(std::move(stats)),
      model_name_(std::move(model_name)),
      execute_start_ns_(execute_start_ns),
      ensemble_(ensemble) {}

OwnedRequest::~OwnedRequest() {
  FailIfUnfinished(Status(StatusCode::kInternal,
                          "model '" + model_name_ +
                              "' released a request without sending its final response"));
}

void OwnedRequest::Respond(NamedTensors outputs, Status status, bool final, bool model_error) {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) {
    throw Error(StatusCode::kInvalidArg, "model '" + model_name_ +
                                             "': a final response was already sent for this request");
  }
  QueueLocked(std::move(outputs), std::move(status), final, model_error);
  SendQueued(lock);
}

bool OwnedRequest::FailIfUnfinished(const Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  if (finished_) return false;
  QueueLocked({}, status, true);
  SendQueued(lock);
  return true;
}

bool OwnedRequest::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_;
}

NamedTensors OwnedRequest::Inputs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return request_->inputs;  // views: copying shares the owners, releases nothing
}

void OwnedRequest::QueueLocked(NamedTensors outputs, Status status, bool final,
                               bool model_error) {
  InferRequest& r = *request_;
  if (!status.ok() && !model_error) any_error_ = true;
  InferResponse resp;
  resp.token = r.token;
  resp.status = std::move(status);
  resp.outputs = std::move(outputs);
  resp.final = final;
  if (r.trace_id != 0) {  // a backend that answers itself: compute spans execute -> response
    const uint64_t now = NowNs();
    resp.traced = true;
    resp.trace = TraceTimes{r.enqueue_ns, execute_start_ns_, execute_start_ns_, now, now};
  }
  if (final) {
    finished_ = true;
    const uint64_t now = NowNs();
    const uint64_t queue_ns = execute_start_ns_ - r.enqueue_ns;
    if (r.null_request) {
      // A sequence batcher's filler is no inference (as in Triton): not counted.
    } else if (any_error_ && ensemble_) {
      // Triton's ensemble scheduler counts a failed request twice: its error response, then
      // the request itself, both with reason OTHER.
      stats_->RecordFailure(now - r.enqueue_ns, queue_ns, FailReason::kOther);
      stats_->RecordFailure(now - r.enqueue_ns, queue_ns, FailReason::kOther);
    } else if (any_error_) {
      stats_->RecordFailure(now - r.enqueue_ns, queue_ns,
                            r.cancelled() ? FailReason::kCanceled : FailReason::kBackend);
    } else {
      stats_->RecordSuccess(now - r.enqueue_ns, queue_ns, 0, now - execute_start_ns_, 0,
                            r.batch_size);
      if (ensemble_) {
        stats_->RecordExecution(std::max<int64_t>(1, r.batch_size), 0, now - execute_start_ns_, 0);
      }
    }
    resp.keepalive = std::move(r.inputs);  // released on the consumer's thread
  }
  outbox_.push_back(std::move(resp));
}

void OwnedRequest::SendQueued(std::unique_lock<std::mutex>& lock) {
  if (sending_) {  // another thread is calling the sink: it sends ours after its own, in order
    lock.unlock();
    return;
  }
  sending_ = true;
  std::vector<InferResponse> batch;
  while (!outbox_.empty()) {
    batch.swap(outbox_);
    lock.unlock();
    for (InferResponse& resp : batch) {
      try {
        request_->sink->Complete(std::move(resp));
      } catch (const std::exception&) {
        // A sink out of memory: the responses queued behind it still go out.
      }
    }
    batch.clear();
    lock.lock();
  }
  sending_ = false;
  lock.unlock();
}

}  // namespace tritonlite
