// tritonlite._core.spin_wait_ns / cpu_budget / runs_batches_inline: how long this process's waiting threads spin
// before they block (util/spin_wait.h: only with a CPU to spare, or as TRITONLITE_SPIN_US says),
// so the server can refuse an invalid setting at start and tests can see the choice.
#include "python/bind.h"
#include "python/errors.h"
#include "util/spin_wait.h"

namespace tritonlite::python {

void BindSpinWait(py::module_& m) {
  m.def("spin_wait_ns",
        [] {
          const SpinSetting& s = ProcessSpin();
          if (!s.error.empty()) ThrowInvalid(s.error);
          return s.ns;
        },
        "Nanoseconds a waiting thread spins before it blocks: TRITONLITE_SPIN_US when set, else "
        "50 us with a CPU budget of two or more CPUs and 0 (never spin) below. Raises on an "
        "invalid TRITONLITE_SPIN_US.");
  m.def("cpu_budget",
        [] {
          const BudgetSetting& b = ProcessCpuBudget();
          if (!b.error.empty()) ThrowInvalid(b.error);
          return b.cpus;
        },
        "CPUs this process may use: TRITONLITE_CPU_BUDGET when set, else its affinity mask "
        "capped by its cgroup's CPU quota. Raises on an invalid TRITONLITE_CPU_BUDGET.");
  m.def("runs_batches_inline",
        [] {
          const InlineSetting& s = ProcessInlineBatches();
          if (!s.error.empty()) ThrowInvalid(s.error);
          return s.on;
        },
        "Whether the native gRPC I/O threads run ready batches themselves instead of handing "
        "them to the instances' threads: TRITONLITE_INLINE_BATCHES ('0', '1') when set, else a "
        "CPU budget below 2. Raises on an invalid TRITONLITE_INLINE_BATCHES.");
}

}  // namespace tritonlite::python
