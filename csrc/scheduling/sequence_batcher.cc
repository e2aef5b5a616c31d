#include "scheduling/sequence_batcher.h"

#include "core/bytes_codec.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace tritonlite {

namespace {
// Triton: each instance has max(1, max_batch_size) slots; oldest with max_candidate_sequences
// has that many per instance.
size_t SlotsPerInstance(const ModelSpec& spec) {
  if (spec.sequence.oldest && spec.sequence.max_candidate_sequences > 0) {
    return spec.sequence.max_candidate_sequences;
  }
  return static_cast<size_t>(std::max<int64_t>(1, spec.max_batch_size));
}

// Bounds what a config can make the batcher allocate (a pointer per slot and instance).
constexpr size_t kMaxSlotsPerInstance = 65536;

// Where a filler request's responses go: nowhere.
class NullSink : public ResponseSink {
 public:
  void Complete(InferResponse&&) override {}
};
bool HasVariableState(const ModelSpec& spec) {
  for (const auto& s : spec.sequence.states) {
    if (std::find(s.dims.begin(), s.dims.end(), -1) != s.dims.end()) return true;
  }
  return false;
}

std::string CorrelationText(const InferRequest& r) {
  return r.correlation_id_str.empty() ? std::to_string(r.correlation_id)
                                      : "'" + r.correlation_id_str + "'";
}
}  // namespace

SequenceBatcher::SequenceBatcher(const ModelSpec& spec, size_t instances, ModelStats* stats)
    : spec_(spec),
      instances_(std::max<size_t>(1, instances)),
      slots_per_instance_(SlotsPerInstance(spec)),
      idle_ns_(spec.sequence.max_sequence_idle_us * 1000),
      delay_ns_(spec.sequence.max_queue_delay_us * 1000),
      stats_(stats),
      // Gathered batches need one shape per state input; a per-request backend stores no state.
      match_state_shapes_(!spec.per_request_execution && HasVariableState(spec)),
      assigned_(std::max<size_t>(1, instances), 0),
      high_(std::max<size_t>(1, instances), 0),
      null_sink_(std::make_shared<NullSink>()) {
  if (slots_per_instance_ > kMaxSlotsPerInstance) {
    throw Error(StatusCode::kInvalidArg,
                "model '" + spec.name + "': sequence_batching gives each instance " +
                    std::to_string(slots_per_instance_) + " sequence slots (" +
                    (spec.sequence.oldest ? "max_candidate_sequences" : "max_batch_size") +
                    "); tritonlite supports at most " + std::to_string(kMaxSlotsPerInstance));
  }
  slots_.assign(instances_, std::vector<Sequence*>(slots_per_instance_, nullptr));
  waker_->cv = &cv_;
}

std::string SequenceBatcher::KeyOf(const InferRequest& r) {
  return r.correlation_id_str.empty() ? "#" + std::to_string(r.correlation_id)
                                      : "s:" + r.correlation_id_str;
}

void SequenceBatcher::Deferred::Finish() noexcept {
  for (auto& f : failed) f.first->FailFromScheduler(f.second);
  failed.clear();  // the requests (their sinks) go here, without the lock
  released.clear();
  dropped.clear();
}

SequenceBatcher::Deferred::~Deferred() { Finish(); }

void SequenceBatcher::Enqueue(RequestPtr request) { Add(request, true); }

bool SequenceBatcher::TryEnqueue(RequestPtr& request) { return Add(request, false); }

bool SequenceBatcher::Add(RequestPtr& request, bool wait) {
  InferRequest& r = *request;
  // Triton's sequence batcher takes one row per request (a sequence's slot is one row).
  if (r.batch_size > 1) {
    throw Error(StatusCode::kInvalidArg,
                "inference request to model '" + spec_.name +
                    "' must specify batch-size 1 due to requirements of sequence batcher");
  }
  if (r.correlation_id == 0 && r.correlation_id_str.empty()) {
    throw Error(StatusCode::kInvalidArg,
                "inference request to model '" + spec_.name +
                    "' must specify a non-zero or non-empty correlation ID");
  }
  const uint64_t now = NowNs();
  r.enqueue_ns = now;
  const std::string key = KeyOf(r);
  {
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    if (wait) {
      lock.lock();
    } else if (!lock.try_lock()) {
      return false;
    }
    if (stopping_) {
      throw Error(StatusCode::kUnavailable,
                  "model '" + spec_.name + "' is unloading and accepts no new requests");
    }
    auto it = sequences_.find(key);
    if (it == sequences_.end()) {
      if (!(r.flags & kSequenceStart)) {
        throw Error(StatusCode::kInvalidArg,
                    "inference request for sequence " +
                        (r.correlation_id_str.empty() ? std::to_string(r.correlation_id)
                                                      : r.correlation_id_str) +
                        " to model '" + spec_.name +
                        "' must specify the START flag on the first request of the sequence");
      }
      const size_t limit = spec_.sequence.max_backlog;
      bool slot_free = false;
      for (size_t n : assigned_) slot_free = slot_free || n < slots_per_instance_;
      if (limit > 0 && !slot_free && backlog_.size() >= limit) {
        throw Error(StatusCode::kUnavailable,
                    "model '" + spec_.name + "' cannot start sequence " + CorrelationText(r) +
                        ": all " + std::to_string(slots_per_instance_ * instances_) +
                        " sequence slots are in use and " + std::to_string(backlog_.size()) +
                        " sequences already wait for one (sequence_backlog_limit " +
                        std::to_string(limit) + ")");
      }
      auto seq = std::make_unique<Sequence>();
      seq->key = key;
      it = sequences_.emplace(key, std::move(seq)).first;
      backlog_.push_back(key);
      AssignSlots();
    }
    Sequence& seq = *it->second;
    seq.ended = false;
    if (r.flags & kSequenceStart) seq.cancelled = false;
    seq.last_activity_ns = now;
    if (request->cancel != nullptr) request->cancel->SetListener(waker_);
    seq.queue.push_back(std::move(request));
    ++queued_;
  }
  cv_.notify_all();
  return true;
}

void SequenceBatcher::Waker::OnCancel() noexcept {
  std::lock_guard<std::mutex> lock(mu);
  // Without the batcher's lock (the canceller may hold the GIL): a wakeup lost to a worker
  // that is just about to wait delays the answer to its next wake, at most the idle timeout.
  if (cv != nullptr) cv->notify_all();
}

SequenceBatcher::~SequenceBatcher() {
  std::lock_guard<std::mutex> lock(waker_->mu);
  waker_->cv = nullptr;
}

void SequenceBatcher::TakeSlot(Sequence& seq, size_t instance, size_t slot) {
  seq.instance = instance;
  seq.slot = slot;
  slots_[instance][slot] = &seq;
  high_[instance] = std::max(high_[instance], slot + 1);
  ++assigned_[instance];
}

void SequenceBatcher::AssignSlots() {
  // As Triton: a waiting sequence takes the free slot with the lowest number (of any instance).
  while (!backlog_.empty()) {
    size_t best_instance = kUnassigned, best_slot = kUnassigned;
    for (size_t i = 0; i < instances_; ++i) {
      if (assigned_[i] >= slots_per_instance_) continue;
      const auto& slots = slots_[i];
      for (size_t s = 0; s < slots.size() && s < best_slot; ++s) {
        if (slots[s] == nullptr) {
          best_instance = i;
          best_slot = s;
          break;
        }
      }
    }
    if (best_instance == kUnassigned) return;
    auto it = sequences_.find(backlog_.front());
    backlog_.pop_front();
    if (it == sequences_.end()) continue;
    TakeSlot(*it->second, best_instance, best_slot);
  }
}

void SequenceBatcher::FreeSlot(Sequence& seq) {
  if (seq.instance == kUnassigned) return;
  --assigned_[seq.instance];
  slots_[seq.instance][seq.slot] = nullptr;
  size_t& high = high_[seq.instance];
  while (high > 0 && slots_[seq.instance][high - 1] == nullptr) --high;
  seq.instance = kUnassigned;
}

void SequenceBatcher::EndIfLast(Sequence& seq, const InferRequest& r) {
  // Requests queued behind an END (sent before it ran) continue the sequence, as before.
  if (!(r.flags & kSequenceEnd) || !seq.queue.empty()) return;
  auto it = sequences_.find(seq.key);
  if (it == sequences_.end() || it->second.get() != &seq) return;
  FreeSlot(seq);
  ending_.emplace(&r, std::move(it->second));
  sequences_.erase(it);
  AssignSlots();
}

void SequenceBatcher::Release(const std::string& key, Deferred* deferred) {
  auto it = sequences_.find(key);
  if (it == sequences_.end()) return;
  Sequence& seq = *it->second;
  if (seq.instance != kUnassigned) {
    FreeSlot(seq);
  } else {
    backlog_.erase(std::remove(backlog_.begin(), backlog_.end(), key), backlog_.end());
  }
  for (RequestPtr& r : seq.queue) {
    --queued_;
    const uint64_t now = NowNs();
    stats_->RecordFailure(now - r->enqueue_ns, now - r->enqueue_ns);
    Status status(StatusCode::kUnavailable, "sequence " + CorrelationText(*r) + " of model '" +
                                                spec_.name + "' was released before this request ran");
    deferred->failed.emplace_back(std::move(r), std::move(status));
  }
  seq.queue.clear();
  deferred->released.push_back(std::move(it->second));  // its state may be Python's
  sequences_.erase(it);
  AssignSlots();
}

uint64_t SequenceBatcher::ReleaseIdle(uint64_t now, Deferred* deferred) {
  if (idle_ns_ == 0) return 0;
  uint64_t next = 0;
  std::vector<std::string> idle;
  for (const auto& kv : sequences_) {
    const Sequence& seq = *kv.second;
    if (seq.in_flight || !seq.queue.empty()) continue;
    const uint64_t deadline = seq.last_activity_ns + idle_ns_;
    if (now >= deadline) {
      idle.push_back(kv.first);
    } else if (next == 0 || deadline < next) {
      next = deadline;
    }
  }
  for (const auto& key : idle) Release(key, deferred);
  return next;
}

Tensor SequenceBatcher::ControlTensor(const SequenceControl& c, const InferRequest& r,
                                      bool value) const {
  Shape shape = spec_.max_batch_size > 0 ? Shape{r.batch_size, 1} : Shape{1};
  const int64_t n = ElementCount(shape);
  if (c.dtype == DataType::kBytes) {
    std::string text = r.null_request ? std::string()
                       : r.correlation_id_str.empty() ? std::to_string(r.correlation_id)
                                                      : r.correlation_id_str;
    auto buf = std::make_shared<std::string>();
    for (int64_t i = 0; i < n; ++i) AppendBytesElement(buf.get(), text.data(), text.size());
    const void* data = buf->data();
    const size_t size = buf->size();
    return Tensor::View(DataType::kBytes, shape, data, size, std::move(buf));
  }
  Tensor t = Tensor::Allocate(c.dtype, shape);
  const double v = c.kind == SequenceControl::Kind::kCorrId
                       ? static_cast<double>(r.correlation_id)
                       : (value ? c.true_value : c.false_value);
  uint8_t* p = t.mutable_data();
  for (int64_t i = 0; i < n; ++i) {
    switch (c.dtype) {
      case DataType::kBool: p[i] = v != 0; break;
      case DataType::kInt32: reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
      case DataType::kUint32: reinterpret_cast<uint32_t*>(p)[i] = static_cast<uint32_t>(v); break;
      case DataType::kFp32: reinterpret_cast<float*>(p)[i] = static_cast<float>(v); break;
      case DataType::kInt64:
        reinterpret_cast<int64_t*>(p)[i] =
            c.kind == SequenceControl::Kind::kCorrId ? static_cast<int64_t>(r.correlation_id)
                                                     : static_cast<int64_t>(v);
        break;
      case DataType::kUint64:
        reinterpret_cast<uint64_t*>(p)[i] =
            c.kind == SequenceControl::Kind::kCorrId ? r.correlation_id : static_cast<uint64_t>(v);
        break;
      default:
        throw Error(StatusCode::kInvalidArg, "model '" + spec_.name + "': control input '" +
                                                 c.input_name + "' has an unsupported datatype " +
                                                 DataTypeName(c.dtype));
    }
  }
  return t;
}

void SequenceBatcher::AddControls(InferRequest& r, bool ready) const {
  for (const auto& c : spec_.sequence.controls) {
    bool value = ready;
    if (c.kind == SequenceControl::Kind::kStart) value = ready && (r.flags & kSequenceStart);
    if (c.kind == SequenceControl::Kind::kEnd) value = ready && (r.flags & kSequenceEnd);
    r.inputs.emplace_back(c.input_name, ControlTensor(c, r, value));
  }
}

namespace {
Tensor Zeros(DataType dtype, const Shape& shape) {
  if (dtype == DataType::kBytes) {  // empty strings: a zero length prefix each
    const int64_t n = ElementCount(shape);
    auto buf = std::make_shared<std::string>(static_cast<size_t>(n) * sizeof(uint32_t), '\0');
    const void* data = buf->data();
    const size_t size = buf->size();
    return Tensor::View(DataType::kBytes, shape, data, size, std::move(buf));
  }
  Tensor t = Tensor::Allocate(dtype, shape);
  if (t.byte_size() > 0) std::memset(t.mutable_data(), 0, t.byte_size());
  return t;
}
}  // namespace

void SequenceBatcher::AddServerInputs(Sequence& seq, InferRequest& r, Deferred* deferred) {
  const bool start = r.flags & kSequenceStart;
  if (start) {
    for (auto& kv : seq.state) deferred->dropped.push_back(std::move(kv));
    seq.state.clear();
  }
  AddControls(r, true);
  for (const auto& s : spec_.sequence.states) {
    const Tensor* previous = nullptr;
    for (const auto& kv : seq.state) {
      if (kv.first == s.input_name) previous = &kv.second;
    }
    if (previous != nullptr) {
      r.inputs.emplace_back(s.input_name, *previous);
      continue;
    }
    r.inputs.emplace_back(s.input_name, InitialState(s, r.batch_size));
  }
}

Tensor SequenceBatcher::InitialState(const SequenceStateSpec& s, int64_t rows) const {
  // One copy per row, each request its own (a model may write to its inputs).
  Shape shape = s.initial_shape;
  if (spec_.max_batch_size > 0) {
    shape.insert(shape.begin(), rows);
  } else {
    rows = 1;
  }
  Tensor initial = Tensor::Allocate(s.dtype, shape, s.initial.size() * static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(initial.mutable_data() + static_cast<size_t>(i) * s.initial.size(),
                s.initial.data(), s.initial.size());
  }
  return initial;
}

Shape SequenceBatcher::NextStateShape(const Sequence& seq, const InferRequest& r,
                                      const SequenceStateSpec& s) const {
  if (!(r.flags & kSequenceStart)) {
    for (const auto& kv : seq.state) {
      if (kv.first != s.input_name) continue;
      const Shape& shape = kv.second.shape();
      if (spec_.max_batch_size == 0 || shape.empty()) return shape;
      return Shape(shape.begin() + 1, shape.end());  // without the batch dim
    }
  }
  return s.initial_shape;
}

bool SequenceBatcher::StatesBatchable(const Sequence& a, const Sequence& b) const {
  if (!match_state_shapes_) return true;
  const InferRequest& ra = *a.queue.front();
  const InferRequest& rb = *b.queue.front();
  for (const auto& s : spec_.sequence.states) {
    if (NextStateShape(a, ra, s) != NextStateShape(b, rb, s)) return false;
  }
  return true;
}

RequestPtr SequenceBatcher::MakeFiller(const std::vector<InputLayout>& like, int64_t rows,
                                       uint64_t now) const {
  // Triton's null request: the representative's inputs (its states too) with unspecified (here
  // zero) data, the not-ready controls, CORRID 0, no requested outputs; its state is never
  // stored.
  auto f = std::make_unique<InferRequest>();
  f->null_request = true;
  f->batch_size = rows;
  f->enqueue_ns = now;
  f->sink = null_sink_;
  for (const auto& in : like) f->inputs.emplace_back(in.name, Zeros(in.dtype, in.shape));
  AddControls(*f, false);
  return f;
}

Batch SequenceBatcher::DirectBatch(size_t instance, uint64_t now, uint64_t* wake,
                                   Deferred* deferred) {
  const std::vector<Sequence*>& slots = slots_[instance];
  const size_t high = high_[instance];
  auto ready = [](const Sequence* seq) {
    return seq != nullptr && !seq->in_flight && !seq->queue.empty();
  };
  size_t ready_count = 0, last = 0;
  uint64_t earliest = 0;
  const InferRequest* first = nullptr;  // the lowest ready slot's request shapes the fillers
  const Sequence* first_seq = nullptr;
  for (size_t s = 0; s < high; ++s) {
    if (!ready(slots[s])) continue;
    const InferRequest& r = *slots[s]->queue.front();
    if (first == nullptr) {
      first = &r;
      first_seq = slots[s];
    }
    if (ready_count == 0 || r.enqueue_ns < earliest) earliest = r.enqueue_ns;
    ++ready_count;
    last = s;
  }
  if (ready_count == 0) return Batch{};
  // As Triton: with both max_queue_delay_microseconds and minimum_slot_utilization set, wait
  // until that share of the instance's slots is ready or the oldest request waited the delay;
  // otherwise run what is ready now.
  const double utilization = spec_.sequence.min_slot_utilization;
  if (!stopping_ && delay_ns_ > 0 && utilization > 0 && now <= earliest + delay_ns_ &&
      static_cast<double>(ready_count) / static_cast<double>(slots_per_instance_) < utilization) {
    const uint64_t at = earliest + delay_ns_ + 1;
    if (*wake == 0 || at < *wake) *wake = at;
    return Batch{};
  }
  // Batches are gathered in host memory: a request with device inputs runs alone, outside the
  // slot layout (tensors of several rows cannot be gathered there).
  const bool alone = !spec_.per_request_execution && !ShapesCompatible(*first, *first);
  std::vector<Sequence*> take(last + 1, nullptr);
  for (size_t s = 0; s <= last; ++s) {
    // A request whose inputs cannot share this batch waits: its slot is a filler this time.
    if (ready(slots[s]) && (&*slots[s]->queue.front() == first ||
                            (!alone && ShapesCompatible(*first, *slots[s]->queue.front()) &&
                             StatesBatchable(*first_seq, *slots[s])))) {
      take[s] = slots[s];
    }
  }
  std::vector<RequestPtr> rows(last + 1);
  for (size_t s = 0; s <= last; ++s) {
    if (take[s] == nullptr) continue;
    Sequence& seq = *take[s];
    rows[s] = std::move(seq.queue.front());
    seq.queue.pop_front();
    --queued_;
    seq.in_flight = true;
    seq.last_activity_ns = now;
  }
  try {
    for (size_t s = 0; s <= last; ++s) {
      if (rows[s] != nullptr) AddServerInputs(*take[s], *rows[s], deferred);
    }
    // The fillers' inputs are laid out as `first`'s, its state inputs included (as Triton's
    // null request takes the representative's state shapes); their controls are their own.
    std::vector<InputLayout> like;
    for (const auto& kv : first->inputs) {
      bool control = false;
      for (const auto& c : spec_.sequence.controls) control = control || c.input_name == kv.first;
      if (!control) like.push_back(InputLayout{kv.first, kv.second.dtype(), kv.second.shape()});
    }
    for (size_t s = 0; s <= last; ++s) {
      if (rows[s] == nullptr && !alone) rows[s] = MakeFiller(like, first->batch_size, now);
    }
  } catch (const std::exception& e) {
    // Out of memory for a filler or a control input: the batch's requests fail (answered
    // after the lock is released), their sequences go on.
    const Status status(StatusCode::kInternal,
                        "model '" + spec_.name + "': cannot form a sequence batch: " + e.what());
    for (size_t s = 0; s <= last; ++s) {
      if (rows[s] == nullptr || rows[s]->null_request) continue;
      take[s]->in_flight = false;
      stats_->RecordFailure(now - rows[s]->enqueue_ns, now - rows[s]->enqueue_ns);
      deferred->failed.emplace_back(std::move(rows[s]), status);
    }
    return Batch{};
  }
  Batch batch;
  for (size_t s = 0; s <= last; ++s) {
    if (rows[s] == nullptr) continue;  // `alone`: no fillers
    if (take[s] != nullptr) EndIfLast(*take[s], *rows[s]);
    batch.batch_size += rows[s]->batch_size;
    batch.requests.push_back(std::move(rows[s]));
  }
  return batch;
}

Batch SequenceBatcher::OldestBatch(size_t instance, uint64_t now, uint64_t* wake,
                                   Deferred* deferred) {
  // Sequences of this instance with a request ready, oldest request first.
  std::vector<Sequence*> ready;
  size_t idle_slots = 0;  // this instance's sequences not running and not waiting
  const std::vector<Sequence*>& slots = slots_[instance];
  for (size_t s = 0; s < high_[instance]; ++s) {
    Sequence* seq = slots[s];
    if (seq == nullptr || seq->in_flight) continue;
    if (seq->queue.empty()) {
      ++idle_slots;
    } else {
      ready.push_back(seq);
    }
  }
  if (ready.empty()) return Batch{};
  std::sort(ready.begin(), ready.end(), [](const Sequence* a, const Sequence* b) {
    return a->queue.front()->enqueue_ns < b->queue.front()->enqueue_ns;
  });
  std::vector<Sequence*> chosen;
  int64_t total = 0;
  const InferRequest& first = *ready.front()->queue.front();
  const int64_t max_rows = std::max<int64_t>(1, spec_.max_batch_size);
  size_t preferred_count = 0;
  const auto& preferred = spec_.sequence.preferred_batch_sizes;
  for (Sequence* seq : ready) {
    const InferRequest& r = *seq->queue.front();
    if (!chosen.empty() && (spec_.max_batch_size == 0 || !ShapesCompatible(first, r) ||
                            !StatesBatchable(*ready.front(), *seq) ||
                            total + r.batch_size > max_rows)) {
      continue;
    }
    chosen.push_back(seq);
    total += r.batch_size;
    if (std::find(preferred.begin(), preferred.end(), total) != preferred.end()) {
      preferred_count = chosen.size();
    }
  }
  // Send when full, at a preferred size, when no other sequence of this instance could
  // join (all are running or already in), when stopping, or after the queue delay.
  const bool full = total >= max_rows || spec_.max_batch_size == 0;
  const bool nobody_else = idle_slots == 0 && backlog_.empty();
  const uint64_t oldest = first.enqueue_ns;
  if (preferred_count > 0 && !full) chosen.resize(preferred_count);
  if (full || preferred_count > 0 || nobody_else || stopping_ || now >= oldest + delay_ns_) {
    Batch batch;
    for (Sequence* seq : chosen) {
      RequestPtr r = std::move(seq->queue.front());
      seq->queue.pop_front();
      --queued_;
      seq->in_flight = true;
      seq->last_activity_ns = now;
      AddServerInputs(*seq, *r, deferred);
      EndIfLast(*seq, *r);
      batch.batch_size += r->batch_size;
      batch.requests.push_back(std::move(r));
    }
    return batch;
  }
  const uint64_t delay_wake = oldest + delay_ns_;
  if (*wake == 0 || delay_wake < *wake) *wake = delay_wake;
  return Batch{};
}

Batch SequenceBatcher::NextBatch(size_t instance) {
  Deferred deferred;  // finished after `lock` is released (declared first, destroyed last)
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!deferred.empty()) {  // answer released sequences' requests now, not after a wait
      lock.unlock();
      deferred.Finish();
      lock.lock();
    }
    const uint64_t now = NowNs();
    uint64_t wake = ReleaseIdle(now, &deferred);
    if (!deferred.empty()) continue;
    if (stopping_ && queued_ == 0) return Batch{};
    std::vector<std::string> cancelled;
    for (auto& kv : sequences_) {
      Sequence& seq = *kv.second;
      if (!seq.queue.empty() && seq.queue.front()->cancelled()) {
        // As Triton: cancelling a queued request of a sequence cancels the sequence's other
        // queued requests too, and ends the sequence: its slot is free for another.
        for (RequestPtr& r : seq.queue) {
          --queued_;
          stats_->RecordFailure(now - r->enqueue_ns, now - r->enqueue_ns, FailReason::kCanceled);
          deferred.failed.emplace_back(std::move(r), CancelledStatus());
        }
        seq.queue.clear();
        cancelled.push_back(kv.first);
      }
    }
    for (const auto& key : cancelled) {
      Sequence& seq = *sequences_.at(key);
      if (seq.in_flight) {
        seq.cancelled = true;  // released when its running request is done
      } else {
        Release(key, &deferred);
      }
    }
    if (!cancelled.empty()) continue;  // answer them now (top of the loop), then look again
    Batch batch = spec_.sequence.oldest ? OldestBatch(instance, now, &wake, &deferred)
                                        : DirectBatch(instance, now, &wake, &deferred);
    if (!batch.empty()) {
      batch.sequence = next_sequence_++;
      return batch;
    }
    if (!deferred.empty()) continue;  // a batch that could not be formed: answer it now
    if (wake == 0) {
      cv_.wait(lock);
    } else {
      const uint64_t now2 = NowNs();
      if (wake > now2) cv_.wait_for(lock, std::chrono::nanoseconds(wake - now2));
    }
  }
}

Status SequenceBatcher::CheckStateOutput(const SequenceStateSpec& s, const Tensor& t,
                                         int64_t rows) const {
  Shape expected = s.dims;  // -1: any size
  if (spec_.max_batch_size > 0) expected.insert(expected.begin(), rows);
  bool ok = t.dtype() == s.dtype && t.shape().size() == expected.size();
  for (size_t i = 0; ok && i < expected.size(); ++i) {
    ok = expected[i] == -1 || expected[i] == t.shape()[i];
  }
  if (ok) return Status::Success();
  return Status(StatusCode::kInternal,
                "model '" + spec_.name + "' returned implicit state output '" + s.output_name +
                    "' as " + DataTypeName(t.dtype()) + " " + ShapeToString(t.shape()) +
                    ", but sequence_batching state '" + s.input_name + "' needs " +
                    DataTypeName(s.dtype) + " " + ShapeToString(expected) +
                    (spec_.max_batch_size > 0 ? " for a batch of " + std::to_string(rows) : ""));
}

Status SequenceBatcher::BatchExecuted(size_t instance,
                                      const std::vector<const InferRequest*>& requests,
                                      NamedTensors* outputs, const Status& status) {
  Status result;
  // The state outputs are checked before any is stored: a sequence never keeps a state of
  // another shape than configured (batches gather states across sequences).
  bool store = status.ok() && outputs != nullptr;
  if (store) {
    int64_t rows = 0;
    for (const InferRequest* r : requests) rows += r->batch_size;
    for (const auto& s : spec_.sequence.states) {
      for (const auto& kv : *outputs) {
        if (kv.first != s.output_name) continue;
        Status check = CheckStateOutput(s, kv.second, rows);
        if (!check.ok() && result.ok()) result = std::move(check);
      }
    }
    store = result.ok();
  }
  {
    Deferred deferred;  // finished after the lock below is released
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t now = NowNs();
    int64_t row = 0;
    for (const InferRequest* r : requests) {
      const int64_t first_row = row;
      row += r->batch_size;
      if (r->null_request) continue;  // a filler's state is dropped with the batch outputs
      auto ended = ending_.find(r);
      if (ended != ending_.end()) {  // its END ran: the sequence is gone (its state may be Python's)
        deferred.released.push_back(std::move(ended->second));
        ending_.erase(ended);
        continue;
      }
      auto it = sequences_.find(KeyOf(*r));
      if (it == sequences_.end()) continue;
      Sequence& seq = *it->second;
      if (store) {
        for (const auto& s : spec_.sequence.states) {
          for (const auto& kv : *outputs) {
            if (kv.first != s.output_name) continue;
            Tensor next = spec_.max_batch_size > 0 ? kv.second.SliceRows(first_row, r->batch_size)
                                                   : kv.second;
            bool replaced = false;
            for (auto& st : seq.state) {
              if (st.first == s.input_name) {
                std::swap(st.second, next);  // the old state is released after unlocking
                deferred.dropped.emplace_back(s.input_name, std::move(next));
                replaced = true;
                break;
              }
            }
            if (!replaced) seq.state.emplace_back(s.input_name, std::move(next));
          }
        }
      }
      seq.in_flight = false;
      seq.last_activity_ns = now;
      if (seq.cancelled || ((r->flags & kSequenceEnd) && seq.queue.empty())) {
        Release(it->first, &deferred);
      }
    }
  }
  if (outputs != nullptr) {
    for (const auto& s : spec_.sequence.states) {
      // A state output the config also lists as a model output is the client's too (Triton).
      const bool listed = std::any_of(spec_.outputs.begin(), spec_.outputs.end(),
                                      [&](const TensorSpec& o) { return o.name == s.output_name; });
      if (listed) continue;
      outputs->erase(std::remove_if(outputs->begin(), outputs->end(),
                                    [&](const auto& kv) { return kv.first == s.output_name; }),
                     outputs->end());
    }
  }
  cv_.notify_all();
  return result;
}

std::vector<std::string> SequenceBatcher::ExtraOutputs() const {
  std::vector<std::string> names;
  for (const auto& s : spec_.sequence.states) names.push_back(s.output_name);
  return names;
}

void SequenceBatcher::Stop() {
  {
    Deferred deferred;  // finished after the lock below is released
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    // Sequences still waiting for a slot would never get one: fail them now.
    std::vector<std::string> waiting(backlog_.begin(), backlog_.end());
    for (const auto& key : waiting) Release(key, &deferred);
  }
  cv_.notify_all();
}

size_t SequenceBatcher::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

}  // namespace tritonlite
