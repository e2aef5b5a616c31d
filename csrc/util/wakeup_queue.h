// WakeupQueue<T>: items from any thread to one consumer thread that watches a file descriptor
// (an eventfd). The descriptor is signalled at most once per drain, however many items arrive
// in between, and the consumer takes them all in one Drain(). Posts after Close() are dropped.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"

namespace tritonlite {

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
    if (!signalled_) {
      signalled_ = true;
      Signal();
    }
    return true;
  }

  // Wakes the consumer without an item (e.g. to look at a command flag).
  void Wake() { Signal(); }

  std::vector<T> Drain() {
    std::vector<T> out;
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t counter = 0;
    ssize_t n = read(fd_, &counter, sizeof(counter));  // clears the eventfd
    (void)n;
    signalled_ = false;
    out.swap(items_);
    return out;
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
