// tritonlite._core.grpc_codec: what the Python gRPC frontend asks the native transport's codec
// (which response encodings this build can compress with, Triton's gRPC status for a status
// kind). The codec pieces tests reach through the same submodule are added by
// testing/grpc_codec_hooks.cc.
#include <string>

#include "python/bind.h"
#include "python/errors.h"
#include "transport/grpc/compression.h"
#include "transport/grpc/protocol.h"

namespace tritonlite::python {

void BindGrpcCodec(py::module_& m) {
  py::module_ codec = m.def_submodule(
      "grpc_codec", "Codec pieces of the native gRPC transport: what the Python frontend asks "
                    "it, and test hooks.");
  codec.def("can_compress", [](const std::string& name) {
    grpc::Encoding e;
    return grpc::ParseCompression(name, &e);
  }, py::arg("encoding"), "Whether this build can compress responses with 'identity', 'deflate' or 'gzip'.");
  codec.def("grpc_status_for", [](const std::string& status) {
    return static_cast<int>(grpc::GrpcStatusFromCore(StatusCodeFromName(status)));
  }, py::arg("status"), "gRPC status code Triton uses for a status kind ('INVALID_ARG' -> 3).");
}

}  // namespace tritonlite::python
