// ModelRunner: one loaded model version in the core: validation, its batcher, its instance
// workers, statistics, and response delivery (in request order when preserve_ordering is set).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/model_spec.h"
#include "core/stats.h"
#include "scheduling/backend.h"
#include "scheduling/instance.h"
#include "scheduling/rate_limiter.h"
#include "scheduling/response_cache.h"
#include "scheduling/scheduler.h"
#include "util/spin_wait.h"

namespace tritonlite {

// One model_warmup sample: `batch_size` requests with these inputs (each of batch 1 when the
// model batches), run `count` times (at least once) on every instance before it serves.
struct WarmupSample {
  std::string name;
  uint32_t count = 1;
  int64_t batch_size = 1;
  NamedTensors inputs;
};

// preserve_ordering for backends that answer each request themselves (python): as Triton's
// dynamic batcher does, every request gets a place in line when its batch forms, and its
// responses go out only once every request before it sent its final response (a decoupled
// request's responses pass as they come while it is first in line). Held by the requests'
// sinks too: a backend may answer after the runner is gone.
class ResponseOrder : public std::enable_shared_from_this<ResponseOrder> {
 public:
  // Batch `sequence` (formation order, from 0, each exactly once: an empty one for a batch
  // that runs nothing) takes its places in line; its requests' sinks become places.
  void Register(uint64_t sequence, std::vector<RequestPtr>* requests);

 private:
  struct Place {
    std::shared_ptr<ResponseSink> sink;
    std::vector<InferResponse> waiting;
    bool final = false;  // its final response arrived
  };
  class PlaceSink;
  void Arrived(const std::shared_ptr<Place>& place, InferResponse&& response);
  // Sends what is next in line, one thread at a time, sinks called without mu_.
  void Flush(std::unique_lock<std::mutex>& lock);

  std::mutex mu_;
  uint64_t next_sequence_ = 0;
  std::map<uint64_t, std::vector<std::shared_ptr<Place>>> early_;  // batches ahead of their turn
  std::deque<std::shared_ptr<Place>> line_;
  bool flushing_ = false;
};

class ModelRunner {
 public:
  // `cache`: the server's response cache, for a model whose config enables response_cache
  // (null: nothing is cached). With warmup samples, each worker first runs them on its own
  // instance (recorded in the statistics, as Triton does; never cached) and only then takes
  // batches; call WaitForWarmup before letting requests in. `rate_limit`: the instances'
  // registration with the server's rate limiter (null: not rate limited); its first ids are the
  // backends'. Dropped once the workers stopped.
  ModelRunner(ModelSpec spec, std::vector<std::unique_ptr<InstanceBackend>> backends,
              std::shared_ptr<ResponseCache> cache = nullptr,
              std::vector<WarmupSample> warmup = {},
              std::shared_ptr<RateLimitRegistration> rate_limit = nullptr);
  ~ModelRunner();
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  // Validates and queues (or answers from the response cache). Throws INVALID_ARG /
  // UNAVAILABLE; on success the request's sink will receive exactly one final response.
  void Enqueue(RequestPtr request);
  // Enqueue without waking a worker yet (Scheduler::EnqueueDeferred): call Wake() after the
  // last of the requests queued in a row.
  void EnqueueDeferred(RequestPtr request);
  void Wake() { scheduler_->Wake(); }
  // After EnqueueDeferred, instead of Wake: runs the batches that are ready now on the calling
  // thread, on an idle instance, when the model allows it (runs_ready()), then wakes a worker
  // for whatever is left (a batch still waiting for its queue delay, a busy instance, a model
  // that does not run here). The gRPC I/O thread: no hand-off to the worker and back (issue
  // #20). Which models: with `one_cpu` (the caller shares the CPU with the workers) those that
  // execute gathered batches (onnxruntime); on any budget those that execute per request (the
  // python backend, whose worker only relays the batch to the stub process and waits) while
  // their batches are short (short_batches(): the caller's other connections wait meanwhile,
  // and a model.py may take as long as it likes) and held one request each (lone_requests())
  // and one request waits: a lone request pays both hand-offs for nothing, while in a stream of
  // requests the worker batches them as this thread reads and writes the rest (python c=32
  // over gRPC was up to ~12% slower with short batches run here, issue #20: single-request
  // batches run here broke up the worker's). With two or more CPUs a gathered model's
  // batches stay on its worker: the I/O thread keeps reading while the worker runs (measured:
  // add_sub c=32 over gRPC ~9% faster than running them here, issue #20). The caller holds no
  // lock and not the GIL; responses go to the requests' sinks on this thread. True when
  // requests are left queued while one of the model's instances is running a batch on another
  // thread (on one CPU the caller shares it with that batch: see grpc's IoThread).
  bool RunReady(bool one_cpu);
  // Whether RunReady(one_cpu) would try to run batches here now.
  bool RunsReadyHere(bool one_cpu) const {
    if (!runs_ready_) return false;
    if (!spec_.per_request_execution) return one_cpu;
    return short_batches() && lone_requests() && scheduler_->pending() <= 1;
  }
  // Whether RunReady may run batches here: the dynamic batcher (or none), no rate limiter, not
  // an ensemble, and backends that run on any thread.
  bool runs_ready() const { return runs_ready_; }
  // A batch of this model ran for `ns` (on any thread) with `requests` requests: feeds
  // short_batches() and lone_requests().
  void NoteBatch(uint64_t ns, size_t requests);
  // Whether this model's recent batches held one request each (the same kind of estimate as
  // short_batches'): requests that come one at a time, not a stream that the worker batches.
  bool lone_requests() const { return batch_requests_.load(std::memory_order_relaxed) <= 1; }
  // Whether this model's recent batches ran for at most TRITONLITE_INLINE_BATCH_US (default
  // 500 us, util/spin_wait.h): the estimate takes a longer batch at once and comes down by 1/8
  // of the difference per shorter one; none ran yet: false (a model's first batch runs on its
  // worker, and so does a model that was just slow).
  bool short_batches() const {
    return batch_ns_.load(std::memory_order_relaxed) <= short_batch_ns_;
  }
  // For a validated request: true when it was answered from the response cache (the sink got
  // its response, `request` is spent); false when it must run — then, if it is cacheable, its
  // sink is wrapped so that its successful response is stored. Never throws for a cache
  // failure (out of memory: the request simply runs). The caller holds no core lock.
  bool ServeFromCache(RequestPtr& request);
  bool caches_responses() const { return cache_ != nullptr; }
  // The two halves of Enqueue, for a caller holding the GIL: Validate (no lock), then
  // TryEnqueueValidated, which never waits for a lock (false: busy, `request` untouched; then
  // release the GIL and call EnqueueValidated).
  void Validate(InferRequest* request) const;
  bool TryEnqueueValidated(RequestPtr& request) {
    StartWorkers();
    return scheduler_->TryEnqueue(request);
  }
  void EnqueueValidated(RequestPtr request) {
    StartWorkers();
    scheduler_->Enqueue(std::move(request));
  }
  // Stops accepting requests, lets queued and in-flight ones finish, joins the workers.
  // Idempotent. Must be called without holding anything the workers need (e.g. the GIL).
  void Stop();

  StatsSnapshot Statistics() const;
  const ModelSpec& spec() const { return spec_; }
  Scheduler& scheduler() { return *scheduler_; }
  ModelStats& stats() { return *stats_; }
  const std::shared_ptr<ModelStats>& shared_stats() const { return stats_; }
  // Called by workers once per batch, with the batch's formation sequence number.
  void Deliver(uint64_t sequence, Delivery&& responses);
  // For a per-request backend with preserve_ordering, before the batch runs (and instead of
  // Deliver): its requests answer in line (see ResponseOrder); false (nothing done) otherwise.
  bool OrderPerRequest(uint64_t sequence, std::vector<RequestPtr>* requests);
  // Blocks until every worker has run the warmup samples; the first failure (lowest instance
  // index), or success. Releases the samples. Call without holding the GIL.
  Status WaitForWarmup();
  // For workers: the samples (read-only until WaitForWarmup returns), and their result.
  const std::vector<WarmupSample>& warmup_samples() const { return warmup_; }
  void WarmupDone(size_t instance, Status status);
  // Whether the instance threads run (they start with the first request, or at load when
  // there are warmup samples).
  bool workers_started() const { return workers_started_.load(std::memory_order_acquire); }

 private:
  // Starts every instance's thread, once (cheap when they run: one atomic load). Takes only
  // start_mu_ (never held while waiting for anything): safe with the GIL held.
  void StartWorkers() {
    if (!workers_started_.load(std::memory_order_acquire)) StartWorkersSlow();
  }
  void StartWorkersSlow();

  const ModelSpec spec_;
  std::shared_ptr<ModelStats> stats_;  // shared with requests a backend still holds
  const std::shared_ptr<ResponseCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
  // preserve_ordering: batches finished out of order wait in held_. Sinks are never called
  // under order_mu_ (the rule in scheduling/scheduler.h): one thread at a time (delivering_) takes
  // the batches that are next in order out and delivers them after unlocking.
  std::mutex order_mu_;
  uint64_t next_delivery_ = 0;
  bool delivering_ = false;
  std::map<uint64_t, Delivery> held_;
  // preserve_ordering with a per-request backend (null otherwise).
  const std::shared_ptr<ResponseOrder> order_;
  std::mutex stop_mu_;
  bool stopped_ = false;
  std::vector<WarmupSample> warmup_;
  std::mutex warmup_mu_;
  std::condition_variable warmup_cv_;
  size_t warmup_pending_ = 0;
  std::map<size_t, Status> warmup_failures_;  // by instance index
  std::shared_ptr<RateLimitRegistration> rate_limit_;
  std::mutex start_mu_;
  std::atomic<bool> workers_started_{false};
  bool runs_ready_ = false;
  std::atomic<uint64_t> batch_ns_{UINT64_MAX};  // NoteBatch's estimates; none yet: max
  std::atomic<uint64_t> batch_requests_{UINT64_MAX};
  const uint64_t short_batch_ns_ = ProcessInlineBatches().short_ns;
  std::vector<std::unique_ptr<InstanceWorker>> workers_;  // last: started after the rest
};

}  // namespace tritonlite
