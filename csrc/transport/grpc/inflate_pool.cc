#include "transport/grpc/inflate_pool.h"

#include <pthread.h>

#include <utility>

#include "transport/grpc/compression.h"

namespace tritonlite {
namespace grpc {

InflatePool::~InflatePool() {
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    dropped.swap(jobs_);
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

bool InflatePool::Submit(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return true;  // shutting down: the call ends with its connection
    const size_t size = job.compressed->size();
    if (size > max_queued_bytes_ - queued_bytes_) return false;  // queued_bytes_ <= the max
    queued_bytes_ += size;
    jobs_.push_back(std::move(job));
    if (threads_.size() < static_cast<size_t>(thread_count_)) {
      threads_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "grpc-inflate");
        Run();
      });
    }
  }
  cv_.notify_one();
  return true;
}

void InflatePool::Run() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      queued_bytes_ -= job.compressed->size();
    }
    if (job.cancelled && job.cancelled->load()) continue;  // nobody waits for it any more
    Outbound out;
    out.connection_id = job.address.connection_id;
    out.stream_id = job.address.stream_id;
    out.kind = Outbound::Kind::kInflated;
    std::string plain;
    switch (Decompress(job.encoding, job.compressed->data(), job.compressed->size(),
                       job.max_bytes, &plain)) {
      case DecompressResult::kOk:
        out.inflated = std::make_shared<MessageBuffer>(std::move(plain));
        break;
      case DecompressResult::kTooLarge:
        out.status = GrpcStatus::kResourceExhausted;
        out.message = "Received message larger than max (decompressed beyond " +
                      std::to_string(job.max_bytes) + " bytes)";
        break;
      case DecompressResult::kCorrupt:
        out.status = GrpcStatus::kInternal;
        out.message = "could not decompress a '" + job.encoding + "' message";
        break;
    }
    job.compressed.reset();
    job.address.outbox->Post(std::move(out));  // dropped when the I/O thread is gone
  }
}

}  // namespace grpc
}  // namespace tritonlite
