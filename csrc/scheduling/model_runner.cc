#include "scheduling/model_runner.h"

#include <optional>
#include <string>

#include "core/validation.h"
#include "scheduling/dynamic_batcher.h"
#include "scheduling/sequence_batcher.h"
#include "util/wakeup_queue.h"

namespace tritonlite {

ModelRunner::ModelRunner(ModelSpec spec, std::vector<std::unique_ptr<InstanceBackend>> backends,
                         std::shared_ptr<ResponseCache> cache, std::vector<WarmupSample> warmup,
                         std::shared_ptr<RateLimitRegistration> rate_limit)
    : spec_(std::move(spec)),
      stats_(std::make_shared<ModelStats>()),
      cache_(std::move(cache)),
      order_(spec_.scheduler.preserve_ordering && spec_.per_request_execution &&
                     !spec_.sequence.enabled
                 ? std::make_shared<ResponseOrder>()
                 : nullptr),
      warmup_(std::move(warmup)),
      rate_limit_(std::move(rate_limit)) {
  if (backends.empty()) {
    throw Error(StatusCode::kInvalidArg, "model '" + spec_.name + "' needs at least one instance");
  }
  // One registration per instance, the runner's first (passive instances, registered after
  // them, only count toward the limits).
  if (rate_limit_ != nullptr && rate_limit_->size() < backends.size()) {
    throw Error(StatusCode::kInvalidArg,
                "model '" + spec_.name + "': " + std::to_string(rate_limit_->size()) +
                    " rate limiter registrations for " + std::to_string(backends.size()) +
                    " instances");
  }
  if (spec_.sequence.enabled) {
    scheduler_ = std::make_unique<SequenceBatcher>(spec_, backends.size(), stats_.get());
  } else {
    scheduler_ = std::make_unique<DynamicBatcher>(spec_, stats_.get());
  }
  runs_ready_ = !spec_.sequence.enabled && !spec_.ensemble && rate_limit_ == nullptr;
  for (const auto& b : backends) runs_ready_ = runs_ready_ && b->RunsOnAnyThread();
  for (size_t i = 0; i < backends.size(); ++i) {
    workers_.push_back(
        std::make_unique<InstanceWorker>(this, i, std::move(backends[i]), rate_limit_.get()));
  }
  // Warmup runs on every instance before the model serves: those threads start now. Without
  // samples they start with the first request (an idle model costs no thread).
  if (!warmup_.empty()) {
    warmup_pending_ = workers_.size();
    StartWorkers();
  }
}

ModelRunner::~ModelRunner() { Stop(); }

void ModelRunner::StartWorkersSlow() {
  std::lock_guard<std::mutex> lock(start_mu_);
  if (workers_started_.load(std::memory_order_relaxed)) return;
  for (auto& w : workers_) w->Start();
  workers_started_.store(true, std::memory_order_release);
}

void ModelRunner::Enqueue(RequestPtr request) {
  ValidateRequest(spec_, request.get());
  if (cache_ != nullptr && ServeFromCache(request)) return;
  StartWorkers();
  scheduler_->Enqueue(std::move(request));
}

void ModelRunner::EnqueueDeferred(RequestPtr request) {
  ValidateRequest(spec_, request.get());
  if (cache_ != nullptr && ServeFromCache(request)) return;
  StartWorkers();  // as Enqueue: a model's first request may come this way
  scheduler_->EnqueueDeferred(std::move(request));
}

namespace {

// A decaying maximum: a larger sample counts at once, a smaller one pulls the estimate down by
// 1/8 of the difference (rounded up, so that it reaches the sample); none yet (max): the sample.
void Decay(std::atomic<uint64_t>& estimate, uint64_t sample) {
  // Instances may race here: a lost update only delays the estimate by a batch.
  const uint64_t old = estimate.load(std::memory_order_relaxed);
  estimate.store(old == UINT64_MAX || sample >= old ? sample : old - (old - sample + 7) / 8,
                 std::memory_order_relaxed);
}

}  // namespace

void ModelRunner::NoteBatch(uint64_t ns, size_t requests) {
  Decay(batch_ns_, ns);
  Decay(batch_requests_, requests);
}

bool ModelRunner::RunReady(bool one_cpu) {
  if (RunsReadyHere(one_cpu) && workers_started()) {
    for (auto& w : workers_) {
      if (w->TryRunReady(*scheduler_)) break;
    }
  }
  // What is left (nothing ready yet, every instance busy, not serving yet): a worker's turn.
  if (scheduler_->pending() == 0) return false;
  scheduler_->Wake();
  if (!workers_started()) return false;
  for (const auto& w : workers_) {
    if (w->running()) return true;
  }
  return false;
}

namespace {

// The sink of a cacheable request that missed: stores its successful response (only a single,
// final one: never part of a stream) and counts the miss, then passes the response on.
class CacheFillSink : public ResponseSink {
 public:
  CacheFillSink(std::shared_ptr<ResponseSink> inner, std::shared_ptr<ResponseCache> cache,
                std::shared_ptr<ModelStats> stats, std::string key, uint64_t lookup_ns)
      : inner_(std::move(inner)), cache_(std::move(cache)), stats_(std::move(stats)),
        key_(std::move(key)), lookup_ns_(lookup_ns) {}

  void Complete(InferResponse&& response) override {
    if (!response.final) {
      partial_ = true;
    } else {
      uint64_t ns = lookup_ns_;
      if (!partial_ && response.status.ok()) {
        const uint64_t start = NowNs();
        try {
          cache_->Insert(key_, response.outputs);
        } catch (const std::exception&) {
          // Out of memory while copying: the response still goes out, uncached.
        }
        ns += NowNs() - start;
      }
      stats_->RecordCacheMiss(ns);
      std::string().swap(key_);
    }
    inner_->Complete(std::move(response));
  }

 private:
  std::shared_ptr<ResponseSink> inner_;
  std::shared_ptr<ResponseCache> cache_;
  std::shared_ptr<ModelStats> stats_;
  std::string key_;
  uint64_t lookup_ns_;
  bool partial_ = false;
};

}  // namespace

bool ModelRunner::ServeFromCache(RequestPtr& request) {
  if (cache_ == nullptr || request->cancelled()) return false;
  const uint64_t start = NowNs();
  try {
    std::optional<std::string> key = ResponseCache::Key(spec_.name, spec_.version, *request);
    if (!key) return false;
    InferResponse response;
    if (cache_->Lookup(*key, &response.outputs)) {
      const uint64_t took = NowNs() - start;
      stats_->RecordCacheHit(took, took);
      response.token = request->token;
      response.keepalive = std::move(request->inputs);
      if (request->trace_id != 0) {  // a traced hit: queued (looked up), never computed
        response.traced = true;
        response.trace.queue_start = start;
      }
      std::shared_ptr<ResponseSink> sink = std::move(request->sink);
      request.reset();
      try {
        sink->Complete(std::move(response));
      } catch (const std::exception&) {
        // A sink out of memory, as in DeliverAll.
      }
      return true;
    }
    request->sink = std::make_shared<CacheFillSink>(std::move(request->sink), cache_, stats_,
                                                    std::move(*key), NowNs() - start);
  } catch (const std::exception&) {
    // No memory for the key or the answer: the request runs uncached.
  }
  return false;
}

void ModelRunner::Validate(InferRequest* request) const { ValidateRequest(spec_, request); }

void ModelRunner::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  scheduler_->Stop();
  StartWorkers();  // a worker that never ran still closes its backend on its own thread
  for (auto& w : workers_) w->Join();
  rate_limit_.reset();  // nothing waits for or holds resources any more
  stopped_ = true;
}

void ModelRunner::WarmupDone(size_t instance, Status status) {
  std::lock_guard<std::mutex> lock(warmup_mu_);
  if (warmup_pending_ == 0) return;  // no samples: the workers started with the first request
  if (!status.ok()) warmup_failures_.emplace(instance, std::move(status));
  if (--warmup_pending_ == 0) warmup_cv_.notify_all();
}

Status ModelRunner::WaitForWarmup() {
  Status result;
  {
    std::unique_lock<std::mutex> lock(warmup_mu_);
    warmup_cv_.wait(lock, [this] { return warmup_pending_ == 0; });
    if (!warmup_failures_.empty()) result = warmup_failures_.begin()->second;
  }
  // Every worker is past the samples: release their tensors (Python-owned ones take the GIL
  // in their deleters), no lock held.
  std::vector<WarmupSample> done;
  if (!warmup_.empty()) done.swap(warmup_);  // never written without samples: lazy workers read it
  return result;
}

StatsSnapshot ModelRunner::Statistics() const {
  StatsSnapshot s = stats_->Snapshot();
  s.pending = scheduler_->pending();
  return s;
}

namespace {
void DeliverAll(Delivery& responses) {
  // Consumers (the gRPC I/O thread's outbox) are woken once, after the last response: the
  // sinks in `responses`, which keep their queues alive, outlive this scope.
  DeferSignals one_wakeup;
  for (auto& r : responses) {
    try {
      r.first->Complete(std::move(r.second));
    } catch (const std::exception&) {
      // A sink out of memory: the other responses still go out.
    }
  }
}
}  // namespace

void ModelRunner::Deliver(uint64_t sequence, Delivery&& responses) {
  if (order_ != nullptr) {  // a per-request batch that runs nothing: it gives up its turn
    std::vector<RequestPtr> none;
    order_->Register(sequence, &none);
    DeliverAll(responses);
    return;
  }
  if (!spec_.scheduler.preserve_ordering) {
    DeliverAll(responses);
    return;
  }
  std::vector<Delivery> next;  // batches next in order, delivered without order_mu_
  std::unique_lock<std::mutex> lock(order_mu_);
  held_.emplace(sequence, std::move(responses));
  if (delivering_) return;  // the delivering thread takes this batch when its turn comes
  delivering_ = true;
  while (true) {
    for (auto it = held_.begin(); it != held_.end() && it->first == next_delivery_;
         it = held_.erase(it), ++next_delivery_) {
      next.push_back(std::move(it->second));
    }
    if (next.empty()) break;
    lock.unlock();
    for (Delivery& d : next) DeliverAll(d);
    next.clear();  // moved-from responses and sinks dropped here, unlocked
    lock.lock();
  }
  delivering_ = false;
}

bool ModelRunner::OrderPerRequest(uint64_t sequence, std::vector<RequestPtr>* requests) {
  if (order_ == nullptr) return false;
  order_->Register(sequence, requests);
  return true;
}

// ---- ResponseOrder ---------------------------------------------------------------------------

class ResponseOrder::PlaceSink : public ResponseSink {
 public:
  PlaceSink(std::shared_ptr<ResponseOrder> order, std::shared_ptr<Place> place)
      : order_(std::move(order)), place_(std::move(place)) {}
  void Complete(InferResponse&& response) override {
    order_->Arrived(place_, std::move(response));
  }

 private:
  const std::shared_ptr<ResponseOrder> order_;
  const std::shared_ptr<Place> place_;
};

void ResponseOrder::Register(uint64_t sequence, std::vector<RequestPtr>* requests) {
  std::vector<std::shared_ptr<Place>> places;
  places.reserve(requests->size());
  for (RequestPtr& r : *requests) {
    auto place = std::make_shared<Place>();
    place->sink = std::move(r->sink);
    r->sink = std::make_shared<PlaceSink>(shared_from_this(), place);
    places.push_back(std::move(place));
  }
  std::unique_lock<std::mutex> lock(mu_);
  early_.emplace(sequence, std::move(places));
  for (auto it = early_.begin(); it != early_.end() && it->first == next_sequence_;
       it = early_.erase(it), ++next_sequence_) {
    for (auto& place : it->second) line_.push_back(std::move(place));
  }
  Flush(lock);
}

void ResponseOrder::Arrived(const std::shared_ptr<Place>& place, InferResponse&& response) {
  std::unique_lock<std::mutex> lock(mu_);
  place->final = place->final || response.final;
  place->waiting.push_back(std::move(response));
  Flush(lock);
}

void ResponseOrder::Flush(std::unique_lock<std::mutex>& lock) {
  if (flushing_) return;  // the flushing thread sends this too when its turn comes
  flushing_ = true;
  // Sent (and dropped: sinks, Python-owned tensors) without the lock.
  std::vector<std::pair<std::shared_ptr<ResponseSink>, InferResponse>> out;
  std::vector<std::shared_ptr<Place>> done;
  while (true) {
    while (!line_.empty()) {
      Place& front = *line_.front();
      for (InferResponse& r : front.waiting) out.emplace_back(front.sink, std::move(r));
      front.waiting.clear();
      if (!front.final) break;
      done.push_back(std::move(line_.front()));
      line_.pop_front();
    }
    if (out.empty() && done.empty()) break;
    lock.unlock();
    for (auto& [sink, response] : out) {
      try {
        sink->Complete(std::move(response));
      } catch (const std::exception&) {
        // A sink out of memory: the responses behind it still go out.
      }
    }
    out.clear();
    done.clear();
    lock.lock();
  }
  flushing_ = false;
}

}  // namespace tritonlite
