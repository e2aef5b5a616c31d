// InflatePool: decompresses request messages (grpc-encoding gzip / deflate) on threads of its
// own, so that inflating a message (up to the maximum message size: 64 MiB by default) never
// stalls an I/O thread and every connection on it. Each result, the message or the gRPC status
// that refuses it, goes back to the call's I/O thread through its outbox
// (Outbound::Kind::kInflated); the connection keeps the call's later messages in order behind
// it. Threads start with the first job. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "grpc_outbox.h"
#include "grpc_protocol.h"

namespace tritonlite {
namespace grpc {

class InflatePool {
 public:
  struct Job {
    CallAddress address;      // where the result goes
    std::string encoding;     // grpc-encoding of the message
    MessagePtr compressed;
    size_t max_bytes = 0;     // the most the message may inflate to
  };

  explicit InflatePool(int threads = 2) : thread_count_(threads < 1 ? 1 : threads) {}
  // Drops the jobs not started and joins the threads.
  ~InflatePool();
  InflatePool(const InflatePool&) = delete;
  InflatePool& operator=(const InflatePool&) = delete;

  void Submit(Job job);

 private:
  void Run();

  const int thread_count_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace grpc
}  // namespace tritonlite
