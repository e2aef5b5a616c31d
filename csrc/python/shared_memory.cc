// Acquire loads and release stores of 32-bit words in a writable buffer (shared memory mapped
// by two processes): Python has no atomics, and the python backend's arena ring needs them to be
// correct on weakly ordered CPUs (see backends/python/shm.py).
#include <cstdint>
#include <string>

#include "python/bind.h"
#include "python/errors.h"

namespace tritonlite::python {

namespace {

uint32_t* SharedWord(py::handle buffer, int64_t offset, bool writable, Py_buffer* view) {
  if (PyObject_GetBuffer(buffer.ptr(), view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) != 0) {
    throw py::error_already_set();
  }
  const auto len = static_cast<int64_t>(view->len);
  const auto address = reinterpret_cast<uintptr_t>(view->buf) + static_cast<uintptr_t>(offset);
  if (offset < 0 || offset > len - 4 || address % alignof(uint32_t) != 0) {
    PyBuffer_Release(view);
    ThrowInvalid("atomic access at offset " + std::to_string(offset) + " of a " +
                 std::to_string(len) + "-byte buffer: out of bounds or not 4-byte aligned");
  }
  return reinterpret_cast<uint32_t*>(address);
}

uint32_t AtomicLoadU32(py::handle buffer, int64_t offset) {
  Py_buffer view;
  uint32_t value = __atomic_load_n(SharedWord(buffer, offset, false, &view), __ATOMIC_ACQUIRE);
  PyBuffer_Release(&view);
  return value;
}

void AtomicStoreU32(py::handle buffer, int64_t offset, uint32_t value) {
  Py_buffer view;
  __atomic_store_n(SharedWord(buffer, offset, true, &view), value, __ATOMIC_RELEASE);
  PyBuffer_Release(&view);
}

}  // namespace

void BindSharedMemory(py::module_& m) {
  m.def("atomic_load_u32", &AtomicLoadU32, py::arg("buffer"), py::arg("offset"),
        "Load the 4-byte-aligned uint32 at `offset` of a buffer with acquire ordering.");
  m.def("atomic_store_u32", &AtomicStoreU32, py::arg("buffer"), py::arg("offset"),
        py::arg("value"), "Store a uint32 at `offset` of a writable buffer with release ordering.");
}

}  // namespace tritonlite::python
