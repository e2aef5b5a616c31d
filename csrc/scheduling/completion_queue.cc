#include "scheduling/completion_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>

#include "util/spin_wait.h"
#ifdef __linux__
#include <sys/eventfd.h>
#endif

namespace tritonlite {

CompletionQueue::CompletionQueue() {
#ifdef __linux__
  read_fd_ = write_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (read_fd_ < 0) {
    throw Error(StatusCode::kInternal, std::string("eventfd failed: ") + std::strerror(errno));
  }
#else
  int fds[2];
  if (pipe(fds) != 0) {
    throw Error(StatusCode::kInternal, std::string("pipe failed: ") + std::strerror(errno));
  }
  for (int fd : fds) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  read_fd_ = fds[0];
  write_fd_ = fds[1];
#endif
}

CompletionQueue::~CompletionQueue() {
  if (read_fd_ >= 0) close(read_fd_);
  if (write_fd_ >= 0 && write_fd_ != read_fd_) close(write_fd_);
}

void CompletionQueue::Complete(InferResponse&& response) {
  std::lock_guard<std::mutex> lock(mu_);
  ready_.push_back(std::move(response));
  if (!signalled_) {
    signalled_ = true;
    uint64_t one = 1;
    // Non-blocking; a full pipe/counter already means "readable", which is all we need.
    ssize_t n = write(write_fd_, &one, write_fd_ == read_fd_ ? sizeof(one) : 1);
    (void)n;
  }
}

std::vector<InferResponse> CompletionQueue::Drain() {
  std::vector<InferResponse> out;
  std::lock_guard<std::mutex> lock(mu_);
  DrainLocked(&out);
  return out;
}

bool CompletionQueue::TryDrain(std::vector<InferResponse>* out) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  DrainLocked(out);
  return true;
}

void CompletionQueue::DrainLocked(std::vector<InferResponse>* out) {
  // Clear the wakeup under the lock: a response pushed after we unlock signals again.
  uint64_t buf[8];
  while (read(read_fd_, buf, sizeof(buf)) > 0) {
  }
  signalled_ = false;
  out->swap(ready_);  // `out` is empty: ready_ is left empty, nothing is released here
}

void BlockingSink::Complete(InferResponse&& response) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool final = response.final;
  responses_.push_back(std::move(response));
  if (final) {
    done_.store(true, std::memory_order_release);
    cv_.notify_all();
  }
}

std::vector<InferResponse> BlockingSink::Wait() {
  SpinUntil([this] { return done_.load(std::memory_order_acquire); });
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_.load(); });
  return std::move(responses_);
}

}  // namespace tritonlite
