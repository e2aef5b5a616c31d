// Test hooks in tritonlite._core.grpc_codec: the native transport's decoders and encoders
// called directly (HPACK, Huffman, grpc-timeout, percent-encoding, compressed framing, the
// ModelInfer codec and what the fast path would queue), so tests can hold them to protobuf,
// gRPC and RFC 7541 without a connection.
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "core/request.h"
#include "python/errors.h"
#include "python/tensor_convert.h"
#include "testing/hooks.h"
#include "transport/grpc/compression.h"
#include "transport/grpc/infer_codec.h"
#include "transport/grpc/infer_fast_path.h"
#include "transport/grpc/protocol.h"
#include "transport/http2/hpack.h"
#include "transport/http2/huffman.h"

namespace tritonlite::testing {

namespace {

using python::NamedTensorsFromPy;
using python::ThrowInvalid;

py::bytes AsBytes(std::string_view s) { return py::bytes(s.data(), s.size()); }

py::object WireParameterToPy(const WireParameter& p) {
  switch (p.kind) {
    case WireParameter::Kind::kBool: return py::bool_(p.bool_value);
    case WireParameter::Kind::kInt64: return py::int_(p.int64_value);
    case WireParameter::Kind::kUint64: return py::int_(p.uint64_value);
    case WireParameter::Kind::kDouble: return py::float_(p.double_value);
    case WireParameter::Kind::kString: return py::str(p.string_value.data(), p.string_value.size());
    case WireParameter::Kind::kNone: break;
  }
  return py::none();
}

py::dict WireParametersToPy(const WireParameters& params) {
  py::dict d;
  for (const auto& kv : params) d[py::str(kv.first.data(), kv.first.size())] = WireParameterToPy(kv.second);
  return d;
}

py::object DecodeInferRequestToPy(py::bytes message) {
  const std::string_view bytes = message;
  WireInferRequest w;
  if (!DecodeModelInferRequest(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &w)) {
    return py::none();
  }
  py::dict d;
  d["model_name"] = py::str(w.model_name.data(), w.model_name.size());
  d["model_version"] = py::str(w.model_version.data(), w.model_version.size());
  d["id"] = py::str(w.id.data(), w.id.size());
  d["parameters"] = WireParametersToPy(w.parameters);
  py::list inputs;
  for (const auto& in : w.inputs) {
    py::dict i;
    i["name"] = py::str(in.name.data(), in.name.size());
    i["datatype"] = py::str(in.datatype.data(), in.datatype.size());
    i["shape"] = py::cast(in.shape);
    i["parameters"] = WireParametersToPy(in.parameters);
    i["has_contents"] = in.has_contents;
    inputs.append(i);
  }
  d["inputs"] = inputs;
  py::list outputs;
  for (const auto& o : w.outputs) {
    py::dict od;
    od["name"] = py::str(o.name.data(), o.name.size());
    od["parameters"] = WireParametersToPy(o.parameters);
    outputs.append(od);
  }
  d["outputs"] = outputs;
  py::list raw;
  for (const auto& r : w.raw_input_contents) raw.append(AsBytes(r));
  d["raw_input_contents"] = raw;
  return std::move(d);
}

// What the fast path would queue for `message` (None: it would forward to Python), with the
// address range of the buffer the input tensors must view.
py::object FastPathRequestToPy(py::bytes message) {
  const std::string_view bytes = message;
  auto buffer = std::make_shared<grpc::MessageBuffer>(bytes.size());
  if (!bytes.empty()) std::memcpy(buffer->data(), bytes.data(), bytes.size());
  WireInferRequest w;
  if (!DecodeModelInferRequest(buffer->data(), buffer->size(), &w)) return py::none();
  RequestPtr r = grpc::BuildInferRequest(w, buffer);
  if (r == nullptr) return py::none();
  py::dict d;
  d["id"] = r->id;
  d["priority"] = r->priority;
  d["timeout_us"] = r->timeout_us;
  d["correlation_id"] = r->correlation_id;
  d["correlation_id_str"] = r->correlation_id_str;
  d["flags"] = r->flags;
  d["requested_outputs"] = r->requested_outputs;
  py::list inputs;
  for (const auto& kv : r->inputs) inputs.append(py::make_tuple(kv.first, py::cast(kv.second)));
  d["inputs"] = inputs;
  d["buffer_address"] = reinterpret_cast<uintptr_t>(buffer->data());
  d["buffer_size"] = buffer->size();
  return std::move(d);
}

py::bytes EncodeInferResponseFromPy(const std::string& model_name, const std::string& version,
                                    const std::string& id, py::handle outputs) {
  NamedTensors tensors = NamedTensorsFromPy(outputs);
  std::string out;
  EncodeModelInferResponse(model_name, version, id, tensors, &out);
  return py::bytes(out);
}

}  // namespace

void BindGrpcCodecHooks(py::module_& m) {
  py::module_ codec = m.attr("grpc_codec");
  py::class_<http2::HpackDecoder>(codec, "HpackDecoder", "Stateful HPACK decoder (one connection's).")
      .def(py::init<uint32_t>(), py::arg("table_size_limit") = 4096)
      .def("decode", [](http2::HpackDecoder& d, py::bytes block, size_t max_list_size) {
        const std::string_view b = block;
        http2::HeaderList headers;
        std::string error;
        if (!d.Decode(reinterpret_cast<const uint8_t*>(b.data()), b.size(), max_list_size, &headers, &error)) {
          throw py::value_error(error);
        }
        py::list out;
        for (const auto& h : headers) out.append(py::make_tuple(py::bytes(h.name), py::bytes(h.value)));
        return out;
      }, py::arg("block"), py::arg("max_list_size") = 1u << 20,
      "Decode one header block into [(name, value)] bytes pairs; ValueError if malformed.")
      .def_property_readonly("table_size", &http2::HpackDecoder::table_size)
      .def_property_readonly("table_entries", &http2::HpackDecoder::table_entries);
  codec.def("huffman_decode", [](py::bytes data) {
    const std::string_view b = data;
    std::string out;
    if (!http2::HuffmanDecode(reinterpret_cast<const uint8_t*>(b.data()), b.size(), &out)) {
      throw py::value_error("invalid HPACK Huffman encoding");
    }
    return py::bytes(out);
  }, py::arg("data"));
  codec.def("parse_grpc_timeout", [](const std::string& value) -> py::object {
    uint64_t ns = 0;
    if (!grpc::ParseGrpcTimeout(value, &ns)) return py::none();
    return py::int_(ns);
  }, py::arg("value"), "grpc-timeout header value -> nanoseconds (None if malformed).");
  codec.def("percent_encode", [](const std::string& s) { return grpc::PercentEncode(s); }, py::arg("message"));
  codec.def("frame_compressed", [](const std::string& name, py::bytes message) -> py::object {
    grpc::Encoding e;
    if (!grpc::ParseCompression(name, &e)) ThrowInvalid("cannot compress with '" + name + "'");
    const std::string_view m = message;
    std::string framed;
    if (!grpc::FrameCompressed(e, reinterpret_cast<const uint8_t*>(m.data()), m.size(), &framed)) {
      return py::none();
    }
    return py::bytes(framed);
  }, py::arg("encoding"), py::arg("message"),
  "The message framed and compressed as responses are (None: sent uncompressed, as it would "
  "not get smaller).");
  codec.def("decode_model_infer_request", &DecodeInferRequestToPy, py::arg("message"),
            "ModelInferRequest bytes -> dict of its fields (None if protobuf would refuse them).");
  codec.def("fast_path_request", &FastPathRequestToPy, py::arg("message"),
            "The core request the fast path would queue for these bytes (None: forwarded).");
  codec.def("encode_model_infer_response", &EncodeInferResponseFromPy, py::arg("model_name"),
            py::arg("model_version"), py::arg("id"), py::arg("outputs"),
            "Serialized ModelInferResponse for (name, array) outputs.");
}

}  // namespace tritonlite::testing
