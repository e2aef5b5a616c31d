// SequenceBatcher: Triton's sequence_batching. Requests carry a correlation ID; every request
// of a sequence goes to the same instance, in order, one at a time (the next is not scheduled
// before the previous has executed). Each sequence owns a slot of one instance for its life
// (direct: max_batch_size slots per instance; oldest: max_candidate_sequences per instance);
// sequences beyond the free slots wait (backlog) until one frees. direct lays a batch out by
// slot: slot i is row i, and a slot below the highest ready one that has no ready request is a
// filler request (READY false, CORRID 0, zero data) whose response is dropped; it waits for
// minimum_slot_utilization up to max_queue_delay_microseconds. oldest batches the ready
// sequences of an instance, oldest first (preferred sizes, queue delay). The batcher fills the
// control inputs (START, END, READY, CORRID) and implicit state, and releases idle sequences.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/model_spec.h"
#include "core/stats.h"
#include "scheduling/scheduler.h"

namespace tritonlite {

class SequenceBatcher : public Scheduler {
 public:
  SequenceBatcher(const ModelSpec& spec, size_t instances, ModelStats* stats);
  ~SequenceBatcher() override;

  void Enqueue(RequestPtr request) override;
  bool TryEnqueue(RequestPtr& request) override;
  Batch NextBatch(size_t instance) override;
  Status BatchExecuted(size_t instance, const std::vector<const InferRequest*>& requests,
                       NamedTensors* outputs, const Status& status) override;
  std::vector<std::string> ExtraOutputs() const override;
  void Stop() override;
  size_t pending() const override;

 private:
  static constexpr size_t kUnassigned = static_cast<size_t>(-1);

  struct Sequence {
    std::string key;
    size_t instance = kUnassigned;
    size_t slot = 0;  // its slot of `instance` (once assigned)
    std::deque<RequestPtr> queue;
    bool in_flight = false;
    bool ended = false;  // its END request executed: release once idle
    bool cancelled = false;  // its queued requests were cancelled while one ran: release after
    uint64_t last_activity_ns = 0;
    NamedTensors state;  // implicit state by input name
  };

  // What a section under mu_ must neither call nor release itself (the rule in
  // scheduling/scheduler.h): requests to fail, released sequences and replaced state, which Python
  // may own. Finish() (or the destructor) runs without mu_ held: declare it before the lock it
  // outlives.
  struct Deferred {
    std::vector<std::pair<RequestPtr, Status>> failed;
    std::vector<std::unique_ptr<Sequence>> released;
    NamedTensors dropped;
    bool empty() const { return failed.empty() && released.empty() && dropped.empty(); }
    void Finish() noexcept;
    ~Deferred();
  };

  static std::string KeyOf(const InferRequest& r);
  bool Add(RequestPtr& request, bool wait);
  void AssignSlots();  // backlog -> free slots
  void Release(const std::string& key, Deferred* deferred);
  // Returns the next idle deadline (0: none).
  uint64_t ReleaseIdle(uint64_t now, Deferred* deferred);
  void AddServerInputs(Sequence& seq, InferRequest& r, Deferred* deferred);
  struct InputLayout {
    std::string name;
    DataType dtype;
    Shape shape;
  };
  // A not-ready request for an empty slot of a direct batch, with inputs laid out as `like`.
  RequestPtr MakeFiller(const std::vector<InputLayout>& like, int64_t rows, uint64_t now) const;
  Batch DirectBatch(size_t instance, uint64_t now, uint64_t* wake, Deferred* deferred);
  Batch OldestBatch(size_t instance, uint64_t now, uint64_t* wake, Deferred* deferred);
  void TakeSlot(Sequence& seq, size_t instance, size_t slot);
  void FreeSlot(Sequence& seq);
  // As Triton, a sequence ends when its END request is batched: its slot goes to a waiting
  // sequence at once and its ID may start anew; the object waits in ending_ for the batch.
  void EndIfLast(Sequence& seq, const InferRequest& r);
  // The state output of a batch of `rows` rows: its datatype and shape as configured.
  Status CheckStateOutput(const SequenceStateSpec& s, const Tensor& t, int64_t rows) const;
  Tensor ControlTensor(const SequenceControl& c, const InferRequest& r, bool value) const;
  // The control inputs of a request: START/END as its flags, READY `ready`; a not-ready
  // (filler) request gets false for all and CORRID 0 (or an empty string), as in Triton.
  void AddControls(InferRequest& r, bool ready) const;
  // A sequence's first state for a request of `rows` rows (the spec's initial state per row).
  Tensor InitialState(const SequenceStateSpec& s, int64_t rows) const;
  // The state input `r` (the front of `seq`) will get, without the batch dim; and whether two
  // sequences' next requests get state inputs of the same shapes (a gathered batch needs it
  // where a state has -1 dims).
  Shape NextStateShape(const Sequence& seq, const InferRequest& r,
                       const SequenceStateSpec& s) const;
  bool StatesBatchable(const Sequence& a, const Sequence& b) const;

  const ModelSpec& spec_;
  const size_t instances_;
  const size_t slots_per_instance_;
  const uint64_t idle_ns_;
  const uint64_t delay_ns_;
  ModelStats* stats_;
  const bool match_state_shapes_;

  // Held only for bookkeeping: no sink calls, no Python, no release of tensors under it
  // (see the rule in scheduling/scheduler.h; Deferred carries them out).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Wakes the workers when a queued request is cancelled (the flags hold it weakly).
  struct Waker : CancelListener {
    std::mutex mu;  // a leaf lock; guards cv (null once the batcher is gone)
    std::condition_variable* cv = nullptr;
    void OnCancel() noexcept override;
  };
  const std::shared_ptr<Waker> waker_ = std::make_shared<Waker>();
  std::map<std::string, std::unique_ptr<Sequence>> sequences_;
  // Sequences whose END request is running, by that request.
  std::map<const InferRequest*, std::unique_ptr<Sequence>> ending_;
  std::deque<std::string> backlog_;  // sequences waiting for a slot
  std::vector<size_t> assigned_;     // sequences per instance
  // slots_[instance][slot]: the sequence that owns the slot (null: free); high_[instance]: one
  // past its highest owned slot.
  std::vector<std::vector<Sequence*>> slots_;
  std::vector<size_t> high_;
  std::shared_ptr<ResponseSink> null_sink_;  // where filler requests' responses go
  size_t queued_ = 0;
  uint64_t next_sequence_ = 0;
  bool stopping_ = false;
};

}  // namespace tritonlite
