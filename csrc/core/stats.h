// Per model-version statistics, shaped like Triton's ModelStatistics, plus fixed-bucket latency
// histograms (request, queue, compute input/infer/output) for Prometheus histograms, summaries
// and the dashboard's percentiles. Updated with one short lock per request or executed batch
// (a histogram observation is a binary search over constant bounds and one increment under the
// same lock); cheap enough to stay on always.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace tritonlite {

struct Duration {
  uint64_t count = 0;
  uint64_t ns = 0;
  void Add(uint64_t n, uint64_t c = 1) { count += c; ns += n; }
};

// Latency histogram buckets: upper bounds on a 1-1.2-1.5-2-2.5-3-4-5-6-8 grid per
// decade from 1 us to 100 s (at most 25% apart, so a percentile interpolated inside a bucket is
// off by less than that), and one last bucket for everything above.
constexpr size_t kLatencyBounds = 81;
constexpr size_t kLatencyBuckets = kLatencyBounds + 1;
const uint64_t* LatencyBoundsNs();  // kLatencyBounds increasing values, in ns
size_t LatencyBucket(uint64_t ns);  // the bucket ns falls in: 0..kLatencyBounds

struct LatencyHistogram {
  uint64_t counts[kLatencyBuckets] = {};  // not cumulative: counts[i] are in (bound[i-1], bound[i]]
  void Add(uint64_t ns);
};

// The histograms of one model version, by what they time.
enum class Latency : uint8_t { kRequest = 0, kQueue, kComputeInput, kComputeInfer, kComputeOutput };
constexpr size_t kLatencyKinds = 5;
const char* LatencyName(Latency kind);

struct BatchStats {
  Duration compute_input, compute_infer, compute_output;
};

// Why a request failed, as the `reason` label of Triton's nv_inference_request_failure.
enum class FailReason : uint8_t { kOther = 0, kBackend, kCanceled, kRejected };
constexpr size_t kFailReasons = 4;
const char* FailReasonName(FailReason reason);

struct StatsSnapshot {
  uint64_t inference_count = 0;  // inferences: sum of batch sizes of successful requests
  uint64_t execution_count = 0;  // backend executions (batches)
  uint64_t last_inference_ms = 0;  // wall clock, ms since epoch
  uint64_t fail_reasons[kFailReasons] = {};  // failures by FailReason
  Duration success, fail, queue, compute_input, compute_infer, compute_output;
  Duration cache_hit, cache_miss;  // response cache: lookup (+ insertion, on a miss) time
  std::map<int64_t, BatchStats> batch_stats;
  LatencyHistogram latency[kLatencyKinds];  // per successful request, by Latency
  uint64_t pending = 0;  // requests waiting in the queue now
};

class ModelStats {
 public:
  void RecordSuccess(uint64_t total_ns, uint64_t queue_ns, uint64_t input_ns, uint64_t infer_ns,
                     uint64_t output_ns, int64_t batch_size);
  void RecordFailure(uint64_t total_ns, uint64_t queue_ns, FailReason reason = FailReason::kOther);
  // A request answered from the response cache: a success with no queueing and no execution
  // (Triton counts it in success and queue, not in inference_count or the compute durations).
  void RecordCacheHit(uint64_t total_ns, uint64_t lookup_ns);
  // A cacheable request that had to run: its lookup and insertion time.
  void RecordCacheMiss(uint64_t ns);
  void RecordExecution(int64_t batch_size, uint64_t input_ns, uint64_t infer_ns, uint64_t output_ns);
  // Adds time to an execution already counted (backends whose responses may go out before
  // their execute call returns are counted first, timed after).
  void AddExecutionTime(int64_t batch_size, uint64_t infer_ns);
  StatsSnapshot Snapshot() const;

 private:
  mutable std::mutex mu_;
  StatsSnapshot s_;
};

uint64_t WallClockMs();

}  // namespace tritonlite
