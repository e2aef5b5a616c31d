// InflatePool: decompresses request messages (grpc-encoding gzip / deflate) on threads of its
// own, so that inflating a message (up to the maximum message size: 64 MiB by default) never
// stalls an I/O thread and every connection on it. Each result, the message or the gRPC status
// that refuses it, goes back to the call's I/O thread through its outbox
// (Outbound::Kind::kInflated); the connection keeps the call's later messages in order behind
// it. Threads start with the first job. Jobs of calls that ended meanwhile are skipped, and the
// compressed bytes waiting are bounded (a peer could otherwise queue work faster than two
// threads inflate it, ending each call at once). Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/grpc/outbox.h"
#include "transport/grpc/protocol.h"

namespace tritonlite {
namespace grpc {

class InflatePool {
 public:
  struct Job {
    CallAddress address;      // where the result goes
    std::string encoding;     // grpc-encoding of the message
    MessagePtr compressed;
    size_t max_bytes = 0;     // the most the message may inflate to
    std::shared_ptr<std::atomic<bool>> cancelled;  // set when the call ends; may be null
  };

  // Compressed bytes that may wait for a thread, over all connections.
  static constexpr size_t kDefaultMaxQueuedBytes = size_t{512} << 20;

  explicit InflatePool(int threads = 2, size_t max_queued_bytes = kDefaultMaxQueuedBytes)
      : thread_count_(threads < 1 ? 1 : threads), max_queued_bytes_(max_queued_bytes) {}
  // Drops the jobs not started and joins the threads.
  ~InflatePool();
  InflatePool(const InflatePool&) = delete;
  InflatePool& operator=(const InflatePool&) = delete;

  // Queues a job; false (and nothing queued) when the bytes waiting would pass the limit.
  bool Submit(Job job);

 private:
  void Run();

  const int thread_count_;
  const size_t max_queued_bytes_;
  std::mutex mu_;
  size_t queued_bytes_ = 0;  // compressed bytes of jobs_
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace grpc
}  // namespace tritonlite
