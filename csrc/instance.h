// InstanceWorker: one model instance = one thread with its own backend instance. It pulls batches
// from the model's batcher, gathers their inputs (no copy for a single request), runs the
// backend, scatters outputs back to each request as views, records statistics and hands the
// responses to the runner for delivery.
#pragma once

#include <memory>
#include <thread>

#include "backend.h"
#include "scheduler.h"

namespace tritonlite {

class ModelRunner;

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
  void ExecuteGathered(Batch& batch);
  void ExecutePerRequest(Batch& batch);

  ModelRunner* runner_;
  size_t index_;
  std::unique_ptr<InstanceBackend> backend_;
  std::thread thread_;
};

}  // namespace tritonlite
