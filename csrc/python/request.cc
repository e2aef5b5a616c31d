// Request: a request handed to a backend that answers it itself (core/owned_request.h).
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "core/cancel_flag.h"
#include "core/owned_request.h"
#include "python/bind.h"
#include "python/errors.h"
#include "python/tensor_convert.h"

namespace tritonlite::python {

void BindRequest(py::module_& m) {
  py::class_<OwnedRequest, std::shared_ptr<OwnedRequest>>(
      m, "Request",
      "A request handed to a backend that answers it itself: any number of respond() calls, "
      "exactly one with final=True. Dropped without a final response, it fails with an error.")
      .def_property_readonly("id", [](const OwnedRequest& r) { return r.request().id; })
      .def_property_readonly("correlation_id",
                             [](const OwnedRequest& r) { return r.request().correlation_id; })
      .def_property_readonly("correlation_id_str",
                             [](const OwnedRequest& r) { return r.request().correlation_id_str; })
      .def_property_readonly("flags", [](const OwnedRequest& r) { return r.request().flags; })
      .def_property_readonly("null_request",
                             [](const OwnedRequest& r) { return r.request().null_request; },
                             "A sequence batcher's filler for an empty slot (READY false): "
                             "no client waits for it and it requests no outputs.")
      .def_property_readonly("parameters",
                             [](const OwnedRequest& r) {
                               const std::string& p = r.request().parameters;
                               return p.empty() ? std::string("{}") : p;
                             },
                             "The request's own parameters as a JSON object text.")
      .def_property_readonly("priority", [](const OwnedRequest& r) { return r.request().priority; })
      .def_property_readonly("trace_id", [](const OwnedRequest& r) { return r.request().trace_id; },
                             "The request's trace id (0: not traced).")
      .def_property_readonly("timeout_us",
                             [](const OwnedRequest& r) { return r.request().timeout_us; })
      .def_property_readonly("batch_size",
                             [](const OwnedRequest& r) { return r.request().batch_size; })
      .def_property_readonly("requested_outputs",
                             [](const OwnedRequest& r) { return r.request().requested_outputs; })
      .def_property_readonly("cancelled", [](const OwnedRequest& r) { return r.request().cancelled(); },
                             "Whether the request was cancelled (lock-free).")
      .def("cancel", [](OwnedRequest& r) {
        if (r.request().cancel) r.request().cancel->Cancel();
      }, "Cancel the request (as its client would).")
      .def("mirror_cancel",
           [](OwnedRequest& r, std::shared_ptr<CancelBoard> board, int64_t slot) {
             if (slot < 0 || static_cast<uint64_t>(slot) >= board->slots()) {
               throw py::index_error("cancel board slot " + std::to_string(slot) + " out of range");
             }
             if (!r.request().cancel) return;  // nobody can cancel it: the slot stays 0
             r.request().cancel->Mirror(std::move(board), static_cast<size_t>(slot));
           },
           py::arg("board"), py::arg("slot"),
           "From now on a cancellation stores 1 into `slot` of `board` (at once when already "
           "cancelled).")
      .def("unmirror_cancel", [](OwnedRequest& r) {
        if (r.request().cancel) r.request().cancel->Unmirror();
      }, "Stop mirroring and store 0 into the slot; then nothing writes it any more.")
      .def_property_readonly("finished", [](const OwnedRequest& r) {
        py::gil_scoped_release release;  // r's lock
        return r.finished();
      })
      .def("inputs", [](const OwnedRequest& r) {
        NamedTensors inputs;
        {
          py::gil_scoped_release release;  // r's lock: a respond() may be sending
          inputs = r.Inputs();
        }
        py::list out;
        for (auto& kv : inputs) out.append(py::make_tuple(kv.first, py::cast(std::move(kv.second))));
        return out;
      }, "The inputs as (name, Tensor) pairs (none once the final response was sent).")
      .def("respond",
           [](OwnedRequest& r, py::object outputs, py::object error, bool final,
              bool model_error) {
             NamedTensors tensors;
             if (!outputs.is_none()) tensors = NamedTensorsFromPy(outputs);
             Status status;
             if (!error.is_none()) {
               auto e = error.cast<py::tuple>();
               status = Status(StatusCodeFromName(e[0].cast<std::string>()), e[1].cast<std::string>());
             }
             py::gil_scoped_release release;
             r.Respond(std::move(tensors), std::move(status), final, model_error);
           },
           py::arg("outputs") = py::none(), py::arg("error") = py::none(), py::arg("final") = true,
           py::arg("model_error") = false,
           "Send a response: outputs as a dict (or (name, array) pairs), error as (status, "
           "message). Raises if the final response was already sent. An error response counts "
           "the request as failed (BACKEND) unless `model_error`: an error the model itself "
           "answered with, which Triton's python backend counts as a success.");
}

}  // namespace tritonlite::python
