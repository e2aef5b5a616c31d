// A model version's statistics as the dict tritonlite.server turns into Triton's
// ModelStatistics and metrics.
#pragma once

#include <pybind11/pybind11.h>

#include "core/stats.h"

namespace tritonlite::python {

namespace py = pybind11;

py::dict StatsToPy(const StatsSnapshot& s);

}  // namespace tritonlite::python
