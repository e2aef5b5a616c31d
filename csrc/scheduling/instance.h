// InstanceWorker: one model instance = one thread with its own backend instance. It pulls batches
// from the model's batcher, gathers their inputs (no copy for a single request), runs the
// backend, scatters outputs back to each request as views, records statistics and hands the
// responses to the runner for delivery. The thread starts with Start (the runner starts its
// workers with the model's first request, or at load when there are warmup samples), so a
// model that was never asked anything costs no thread. Another thread may run ready batches on
// an idle instance (TryRunReady: the gRPC I/O thread on a one-CPU budget), never two at once.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "scheduling/backend.h"
#include "scheduling/rate_limiter.h"
#include "scheduling/scheduler.h"

namespace tritonlite {

class ModelRunner;

// Responses a worker hands out, each with the sink it goes to.
using Delivery = std::vector<std::pair<std::shared_ptr<ResponseSink>, InferResponse>>;

// The worker's place in the rate limiter's queue. A cancel listener for the requests of the
// batch it waits with: a cancellation wakes the worker, which answers the cancelled requests at
// once (held weakly by the requests' flags: it may outlive the wait, never the worker's use).
class ResourceWait : public CancelListener {
 public:
  explicit ResourceWait(std::shared_ptr<RateLimiter> limiter) : limiter_(std::move(limiter)) {}
  void OnCancel() noexcept override { limiter_->Poke(&waiter_); }
  RateLimiter& limiter() { return *limiter_; }
  RateLimiter::Waiter* waiter() { return &waiter_; }

 private:
  std::shared_ptr<RateLimiter> limiter_;
  RateLimiter::Waiter waiter_;
};

// Whether the calling thread is an instance's own worker (false on a thread that runs a batch
// in TryRunReady: the gRPC I/O thread). A backend whose execute waits for long on such a thread
// hands the wait to a thread of its own (the python backend's stub mode).
bool OnInstanceThread();

class InstanceWorker {
 public:
  // `rate_limit`: the instance's rate limiter registration (null: not rate limited), whose
  // id number `index` is this instance's.
  InstanceWorker(ModelRunner* runner, size_t index, std::unique_ptr<InstanceBackend> backend,
                 const RateLimitRegistration* rate_limit = nullptr);
  ~InstanceWorker();
  InstanceWorker(const InstanceWorker&) = delete;
  InstanceWorker& operator=(const InstanceWorker&) = delete;

  // Starts the thread (once; the runner serializes calls). Join starts it first when it never
  // ran, so the backend's Start and Close always run on the worker's own thread.
  void Start();
  void Join();

  // On the calling thread, while this instance is idle and serving (started, warmed up, not
  // closing): runs the batches `scheduler` has ready now, until it has none or those run hold
  // as many requests as were pending on entry (later arrivals are a worker's). False (nothing
  // run) when the instance is busy or not serving. For a backend that runs on any thread.
  bool TryRunReady(Scheduler& scheduler);
  // Whether a batch of this instance is running now (on its worker or in TryRunReady).
  bool running() const { return running_.load(std::memory_order_relaxed); }

 private:
  void Run();
  // One batch from the scheduler: cancelled requests answered, rate limiter resources taken,
  // run, delivered. Called with run_mu_ held.
  void RunBatch(Batch& batch);
  // Answers the batch's cancelled requests (CANCELLED) and takes them out; true when none is
  // left to run.
  bool DropCancelled(Batch& batch);
  // Waits until the rate limiter allocates the instance's resources (true: release them after
  // the batch ran), answering requests cancelled meanwhile; false when none is left to run.
  bool AcquireResources(Batch& batch);
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
  std::shared_ptr<ResourceWait> wait_;  // null: not rate limited
  uint64_t limiter_id_ = 0;
  bool started_ = false;
  // Held while a batch runs (by the worker, or by a thread in TryRunReady): the backend runs
  // one batch at a time. serving_: batches may run (written under run_mu_).
  std::mutex run_mu_;
  std::atomic<bool> serving_{false};
  std::atomic<bool> running_{false};  // set by RunBatch while it runs (read without run_mu_)
  std::thread thread_;
};

}  // namespace tritonlite
