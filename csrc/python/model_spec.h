// The model spec from the plain dict tritonlite.server builds from a validated ModelConfig.
#pragma once

#include <pybind11/pybind11.h>

#include "core/model_spec.h"

namespace tritonlite::python {

namespace py = pybind11;

// config.py has validated the config the dict comes from; what is checked here guards the core
// against a dict that is not what it should be (unknown enum names, a batch input the gatherer
// cannot lay out or name, a sequence state whose initial value does not fit its shape): such a
// dict raises INVALID_ARG or TypeError and never reaches the schedulers.
ModelSpec ModelSpecFromPy(const py::dict& d);

}  // namespace tritonlite::python
