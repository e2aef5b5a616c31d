#include "core/stats.h"

#include <array>
#include <chrono>

namespace tritonlite {

namespace {

// Upper bounds in ns: 1 us to 100 s, ten per decade.
constexpr std::array<uint64_t, kLatencyBounds> MakeBoundsNs() {
  constexpr uint64_t kSteps[10] = {10, 12, 15, 20, 25, 30, 40, 50, 60, 80};  // tenths
  std::array<uint64_t, kLatencyBounds> out{};
  uint64_t decade = 1000;  // ns
  size_t i = 0;
  for (int d = 0; d < 8; ++d, decade *= 10) {
    for (uint64_t step : kSteps) out[i++] = decade * step / 10;
  }
  out[i] = decade;  // 100 s
  return out;
}

constexpr std::array<uint64_t, kLatencyBounds> kBoundsNs = MakeBoundsNs();

// kOctaveStart[b]: the first bound >= the smallest value of bit length b (0 for b = 0).
constexpr std::array<uint8_t, 65> MakeOctaveStart() {
  std::array<uint8_t, 65> out{};
  for (int b = 1; b <= 64; ++b) {
    const uint64_t low = uint64_t{1} << (b - 1);
    size_t i = 0;
    while (i < kLatencyBounds && kBoundsNs[i] < low) ++i;
    out[b] = static_cast<uint8_t>(i);
  }
  return out;
}

constexpr std::array<uint8_t, 65> kOctaveStart = MakeOctaveStart();

}  // namespace

const uint64_t* LatencyBoundsNs() { return kBoundsNs.data(); }

size_t LatencyBucket(uint64_t ns) {
  // The first bound >= ns (a value on a bound belongs to that bound's bucket, as Prometheus'
  // `le`); past the last bound: the overflow bucket, kLatencyBounds. Found from ns's bit
  // length (the first bound of its power-of-two range, from a table) and then at most a few
  // steps (bounds are ten per decade, about three per power of two): some 15 instructions,
  // where a binary search over the 81 bounds took about 60.
  const int bits = ns == 0 ? 0 : 64 - __builtin_clzll(ns);
  size_t i = kOctaveStart[bits];
  while (i < kLatencyBounds && kBoundsNs[i] < ns) ++i;
  return i;
}

void LatencyHistogram::Add(uint64_t ns) { ++counts[LatencyBucket(ns)]; }

const char* LatencyName(Latency kind) {
  switch (kind) {
    case Latency::kRequest: return "request";
    case Latency::kQueue: return "queue";
    case Latency::kComputeInput: return "compute_input";
    case Latency::kComputeInfer: return "compute_infer";
    case Latency::kComputeOutput: return "compute_output";
  }
  return "request";
}

uint64_t WallClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void ModelStats::RecordSuccess(uint64_t total_ns, uint64_t queue_ns, uint64_t input_ns,
                               uint64_t infer_ns, uint64_t output_ns, int64_t batch_size) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.inference_count += static_cast<uint64_t>(batch_size);
  s_.success.Add(total_ns);
  s_.queue.Add(queue_ns);
  s_.compute_input.Add(input_ns);
  s_.compute_infer.Add(infer_ns);
  s_.compute_output.Add(output_ns);
  s_.latency[static_cast<size_t>(Latency::kRequest)].Add(total_ns);
  s_.latency[static_cast<size_t>(Latency::kQueue)].Add(queue_ns);
  s_.latency[static_cast<size_t>(Latency::kComputeInput)].Add(input_ns);
  s_.latency[static_cast<size_t>(Latency::kComputeInfer)].Add(infer_ns);
  s_.latency[static_cast<size_t>(Latency::kComputeOutput)].Add(output_ns);
}

void ModelStats::RecordCacheHit(uint64_t total_ns, uint64_t lookup_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.success.Add(total_ns);
  s_.queue.Add(0);
  s_.cache_hit.Add(lookup_ns);
  // Triton's request and queue durations include cached requests; the compute ones do not.
  s_.latency[static_cast<size_t>(Latency::kRequest)].Add(total_ns);
  s_.latency[static_cast<size_t>(Latency::kQueue)].Add(0);
  s_.last_inference_ms = WallClockMs();
}

void ModelStats::RecordCacheMiss(uint64_t ns) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.cache_miss.Add(ns);
}

const char* FailReasonName(FailReason reason) {
  switch (reason) {
    case FailReason::kBackend: return "BACKEND";
    case FailReason::kCanceled: return "CANCELED";
    case FailReason::kRejected: return "REJECTED";
    case FailReason::kOther: break;
  }
  return "OTHER";
}

void ModelStats::RecordFailure(uint64_t total_ns, uint64_t /*queue_ns*/, FailReason reason) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.fail.Add(total_ns);
  ++s_.fail_reasons[static_cast<size_t>(reason)];
}

void ModelStats::RecordExecution(int64_t batch_size, uint64_t input_ns, uint64_t infer_ns,
                                 uint64_t output_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.execution_count += 1;
  s_.last_inference_ms = WallClockMs();
  BatchStats& b = s_.batch_stats[batch_size];
  b.compute_input.Add(input_ns);
  b.compute_infer.Add(infer_ns);
  b.compute_output.Add(output_ns);
}

void ModelStats::AddExecutionTime(int64_t batch_size, uint64_t infer_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  s_.batch_stats[batch_size].compute_infer.Add(infer_ns, 0);
}

StatsSnapshot ModelStats::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return s_;
}

}  // namespace tritonlite
