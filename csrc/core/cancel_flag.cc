#include "core/cancel_flag.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

#include "util/checked_math.h"

namespace tritonlite {

CancelBoard::CancelBoard(int fd, size_t slots) : slots_(slots) {
  size_t bytes = 0;
  if (slots == 0 || !CheckedMul(slots, sizeof(uint32_t), &bytes)) {
    throw std::invalid_argument("a cancel board needs between 1 and SIZE_MAX/4 slots");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) throw std::system_error(errno, std::generic_category(), "fstat cancel board");
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) < bytes) {
    // A mapping past the file's end would raise SIGBUS on the first store.
    throw std::invalid_argument("the cancel board's file is smaller than its slots");
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap cancel board");
  words_ = static_cast<std::atomic<uint32_t>*>(p);
}

CancelBoard::~CancelBoard() { munmap(words_, slots_ * sizeof(uint32_t)); }

void CancelFlag::Cancel() noexcept {
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  std::shared_ptr<CancelListener> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (board_) board_->word(slot_).store(1, std::memory_order_release);
    listener = listener_.lock();
  }
  if (listener) listener->OnCancel();
}

void CancelFlag::SetListener(std::weak_ptr<CancelListener> listener) {
  std::shared_ptr<CancelListener> now;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener_ = std::move(listener);
    if (cancelled()) now = listener_.lock();
  }
  if (now) now->OnCancel();  // cancelled before it was queued: the batcher answers it at once
}

void CancelFlag::Mirror(std::shared_ptr<CancelBoard> board, size_t slot) {
  if (board == nullptr || slot >= board->slots()) throw std::out_of_range("cancel board slot out of range");
  std::lock_guard<std::mutex> lock(mu_);
  if (board_) board_->word(slot_).store(0, std::memory_order_release);
  board_ = std::move(board);
  slot_ = slot;
  board_->word(slot_).store(cancelled() ? 1 : 0, std::memory_order_release);
}

void CancelFlag::Unmirror() {
  std::shared_ptr<CancelBoard> board;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!board_) return;
    board_->word(slot_).store(0, std::memory_order_release);
    board = std::move(board_);
  }
  // `board` (maybe the last reference: an munmap) goes here, without the lock.
}

}  // namespace tritonlite
