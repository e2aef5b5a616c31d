// libFuzzer target: the ModelInferRequest decoder (csrc/transport/grpc/infer_codec.cc), the fast
// path's request building (BuildInferRequest: tensor views over the message, csrc/core/tensor.cc
// and csrc/core/bytes_codec.cc), request validation against model specs (csrc/core/validation.cc),
// and the response encoder.
//
// Input: one serialized inference.ModelInferRequest (a gRPC message body), nothing else.
// Checks: every view lies inside the message; a non-BYTES tensor holds exactly
// element_count * element size bytes (overflow-checked); a BYTES tensor's elements tile its
// bytes; the encoded response has the size ModelInferResponseSize announces.
#include <cstring>
#include <memory>
#include <vector>

#include "core/bytes_codec.h"
#include "core/datatype.h"
#include "core/model_spec.h"
#include "core/status.h"
#include "core/validation.h"
#include "fuzz_common.h"
#include "transport/grpc/infer_codec.h"
#include "transport/grpc/infer_fast_path.h"
#include "transport/grpc/protocol.h"

using namespace tritonlite;

namespace {

std::vector<ModelSpec> Specs() {
  std::vector<ModelSpec> specs(3);
  specs[0].name = "batched";
  specs[0].max_batch_size = 8;
  specs[0].inputs = {{"INPUT0", DataType::kFp32, {-1}}, {"INPUT1", DataType::kBytes, {2}, true}};
  specs[0].outputs = {{"OUTPUT0", DataType::kFp32, {-1}}};
  specs[1].name = "fixed";
  specs[1].inputs = {{"INPUT0", DataType::kInt64, {2, -1}}};
  specs[1].outputs = {{"OUTPUT0", DataType::kInt64, {2, -1}}};
  specs[2].name = "strings";
  specs[2].max_batch_size = 4;
  specs[2].inputs = {{"INPUT0", DataType::kBytes, {-1}}};
  specs[2].outputs = {{"OUTPUT0", DataType::kBytes, {-1}}};
  return specs;
}

bool Inside(const uint8_t* p, size_t n, const grpc::MessageBuffer& m) {
  return n == 0 || (p >= m.data() && n <= m.size() && p - m.data() <= static_cast<ptrdiff_t>(m.size() - n));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<ModelSpec> specs = Specs();
  auto message = std::make_shared<grpc::MessageBuffer>(size);
  if (size) std::memcpy(message->data(), data, size);

  WireInferRequest wire;
  if (!DecodeModelInferRequest(message->data(), message->size(), &wire)) return 0;
  for (const std::string_view raw : wire.raw_input_contents) {
    FUZZ_CHECK(Inside(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(), *message));
  }
  (void)FindParameter(wire.parameters, "priority");

  RequestPtr request = grpc::BuildInferRequest(wire, message);
  if (request == nullptr) return 0;
  for (const auto& kv : request->inputs) {
    const Tensor& t = kv.second;
    FUZZ_CHECK(Inside(t.data(), t.byte_size(), *message));
    if (t.dtype() == DataType::kBytes) {
      const auto elements = ParseBytes(t.data(), t.byte_size(), -1);
      FUZZ_CHECK(static_cast<int64_t>(elements.size()) == t.element_count());
    } else {
      size_t bytes = 0;
      FUZZ_CHECK(!__builtin_mul_overflow(static_cast<size_t>(t.element_count()),
                                         DataTypeSize(t.dtype()), &bytes));
      FUZZ_CHECK(bytes == t.byte_size());
    }
  }
  for (const ModelSpec& spec : specs) {
    try {
      ValidateRequest(spec, request.get());
      FUZZ_CHECK(request->batch_size >= 0);
    } catch (const Error& e) {
      FUZZ_CHECK(e.code() == StatusCode::kInvalidArg);
    }
  }
  // The inputs as a response's outputs.
  std::string encoded;
  EncodeModelInferResponse(wire.model_name, wire.model_version, wire.id, request->inputs,
                           &encoded);
  FUZZ_CHECK(encoded.size() == ModelInferResponseSize(wire.model_name, wire.model_version,
                                                      wire.id, request->inputs));
  return 0;
}
