// CompletionQueue: responses from worker threads to one consumer thread (the asyncio loop).
// The consumer is woken through a file descriptor at most once per drain, however many
// responses arrive in between; it drains them all in one call.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "core/request.h"

namespace tritonlite {

class CompletionQueue : public ResponseSink {
 public:
  CompletionQueue();
  ~CompletionQueue() override;
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  void Complete(InferResponse&& response) override;
  // All responses ready now (possibly none); re-arms the wakeup.
  std::vector<InferResponse> Drain();
  // Drain without waiting for the lock: false (nothing taken) when a producer holds it, for a
  // caller holding the GIL (which then releases it and calls Drain).
  bool TryDrain(std::vector<InferResponse>* out);
  // Readable when responses are waiting.
  int fd() const { return read_fd_; }

 private:
  // A leaf lock: held only to push or swap the vector (and signal the fd), never while calling
  // out or releasing a response (the rule in scheduling/scheduler.h).
  std::mutex mu_;
  std::vector<InferResponse> ready_;
  bool signalled_ = false;
  int read_fd_ = -1;
  int write_fd_ = -1;  // same as read_fd_ for eventfd

  void DrainLocked(std::vector<InferResponse>* out);
};

// A sink for one blocking caller: Wait() returns once the final response has arrived.
class BlockingSink : public ResponseSink {
 public:
  void Complete(InferResponse&& response) override;
  std::vector<InferResponse> Wait();

 private:
  std::mutex mu_;  // leaf lock, as CompletionQueue's
  std::condition_variable cv_;
  std::vector<InferResponse> responses_;
  std::atomic<bool> done_{false};
};

}  // namespace tritonlite
