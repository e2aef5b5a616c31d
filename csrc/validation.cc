#include "validation.h"

#include <algorithm>

#include "status.h"

namespace tritonlite {

namespace {

[[noreturn]] void Invalid(const std::string& message) {
  throw Error(StatusCode::kInvalidArg, message);
}

std::string QuotedList(const std::vector<std::string>& names) {
  std::string s = "[";  // Triton's format: ['A','B']
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) s += ",";
    s += "'" + names[i] + "'";
  }
  return s + "]";
}

const TensorSpec* FindSpec(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const auto& s : specs) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// What Triton appends to a shape error of a model with max_batch_size > 0.
constexpr char kBatchDimNote[] =
    ". NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to "
    "be prepended to each input shape. If you want to specify the full shape including the batch "
    "dim in your input dims config, try setting max_batch_size to zero. See the model "
    "configuration docs for more info on max_batch_size.";

bool DimsMatch(const Shape& expected, const Shape& got, size_t offset) {
  if (got.size() != expected.size() + offset) return false;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] != -1 && expected[i] != got[i + offset]) return false;
  }
  return true;
}

}  // namespace

std::string RequestIdPrefix(const std::string& id) {
  return "[request id: " + (id.empty() ? std::string("<id_unknown>") : id) + "] ";
}

void ValidateRequest(const ModelSpec& spec, InferRequest* request) {
  const std::string& model = spec.name;
  // Triton prefixes the errors of its request normalization with the request id (built only
  // when there is an error: this runs for every request).
  const auto prefix = [request] { return RequestIdPrefix(request->id); };
  const bool batching = spec.max_batch_size > 0;
  int64_t batch_size = -1;
  std::string batch_input;

  for (const auto& kv : request->inputs) {
    const std::string& name = kv.first;
    const Tensor& t = kv.second;
    const TensorSpec* s = FindSpec(spec.inputs, name);
    if (s == nullptr) {
      Invalid("unexpected inference input '" + name + "' for model '" + model + "'");
    }
    if (t.dtype() != s->dtype) {
      Invalid(prefix() + "inference input '" + name + "' data-type is '" +
              DataTypeName(t.dtype()) + "', but model '" + model + "' expects '" +
              DataTypeName(s->dtype) + "'");
    }
    if (!DimsMatch(s->dims, t.shape(), batching ? 1 : 0)) {
      Shape expected = s->dims;
      if (batching) expected.insert(expected.begin(), -1);
      Invalid(prefix() + "unexpected shape for input '" + name + "' for model '" + model +
              "'. Expected " + ShapeToString(expected) + ", got " + ShapeToString(t.shape()) +
              (batching ? kBatchDimNote : ""));
    }
    if (batching) {
      const int64_t rows = t.shape()[0];
      if (batch_size < 0) {
        batch_size = rows;
        batch_input = name;
      } else if (rows != batch_size) {
        Invalid(prefix() + "input '" + name + "' batch size does not match other inputs for '" +
                model + "'");
      }
    }
  }
  // Duplicates and missing required inputs.
  std::vector<std::string> got, missing;
  for (const auto& kv : request->inputs) {
    if (std::find(got.begin(), got.end(), kv.first) != got.end()) {
      Invalid(prefix() + "input '" + kv.first + "' already exists in request");
    }
    got.push_back(kv.first);
  }
  size_t required = 0;
  for (const auto& s : spec.inputs) {
    if (s.optional) continue;
    ++required;
    if (std::find(got.begin(), got.end(), s.name) == got.end()) missing.push_back(s.name);
  }
  if (!missing.empty()) {
    Invalid(prefix() + "expected " + std::to_string(required) + " inputs but got " +
            std::to_string(request->inputs.size()) + " inputs for model '" + model +
            "'. Got input(s) " + QuotedList(got) + ", but missing required input(s) " +
            QuotedList(missing) + ". Please provide all required input(s).");
  }
  for (const auto& name : request->requested_outputs) {
    if (FindSpec(spec.outputs, name) == nullptr) {
      Invalid("unexpected inference output '" + name + "' for model '" + model + "'");
    }
  }
  if (batching) {
    if (batch_size < 1) {
      Invalid(prefix() + "inference request batch-size must be >= 1 for '" + model + "'");
    }
    if (batch_size > spec.max_batch_size) {
      Invalid(prefix() + "inference request batch-size must be <= " +
              std::to_string(spec.max_batch_size) + " for '" + model + "'");
    }
    request->batch_size = batch_size;
  } else {
    request->batch_size = 1;
  }
}

}  // namespace tritonlite
