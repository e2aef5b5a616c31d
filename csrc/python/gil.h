// GIL discipline at the seam (the rule in scheduling/scheduler.h): no core lock is waited for,
// and no core object that joins threads is destroyed, while holding the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

namespace tritonlite::python {

namespace py = pybind11;

// Runs `fn` without the GIL when the caller holds it.
template <typename Fn>
auto WithoutGil(Fn&& fn) {
  if (PyGILState_Check()) {
    py::gil_scoped_release release;
    return fn();
  }
  return fn();
}

// Owns `raw` in a shared_ptr whose deleter lets go of the GIL first (destroying a runner or a
// server joins threads that may need the GIL).
template <typename T>
std::shared_ptr<T> OwnedWithoutGil(T* raw) {
  return std::shared_ptr<T>(raw, [](T* p) {
    WithoutGil([p] {
      std::unique_ptr<T> owned(p);
      return 0;
    });
  });
}

}  // namespace tritonlite::python
