// WakeupQueue<T>: items from any thread to one consumer thread that watches a file descriptor
// (an eventfd). The descriptor is signalled at most once per drain, however many items arrive
// in between, and the consumer takes them all in one Drain(). Posts after Close() are dropped.
// A poster can hold the signal back until it has posted a run of items (DeferSignals); the
// consumer itself, posting while it promises to take the items afterwards (ConsumerPosting),
// does not signal at all.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tritonlite {

// While a DeferSignals scope is open on a thread, a WakeupQueue that this thread posts to is
// signalled once when the (outermost) scope closes instead of at the post: a worker posting
// the responses of a batch wakes the consumer once, after the last, rather than at the first
// (on one core the woken consumer would take the CPU from the worker there, once per response).
// The queues posted to must outlive the scope.
class DeferSignals {
 public:
  DeferSignals() { ++state().depth; }
  ~DeferSignals() {
    State& st = state();
    if (--st.depth > 0) return;
    for (const auto& p : st.pending) p.second(p.first);
    st.pending.clear();
  }
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;

  // True when a scope is open on this thread: then `signal(queue)` runs when it closes.
  static bool Defer(void* queue, void (*signal)(void*)) {
    State& st = state();
    if (st.depth == 0) return false;
    try {
      st.pending.emplace_back(queue, signal);
    } catch (const std::exception&) {
      return false;  // out of memory: signal now
    }
    return true;
  }

 private:
  struct State {
    int depth = 0;
    std::vector<std::pair<void*, void (*)(void*)>> pending;
  };
  static State& state() {
    thread_local State st;
    return st;
  }
};

// While a ConsumerPosting scope for a queue is open on a thread, that thread's posts to the
// queue do not signal it: the thread is the queue's consumer and takes what it posted itself
// (WakeupQueue::TakeQueued) once the scope closes — the gRPC I/O thread running a batch whose
// responses go to its own outbox (a signal would cost a write and a read of the eventfd, and
// one more pass of its event loop). Posts from other threads signal as usual.
class ConsumerPosting {
 public:
  explicit ConsumerPosting(const void* queue) : saved_(current()) { current() = queue; }
  ~ConsumerPosting() { current() = saved_; }
  ConsumerPosting(const ConsumerPosting&) = delete;
  ConsumerPosting& operator=(const ConsumerPosting&) = delete;
  static bool Active(const void* queue) { return current() == queue; }

 private:
  static const void*& current() {
    thread_local const void* queue = nullptr;
    return queue;
  }
  const void* const saved_;
};

template <typename T>
class WakeupQueue {
 public:
  WakeupQueue() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) {
      throw Error(StatusCode::kInternal, std::string("eventfd failed: ") + std::strerror(errno));
    }
  }
  ~WakeupQueue() { close(fd_); }
  WakeupQueue(const WakeupQueue&) = delete;
  WakeupQueue& operator=(const WakeupQueue&) = delete;

  // Returns false (and drops the item) once closed.
  bool Post(T&& item) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    items_.push_back(std::move(item));
    if (!signalled_ && !ConsumerPosting::Active(this)) {
      signalled_ = true;
      if (!DeferSignals::Defer(this, &SignalThunk)) Signal();
    }
    return true;
  }

  // Wakes the consumer without an item (e.g. to look at a command flag).
  void Wake() { Signal(); }

  std::vector<T> Drain() {
    std::vector<T> out;
    DrainInto(&out);
    return out;
  }

  // Drain into `out`, which must be empty: the queue keeps `out`'s storage for the next posts,
  // so a consumer that hands back a cleared vector each time (keeping its capacity) posts and
  // drains without growing a vector from nothing per drain.
  void DrainInto(std::vector<T>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t counter = 0;
    ssize_t n = read(fd_, &counter, sizeof(counter));  // clears the eventfd
    (void)n;
    signalled_ = false;
    out->swap(items_);
  }

  // What is queued, without clearing the signal (for the consumer after a ConsumerPosting
  // scope: a signal another thread gave meanwhile stays, and the next Drain clears it).
  std::vector<T> TakeQueued() {
    std::vector<T> out;
    TakeQueuedInto(&out);
    return out;
  }

  // TakeQueued into `out` (empty), as DrainInto.
  void TakeQueuedInto(std::vector<T>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    out->swap(items_);
  }

  // Drops what is queued and refuses later posts; returns what was dropped, so the caller
  // decides where it is destroyed.
  std::vector<T> Close() {
    std::vector<T> dropped;
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    dropped.swap(items_);
    return dropped;
  }

  int fd() const { return fd_; }

 private:
  static void SignalThunk(void* self) { static_cast<WakeupQueue*>(self)->Signal(); }
  void Signal() {
    const uint64_t one = 1;
    ssize_t n = write(fd_, &one, sizeof(one));  // a saturated counter is still readable
    (void)n;
  }

  std::mutex mu_;
  std::vector<T> items_;
  bool signalled_ = false;
  bool closed_ = false;
  const int fd_;
};

}  // namespace tritonlite
