// The native gRPC transport as Python drives it: GrpcServer (its constructor and options are in
// python/grpc_options.cc; here: start and stop, the fast path's model table, forwarded-call
// events for the Python bridge) and GrpcCall, a forwarded call Python answers.
#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "python/bind.h"
#include "python/errors.h"
#include "python/grpc_options.h"
#include "scheduling/model_runner.h"
#include "transport/grpc/server.h"

namespace tritonlite::python {

namespace {

// Header bytes (paths, metadata) as str: HTTP/2 allows any octets, so invalid UTF-8 is
// replaced rather than refused.
py::str HeaderText(const std::string& s) {
  PyObject* text = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (text == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(text);
}

// [(kind, call, payload)]: payload is the request message as bytes (UNARY, MESSAGE) or None.
py::list DrainGrpcCalls(grpc::GrpcServer& server) {
  std::vector<grpc::CallEvent> events = server.bridge()->Drain();
  py::list out(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    grpc::CallEvent& e = events[i];
    py::object payload = py::none();
    if (e.message != nullptr) {
      payload = py::bytes(reinterpret_cast<const char*>(e.message->data()), e.message->size());
    }
    out[i] = py::make_tuple(static_cast<int>(e.kind), py::cast(e.call), payload);
  }
  return out;
}

}  // namespace

void BindGrpcServer(py::module_& m) {
  py::class_<grpc::ForwardedCall, std::shared_ptr<grpc::ForwardedCall>>(
      m, "GrpcCall",
      "A call the native gRPC transport forwards to Python. Answer it with reply() (unary), "
      "send() then finish() (streaming), or finish() with an error; each returns False once "
      "the call is over (answered, cancelled by the client, past its deadline, disconnected).")
      .def_property_readonly("id", &grpc::ForwardedCall::id)
      .def_property_readonly("method",
                             [](const grpc::ForwardedCall& c) { return HeaderText(c.method()); },
                             "RPC name: 'ModelInfer' for /inference.GRPCInferenceService/"
                             "ModelInfer, else the path without '/' "
                             "('grpc.health.v1.Health/Check').")
      .def_property_readonly("path",
                             [](const grpc::ForwardedCall& c) { return HeaderText(c.path()); })
      .def_property_readonly("metadata", [](const grpc::ForwardedCall& c) {
        py::list out;
        for (const auto& kv : c.metadata()) {
          out.append(py::make_tuple(HeaderText(kv.first), HeaderText(kv.second)));
        }
        return out;
      }, "Custom request headers as (key, value) str pairs ('-bin' values still base64; "
         "invalid UTF-8 replaced).")
      .def_property_readonly("streaming", &grpc::ForwardedCall::streaming)
      .def_property_readonly("received_ns", &grpc::ForwardedCall::received_ns,
                             "When the transport had the call (steady clock ns, as "
                             "time.monotonic_ns): a unary call's request was read by then.")
      .def_property_readonly("cancelled", &grpc::ForwardedCall::cancelled)
      .def_property_readonly("finished", &grpc::ForwardedCall::finished)
      .def("time_remaining", [](const grpc::ForwardedCall& c) -> py::object {
        if (c.deadline_ns() == 0) return py::none();
        const uint64_t now = NowNs();
        return py::float_(c.deadline_ns() > now ? (c.deadline_ns() - now) / 1e9 : 0.0);
      }, "Seconds left before the client's deadline (grpc-timeout), or None.")
      .def("send", [](grpc::ForwardedCall& c, py::buffer data) {
        py::buffer_info info = data.request();
        const auto size = static_cast<size_t>(info.size * info.itemsize);
        if (!c.compresses()) return c.Send(info.ptr, size);
        py::gil_scoped_release release;  // compressing: `data` stays referenced by the caller
        return c.Send(info.ptr, size);
      }, py::arg("message"), "Send one serialized response message.")
      .def("reply", [](grpc::ForwardedCall& c, py::buffer data) {
        py::buffer_info info = data.request();
        const auto size = static_cast<size_t>(info.size * info.itemsize);
        if (!c.compresses()) return c.Reply(info.ptr, size);
        py::gil_scoped_release release;
        return c.Reply(info.ptr, size);
      }, py::arg("message"), "Unary answer: the serialized response, then status OK.")
      .def_property_readonly("compresses", &grpc::ForwardedCall::compresses,
                             "Whether send() and reply() compress (grpc-encoding).")
      .def("consumed", &grpc::ForwardedCall::Consumed,
           "Streaming: the oldest request message was taken; its flow-control credit goes "
           "back to the client.")
      .def("finish", [](grpc::ForwardedCall& c, int code, std::string message) {
        if (code < 0 || code > 16) ThrowInvalid("gRPC status code must be in [0, 16], got " + std::to_string(code));
        return c.Finish(static_cast<grpc::GrpcStatus>(code), std::move(message));
      }, py::arg("code"), py::arg("message") = "",
      "End the call with a gRPC status code (0 = OK) and message.");

  GrpcServerClass server(
      m, "GrpcServer",
      "Native gRPC transport (HTTP/2 over plain TCP, no TLS). ModelInfer requests for models "
      "registered with set_model() are served in C++; every other call is forwarded: fd() "
      "becomes readable and drain_calls() returns [(kind, GrpcCall, payload)] events.");
  BindGrpcServerInit(server);
  server
      .def("start", &grpc::GrpcServer::Start, py::call_guard<py::gil_scoped_release>(),
           "Start the I/O threads.")
      .def("shutdown", &grpc::GrpcServer::Shutdown, py::call_guard<py::gil_scoped_release>(),
           "Graceful, non-blocking: refuse new connections, GOAWAY to every connection; calls in "
           "flight complete and connections close when idle (see connection_count()).")
      .def("stop", &grpc::GrpcServer::Stop, py::call_guard<py::gil_scoped_release>(),
           "Close every connection now (open calls are cancelled) and join the I/O threads.")
      .def_property_readonly("port", &grpc::GrpcServer::port)
      .def("connection_count", &grpc::GrpcServer::connection_count)
      .def("fd", [](const grpc::GrpcServer& s) { return s.bridge()->fd(); },
           "Readable when forwarded-call events are waiting (for loop.add_reader).")
      .def("drain_calls", &DrainGrpcCalls,
           "Every waiting event as (kind, GrpcCall, payload): payload is the request message "
           "(bytes) for UNARY and MESSAGE, else None.")
      .def("set_model", [](grpc::GrpcServer& s, const std::string& name, py::dict versions) {
        grpc::ModelRegistry::Versions v;
        for (auto kv : versions) {
          v[kv.first.cast<int64_t>()] = kv.second.cast<std::shared_ptr<ModelRunner>>();
        }
        s.models().Set(name, std::move(v));
      }, py::arg("name"), py::arg("versions"),
      "Serve ModelInfer for these versions ({version: ModelRunner}; the highest is latest) on "
      "the fast path; an empty dict removes the model.")
      .def("remove_model", [](grpc::GrpcServer& s, const std::string& name) { s.models().Remove(name); },
           py::arg("name"))
      .def("clear_models", [](grpc::GrpcServer& s) { s.models().Clear(); })
      .def("models", [](const grpc::GrpcServer& s) {
        return const_cast<grpc::GrpcServer&>(s).models().Snapshot();
      }, "{name: [versions]} served on the fast path.");
  server.attr("UNARY") = static_cast<int>(grpc::CallEventKind::kUnary);
  server.attr("START") = static_cast<int>(grpc::CallEventKind::kStart);
  server.attr("MESSAGE") = static_cast<int>(grpc::CallEventKind::kMessage);
  server.attr("HALF_CLOSE") = static_cast<int>(grpc::CallEventKind::kHalfClose);
  server.attr("CANCEL") = static_cast<int>(grpc::CallEventKind::kCancel);
}

}  // namespace tritonlite::python
