#include "scheduling/instance.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "scheduling/model_runner.h"
#include "scheduling/ragged.h"

namespace tritonlite {

InstanceWorker::InstanceWorker(ModelRunner* runner, size_t index,
                               std::unique_ptr<InstanceBackend> backend,
                               const RateLimitRegistration* rate_limit)
    : runner_(runner), index_(index), backend_(std::move(backend)) {
  if (rate_limit != nullptr) {
    wait_ = std::make_shared<ResourceWait>(rate_limit->limiter());
    limiter_id_ = rate_limit->id(index);
  }
}

InstanceWorker::~InstanceWorker() {
  // The runner's Stop has joined every worker (starting those that never ran); a worker whose
  // runner never got that far (its constructor threw) never started, and starts nothing now.
  if (thread_.joinable()) thread_.join();
}

void InstanceWorker::Start() {
  if (!started_) {
    started_ = true;
    thread_ = std::thread([this] { Run(); });
  }
}

void InstanceWorker::Join() {
  Start();
  if (thread_.joinable()) thread_.join();
}

namespace {

// Rate limiter resources an instance holds for one execution: given back when it ends.
struct HeldResources {
  ResourceWait* wait;  // null: not rate limited
  uint64_t id;
  ~HeldResources() {
    if (wait != nullptr) wait->limiter().Release(id);
  }
};

}  // namespace

namespace {
thread_local bool t_instance_thread = false;
}  // namespace

bool OnInstanceThread() { return t_instance_thread; }

void InstanceWorker::Run() {
  t_instance_thread = true;
  // Named for top -H and /proc (a thread inherits its creator's name otherwise: often the gRPC
  // I/O thread that queued the model's first request). Linux keeps 15 bytes.
  const std::string name = "inst:" + runner_->spec().name;
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  backend_->Start();
  Status warmup;
  try {
    warmup = RunWarmup();
  } catch (const std::exception& e) {
    warmup = Status(StatusCode::kInternal, e.what());
  }
  runner_->WarmupDone(index_, std::move(warmup));  // on failure the runner is stopped next
  serving_.store(true, std::memory_order_release);
  while (true) {
    Batch batch = runner_->scheduler().NextBatch(index_);
    if (batch.empty()) break;
    std::lock_guard<std::mutex> lock(run_mu_);
    RunBatch(batch);
  }
  {
    // After a batch another thread may be running: then nobody runs any more.
    std::lock_guard<std::mutex> lock(run_mu_);
    serving_.store(false, std::memory_order_release);
  }
  backend_->Close();
  backend_.reset();
}

bool InstanceWorker::TryRunReady(Scheduler& scheduler) {
  if (!serving_.load(std::memory_order_acquire)) return false;
  std::unique_lock<std::mutex> lock(run_mu_, std::try_to_lock);
  if (!lock.owns_lock() || !serving_.load(std::memory_order_relaxed)) return false;
  // At most what was queued on entry: other threads (HTTP, in-process) may keep queueing, and
  // the calling I/O thread must get back to its connections; RunReady wakes a worker for the rest.
  size_t budget = scheduler.pending();
  bool ran = false;
  while (budget > 0) {
    Batch batch = scheduler.TryNextBatch();
    if (batch.empty()) break;
    budget -= std::min(budget, batch.requests.size());
    RunBatch(batch);
    ran = true;
  }
  return ran;
}

void InstanceWorker::RunBatch(Batch& batch) {
  struct Running {  // running_ for the whole call, however it ends
    std::atomic<bool>& flag;
    explicit Running(std::atomic<bool>& f) : flag(f) {
      flag.store(true, std::memory_order_relaxed);
    }
    ~Running() { flag.store(false, std::memory_order_relaxed); }
  } running(running_);
  // The sequence batcher answers its cancelled requests itself (it must hear of every
  // request it handed out).
  if (!runner_->spec().sequence.enabled && DropCancelled(batch)) {
    runner_->Deliver(batch.sequence, Delivery{});  // keeps preserve_ordering's count
    return;
  }
  if (wait_ != nullptr && !AcquireResources(batch)) {
    runner_->Deliver(batch.sequence, Delivery{});
    return;
  }
  HeldResources held{wait_.get(), limiter_id_};  // given back however the batch ends
  const size_t requests = batch.requests.size();
  const uint64_t start = NowNs();
  if (runner_->spec().per_request_execution) {
    ExecutePerRequest(batch);
  } else {
    ExecuteGathered(batch);
  }
  runner_->NoteBatch(NowNs() - start, requests);  // for RunReady: how long, how many
}

namespace {

// What the backend must compute: the union of the requests' requested outputs (every model
// output when any request wants them all), plus what the scheduler needs (implicit state).
std::vector<std::string> OutputsToCompute(const ModelSpec& spec, const Batch& batch,
                                          const std::vector<std::string>& extra) {
  std::vector<std::string> names;
  auto add = [&names](const std::string& n) {
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  };
  bool all = false;
  for (const RequestPtr& r : batch.requests) {
    if (r->requested_outputs.empty()) all = true;
    for (const auto& n : r->requested_outputs) add(n);
  }
  if (all) {
    for (const auto& o : spec.outputs) add(o.name);
  }
  for (const auto& n : extra) add(n);
  return names;
}

std::vector<const InferRequest*> RequestPointers(const Batch& batch) {
  std::vector<const InferRequest*> out;
  for (const RequestPtr& r : batch.requests) out.push_back(r.get());
  return out;
}

// parts[i]: input `name` of the batch's request i (each request must have the same inputs).
void BatchParts(const ModelSpec& spec, const Batch& batch, const std::string& name,
                std::vector<const Tensor*>* parts) {
  const size_t count = batch.requests[0]->inputs.size();
  for (size_t i = 0; i < batch.requests.size(); ++i) {
    const InferRequest& r = *batch.requests[i];
    (*parts)[i] = r.FindInput(name);
    if ((*parts)[i] == nullptr || r.inputs.size() != count) {
      throw Error(StatusCode::kInternal,
                  "model '" + spec.name + "': cannot batch input '" + name +
                      "': the batch's requests do not have the same inputs");
    }
  }
}

// One batch tensor per input, from every request's inputs including those the scheduler added
// (control inputs, implicit state): each request must have the same inputs as the first, and
// ConcatRows checks each part's datatype, shape, device and size before copying.
NamedTensors GatherRaggedInputs(const ModelSpec& spec, const Batch& batch);

NamedTensors GatherInputs(const ModelSpec& spec, const Batch& batch) {
  if (HasRaggedIO(spec)) return GatherRaggedInputs(spec, batch);
  if (batch.requests.size() == 1) return batch.requests[0]->inputs;  // views, no copy
  NamedTensors gathered;
  const InferRequest& first = *batch.requests[0];
  std::vector<const Tensor*> parts(batch.requests.size());
  for (const auto& kv : first.inputs) {
    BatchParts(spec, batch, kv.first, &parts);
    try {
      gathered.emplace_back(kv.first, ConcatRows(parts));
    } catch (const Error& e) {
      throw Error(StatusCode::kInternal,
                  "model '" + spec.name + "': cannot batch input '" + kv.first + "' of " +
                      std::to_string(parts.size()) + " requests: " + e.what());
    }
  }
  return gathered;
}

// GatherInputs for a model with ragged inputs or batch inputs: ragged inputs flattened to
// [total elements] (a view for one request), the others by rows, then the batch inputs.
NamedTensors GatherRaggedInputs(const ModelSpec& spec, const Batch& batch) {
  NamedTensors gathered;
  const InferRequest& first = *batch.requests[0];
  std::vector<const Tensor*> parts(batch.requests.size());
  for (const auto& kv : first.inputs) {
    BatchParts(spec, batch, kv.first, &parts);
    const TensorSpec* s = nullptr;
    for (const auto& in : spec.inputs) {
      if (in.name == kv.first) s = &in;
    }
    try {
      if (s != nullptr && s->ragged) {
        gathered.emplace_back(kv.first, GatherRagged(parts));
      } else if (parts.size() == 1) {
        gathered.emplace_back(kv.first, *parts[0]);  // a view, no copy
      } else {
        gathered.emplace_back(kv.first, ConcatRows(parts));
      }
    } catch (const Error& e) {
      throw Error(StatusCode::kInternal,
                  "model '" + spec.name + "': cannot batch input '" + kv.first + "' of " +
                      std::to_string(parts.size()) + " requests: " + e.what());
    }
  }
  const std::vector<const InferRequest*> requests = RequestPointers(batch);
  for (const BatchInputSpec& b : spec.batch_inputs) {
    Tensor t = MakeBatchInput(b, requests, spec.max_batch_size);
    for (const auto& target : b.target_names) gathered.emplace_back(target, t);
  }
  return gathered;
}

const BatchOutputSpec* FindBatchOutput(const ModelSpec& spec, const std::string& name) {
  for (const auto& b : spec.batch_outputs) {
    if (std::find(b.target_names.begin(), b.target_names.end(), name) != b.target_names.end()) {
      return &b;
    }
  }
  return nullptr;
}

const Tensor* FindOutput(const NamedTensors& outputs, const std::string& name) {
  for (const auto& kv : outputs) {
    if (kv.first == name) return &kv.second;
  }
  return nullptr;
}

// Splits the batch outputs back into one response per request.
Status Scatter(const ModelSpec& spec, Batch& batch, const NamedTensors& outputs,
               Delivery* delivery) {
  const bool batching = spec.max_batch_size > 0;
  // batch_output targets: split by each request's source input shape, not by rows.
  std::vector<std::pair<std::string, std::vector<Tensor>>> scattered;
  if (!spec.batch_outputs.empty()) {
    const std::vector<const InferRequest*> requests = RequestPointers(batch);
    for (const auto& kv : outputs) {
      const BatchOutputSpec* b = FindBatchOutput(spec, kv.first);
      if (b == nullptr) continue;
      try {
        scattered.emplace_back(kv.first,
                               ScatterWithInputShape(spec.name, kv.first, *b, kv.second, requests));
      } catch (const Error& e) {
        return Status(e.code(), e.what());
      }
    }
  }
  const auto scattered_part = [&scattered](const std::string& name, size_t i) -> const Tensor* {
    for (const auto& kv : scattered) {
      if (kv.first == name) return &kv.second[i];
    }
    return nullptr;
  };
  for (const auto& kv : outputs) {
    if (scattered_part(kv.first, 0) != nullptr) continue;
    if (batching && (kv.second.shape().empty() || kv.second.shape()[0] != batch.batch_size)) {
      return Status(StatusCode::kInternal,
                    "model '" + spec.name + "' returned output '" + kv.first + "' of shape " +
                        ShapeToString(kv.second.shape()) + " for a batch of " +
                        std::to_string(batch.batch_size) + ": its first dim must be the batch size");
    }
  }
  const bool single = batch.requests.size() == 1;
  int64_t row = 0;
  size_t index = 0;
  for (RequestPtr& r : batch.requests) {
    InferResponse resp;
    resp.token = r->token;
    resp.outputs.reserve(r->requested_outputs.empty() ? outputs.size() : r->requested_outputs.size());
    auto add = [&](const std::string& name, const Tensor& t) {
      if (const Tensor* part = scattered_part(name, index)) {
        resp.outputs.emplace_back(name, *part);
        return;
      }
      resp.outputs.emplace_back(name, single ? t : t.SliceRows(row, r->batch_size));
    };
    if (r->requested_outputs.empty()) {
      for (const auto& kv : outputs) add(kv.first, kv.second);
    } else {
      for (const auto& name : r->requested_outputs) {
        const Tensor* t = FindOutput(outputs, name);
        if (t == nullptr) {
          return Status(StatusCode::kInternal, "model '" + spec.name +
                                                   "' did not produce requested output '" + name + "'");
        }
        add(name, *t);
      }
    }
    row += r->batch_size;
    ++index;
    delivery->emplace_back(r->sink, std::move(resp));
  }
  return Status::Success();
}

}  // namespace

bool InstanceWorker::DropCancelled(Batch& batch) {
  auto& requests = batch.requests;
  bool any = false;
  for (const RequestPtr& r : requests) any = any || r->cancelled();
  if (!any) return false;
  const uint64_t now = NowNs();
  std::vector<RequestPtr> kept;
  kept.reserve(requests.size());
  for (RequestPtr& r : requests) {
    if (!r->cancelled()) {
      kept.push_back(std::move(r));
      continue;
    }
    batch.batch_size -= r->batch_size;
    runner_->stats().RecordFailure(now - r->enqueue_ns, now - r->enqueue_ns, FailReason::kCanceled);
    r->FailFromScheduler(CancelledStatus());
  }
  requests = std::move(kept);
  return requests.empty();
}

bool InstanceWorker::AcquireResources(Batch& batch) {
  // The sequence batcher answers its own requests (it must hear of every one it handed out):
  // a sequence batch waits whole, and its cancelled requests are answered when it runs.
  const bool own_cancels = !runner_->spec().sequence.enabled;
  if (own_cancels) {
    // Listen first, then look: a cancellation between the two still wakes the wait.
    for (const RequestPtr& r : batch.requests) {
      if (r->cancel != nullptr) r->cancel->SetListener(wait_);
    }
    if (DropCancelled(batch)) return false;
  }
  // on_poke runs without the limiter's lock (DropCancelled answers requests: sinks, Python).
  return wait_->limiter().Acquire(limiter_id_, wait_->waiter(),
                                  [&] { return own_cancels && DropCancelled(batch); });
}

void InstanceWorker::ExecuteGathered(Batch& batch) {
  runner_->Deliver(batch.sequence, RunGathered(batch, true));
}

Delivery InstanceWorker::RunGathered(Batch& batch, bool scheduled) {
  const ModelSpec& spec = runner_->spec();
  ModelStats& stats = runner_->stats();
  const uint64_t t0 = NowNs();
  uint64_t t1 = t0, t2 = t0;
  Delivery delivery;
  delivery.reserve(batch.requests.size());
  Status status;
  {
    NamedTensors outputs;
    Scheduler& scheduler = runner_->scheduler();
    bool told_scheduler = false;  // the scheduler must always hear that the batch is done
    try {
      NamedTensors inputs = GatherInputs(spec, batch);
      const std::vector<std::string> output_names = OutputsToCompute(
          spec, batch, scheduled ? scheduler.ExtraOutputs() : std::vector<std::string>{});
      t1 = NowNs();
      status = backend_->Execute(inputs, output_names, &outputs);
      t2 = NowNs();
      told_scheduler = true;
      if (scheduled) {
        Status state = scheduler.BatchExecuted(index_, RequestPointers(batch), &outputs, status);
        if (status.ok()) status = std::move(state);
      }
      if (status.ok()) status = Scatter(spec, batch, outputs, &delivery);
    } catch (const Error& e) {
      status = Status(e.code(), e.what());
    } catch (const std::exception& e) {
      status = Status(StatusCode::kInternal, std::string("model '") + spec.name + "': " + e.what());
    }
    if (!told_scheduler && scheduled) {
      scheduler.BatchExecuted(index_, RequestPointers(batch), nullptr, status);
    }
    if (t2 == t0) t2 = t1 = NowNs();
  }  // batch-level tensors released; responses hold their own views
  const uint64_t t3 = NowNs();

  // Traced requests carry their batch's timestamps (Triton's COMPUTE_* trace activities).
  auto stamp = [&](const InferRequest& r, InferResponse& resp) {
    if (r.trace_id == 0) return;
    resp.traced = true;
    resp.trace = TraceTimes{r.enqueue_ns, t0, t1, t2, t3};
  };
  if (status.ok()) {
    for (size_t i = 0; i < batch.requests.size(); ++i) {
      InferRequest& r = *batch.requests[i];
      if (!r.null_request) {  // a sequence batcher's filler is no inference (as in Triton)
        stats.RecordSuccess(t3 - r.enqueue_ns, t0 - r.enqueue_ns, t1 - t0, t2 - t1, t3 - t2,
                            r.batch_size);
      }
      delivery[i].second.keepalive = std::move(r.inputs);
      stamp(r, delivery[i].second);
    }
    stats.RecordExecution(spec.max_batch_size > 0 ? batch.batch_size : 1, t1 - t0, t2 - t1,
                          t3 - t2);
  } else {
    delivery.clear();
    for (RequestPtr& r : batch.requests) {
      if (!r->null_request) {
        stats.RecordFailure(t3 - r->enqueue_ns, t0 - r->enqueue_ns, FailReason::kBackend);
      }
      InferResponse resp;
      resp.token = r->token;
      resp.status = status;
      resp.keepalive = std::move(r->inputs);
      stamp(*r, resp);
      delivery.emplace_back(r->sink, std::move(resp));
    }
  }
  return delivery;
}

void InstanceWorker::ExecutePerRequest(Batch& batch) {
  if (runner_->OrderPerRequest(batch.sequence, &batch.requests)) {  // answers go out in line
    RunPerRequest(batch, true);
    return;
  }
  RunPerRequest(batch, true);
  runner_->Deliver(batch.sequence, Delivery{});
}

void InstanceWorker::RunPerRequest(Batch& batch, bool scheduled) {
  const ModelSpec& spec = runner_->spec();
  const uint64_t t0 = NowNs();
  std::vector<std::shared_ptr<OwnedRequest>> requests;
  requests.reserve(batch.requests.size());
  for (RequestPtr& r : batch.requests) {
    requests.push_back(
        std::make_shared<OwnedRequest>(std::move(r), runner_->shared_stats(), spec.name, t0,
                                       spec.ensemble));
  }
  // Counted before the call: the backend may answer (and a client read the statistics) before
  // the call returns. (An ensemble counts its executions as its requests succeed.)
  const int64_t rows = spec.max_batch_size > 0 ? batch.batch_size : 1;
  if (!spec.ensemble) runner_->stats().RecordExecution(rows, 0, 0, 0);
  Status status;
  try {
    status = backend_->ExecuteRequests(requests);
  } catch (const Error& e) {
    status = Status(e.code(), e.what());
  } catch (const std::exception& e) {
    status = Status(StatusCode::kInternal, std::string("model '") + spec.name + "': " + e.what());
  }
  if (!status.ok()) {
    for (auto& r : requests) r->FailIfUnfinished(status);
  }
  if (scheduled) {
    std::vector<const InferRequest*> executed;
    for (auto& r : requests) executed.push_back(&r->request());
    runner_->scheduler().BatchExecuted(index_, executed, nullptr, status);
  }
  const uint64_t t1 = NowNs();
  runner_->stats().AddExecutionTime(rows, t1 - t0);
}

namespace {

// Where a warmup batch's responses go: it collects the errors (Triton's "<error>; " each) and
// wakes the worker once every request has its final response.
class WarmupSink : public ResponseSink {
 public:
  explicit WarmupSink(size_t requests) : unfinished_(requests) {}

  void Complete(InferResponse&& response) override {
    // Only the status is read: the response (and any Python-owned tensor in it) is released by
    // the caller, after this returns, with no lock of ours held.
    std::lock_guard<std::mutex> lock(mu_);
    if (!response.status.ok()) errors_ += response.status.message() + "; ";
    if (response.final && unfinished_ > 0 && --unfinished_ == 0) done_.notify_all();
  }

  // The errors of the batch's responses ("" when none), once every request is finished.
  std::string Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return unfinished_ == 0; });
    return errors_;
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  size_t unfinished_;
  std::string errors_;
};

}  // namespace

Status InstanceWorker::RunWarmup() {
  const bool per_request = runner_->spec().per_request_execution;
  for (const WarmupSample& sample : runner_->warmup_samples()) {
    if (sample.batch_size <= 0) continue;  // Triton skips batch-0 samples
    const uint32_t iterations = std::max<uint32_t>(sample.count, 1);
    for (uint32_t i = 0; i < iterations; ++i) {
      auto sink = std::make_shared<WarmupSink>(static_cast<size_t>(sample.batch_size));
      Batch batch;
      for (int64_t row = 0; row < sample.batch_size; ++row) {
        auto r = std::make_unique<InferRequest>();
        r->inputs = sample.inputs;  // views: every request shares the sample's buffers
        r->batch_size = 1;
        r->sink = sink;
        r->enqueue_ns = NowNs();
        batch.requests.push_back(std::move(r));
        batch.batch_size += 1;
      }
      // A warmup run takes the instance's rate limiter resources like any other (Triton
      // schedules warmup through its rate limiter too).
      if (wait_ != nullptr) {
        wait_->limiter().Acquire(limiter_id_, wait_->waiter(), [] { return false; });
      }
      HeldResources held{wait_.get(), limiter_id_};
      if (per_request) {
        RunPerRequest(batch, false);
      } else {
        Delivery delivery = RunGathered(batch, false);
        for (auto& d : delivery) d.first->Complete(std::move(d.second));
      }
      batch.requests.clear();  // per-request: the backend may still hold them; Wait sees to it
      const std::string errors = sink->Wait();
      if (!errors.empty()) {
        return Status(StatusCode::kInvalidArg,
                      "failed to run warmup sample '" + sample.name + "': " + errors);
      }
    }
  }
  return Status::Success();
}

}  // namespace tritonlite
