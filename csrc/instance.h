// InstanceWorker: one model instance = one thread with its own backend instance. It pulls batches
// from the model's batcher, gathers their inputs (no copy for a single request), runs the
// backend, scatters outputs back to each request as views, records statistics and hands the
// responses to the runner for delivery.
#pragma once

#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "backend.h"
#include "scheduler.h"

namespace tritonlite {

class ModelRunner;

// Responses a worker hands out, each with the sink it goes to.
using Delivery = std::vector<std::pair<std::shared_ptr<ResponseSink>, InferResponse>>;

class InstanceWorker {
 public:
  InstanceWorker(ModelRunner* runner, size_t index, std::unique_ptr<InstanceBackend> backend);
  ~InstanceWorker();
  InstanceWorker(const InstanceWorker&) = delete;
  InstanceWorker& operator=(const InstanceWorker&) = delete;

  void Join();

 private:
  void Run();
  // Answers the batch's cancelled requests (CANCELLED) and takes them out; true when none is
  // left to run.
  bool DropCancelled(Batch& batch);
  // Run a batch and hand its responses to the runner (in order when preserve_ordering).
  void ExecuteGathered(Batch& batch);
  void ExecutePerRequest(Batch& batch);
  // The two ways to run a batch. `scheduled`: the batch came from the scheduler, which hears
  // that it ran (warmup batches did not). RunGathered returns the responses to deliver;
  // per-request backends answer each request themselves.
  Delivery RunGathered(Batch& batch, bool scheduled);
  void RunPerRequest(Batch& batch, bool scheduled);
  // Runs the runner's warmup samples on this instance; the first failing sample's error.
  Status RunWarmup();

  ModelRunner* runner_;
  size_t index_;
  std::unique_ptr<InstanceBackend> backend_;
  std::thread thread_;
};

}  // namespace tritonlite
