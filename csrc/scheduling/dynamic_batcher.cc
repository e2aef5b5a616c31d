#include "scheduling/dynamic_batcher.h"

#include <algorithm>
#include <chrono>

#include "core/validation.h"
#include "scheduling/ragged.h"
#include "util/checked_math.h"
#include "util/spin_wait.h"

namespace tritonlite {

namespace {

// Microseconds from the config as nanoseconds, wrapping as Triton's 64-bit arithmetic does
// (2**64-1 µs is about forever; 18446744073709552 µs wraps to 384 ns).
uint64_t UsToNs(uint64_t us) { return us * 1000; }

// t + d, saturating.
uint64_t AddNs(uint64_t t, uint64_t d) { return d > UINT64_MAX - t ? UINT64_MAX : t + d; }

// How long to wait from `now` until `at`: at most an hour at a time (a far deadline is looked
// at again then), so the duration never overflows the clock's arithmetic.
std::chrono::nanoseconds Until(uint64_t at, uint64_t now) {
  constexpr uint64_t kMaxWaitNs = uint64_t{3600} * 1000 * 1000 * 1000;
  return std::chrono::nanoseconds(std::min(at - now, kMaxWaitNs));
}

}  // namespace

DynamicBatcher::DynamicBatcher(const ModelSpec& spec, ModelStats* stats)
    : model_name_(spec.name),
      batching_(spec.scheduler.dynamic_batching && spec.max_batch_size > 0),
      max_batch_size_(spec.max_batch_size),
      preferred_(spec.scheduler.preferred_batch_sizes),
      // Triton: no preferred sizes means max_batch_size is the one preferred size.
      max_preferred_(preferred_.empty()
                         ? spec.max_batch_size
                         : *std::max_element(preferred_.begin(), preferred_.end())),
      max_queue_delay_ns_(UsToNs(spec.scheduler.max_queue_delay_us)),
      priority_levels_(spec.scheduler.priority_levels),
      default_level_(spec.scheduler.priority_levels == 0 ? 0
                                                         : spec.scheduler.default_priority_level),
      default_policy_(spec.scheduler.default_policy),
      priority_policies_(spec.scheduler.priority_policies),
      stats_(stats),
      ragged_inputs_(RaggedInputNames(spec)) {
  levels_.emplace(default_level_, Level{PolicyOf(default_level_)});  // kept while loaded
}

void DynamicBatcher::StartReaper() {
  // Its work (timeouts, cancellations) only exists once a request was queued: an idle model
  // costs no thread. call_once's wait is only for another caller's thread start (no lock of
  // ours, never the GIL).
  std::call_once(reaper_started_, [this] { reaper_thread_ = std::thread([this] { ReapLoop(); }); });
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
    cv_.wait_for(lock, Until(wake_ns_, now));
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

const QueuePolicy& DynamicBatcher::PolicyOf(uint64_t level) const {
  auto it = priority_policies_.find(level);
  return it != priority_policies_.end() ? it->second : default_policy_;
}

DynamicBatcher::Level& DynamicBatcher::LevelOf(uint64_t priority) {
  // As Triton: priority 0, or one past the last level, means the model's default level; without
  // priority levels every request is at the one level (0). Levels exist while they hold
  // requests (there may be 2**64-1 of them), the default level always.
  const uint64_t level =
      priority == 0 || priority > priority_levels_ ? default_level_ : priority;
  auto it = levels_.find(level);
  if (it == levels_.end()) it = levels_.emplace(level, Level{PolicyOf(level)}).first;
  return it->second;
}

void DynamicBatcher::DropIfEmpty(std::map<uint64_t, Level>::iterator it) {
  if (it->first != default_level_ && it->second.size() == 0) levels_.erase(it);
}

void DynamicBatcher::Enqueue(RequestPtr request) {
  Add(request, true);
  cv_.notify_one();
}

bool DynamicBatcher::TryEnqueue(RequestPtr& request) {
  if (!Add(request, false)) return false;
  cv_.notify_one();
  return true;
}

void DynamicBatcher::EnqueueDeferred(RequestPtr request) { Add(request, true); }

void DynamicBatcher::Wake() { cv_.notify_one(); }

bool DynamicBatcher::Add(RequestPtr& request, bool wait) {
  StartReaper();
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
    Level& level = LevelOf(request->priority);
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
    // As Triton: the deadline in 64-bit nanoseconds, wrapping. A timeout past 2**64 ns (about
    // 584 years) wraps to a short or an already past deadline: such requests time out at once.
    request->deadline_ns = 0;
    if (timeout_us != 0) {
      const uint64_t deadline = now + timeout_us * 1000;  // unsigned: wraps as Triton's
      request->deadline_ns = deadline == 0 ? 1 : deadline;
    }
    if (request->deadline_ns != 0) reaper_->WakeBy(request->deadline_ns);
    if (request->cancel != nullptr) request->cancel->SetListener(reaper_);
    level.ready.push_back(std::move(request));
    ++queued_;
  }
  return true;
}

uint64_t DynamicBatcher::Sweep(uint64_t now,
                               std::vector<std::pair<RequestPtr, Status>>* dropped) {
  uint64_t earliest = 0;
  for (auto level_it = levels_.begin(); level_it != levels_.end();) {
    Level& level = level_it->second;
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
          // Triton's text, exactly.
          dropped->emplace_back(std::move(expired),
                                Status(StatusCode::kUnavailable, "Request timeout expired"));
        }
      }
    }
    DropIfEmpty(level_it++);
  }
  return earliest;
}

void DynamicBatcher::FailDropped(std::vector<std::pair<RequestPtr, Status>>* dropped) {
  for (auto& d : *dropped) d.first->FailFromScheduler(d.second);
  dropped->clear();  // the requests (their sinks) go here, without the lock
}

RequestPtr DynamicBatcher::PopFront() {
  for (auto it = levels_.begin(); it != levels_.end(); ++it) {
    for (auto* q : {&it->second.ready, &it->second.delayed}) {
      if (!q->empty()) {
        RequestPtr r = std::move(q->front());
        q->pop_front();
        --queued_;
        DropIfEmpty(it);
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
  // Triton's rule (dynamic_batch_scheduler): walk the queue in order (priority levels first to
  // last, each level's on-time requests before its delayed ones) and stop at the first request
  // that does not fit (over max_batch_size, or a different shape). The batch to send now is the
  // longest prefix whose size is a preferred size, or, failing that, the prefix just before the
  // request that would pass the largest preferred size. Without either, everything walked goes
  // once it cannot grow past the largest preferred size or the oldest has waited
  // max_queue_delay; otherwise wait.
  const InferRequest* first = nullptr;
  int64_t total = 0;
  size_t count = 0, best_count = 0;
  uint64_t oldest_ns = 0;
  bool send_now = false;
  for (auto& [priority, level] : levels_) {
    for (auto* q : {&level.ready, &level.delayed}) {
      for (const RequestPtr& r : *q) {
        const int64_t rows = std::max<int64_t>(1, r->batch_size);
        if (first == nullptr) {
          first = r.get();
          oldest_ns = r->enqueue_ns;
        } else {
          if (best_count == 0 && total + rows > max_preferred_) {
            best_count = count;  // adding it would pass every preferred size
          }
          if (total + rows > max_batch_size_ ||
              !ShapesCompatible(*first, *r, ragged_inputs_)) {
            send_now = true;
            break;
          }
        }
        total += rows;
        ++count;
        oldest_ns = std::min(oldest_ns, r->enqueue_ns);
        if (std::find(preferred_.begin(), preferred_.end(), total) != preferred_.end()) {
          best_count = count;
        }
      }
      if (send_now) break;
    }
    if (send_now) break;
  }
  const bool delay_exceeded =
      max_queue_delay_ns_ != 0 && now > oldest_ns && now - oldest_ns >= max_queue_delay_ns_;
  size_t take = 0;
  if (best_count > 0 && !delay_exceeded) {
    take = best_count;  // a preferred size (or the most that stays within them): send it
  } else if (send_now || total >= max_preferred_ || delay_exceeded || max_queue_delay_ns_ == 0 ||
             stopping_) {
    take = count;  // can't grow (usefully), or waited long enough
  } else {
    *wake_ns = AddNs(oldest_ns, max_queue_delay_ns_);
    return false;
  }
  batch->requests.reserve(take);
  for (size_t i = 0; i < take; ++i) {
    batch->requests.push_back(PopFront());
    batch->batch_size += batch->requests.back()->batch_size;
  }
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
      // Idle: one worker spins briefly for the next request (cheaper than a wakeup) when the
      // CPU budget allows (util/spin_wait.h), the others sleep.
      if (ProcessSpin().ns > 0 && !stopping_ && !spinner_.exchange(true)) {
        lock.unlock();
        const bool got = SpinUntil([this] { return queued_.load(std::memory_order_acquire) > 0; });
        spinner_.store(false);
        lock.lock();
        if (got) continue;
      }
      if (queued_ == 0 && !stopping_) cv_.wait(lock);
    } else {
      const uint64_t now2 = NowNs();
      if (wake > now2) cv_.wait_for(lock, Until(wake, now2));
    }
  }
}

Batch DynamicBatcher::TryNextBatch() {
  std::vector<std::pair<RequestPtr, Status>> dropped;  // failed without the lock
  Batch batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t now = NowNs();
    Sweep(now, &dropped);
    uint64_t wake = 0;
    if (queued_ > 0 && FormBatch(now, &batch, &wake)) batch.sequence = next_sequence_++;
  }
  if (!dropped.empty()) {
    FailDropped(&dropped);
    cv_.notify_all();  // as ReapLoop: a worker may have waited on a dropped request
  }
  return batch;
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
