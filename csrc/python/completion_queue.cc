// Responses to Python: the completion queue the asyncio loop drains, a response as a tuple, and
// dispatch, which resolves every ready response's future or callback in one call.
#include "python/completion_queue.h"

#include <memory>
#include <utility>
#include <vector>

#include "python/bind.h"
#include "python/tensor_convert.h"
#include "scheduling/completion_queue.h"

namespace tritonlite::python {

namespace {

// The queue's responses, never waiting for its lock with the GIL held.
std::vector<InferResponse> DrainQueue(CompletionQueue& queue) {
  std::vector<InferResponse> ready;
  if (!queue.TryDrain(&ready)) {
    py::gil_scoped_release release;
    ready = queue.Drain();
  }
  return ready;
}

size_t DispatchResponses(CompletionQueue& queue, py::dict pending, py::object error_class,
                         bool as_numpy) {
  std::vector<InferResponse> ready = DrainQueue(queue);
  size_t unmatched = 0;
  for (InferResponse& r : ready) {
    py::int_ token(r.token);
    PyObject* entry_raw = PyDict_GetItem(pending.ptr(), token.ptr());  // borrowed
    if (entry_raw == nullptr) {
      ++unmatched;
      continue;
    }
    py::object entry = py::reinterpret_borrow<py::object>(entry_raw);
    if (r.final) PyDict_DelItem(pending.ptr(), token.ptr());
    py::object error = py::none();
    if (!r.status.ok()) error = error_class(r.status.message(), StatusCodeName(r.status.code()));
    py::object outputs = r.status.ok() ? NamedTensorsToPy(r.outputs, as_numpy) : py::none();
    r.keepalive.clear();
    try {
      if (r.traced) {  // a traced request's entry is a callable that also takes its timestamps
        const TraceTimes& t = r.trace;
        entry(error, outputs, r.final,
              py::make_tuple(t.queue_start, t.compute_start, t.compute_input_end,
                             t.compute_output_start, t.compute_end));
      } else if (PyCallable_Check(entry.ptr())) {
        entry(error, outputs, r.final);
      } else if (error.is_none()) {
        entry.attr("set_result")(outputs);
      } else {
        entry.attr("set_exception")(error);
      }
    } catch (py::error_already_set& e) {
      // A future cancelled by its awaiter refuses results (InvalidStateError): drop it. Any
      // other failure belongs to the callback and must not stop the other responses.
      static py::object* invalid_state = new py::object(
          py::module_::import("asyncio").attr("InvalidStateError"));  // leaked: process lifetime
      if (!e.matches(*invalid_state)) e.discard_as_unraisable("tritonlite response dispatch");
    }
  }
  return unmatched;
}

}  // namespace

py::tuple ResponseToPy(InferResponse&& r) {
  py::object error = py::none();
  if (!r.status.ok()) error = py::make_tuple(StatusCodeName(r.status.code()), r.status.message());
  py::list outputs(r.outputs.size());
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    outputs[i] = py::make_tuple(r.outputs[i].first, py::cast(std::move(r.outputs[i].second)));
  }
  py::tuple t = py::make_tuple(r.token, error, outputs, r.final);
  r.keepalive.clear();
  return t;
}

void BindCompletionQueue(py::module_& m) {
  py::class_<CompletionQueue, std::shared_ptr<CompletionQueue>>(
      m, "CompletionQueue",
      "Responses from worker threads, drained in batches by one consumer (the asyncio loop): "
      "fd() becomes readable when responses are waiting.")
      .def(py::init<>())
      .def("fd", &CompletionQueue::fd)
      .def("drain", [](CompletionQueue& q) {
        std::vector<InferResponse> ready = DrainQueue(q);
        py::list out(ready.size());
        for (size_t i = 0; i < ready.size(); ++i) out[i] = ResponseToPy(std::move(ready[i]));
        return out;
      }, "Every response ready now as (token, error, outputs, final) tuples.")
      .def("dispatch", &DispatchResponses, py::arg("pending"), py::arg("error_class"),
           py::arg("as_numpy"),
           "Resolve every ready response in one call: pending[token] is an asyncio future "
           "(resolved with the outputs, or the error) or a callable taking (error, outputs, "
           "final) for multi-response requests; the entry is removed with the final response. "
           "A traced request's entry (queued with a trace_id) is a callable taking (error, "
           "outputs, final, (queue_start, compute_start, compute_input_end, "
           "compute_output_start, compute_end)): steady-clock ns, 0 where not reached. "
           "Outputs are a dict of numpy arrays when as_numpy, else (name, Tensor) pairs. "
           "Returns how many responses had no pending entry.");
}

}  // namespace tritonlite::python
