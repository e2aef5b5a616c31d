#include "model_runner.h"

#include "dynamic_batcher.h"
#include "sequence_batcher.h"
#include "validation.h"

namespace tritonlite {

ModelRunner::ModelRunner(ModelSpec spec, std::vector<std::unique_ptr<InstanceBackend>> backends)
    : spec_(std::move(spec)), stats_(std::make_shared<ModelStats>()) {
  if (backends.empty()) {
    throw Error(StatusCode::kInvalidArg, "model '" + spec_.name + "' needs at least one instance");
  }
  if (spec_.sequence.enabled) {
    scheduler_ = std::make_unique<SequenceBatcher>(spec_, backends.size(), stats_.get());
  } else {
    scheduler_ = std::make_unique<DynamicBatcher>(spec_, stats_.get());
  }
  for (size_t i = 0; i < backends.size(); ++i) {
    workers_.push_back(std::make_unique<InstanceWorker>(this, i, std::move(backends[i])));
  }
}

ModelRunner::~ModelRunner() { Stop(); }

void ModelRunner::Enqueue(RequestPtr request) {
  ValidateRequest(spec_, request.get());
  scheduler_->Enqueue(std::move(request));
}

void ModelRunner::Validate(InferRequest* request) const { ValidateRequest(spec_, request); }

void ModelRunner::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  scheduler_->Stop();
  for (auto& w : workers_) w->Join();
  stopped_ = true;
}

StatsSnapshot ModelRunner::Statistics() const {
  StatsSnapshot s = stats_->Snapshot();
  s.pending = scheduler_->pending();
  return s;
}

namespace {
void DeliverAll(Delivery& responses) {
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

}  // namespace tritonlite
