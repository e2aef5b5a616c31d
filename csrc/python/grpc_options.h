// GrpcServer's constructor: its keyword arguments with their defaults and their checks, which
// follow gRPC core's channel-argument conventions (milliseconds; INT_MAX or None: infinite),
// HTTP/2's SETTINGS ranges and the flood and memory budgets. A bad value raises INVALID_ARG
// naming it; the server binds and listens only with checked options.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "transport/grpc/server.h"

namespace tritonlite::python {

namespace py = pybind11;

using GrpcServerClass = py::class_<grpc::GrpcServer, std::shared_ptr<grpc::GrpcServer>>;

void BindGrpcServerInit(GrpcServerClass& server);

}  // namespace tritonlite::python
