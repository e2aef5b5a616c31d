#include "core/validation.h"

#include <algorithm>
#include <unordered_map>

#include "core/status.h"

namespace tritonlite {

namespace {

[[noreturn]] void Invalid(const std::string& message) {
  throw Error(StatusCode::kInvalidArg, message);
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

// Triton's error for a request with fewer inputs than the model requires or more than it has.
// Triton lists the request's inputs in the order of the std::unordered_map it keeps them in
// (inserted in request order): the same container gives the same order here. Error path only.
std::string InputCountError(const ModelSpec& spec, const InferRequest& request,
                            size_t required) {
  std::unordered_map<std::string, int> original;
  for (const auto& kv : request.inputs) original.emplace(kv.first, 0);
  std::string got = "[", missing = "[";
  for (const auto& kv : original) got += "'" + kv.first + "',";
  for (const auto& s : spec.inputs) {
    if (!s.optional && original.count(s.name) == 0) missing += "'" + s.name + "',";
  }
  // Triton drops the last character (the trailing ',', or the '[' of an empty list) and
  // closes the list; an empty request's inputs read "[]".
  got.pop_back();
  got = original.empty() ? "[]" : got + "]";
  missing.pop_back();
  missing += "]";
  const std::string count = required == spec.inputs.size()
                                ? std::to_string(required) + " inputs"
                                : "number of inputs between " + std::to_string(required) +
                                      " and " + std::to_string(spec.inputs.size());
  return RequestIdPrefix(request.id) + "expected " + count + " but got " +
         std::to_string(original.size()) + " inputs for model '" + spec.name +
         "'. Got input(s) " + got + ", but missing required input(s) " + missing +
         ". Please provide all required input(s).";
}

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

  // Duplicates (Triton refuses them as the request is built), then the number of inputs: as
  // Triton, a count within [required, all] passes even when a required input is missing (the
  // backend hears of it), and a count outside it is refused before the inputs are looked at.
  for (size_t i = 0; i < request->inputs.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (request->inputs[j].first == request->inputs[i].first) {
        Invalid(prefix() + "input '" + request->inputs[i].first + "' already exists in request");
      }
    }
  }
  size_t required = 0;
  for (const auto& s : spec.inputs) required += s.optional ? 0 : 1;
  if (request->inputs.size() > spec.inputs.size() || request->inputs.size() < required) {
    Invalid(InputCountError(spec, *request, required));
  }

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
