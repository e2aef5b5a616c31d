// What tritonlite._core offers tests and benchmarks only, apart from the production bindings
// of csrc/python/: the closed-loop load generator and the gRPC codec test hooks.
#pragma once

#include <pybind11/pybind11.h>

namespace tritonlite::testing {

namespace py = pybind11;

void BindClosedLoop(py::module_& m);      // closed_loop_binding.cc: _core.closed_loop
void BindGrpcCodecHooks(py::module_& m);  // grpc_codec_hooks.cc: into _core.grpc_codec

// Both, after the production bindings (grpc_codec must exist).
inline void BindTestHooks(py::module_& m) {
  BindClosedLoop(m);
  BindGrpcCodecHooks(m);
}

}  // namespace tritonlite::testing
