// ClosedLoop: an in-process load generator for benchmarks. It keeps `concurrency` requests in
// flight against a ModelRunner and submits a new one as soon as each response arrives, until a
// deadline, with no Python on the request path: it measures what the server itself costs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/request.h"
#include "scheduling/model_runner.h"

namespace tritonlite {

struct ClosedLoopResult {
  uint64_t completed = 0;
  uint64_t errors = 0;
  double elapsed_s = 0;
  std::vector<uint64_t> latencies_ns;  // of completed requests
};

class ClosedLoop : public ResponseSink, public std::enable_shared_from_this<ClosedLoop> {
 public:
  ClosedLoop(std::shared_ptr<ModelRunner> runner, NamedTensors inputs, double seconds);
  // Starts `concurrency` requests and blocks until the deadline has passed and every request in
  // flight has come back.
  ClosedLoopResult Run(int concurrency);
  void Complete(InferResponse&& response) override;

 private:
  std::shared_ptr<ModelRunner> runner_;
  NamedTensors inputs_;
  uint64_t start_ns_ = 0;
  uint64_t deadline_ns_ = 0;
  const double seconds_;
  std::mutex mu_;
  std::condition_variable done_;
  int in_flight_ = 0;
  ClosedLoopResult result_;
  std::vector<uint64_t> started_;  // enqueue time by token
};

}  // namespace tritonlite
