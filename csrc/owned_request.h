// OwnedRequest: a request handed to a backend that answers it itself (the python backend,
// decoupled models). Any number of responses, exactly one final; if it is released without a
// final response, an error response is sent so the client is never left waiting. Statistics
// are recorded when the final response goes out.
#pragma once

#include <memory>
#include <mutex>

#include "request.h"
#include "stats.h"

namespace tritonlite {

class OwnedRequest {
 public:
  OwnedRequest(RequestPtr request, std::shared_ptr<ModelStats> stats, std::string model_name,
               uint64_t execute_start_ns);
  ~OwnedRequest();
  OwnedRequest(const OwnedRequest&) = delete;
  OwnedRequest& operator=(const OwnedRequest&) = delete;

  const InferRequest& request() const { return *request_; }
  // Sends a response. Throws INVALID_ARG if a final response was already sent.
  void Respond(NamedTensors outputs, Status status, bool final);
  // Fails the request if it has no final response yet; returns whether it did.
  bool FailIfUnfinished(const Status& status);
  bool finished() const;

 private:
  void SendLocked(NamedTensors outputs, Status status, bool final);

  mutable std::mutex mu_;
  RequestPtr request_;
  std::shared_ptr<ModelStats> stats_;
  std::string model_name_;
  uint64_t execute_start_ns_;
  bool finished_ = false;
  bool any_error_ = false;
};

}  // namespace tritonlite
