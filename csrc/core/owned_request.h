// OwnedRequest: a request handed to a backend that answers it itself (the python backend,
// decoupled models). Any number of responses, exactly one final; if it is released without a
// final response, an error response is sent so the client is never left waiting. Statistics
// are recorded when the final response goes out.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "core/request.h"
#include "core/stats.h"

namespace tritonlite {

class OwnedRequest {
 public:
  // `ensemble`: count as Triton counts an ensemble's requests (see ModelSpec::ensemble).
  OwnedRequest(RequestPtr request, std::shared_ptr<ModelStats> stats, std::string model_name,
               uint64_t execute_start_ns, bool ensemble = false);
  ~OwnedRequest();
  OwnedRequest(const OwnedRequest&) = delete;
  OwnedRequest& operator=(const OwnedRequest&) = delete;

  // The request's fields other than its inputs (which the final response takes away).
  const InferRequest& request() const { return *request_; }
  // The inputs (views) as they are now: empty once the final response went out. Safe against a
  // concurrent Respond.
  NamedTensors Inputs() const;
  // Sends a response. Throws INVALID_ARG if a final response was already sent. An error the
  // model itself answered with (`model_error`) leaves the request counted as a success, as
  // Triton's python backend counts it; any other error counts as a failure (BACKEND).
  void Respond(NamedTensors outputs, Status status, bool final, bool model_error = false);
  // Fails the request if it has no final response yet; returns whether it did.
  bool FailIfUnfinished(const Status& status);
  bool finished() const;

 private:
  // Builds the response and queues it on outbox_ (mu_ held).
  void QueueLocked(NamedTensors outputs, Status status, bool final, bool model_error = false);
  // Hands queued responses to the sink in order, one thread at a time, the sink called with
  // mu_ released (the rule in scheduling/scheduler.h). Takes `lock` locked, returns it unlocked.
  void SendQueued(std::unique_lock<std::mutex>& lock);

  // Guards the fields below; never held while calling the sink.
  mutable std::mutex mu_;
  std::vector<InferResponse> outbox_;
  bool sending_ = false;
  RequestPtr request_;
  std::shared_ptr<ModelStats> stats_;
  std::string model_name_;
  uint64_t execute_start_ns_;
  bool ensemble_;
  bool finished_ = false;
  bool any_error_ = false;
};

}  // namespace tritonlite
