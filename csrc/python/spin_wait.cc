// tritonlite._core.spin_wait_ns / cpu_budget / runs_batches_inline: how long this process's
// waiting threads spin before they block (util/spin_wait.h: only with a CPU to spare, or as
// TRITONLITE_SPIN_US says) and whether the gRPC I/O threads run batches themselves, so the server
// can refuse an invalid setting at start and tests can see the choice.
// spin_readable: a Python thread's bounded spin for a file descriptor to become readable, with
// the GIL released (the python backend's stub round trip, backends/python/ipc.py).
#include <poll.h>
#include <sched.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>

#include "python/bind.h"
#include "python/errors.h"
#include "scheduling/instance.h"
#include "util/spin_wait.h"

namespace tritonlite::python {

namespace {

// Whether `fd` has something to read (data, EOF or an error: the caller's read says which)
// within `spin_ns`, polled without blocking. A zero or negative spin only looks once. The
// GIL is released for the whole spin. Every kYieldEvery polls the spinner yields its CPU, so a
// thread woken onto this CPU (the I/O thread or the load generator while the stub spins for
// its next EXEC, issue #20) runs at once rather than at the scheduler's next preemption; with
// nothing else runnable sched_yield returns at once.
constexpr int kYieldEvery = 8;

bool SpinReadable(int fd, int64_t spin_ns) {
  if (fd < 0) ThrowInvalid("spin_readable: invalid file descriptor " + std::to_string(fd));
  pollfd p{fd, POLLIN, 0};
  py::gil_scoped_release release;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns);
  for (int polls = 1;; ++polls) {
    p.revents = 0;
    const int n = ::poll(&p, 1, 0);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR && errno != EAGAIN && errno != ENOMEM) return true;
    if (spin_ns <= 0 || std::chrono::steady_clock::now() >= deadline) return false;
    if (polls % kYieldEvery == 0) {
      sched_yield();
    } else {
      CpuRelax();
    }
  }
}

}  // namespace

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
  m.def("spin_readable", &SpinReadable, py::arg("fd"), py::arg("spin_ns"),
        "Whether fd becomes readable (data, end of file or an error) within spin_ns "
        "nanoseconds, polled without blocking and with the GIL released; a spin of 0 looks "
        "once. For a thread that expects a message soon and blocks on the fd when this says "
        "False.");
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
        "Whether the native gRPC I/O threads run all ready batches themselves instead of "
        "handing them to the instances' threads: TRITONLITE_INLINE_BATCHES ('0', '1') when set, "
        "else a CPU budget below 2 (see inline_batches). Raises on an invalid "
        "TRITONLITE_INLINE_BATCHES or TRITONLITE_INLINE_BATCH_US.");
  m.def("inline_batches",
        [] {
          const InlineSetting& s = ProcessInlineBatches();
          if (!s.error.empty()) ThrowInvalid(s.error);
          switch (s.mode) {
            case InlineBatches::kAll:
              return "all";
            case InlineBatches::kShort:
              return "short";
            case InlineBatches::kNone:
              break;
          }
          return "none";
        },
        "Which ready batches the native gRPC I/O threads run themselves: 'all' (a CPU budget "
        "below 2, or TRITONLITE_INLINE_BATCHES=1), 'short' (those of python models whose "
        "recent batches ran for at most TRITONLITE_INLINE_BATCH_US, default 500 us: the "
        "default from 2 CPUs) or 'none' (TRITONLITE_INLINE_BATCHES=0). Raises on an invalid "
        "TRITONLITE_INLINE_BATCHES or TRITONLITE_INLINE_BATCH_US.");
  m.def(
      "inline_batch_us", [] { return ProcessInlineBatches().short_ns / 1000; },
      "TRITONLITE_INLINE_BATCH_US as read (default 500): how long a python model's recent "
      "batches may have taken for a gRPC I/O thread to run its next one itself.");
  m.def("on_instance_thread", &OnInstanceThread,
        "Whether the calling thread is a model instance's own worker thread (false on a gRPC "
        "I/O thread running a batch itself, and on any other thread).");
}

}  // namespace tritonlite::python
