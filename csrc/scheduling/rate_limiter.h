// RateLimiter: Triton's rate limiter (--rate-limit execution_count), one per server, shared by
// every model's instance workers. An instance names resources in its instance_group's
// rate_limiter { resources [{name, global, count}], priority }; it may run a batch only while
// it holds all of them. Resources exist per device (an instance draws from its own device's
// copy) unless global. A resource's available count is the largest count any registered
// instance asks for, or what --rate-limit-resource sets (then an instance that asks for more
// fails its load).
//
// Who runs next, as Triton: the waiting instances are ordered by exec_count * priority (priority
// 0 counts as 1; ties in arrival order), so priority 2 gets half the turns of priority 1. A
// waiter whose resources are not free reserves them: no waiter behind it takes any of them
// first, so an instance that needs much is never starved by instances that need little.
// Unlike Triton (which stops at the first waiter that cannot run), waiters that need none of
// the reserved resources still run: instances without resources are never held back (a python
// model that calls one through BLS while it holds a resource cannot deadlock on it). Resources
// are taken all at once or not at all, and a waiter holds nothing while it waits: no deadlock
// among instances. An instance waits only once it holds a batch (it asks when it has work).
//
// Locking: one mutex, a leaf (nothing else is locked, nothing called out under it).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tritonlite {

struct RateLimitResource {
  std::string name;
  bool global = false;
  uint64_t count = 0;
};

// One instance's rate_limiter configuration and where it runs.
struct InstanceRateLimit {
  std::vector<RateLimitResource> resources;
  uint32_t priority = 0;  // 0: as 1
  int device = 0;         // the instance's device (Triton uses 0 for CPU instances)
};

// --rate-limit-resource <name>:<count>[:<device>].
struct ExplicitResource {
  std::string name;
  uint64_t count = 0;
  int device = kEveryDevice;
  static constexpr int kEveryDevice = -1;
};

class RateLimiter {
 public:
  // `explicit_resources` empty: each resource's count is the largest any instance asks for.
  explicit RateLimiter(std::vector<ExplicitResource> explicit_resources = {});
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Registers one model version's instances, all or none. Throws INVALID_ARG (Triton's texts)
  // when a resource is both global and per-device, or when an explicit count is below what an
  // instance asks for. Returns one id per instance.
  std::vector<uint64_t> Register(const std::vector<InstanceRateLimit>& instances);
  // After the instances stopped (none may be waiting or holding resources).
  void Unregister(const std::vector<uint64_t>& ids);

  // A worker's place in the queue; one per worker thread, reused for each batch.
  class Waiter {
   private:
    friend class RateLimiter;
    std::condition_variable cv_;
    uint64_t id_ = 0;
    uint64_t arrival_ = 0;
    bool waiting_ = false;
    bool granted_ = false;
    bool poked_ = false;
  };

  // Blocks until instance `id`'s resources are allocated to it: true (call Release after the
  // batch ran). Each time Poke(waiter) is called meanwhile, `on_poke` runs without the lock; when
  // it returns true the wait is abandoned and Acquire returns false (nothing is held).
  bool Acquire(uint64_t id, Waiter* waiter, const std::function<bool()>& on_poke);
  // Gives back what Acquire allocated; `executed`: the batch ran (counts for the priority).
  void Release(uint64_t id, bool executed = true);
  // Wakes a waiter so that it runs its on_poke (a request of its batch was cancelled). Any
  // thread; takes only the limiter's lock, briefly.
  void Poke(Waiter* waiter);

  // For tests and logs: the available count of every resource ("name" for global ones,
  // "name@device" for device ones).
  std::map<std::string, uint64_t> Available() const;
  // How many instances wait for resources now.
  size_t Waiting() const;

 private:
  static constexpr int kGlobal = -2;
  using Key = std::pair<int, std::string>;  // (device or kGlobal, name)
  struct Instance {
    std::map<Key, uint64_t> needs;
    uint32_t priority = 1;
    uint64_t exec_count = 0;
  };

  // The available counts for `instances` (Triton's UpdateResourceLimits); throws INVALID_ARG.
  std::map<Key, uint64_t> Limits(const std::map<uint64_t, Instance>& instances) const;
  bool Fits(const Instance& instance) const;
  // Grants the waiters that can run, in order (see above); notifies those granted.
  void Dispatch();

  const std::vector<ExplicitResource> explicit_;
  mutable std::mutex mu_;
  std::map<uint64_t, Instance> instances_;
  std::map<Key, uint64_t> available_;
  std::map<Key, uint64_t> allocated_;
  std::vector<Waiter*> waiters_;  // not yet granted
  uint64_t next_id_ = 1;
  uint64_t next_arrival_ = 0;
};

// One model version's instances registered with a RateLimiter; unregisters them when dropped
// (after the instances stopped). Made before the instances exist, so a load that asks for more
// than the server has fails before any instance starts.
class RateLimitRegistration {
 public:
  RateLimitRegistration(std::shared_ptr<RateLimiter> limiter,
                        const std::vector<InstanceRateLimit>& instances)
      : limiter_(std::move(limiter)), ids_(limiter_->Register(instances)) {}
  ~RateLimitRegistration() { limiter_->Unregister(ids_); }
  RateLimitRegistration(const RateLimitRegistration&) = delete;
  RateLimitRegistration& operator=(const RateLimitRegistration&) = delete;

  const std::shared_ptr<RateLimiter>& limiter() const { return limiter_; }
  size_t size() const { return ids_.size(); }
  uint64_t id(size_t instance) const { return ids_.at(instance); }

 private:
  std::shared_ptr<RateLimiter> limiter_;
  std::vector<uint64_t> ids_;
};

}  // namespace tritonlite
