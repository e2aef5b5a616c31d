// Scheduler: how a model version's requests become batches for its instance workers. The
// dynamic batcher (also Triton's default scheduler) and the sequence batcher implement it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/request.h"

namespace tritonlite {

struct Batch {
  std::vector<RequestPtr> requests;
  int64_t batch_size = 0;  // sum of the requests' batch sizes
  uint64_t sequence = 0;   // formation order, for preserve_ordering
  bool empty() const { return requests.empty(); }
};

// Whether two requests can share a batch: same inputs, datatypes and non-batch dims, all in
// host memory (batches are gathered there).
bool ShapesCompatible(const InferRequest& a, const InferRequest& b);
// The same, where the inputs named in `ragged` (allow_ragged_batch) may differ in shape.
bool ShapesCompatible(const InferRequest& a, const InferRequest& b,
                      const std::vector<std::string>& ragged);

// The locking rule of the core (schedulers, runner, owned requests, completion queues):
//   while a core lock is held, never call a ResponseSink, never call into Python, and never
//   release anything a Python object may own (request inputs, implicit state, responses).
// Under the lock such things are moved into a local container; they are delivered or dropped
// after unlocking. Releasing a Python-owned tensor takes the GIL, and a thread holding the GIL
// may be waiting for that same lock (a frontend queueing a request): a deadlock otherwise. The
// bindings, for their part, never wait for a core lock while holding the GIL (try_lock, else
// release the GIL first).

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Queues a validated request; throws (INVALID_ARG, UNAVAILABLE) when it cannot be queued.
  virtual void Enqueue(RequestPtr request) = 0;
  // Like Enqueue, but never waits for the scheduler's lock: returns false, leaving `request`
  // untouched, when the lock is busy (a caller holding the GIL then releases it and calls
  // Enqueue). Throws as Enqueue does; `request` is then left untouched too.
  virtual bool TryEnqueue(RequestPtr& request) = 0;
  // Enqueue without waking a waiting worker yet: a thread queueing several requests in a row
  // (the gRPC I/O thread after one read) calls Wake() once after the last, so the worker wakes
  // once and finds them all (one batch) instead of preempting the queueing thread after the
  // first (issue #20: on one core every wakeup is a context switch). The caller must call
  // Wake() afterwards. Schedulers without such a wakeup queue and wake at once.
  virtual void EnqueueDeferred(RequestPtr request) { Enqueue(std::move(request)); }
  virtual void Wake() {}
  // Blocks until a batch is ready for `instance`. After Stop(), hands out what is still queued,
  // then returns an empty batch.
  virtual Batch NextBatch(size_t instance) = 0;
  // The batch that is ready now, without waiting (empty when none is: nothing queued, or the
  // batcher would wait for more requests or for the queue delay). For a thread that queued
  // requests and runs their batch itself (ModelRunner::RunReady); schedulers that hand batches
  // only to their own workers return none.
  virtual Batch TryNextBatch() { return Batch{}; }
  // After the backend ran a batch (status says whether it succeeded), before responses go out:
  // the scheduler may take outputs that are internal to it (implicit state) out of `outputs`.
  // Returns an error when those outputs are unusable (wrong datatype or shape): the batch's
  // requests then fail with it.
  virtual Status BatchExecuted(size_t instance, const std::vector<const InferRequest*>& requests,
                               NamedTensors* outputs, const Status& status) {
    return Status::Success();
  }
  // Outputs the backend must produce beyond the requested ones.
  virtual std::vector<std::string> ExtraOutputs() const { return {}; }
  virtual void Stop() = 0;
  virtual size_t pending() const = 0;
};

}  // namespace tritonlite
