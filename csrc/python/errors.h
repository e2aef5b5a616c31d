// Core errors at the pybind11 seam: core Errors are raised as tritonlite.errors.TritonError
// (installed by set_error_class) with Triton's status kind; a Python exception raised by a
// backend becomes a core Status.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "core/status.h"

namespace tritonlite::python {

namespace py = pybind11;

// Raises INVALID_ARG (as TritonError in Python) with `msg`.
[[noreturn]] void ThrowInvalid(const std::string& msg);

// Triton's status kind name ('INVALID_ARG', ...) -> StatusCode; unknown names are INTERNAL.
StatusCode StatusCodeFromName(const std::string& name);

// The status of a Python exception: a TritonError keeps its kind, anything else is INTERNAL.
Status StatusFromPython(py::error_already_set& e);

// set_error_class and the translator raising core Errors as that class.
void BindErrors(py::module_& m);

}  // namespace tritonlite::python
