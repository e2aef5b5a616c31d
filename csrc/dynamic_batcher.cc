#include "dynamic_batcher.h"

#include <algorithm>
#include <chrono>

#include "checked_math.h"
#include "spin_wait.h"
#include "validation.h"

namespace tritonlite {

DynamicBatcher::DynamicBatcher(const ModelSpec& spec, ModelStats* stats)
    : model_name_(spec.name),
      batching_(spec.scheduler.dynamic_batching && spec.max_batch_size > 0),
      max_batch_size_(spec.max_batch_size),
      preferred_(spec.scheduler.preferred_batch_sizes),
      max_queue_delay_ns_(spec.scheduler.max_queue_delay_us * 1000),
      default_level_(spec.scheduler.default_priority_level),
      stats_(stats) {
  const uint32_t n = std::max<uint32_t>(1, spec.scheduler.priority_levels);
  levels_ = std::vector<Level>(n);  // Level is move-only (deque of unique_ptr): no resize()
  for (uint32_t i = 0; i < n; ++i) {
    auto it = spec.scheduler.priority_policies.find(i + 1);
    levels_[i].policy =
        it != spec.scheduler.priority_policies.end() ? it->second : spec.scheduler.default_policy;
  }
  reaper_thread_ = std::thread([this] { ReapLoop(); });
}

DynamicBatcher::~DynamicBatcher() {
  reaper_->Stop();
  if (reaper_thread_.joinable()) reaper_thread_.join();
}

// ---- the reaper ---------------------------------------------------------------------------

void DynamicBatcher::Reaper::OnCancel() noexcept { WakeBy(0); }

void DynamicBatcher::Reaper::WakeBy(uint64_t at_ns) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (at_ns == 0) {
      dirty_ = true;
    } else if (wake_ns_ == 0 || at_ns < wake_ns_) {
      wake_ns_ = at_ns;
    } else {
      return;  // it wakes by then anyway
    }
  }
  cv_.notify_one();
}

bool DynamicBatcher::Reaper::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_ && !dirty_) {
    if (wake_ns_ == 0) {
      cv_.wait(lock);
      continue;
    }
    const uint64_t now = NowNs();
    if (now >= wake_ns_) break;
    cv_.wait_for(lock, std::chrono::nanoseconds(wake_ns_ - now));
  }
  dirty_ = false;
  wake_ns_ = 0;  // the sweep sets the next one
  return !stop_;
}

void DynamicBatcher::Reaper::Sweeping(uint64_t next_deadline_ns) {
  if (next_deadline_ns != 0) WakeBy(next_deadline_ns);
}

void DynamicBatcher::Reaper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
}

void DynamicBatcher::ReapLoop() {
  std::vector<std::pair<RequestPtr, Status>> dropped;
  while (reaper_->Wait()) {
    uint64_t next = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      next = Sweep(NowNs(), &dropped);
    }
    reaper_->Sweeping(next);
    if (!dropped.empty()) {
      FailDropped(&dropped);
      cv_.notify_all();  // a worker waiting for a batch may have waited on a dropped request
    }
  }
}

size_t DynamicBatcher::LevelIndex(uint32_t priority) const {
  // As Triton: priority 0, or one past the last level, means the model's default level.
  uint32_t level = priority;
  if (level == 0 || level > levels_.size()) level = default_level_;
  if (level == 0 || level > levels_.size()) level = static_cast<uint32_t>(levels_.size());
  return level - 1;
}

void DynamicBatcher::Enqueue(RequestPtr request) { Add(request, true); }

bool DynamicBatcher::TryEnqueue(RequestPtr& request) { return Add(request, false); }

bool DynamicBatcher::Add(RequestPtr& request, bool wait) {
  const uint64_t now = NowNs();
  request->enqueue_ns = now;
  {
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    if (wait) {
      lock.lock();
    } else if (!lock.try_lock()) {
      return false;
    }
    if (stopping_) {
      throw Error(StatusCode::kUnavailable,
                  "model '" + model_name_ + "' is unloading and accepts no new requests");
    }
    Level& level = levels_[LevelIndex(request->priority)];
    if (level.policy.max_queue_size > 0 && level.size() >= level.policy.max_queue_size) {
      // Triton's text.
      throw Error(StatusCode::kUnavailable,
                  RequestIdPrefix(request->id) + "Exceeds maximum queue size");
    }
    // Triton's rule: a request may lower the default timeout, never raise it (nor set one
    // where the policy has none).
    uint64_t timeout_us = level.policy.default_timeout_us;
    if (level.policy.allow_timeout_override && request->timeout_us != 0 &&
        request->timeout_us < timeout_us) {
      timeout_us = request->timeout_us;
    }
    uint64_t timeout_ns = 0;
    if (timeout_us != 0 && !CheckedMul(timeout_us, uint64_t{1000}, &timeout_ns)) timeout_ns = 0;
    request->deadline_ns = (timeout_ns != 0 && timeout_ns <= UINT64_MAX - now) ? now + timeout_ns : 0;
    if (request->deadline_ns != 0) reaper_->WakeBy(request->deadline_ns);
    if (request->cancel != nullptr) request->cancel->SetListener(reaper_);
    level.ready.push_back(std::move(request));
    ++queued_;
  }
  cv_.notify_one();
  return true;
}

uint64_t DynamicBatcher::Sweep(uint64_t now,
                               std::vector<std::pair<RequestPtr, Status>>* dropped) {
  uint64_t earliest = 0;
  for (Level& level : levels_) {
    for (auto* q : {&level.ready, &level.delayed}) {
      for (auto it = q->begin(); it != q->end();) {
        InferRequest& r = **it;
        if (r.cancelled()) {
          stats_->RecordFailure(now - r.enqueue_ns, now - r.enqueue_ns, FailReason::kCanceled);
          dropped->emplace_back(std::move(*it), CancelledStatus());
          it = q->erase(it);
          --queued_;
          continue;
        }
        if (q == &level.delayed || r.deadline_ns == 0 || r.deadline_ns > now) {
          if (r.deadline_ns && (earliest == 0 || r.deadline_ns < earliest)) earliest = r.deadline_ns;
          ++it;
          continue;
        }
        RequestPtr expired = std::move(*it);
        it = q->erase(it);
        if (level.policy.delay_on_timeout) {
          expired->deadline_ns = 0;
          level.delayed.push_back(std::move(expired));
        } else {
          --queued_;
          stats_->RecordFailure(now - expired->enqueue_ns, now - expired->enqueue_ns,
                                FailReason::kRejected);
          dropped->emplace_back(
              std::move(expired),
              Status(StatusCode::kUnavailable, "Request timeout expired: request for model '" +
                                                   model_name_ +
                                                   "' waited longer than its queue timeout"));
        }
      }
    }
  }
  return earliest;
}

void DynamicBatcher::FailDropped(std::vector<std::pair<RequestPtr, Status>>* dropped) {
  for (auto& d : *dropped) d.first->FailFromScheduler(d.second);
  dropped->clear();  // the requests (their sinks) go here, without the lock
}

RequestPtr DynamicBatcher::PopFront() {
  for (Level& level : levels_) {
    for (auto* q : {&level.ready, &level.delayed}) {
      if (!q->empty()) {
        RequestPtr r = std::move(q->front());
        q->pop_front();
        --queued_;
        return r;
      }
    }
  }
  return nullptr;
}

bool DynamicBatcher::FormBatch(uint64_t now, Batch* batch, uint64_t* wake_ns) {
  if (!batching_) {
    RequestPtr r = PopFront();
    batch->batch_size = r->batch_size;
    batch->requests.push_back(std::move(r));
    return true;
  }
  // Candidates in queue order: priority levels first to last, each level's on-time requests
  // before its delayed ones; stop at the first request that does not fit.
  const InferRequest* first = nullptr;
  int64_t total = 0;
  size_t count = 0, preferred_count = 0;
  int64_t preferred_total = 0;
  bool stop = false;
  for (Level& level : levels_) {
    for (auto* q : {&level.ready, &level.delayed}) {
      for (const RequestPtr& r : *q) {
        if (first == nullptr) {
          first = r.get();
        } else if (!ShapesCompatible(*first, *r) || total + r->batch_size > max_batch_size_) {
          stop = true;
          break;
        }
        total += r->batch_size;
        ++count;
        if (std::find(preferred_.begin(), preferred_.end(), total) != preferred_.end()) {
          preferred_count = count;
          preferred_total = total;
        }
      }
      if (stop) break;
    }
    if (stop) break;
  }
  size_t take = 0;
  if (preferred_count > 0) {
    take = preferred_count;  // a preferred size can be formed now: send it
    total = preferred_total;
  } else if (total >= max_batch_size_ || stop || stopping_ ||
             now >= first->enqueue_ns + max_queue_delay_ns_) {
    take = count;  // full, can't grow (next request doesn't fit), or waited long enough
  } else {
    *wake_ns = first->enqueue_ns + max_queue_delay_ns_;
    return false;
  }
  batch->batch_size = total;
  for (size_t i = 0; i < take; ++i) batch->requests.push_back(PopFront());
  return true;
}

Batch DynamicBatcher::NextBatch(size_t /*instance*/) {
  // Failed without the lock; empty (no allocation) unless used.
  std::vector<std::pair<RequestPtr, Status>> dropped;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const uint64_t now = NowNs();
    uint64_t wake = Sweep(now, &dropped);
    if (!dropped.empty()) {
      lock.unlock();
      FailDropped(&dropped);
      lock.lock();
      continue;
    }
    if (queued_ == 0) {
      if (stopping_) return Batch{};
    } else {
      Batch batch;
      uint64_t batch_wake = 0;
      if (FormBatch(now, &batch, &batch_wake)) {
        batch.sequence = next_sequence_++;
        const bool more = queued_ > 0;
        lock.unlock();
        if (more) cv_.notify_one();  // another idle worker can form the next batch
        return batch;
      }
      if (wake == 0 || batch_wake < wake) wake = batch_wake;
    }
    if (wake == 0) {
      // Idle: one worker spins briefly for the next request (cheaper than a wakeup), the
      // others sleep.
      if (!stopping_ && !spinner_.exchange(true)) {
        lock.unlock();
        const bool got = SpinUntil([this] { return queued_.load(std::memory_order_acquire) > 0; });
        spinner_.store(false);
        lock.lock();
        if (got) continue;
      }
      if (queued_ == 0 && !stopping_) cv_.wait(lock);
    } else {
      const uint64_t now2 = NowNs();
      if (wake > now2) cv_.wait_for(lock, std::chrono::nanoseconds(wake - now2));
    }
  }
}

void DynamicBatcher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

size_t DynamicBatcher::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

}  // namespace tritonlite
