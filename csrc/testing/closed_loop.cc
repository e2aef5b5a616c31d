#include "testing/closed_loop.h"

namespace tritonlite {

ClosedLoop::ClosedLoop(std::shared_ptr<ModelRunner> runner, NamedTensors inputs, double seconds)
    : runner_(std::move(runner)), inputs_(std::move(inputs)), seconds_(seconds) {}

ClosedLoopResult ClosedLoop::Run(int concurrency) {
  start_ns_ = NowNs();
  deadline_ns_ = start_ns_ + static_cast<uint64_t>(seconds_ * 1e9);
  started_.assign(static_cast<size_t>(concurrency), 0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ = concurrency;
  }
  for (int i = 0; i < concurrency; ++i) {
    started_[static_cast<size_t>(i)] = NowNs();
    auto r = std::make_unique<InferRequest>();
    r->token = static_cast<uint64_t>(i);
    r->inputs = inputs_;  // views of the same buffers: no copies
    r->sink = shared_from_this();
    runner_->Enqueue(std::move(r));
  }
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return in_flight_ == 0; });
  result_.elapsed_s = static_cast<double>(NowNs() - start_ns_) / 1e9;
  return std::move(result_);
}

void ClosedLoop::Complete(InferResponse&& response) {
  const uint64_t now = NowNs();
  const size_t slot = static_cast<size_t>(response.token);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (response.status.ok()) {
      ++result_.completed;
      result_.latencies_ns.push_back(now - started_[slot]);
    } else {
      ++result_.errors;
    }
    if (now >= deadline_ns_) {
      if (--in_flight_ == 0) done_.notify_all();
      return;
    }
    started_[slot] = now;
  }
  auto r = std::make_unique<InferRequest>();
  r->token = slot;
  r->inputs = inputs_;
  r->sink = shared_from_this();
  try {
    runner_->Enqueue(std::move(r));
  } catch (const Error&) {
    std::lock_guard<std::mutex> lock(mu_);
    ++result_.errors;
    if (--in_flight_ == 0) done_.notify_all();
  }
}

}  // namespace tritonlite
