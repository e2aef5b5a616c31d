// CancelFlag: whether a request was cancelled, shared by the request and whoever may cancel it
// (a transport's call, a Python future, a deadline). Cancel() may come from any thread; stages
// read cancelled() without a lock. On cancel it wakes a listener (a batcher that answers its
// queued requests at once) and stores 1 into a mirror word (a slot of a CancelBoard that a
// python stub process reads, so a model's is_cancelled() needs no round trip).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

namespace tritonlite {

// Told when a request it holds is cancelled. OnCancel runs on the cancelling thread, which may
// hold the GIL: it must not block on anything but its own short lock, nor call out.
class CancelListener {
 public:
  virtual ~CancelListener() = default;
  virtual void OnCancel() noexcept = 0;
};

// Shared memory words, one per slot, that a python stub reads to see its requests' cancellation.
// Maps the memfd itself; stays mapped while any flag mirrors into it.
class CancelBoard {
 public:
  CancelBoard(int fd, size_t slots);  // throws std::system_error when the map fails
  ~CancelBoard();
  CancelBoard(const CancelBoard&) = delete;
  CancelBoard& operator=(const CancelBoard&) = delete;

  size_t slots() const { return slots_; }
  std::atomic<uint32_t>& word(size_t slot) { return words_[slot]; }

 private:
  std::atomic<uint32_t>* words_ = nullptr;
  size_t slots_ = 0;
};

class CancelFlag {
 public:
  // Idempotent. Wakes the listener and sets the mirror word (outside the flag's lock for the
  // listener, which takes its own).
  void Cancel() noexcept;
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

  // The batcher holding the request (weak: the flag may outlive it).
  void SetListener(std::weak_ptr<CancelListener> listener);
  // Mirrors the flag into `board`'s `slot` (1 at once when already cancelled). Replaces a mirror
  // set before.
  void Mirror(std::shared_ptr<CancelBoard> board, size_t slot);
  // Stops mirroring and clears the slot: once it returns nothing writes the slot any more.
  void Unmirror();

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;  // guards the two below; held for a store, never while calling out
  std::weak_ptr<CancelListener> listener_;
  std::shared_ptr<CancelBoard> board_;
  size_t slot_ = 0;
};

using CancelFlagPtr = std::shared_ptr<CancelFlag>;

}  // namespace tritonlite
