// DynamicBatcher: the request queue of one model version and Triton's dynamic_batching rules
// for forming batches from it (priority levels, queue policies, preferred sizes, queue delay,
// shape compatibility). With batching off it hands out one request at a time (Triton's default
// scheduler). Instance workers pull batches from it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "model_spec.h"
#include "request.h"
#include "scheduler.h"
#include "stats.h"

namespace tritonlite {

class DynamicBatcher : public Scheduler {
 public:
  DynamicBatcher(const ModelSpec& spec, ModelStats* stats);

  // Throws UNAVAILABLE when its priority level's queue is full or the batcher is stopping.
  void Enqueue(RequestPtr request) override;
  bool TryEnqueue(RequestPtr& request) override;
  // Any idle instance takes the next batch.
  Batch NextBatch(size_t instance) override;
  void Stop() override;
  size_t pending() const override;

 private:
  struct Level {
    QueuePolicy policy;
    std::deque<RequestPtr> ready;
    std::deque<RequestPtr> delayed;  // timed out with timeout_action DELAY
    size_t size() const { return ready.size() + delayed.size(); }
  };

  size_t LevelIndex(uint32_t priority) const;
  bool Add(RequestPtr& request, bool wait);
  // Delays timed-out requests, or moves them to `expired` to be failed once the lock is
  // released; returns the earliest remaining deadline (0: none).
  uint64_t ExpireTimedOut(uint64_t now, std::vector<RequestPtr>* expired);
  void FailExpired(std::vector<RequestPtr>* expired);  // without mu_
  // Decides what to send now. Returns false and sets *wake_ns when it should wait.
  bool FormBatch(uint64_t now, Batch* batch, uint64_t* wake_ns);
  RequestPtr PopFront();

  const std::string model_name_;
  const bool batching_;
  const int64_t max_batch_size_;
  const std::vector<int64_t> preferred_;
  const uint64_t max_queue_delay_ns_;
  const uint32_t default_level_;
  ModelStats* stats_;

  // Held only for queue bookkeeping: no sink calls, no Python and no release of a request
  // under it (the rule in scheduler.h).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Level> levels_;  // index 0 = priority 1 (highest)
  std::atomic<size_t> queued_{0};  // read without the lock by a spinning worker
  std::atomic<bool> spinner_{false};  // at most one idle worker spins at a time
  uint64_t next_sequence_ = 0;
  bool stopping_ = false;
};

}  // namespace tritonlite
