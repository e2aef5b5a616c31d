// A model version's statistics as the dict tritonlite.server turns into Triton's
// ModelStatistics and metrics.
#pragma once

#include <pybind11/pybind11.h>

#include "core/stats.h"

namespace tritonlite::python {

namespace py = pybind11;

// histograms: include "latency_histograms" (410 counts; only the metrics' histograms and
// summaries and the dashboard read them, the statistics APIs do not).
py::dict StatsToPy(const StatsSnapshot& s, bool histograms = false);

}  // namespace tritonlite::python
