// tritonlite._core.closed_loop: the in-process benchmark load generator (testing/closed_loop.h)
// for benchmarks/bench_core.py and the stress tests; not used by the server.
#include <pybind11/stl.h>

#include <memory>

#include "python/errors.h"
#include "python/tensor_convert.h"
#include "scheduling/model_runner.h"
#include "testing/closed_loop.h"
#include "testing/hooks.h"

namespace tritonlite::testing {

void BindClosedLoop(py::module_& m) {
  using python::ThrowInvalid;
  m.def("closed_loop",
        [](std::shared_ptr<ModelRunner> runner, py::handle inputs, int concurrency, double seconds) {
          if (concurrency < 1) ThrowInvalid("concurrency must be >= 1");
          auto loop = std::make_shared<ClosedLoop>(runner, python::NamedTensorsFromPy(inputs), seconds);
          ClosedLoopResult result;
          {
            py::gil_scoped_release release;
            result = loop->Run(concurrency);
          }
          py::dict out;
          out["completed"] = result.completed;
          out["errors"] = result.errors;
          out["elapsed_s"] = result.elapsed_s;
          out["latencies_ns"] = result.latencies_ns;
          return out;
        },
        py::arg("runner"), py::arg("inputs"), py::arg("concurrency"), py::arg("seconds"),
        "Benchmark load generator: keep `concurrency` requests with these inputs in flight for "
        "`seconds`, re-submitting from C++ as each completes (no Python on the request path).");
}

}  // namespace tritonlite::testing
