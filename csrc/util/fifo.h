// Fifo<T>: a first-in first-out queue that allocates nothing while empty, neither when made nor
// when moved (libstdc++'s std::deque allocates its map and a 512-byte node on construction and
// again on every move). For the per-stream and per-call queues of the transport, which are
// made for every request and almost always stay empty or hold one item (issue #20: heap churn
// per request). A vector with a read index; the consumed prefix is dropped when it is half the
// vector, so push/pop are amortized O(1).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace tritonlite {

template <typename T>
class Fifo {
 public:
  using iterator = typename std::vector<T>::iterator;
  using const_iterator = typename std::vector<T>::const_iterator;

  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  const T& front() const { return items_[head_]; }
  T& back() { return items_.back(); }

  void push_back(T&& item) { items_.push_back(std::move(item)); }
  void push_back(const T& item) { items_.push_back(item); }

  void pop_front() {
    items_[head_] = T();  // release what it holds now, as std::deque would
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 16 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  void clear() {
    items_.clear();
    head_ = 0;
  }

  iterator begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  const_iterator end() const { return items_.end(); }

 private:
  std::vector<T> items_;
  size_t head_ = 0;
};

}  // namespace tritonlite
