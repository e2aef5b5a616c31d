#include "scheduling/rate_limiter.h"

#include <algorithm>
#include <limits>
#include <set>

#include "core/status.h"

namespace tritonlite {

RateLimiter::RateLimiter(std::vector<ExplicitResource> explicit_resources)
    : explicit_(std::move(explicit_resources)) {}

std::map<RateLimiter::Key, uint64_t> RateLimiter::Limits(
    const std::map<uint64_t, Instance>& instances) const {
  std::map<Key, uint64_t> limits;
  for (const auto& kv : instances) {
    for (const auto& need : kv.second.needs) {
      uint64_t& limit = limits[need.first];
      limit = std::max(limit, need.second);
    }
  }
  // Triton's order: the explicit counts first, then global-versus-device conflicts.
  if (!explicit_.empty()) {
    for (auto& kv : limits) {
      uint64_t count = 0;  // a resource the command line does not name has none
      for (const ExplicitResource& e : explicit_) {
        if (e.name != kv.first.second) continue;
        // A global resource takes the name's count on any device; a device resource its own
        // device's count or the every-device one.
        if (kv.first.first == kGlobal || e.device == ExplicitResource::kEveryDevice ||
            e.device == kv.first.first) {
          count = std::max(count, e.count);
        }
      }
      if (count < kv.second) {
        throw Error(StatusCode::kInvalidArg,
                    "Resource count for \"" + kv.first.second + "\" is limited to " +
                        std::to_string(count) +
                        " which will prevent scheduling of one or more model instances, the "
                        "minimum required count is " +
                        std::to_string(kv.second));
      }
      kv.second = count;
    }
  }
  for (const auto& global : limits) {
    if (global.first.first != kGlobal) continue;
    for (const auto& device : limits) {
      if (device.first.first != kGlobal && device.first.second == global.first.second) {
        throw Error(StatusCode::kInvalidArg,
                    "Resource \"" + device.first.second +
                        "\" is present as both global and device-specific resource in the "
                        "model configuration.");
      }
    }
  }
  return limits;
}

std::vector<uint64_t> RateLimiter::Register(const std::vector<InstanceRateLimit>& instances) {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<uint64_t, Instance> candidate = instances_;
  std::vector<uint64_t> ids;
  for (const InstanceRateLimit& config : instances) {
    Instance instance;
    instance.priority = std::max<uint32_t>(config.priority, 1);
    for (const RateLimitResource& r : config.resources) {
      // As Triton: a name listed twice keeps its last count.
      instance.needs[Key(r.global ? kGlobal : config.device, r.name)] = r.count;
    }
    const uint64_t id = next_id_++;
    candidate.emplace(id, std::move(instance));
    ids.push_back(id);
  }
  std::map<Key, uint64_t> limits = Limits(candidate);  // throws: nothing changed
  instances_ = std::move(candidate);
  available_ = std::move(limits);
  Dispatch();  // counts may have grown
  return ids;
}

void RateLimiter::Unregister(const std::vector<uint64_t>& ids) {
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t id : ids) instances_.erase(id);
  try {
    available_ = Limits(instances_);
  } catch (const Error&) {
    // Fewer instances ask for less: cannot fail. Keep the counts the others loaded with.
  }
  Dispatch();
}

bool RateLimiter::Fits(const Instance& instance) const {
  for (const auto& need : instance.needs) {
    auto avail = available_.find(need.first);
    auto used = allocated_.find(need.first);
    const uint64_t have = avail == available_.end() ? 0 : avail->second;
    const uint64_t taken = used == allocated_.end() ? 0 : used->second;
    if (taken > have || need.second > have - taken) return false;
  }
  return true;
}

void RateLimiter::Dispatch() {
  if (waiters_.empty()) return;
  auto scaled = [this](const Waiter* w) {
    auto it = instances_.find(w->id_);
    if (it == instances_.end()) return std::numeric_limits<uint64_t>::max();
    const Instance& in = it->second;
    if (in.exec_count != 0 && in.priority > std::numeric_limits<uint64_t>::max() / in.exec_count) {
      return std::numeric_limits<uint64_t>::max();
    }
    return in.exec_count * in.priority;
  };
  std::sort(waiters_.begin(), waiters_.end(), [&](const Waiter* a, const Waiter* b) {
    const uint64_t sa = scaled(a), sb = scaled(b);
    return sa != sb ? sa < sb : a->arrival_ < b->arrival_;
  });
  // In order; a waiter that cannot run reserves what it needs: no later waiter takes any of
  // those resources before it (so it is never starved), while waiters that need none of them
  // still run (an instance that needs no resources is never held back).
  std::set<Key> reserved;
  for (Waiter* w : waiters_) {
    auto it = instances_.find(w->id_);
    if (it == instances_.end()) {  // unregistered while waiting (not done by the runners)
      w->granted_ = true;
      w->cv_.notify_one();
      continue;
    }
    const Instance& in = it->second;
    bool blocked = false;
    for (const auto& need : in.needs) {
      if (need.second != 0 && reserved.count(need.first) != 0) blocked = true;
    }
    if (blocked || !Fits(in)) {
      for (const auto& need : in.needs) {
        if (need.second != 0) reserved.insert(need.first);
      }
      continue;
    }
    for (const auto& need : in.needs) allocated_[need.first] += need.second;
    w->granted_ = true;
    w->cv_.notify_one();
  }
  waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(),
                                [](const Waiter* w) { return w->granted_; }),
                 waiters_.end());
}

bool RateLimiter::Acquire(uint64_t id, Waiter* waiter, const std::function<bool()>& on_poke) {
  std::unique_lock<std::mutex> lock(mu_);
  if (instances_.find(id) == instances_.end()) return true;  // not registered: not limited
  waiter->id_ = id;
  waiter->arrival_ = next_arrival_++;
  waiter->granted_ = false;
  waiter->waiting_ = true;
  waiters_.push_back(waiter);
  Dispatch();
  while (!waiter->granted_) {
    if (waiter->poked_) {
      waiter->poked_ = false;
      lock.unlock();
      bool give_up = false;
      try {
        give_up = on_poke();
      } catch (...) {
        give_up = false;
      }
      lock.lock();
      if (!give_up) continue;
      if (waiter->granted_) {
        lock.unlock();
        Release(id, false);
        lock.lock();
      } else {
        waiters_.erase(std::find(waiters_.begin(), waiters_.end(), waiter));
        Dispatch();  // it may have been holding back the waiters behind it
      }
      waiter->waiting_ = false;
      return false;
    }
    waiter->cv_.wait(lock);
  }
  waiter->waiting_ = false;
  return true;
}

void RateLimiter::Release(uint64_t id, bool executed) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = instances_.find(id);
  if (it == instances_.end()) return;
  for (const auto& need : it->second.needs) {
    uint64_t& used = allocated_[need.first];
    used = used >= need.second ? used - need.second : 0;
  }
  if (executed) ++it->second.exec_count;
  Dispatch();
}

void RateLimiter::Poke(Waiter* waiter) {
  std::lock_guard<std::mutex> lock(mu_);
  waiter->poked_ = true;
  if (waiter->waiting_) waiter->cv_.notify_one();
}

std::map<std::string, uint64_t> RateLimiter::Available() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, uint64_t> out;
  for (const auto& kv : available_) {
    out[kv.first.first == kGlobal ? kv.first.second
                                  : kv.first.second + "@" + std::to_string(kv.first.first)] =
        kv.second;
  }
  return out;
}

size_t RateLimiter::Waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiters_.size();
}

}  // namespace tritonlite
