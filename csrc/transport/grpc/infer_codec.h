// Hand-written protobuf wire codec for the two hot messages of protos/grpc_service.proto:
// decoding inference.ModelInferRequest into views over the received bytes (no copies; the
// caller keeps the bytes alive), and encoding inference.ModelInferResponse from core tensors.
// Anything else goes through the generated Python classes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/request.h"
#include "core/tensor.h"

namespace tritonlite {

// inference.InferParameter (a oneof).
struct WireParameter {
  enum class Kind : uint8_t { kNone, kBool, kInt64, kString, kDouble, kUint64 };
  Kind kind = Kind::kNone;
  bool bool_value = false;
  int64_t int64_value = 0;
  uint64_t uint64_value = 0;
  double double_value = 0;
  std::string_view string_value;
};
using WireParameters = std::vector<std::pair<std::string_view, WireParameter>>;

// ModelInferRequest.InferInputTensor
struct WireInferInput {
  std::string_view name;
  std::string_view datatype;
  Shape shape;
  WireParameters parameters;
  bool has_contents = false;  // typed `contents` instead of raw_input_contents
};

// ModelInferRequest.InferRequestedOutputTensor
struct WireRequestedOutput {
  std::string_view name;
  WireParameters parameters;
};

// ModelInferRequest, as views into the serialized bytes.
struct WireInferRequest {
  std::string_view model_name;
  std::string_view model_version;
  std::string_view id;
  WireParameters parameters;  // map entries in wire order (a later duplicate key wins)
  std::vector<WireInferInput> inputs;
  std::vector<WireRequestedOutput> outputs;
  std::vector<std::string_view> raw_input_contents;
};

// The last value of `key` in a map, or nullptr.
const WireParameter* FindParameter(const WireParameters& parameters, std::string_view key);

// Parses serialized inference.ModelInferRequest bytes. Returns false when protobuf would
// refuse them (truncated, bad wire types for known fields, invalid UTF-8 in string fields, ...).
// Unknown fields are skipped, as protobuf does.
bool DecodeModelInferRequest(const uint8_t* data, size_t size, WireInferRequest* out);

// Appends a serialized inference.ModelInferResponse: model_name, model_version, id, then every
// output (name, datatype, shape) with its bytes in raw_output_contents, in order. GPU tensors are
// copied to the host through the lazily loaded CUDA runtime; without one they raise INTERNAL.
void EncodeModelInferResponse(std::string_view model_name, std::string_view model_version,
                              std::string_view id, const NamedTensors& outputs, std::string* out);

// Serialized size of that response (to reserve or prefix).
size_t ModelInferResponseSize(std::string_view model_name, std::string_view model_version,
                              std::string_view id, const NamedTensors& outputs);

}  // namespace tritonlite
