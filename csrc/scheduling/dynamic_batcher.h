// DynamicBatcher: the request queue of one model version and Triton's dynamic_batching rules
// for forming batches from it (priority levels, queue policies, preferred sizes, queue delay,
// shape compatibility). With batching off it hands out one request at a time (Triton's default
// scheduler). Instance workers pull batches from it. A reaper thread (started by the first
// request) answers queued requests whose queue timeout passes (at that time, not when the next
// batch forms) and those that are cancelled (as soon as they are), so neither waits for a free
// instance.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/model_spec.h"
#include "core/request.h"
#include "core/stats.h"
#include "scheduling/scheduler.h"

namespace tritonlite {

class DynamicBatcher : public Scheduler {
 public:
  DynamicBatcher(const ModelSpec& spec, ModelStats* stats);
  ~DynamicBatcher() override;

  // Throws UNAVAILABLE when its priority level's queue is full or the batcher is stopping.
  void Enqueue(RequestPtr request) override;
  bool TryEnqueue(RequestPtr& request) override;
  void EnqueueDeferred(RequestPtr request) override;
  void Wake() override;
  // Any idle instance takes the next batch.
  Batch NextBatch(size_t instance) override;
  Batch TryNextBatch() override;
  void Stop() override;
  size_t pending() const override;

 private:
  struct Level {
    QueuePolicy policy;
    std::deque<RequestPtr> ready;
    std::deque<RequestPtr> delayed;  // timed out with timeout_action DELAY
    size_t size() const { return ready.size() + delayed.size(); }
  };

  // Wakes the reaper: a queued request was cancelled, or an earlier deadline was queued.
  class Reaper : public CancelListener {
   public:
    void OnCancel() noexcept override;
    // Asks for a sweep by `at_ns` (0: at once).
    void WakeBy(uint64_t at_ns);
    // Waits for the next sweep; false once stopped.
    bool Wait();
    void Sweeping(uint64_t next_deadline_ns);  // the next deadline after a sweep (0: none)
    void Stop();
   private:
    std::mutex mu_;  // a leaf lock: taken under DynamicBatcher::mu_, never the other way
    std::condition_variable cv_;
    bool dirty_ = false;
    bool stop_ = false;
    uint64_t wake_ns_ = 0;  // 0: no deadline
  };

  const QueuePolicy& PolicyOf(uint64_t level) const;
  // The level a request of `priority` queues at, created when it holds nothing yet.
  Level& LevelOf(uint64_t priority);
  // Drops a level that holds no request (never the default level).
  void DropIfEmpty(std::map<uint64_t, Level>::iterator it);
  bool Add(RequestPtr& request, bool wait);
  // Takes cancelled requests out (to `dropped`, answered CANCELLED once the lock is released),
  // delays timed-out requests or takes them out (to `dropped`, answered with the timeout
  // error); returns the earliest remaining deadline (0: none).
  uint64_t Sweep(uint64_t now, std::vector<std::pair<RequestPtr, Status>>* dropped);
  void FailDropped(std::vector<std::pair<RequestPtr, Status>>* dropped);  // without mu_
  void ReapLoop();
  void StartReaper();  // with the first request
  // Decides what to send now. Returns false and sets *wake_ns when it should wait.
  bool FormBatch(uint64_t now, Batch* batch, uint64_t* wake_ns);
  RequestPtr PopFront();

  const std::string model_name_;
  const bool batching_;
  const int64_t max_batch_size_;
  const std::vector<int64_t> preferred_;
  const int64_t max_preferred_;  // the largest preferred size (max_batch_size without any)
  const uint64_t max_queue_delay_ns_;
  const uint64_t priority_levels_;  // 0: one level (0)
  const uint64_t default_level_;
  const QueuePolicy default_policy_;
  const std::map<uint64_t, QueuePolicy> priority_policies_;
  ModelStats* stats_;
  const std::vector<std::string> ragged_inputs_;  // allow_ragged_batch: shapes may differ

  // Held only for queue bookkeeping: no sink calls, no Python and no release of a request
  // under it (the rule in scheduling/scheduler.h).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // By priority, highest (1) first: the levels that hold requests, and the default level.
  std::map<uint64_t, Level> levels_;
  std::atomic<size_t> queued_{0};  // read without the lock by a spinning worker
  std::atomic<bool> spinner_{false};  // at most one idle worker spins at a time
  uint64_t next_sequence_ = 0;
  bool stopping_ = false;
  const std::shared_ptr<Reaper> reaper_ = std::make_shared<Reaper>();
  std::once_flag reaper_started_;
  std::thread reaper_thread_;  // started by the first request (StartReaper)
};

}  // namespace tritonlite
