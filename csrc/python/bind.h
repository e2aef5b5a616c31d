// The bound concerns of tritonlite._core, one function (and file) each; python/module.cc calls
// them in this order. The test hooks and the benchmark generator are in testing/hooks.h.
#pragma once

#include <pybind11/pybind11.h>

namespace tritonlite::python {

namespace py = pybind11;

void BindErrors(py::module_& m);          // errors.cc: set_error_class, error translation
void BindCuda(py::module_& m);            // cuda.cc: built_with_cuda, the CUDA runtime
void BindTensor(py::module_& m);          // tensor.cc: Tensor, datatypes, BYTES codec
void BindCompletionQueue(py::module_& m); // completion_queue.cc: responses to the event loop
void BindCancellation(py::module_& m);    // cancellation.cc: CancelHandle, CancelBoard
void BindRequest(py::module_& m);         // request.cc: Request (a backend's own request)
void BindResponseCache(py::module_& m);   // response_cache.cc: ResponseCache
void BindRateLimiter(py::module_& m);     // rate_limiter.cc: RateLimiter
void BindModelRunner(py::module_& m);     // model_runner.cc: ModelRunner
void BindStatistics(py::module_& m);      // statistics.cc: latency_bounds_us
void BindSharedMemory(py::module_& m);    // shared_memory.cc: atomic words in shared buffers
void BindGrpcServer(py::module_& m);      // grpc_server.cc: GrpcServer, GrpcCall
void BindGrpcCodec(py::module_& m);       // grpc_codec.cc: the grpc_codec submodule
void BindSpinWait(py::module_& m);        // spin_wait.cc: spin_wait_ns, cpu_budget

}  // namespace tritonlite::python
