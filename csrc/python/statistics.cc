#include "python/statistics.h"

#include "python/bind.h"

namespace tritonlite::python {

namespace {

py::dict DurationToPy(const Duration& d) {
  py::dict o;
  o["count"] = d.count;
  o["ns"] = d.ns;
  return o;
}

}  // namespace

py::dict StatsToPy(const StatsSnapshot& s, bool histograms) {
  py::dict o;
  o["inference_count"] = s.inference_count;
  o["execution_count"] = s.execution_count;
  o["last_inference"] = s.last_inference_ms;
  o["pending_request_count"] = s.pending;
  py::dict inf;
  inf["success"] = DurationToPy(s.success);
  inf["fail"] = DurationToPy(s.fail);
  inf["queue"] = DurationToPy(s.queue);
  inf["compute_input"] = DurationToPy(s.compute_input);
  inf["compute_infer"] = DurationToPy(s.compute_infer);
  inf["compute_output"] = DurationToPy(s.compute_output);
  inf["cache_hit"] = DurationToPy(s.cache_hit);
  inf["cache_miss"] = DurationToPy(s.cache_miss);
  o["inference_stats"] = inf;
  py::dict reasons;  // nv_inference_request_failure's reason label (not a ModelStatistics field)
  for (size_t i = 0; i < kFailReasons; ++i) {
    reasons[FailReasonName(static_cast<FailReason>(i))] = s.fail_reasons[i];
  }
  o["fail_reasons"] = reasons;
  py::list batches;
  for (const auto& kv : s.batch_stats) {
    py::dict b;
    b["batch_size"] = kv.first;
    b["compute_input"] = DurationToPy(kv.second.compute_input);
    b["compute_infer"] = DurationToPy(kv.second.compute_infer);
    b["compute_output"] = DurationToPy(kv.second.compute_output);
    batches.append(b);
  }
  o["batch_stats"] = batches;
  if (!histograms) return o;
  // Not a ModelStatistics field: the latency histograms' bucket counts (bounds: the module's
  // latency_bounds_us()), by what they time; the HTTP/gRPC statistics APIs leave it out.
  py::dict hist;
  for (size_t k = 0; k < kLatencyKinds; ++k) {
    py::list counts(kLatencyBuckets);
    for (size_t i = 0; i < kLatencyBuckets; ++i) counts[i] = py::int_(s.latency[k].counts[i]);
    hist[LatencyName(static_cast<Latency>(k))] = counts;
  }
  o["latency_histograms"] = hist;
  return o;
}

void BindStatistics(py::module_& m) {
  m.def("latency_bounds_us", [] {
    py::list out(kLatencyBounds);
    const uint64_t* bounds = LatencyBoundsNs();
    for (size_t i = 0; i < kLatencyBounds; ++i) out[i] = py::float_(bounds[i] / 1000.0);
    return out;
  }, "The latency histograms' bucket upper bounds in microseconds (the statistics' "
     "latency_histograms have one more count: above the last bound).");
}

}  // namespace tritonlite::python
