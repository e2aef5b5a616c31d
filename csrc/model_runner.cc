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

void ModelRunner::Deliver(uint64_t sequence, Delivery&& responses) {
  if (!spec_.scheduler.preserve_ordering) {
    for (auto& r : responses) r.first->Complete(std::move(r.second));
    return;
  }
  std::lock_guard<std::mutex> lock(order_mu_);
  held_.emplace(sequence, std::move(responses));
  for (auto it = held_.begin(); it != held_.end() && it->first == next_delivery_;
       it = held_.erase(it), ++next_delivery_) {
    for (auto& r : it->second) r.first->Complete(std::move(r.second));
  }
}

}  // namespace tritonlite
