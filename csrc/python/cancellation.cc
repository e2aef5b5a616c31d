// Cancellation as Python sees it: a queued request's CancelHandle, and the CancelBoard a python
// stub process reads its requests' cancellation from.
#include <cstdint>
#include <memory>
#include <string>

#include "core/cancel_flag.h"
#include "python/bind.h"

namespace tritonlite::python {

void BindCancellation(py::module_& m) {
  py::class_<CancelFlag, std::shared_ptr<CancelFlag>>(
      m, "CancelHandle", "Cancels one queued or running request, from any thread.")
      .def("cancel", &CancelFlag::Cancel, "Cancel the request (idempotent).")
      .def_property_readonly("cancelled", &CancelFlag::cancelled);

  py::class_<CancelBoard, std::shared_ptr<CancelBoard>>(
      m, "CancelBoard",
      "uint32 words in a memfd, one per slot, that a python stub reads to see its requests' "
      "cancellation (see Request.mirror_cancel). Maps `slots * 4` bytes of `fd` itself.")
      .def(py::init([](int fd, int64_t slots) {
             if (slots <= 0 || slots > (int64_t{1} << 24)) {
               throw py::value_error("a cancel board has between 1 and 2**24 slots");
             }
             return std::make_shared<CancelBoard>(fd, static_cast<size_t>(slots));
           }),
           py::arg("fd"), py::arg("slots"))
      .def_property_readonly("slots", &CancelBoard::slots)
      .def("is_set", [](CancelBoard& b, int64_t slot) {
        if (slot < 0 || static_cast<uint64_t>(slot) >= b.slots()) {
          throw py::index_error("cancel board slot " + std::to_string(slot) + " out of range");
        }
        return b.word(static_cast<size_t>(slot)).load(std::memory_order_acquire) != 0;
      }, py::arg("slot"));
}

}  // namespace tritonlite::python
