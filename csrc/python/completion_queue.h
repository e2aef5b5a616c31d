// Responses as Python sees them (see completion_queue.cc).
#pragma once

#include <pybind11/pybind11.h>

#include "core/request.h"

namespace tritonlite::python {

namespace py = pybind11;

// (token, error, outputs, final): error is None or (status, message); outputs a list of
// (name, Tensor) pairs. Dropping the response here releases its inputs with the GIL held.
py::tuple ResponseToPy(InferResponse&& r);

}  // namespace tritonlite::python
