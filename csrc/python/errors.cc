#include "python/errors.h"

#include <exception>
#include <utility>

namespace tritonlite::python {

void ThrowInvalid(const std::string& msg) { throw Error(StatusCode::kInvalidArg, msg); }

StatusCode StatusCodeFromName(const std::string& name) {
  static const std::pair<const char*, StatusCode> kNames[] = {
      {"INVALID_ARG", StatusCode::kInvalidArg}, {"NOT_FOUND", StatusCode::kNotFound},
      {"UNAVAILABLE", StatusCode::kUnavailable}, {"INTERNAL", StatusCode::kInternal},
      {"UNSUPPORTED", StatusCode::kUnsupported}, {"ALREADY_EXISTS", StatusCode::kAlreadyExists},
      {"CANCELLED", StatusCode::kCancelled}, {"UNKNOWN", StatusCode::kUnknown}};
  for (const auto& kv : kNames) {
    if (name == kv.first) return kv.second;
  }
  return StatusCode::kInternal;
}

Status StatusFromPython(py::error_already_set& e) {
  py::object value = e.value();
  std::string message = py::str(value).cast<std::string>();
  if (message.empty()) message = py::str(py::type::of(value).attr("__name__")).cast<std::string>();
  StatusCode code = StatusCode::kInternal;
  if (py::hasattr(value, "status")) {
    code = StatusCodeFromName(py::str(value.attr("status")).cast<std::string>());
  }
  return Status(code, message);
}

void BindErrors(py::module_& m) {
  // Core errors are raised as the Python class installed by set_error_class
  // (tritonlite.errors.TritonError); `.status` carries Triton's status kind.
  static PyObject* error_type = PyExc_RuntimeError;
  m.def("set_error_class", [](py::object cls) {
    Py_INCREF(cls.ptr());
    error_type = cls.ptr();
  }, py::arg("cls"), "Install the exception class that core errors are raised as: cls(message, status).");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object exc = py::reinterpret_borrow<py::object>(error_type)(e.what(), StatusCodeName(e.code()));
      PyErr_SetObject(error_type, exc.ptr());
    }
  });
}

}  // namespace tritonlite::python
