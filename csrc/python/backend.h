// The InstanceBackend the core runs a Python backend instance through (see
// scheduling/backend.h): execute(inputs, output_names) per gathered batch, or
// execute_requests(requests) for a backend that answers each request itself.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "scheduling/backend.h"

namespace tritonlite::python {

namespace py = pybind11;

std::unique_ptr<InstanceBackend> MakePyInstanceBackend(py::object instance);

}  // namespace tritonlite::python
