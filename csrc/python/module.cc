// tritonlite._core: the C++ core as a Python module. Only the module definition lives here;
// each bound concern is in its own file of csrc/python/ (see python/bind.h), the test hooks
// and the benchmark generator in csrc/testing/.
#include <pybind11/pybind11.h>

#include "python/bind.h"
#include "testing/hooks.h"

PYBIND11_MODULE(_core, m) {
  using namespace tritonlite::python;
  m.doc() = "tritonlite C++ core: tensors, requests, schedulers";
  // In this order: a class is registered before the signatures that name it.
  for (auto bind : {&BindErrors, &BindCuda, &BindTensor, &BindCompletionQueue, &BindCancellation,
                    &BindRequest, &BindResponseCache, &BindRateLimiter, &BindModelRunner,
                    &BindStatistics,
                    &BindSharedMemory, &BindGrpcServer, &BindGrpcCodec, &BindSpinWait,
                    &tritonlite::testing::BindTestHooks}) {
    bind(m);
  }
}
