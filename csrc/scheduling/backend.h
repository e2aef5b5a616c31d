// InstanceBackend: what an instance worker calls to run a batch. Implemented outside the core
// (python/backend.cc wraps a Python backend instance); the core never knows what runs the model.
#pragma once

#include <string>
#include <vector>

#include <memory>

#include "core/owned_request.h"
#include "core/request.h"
#include "core/status.h"

namespace tritonlite {

class InstanceBackend {
 public:
  virtual ~InstanceBackend() = default;
  // One gathered batch: inputs with the batch dim first. Fills `outputs` with (at least) the
  // outputs named in `output_names`, which the worker always lists (the requested outputs,
  // every model output when a request asked for all, and any the scheduler needs).
  // Called from the instance's own thread (or see RunsOnAnyThread).
  virtual Status Execute(const NamedTensors& inputs, const std::vector<std::string>& output_names,
                         NamedTensors* outputs) = 0;
  // Per-request execution (python backend): the backend answers each request itself, any
  // number of responses, the last one final, now or later from any thread. An error return
  // fails every request that has no final response yet.
  virtual Status ExecuteRequests(const std::vector<std::shared_ptr<OwnedRequest>>& requests) {
    return Status(StatusCode::kUnsupported, "this backend does not execute request lists");
  }
  // Whether Execute may be called from a thread other than the instance's own (one at a time,
  // between Start and Close): then a thread that queued requests may run their batch itself
  // (ModelRunner::RunReady). False for a backend that keeps per-thread state (a device).
  virtual bool RunsOnAnyThread() const { return false; }
  // Called once on the worker thread when it starts, and once before it exits.
  virtual void Start() {}
  virtual void Close() {}
};

}  // namespace tritonlite
