#include "scheduling/ragged.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/validation.h"
#include "util/checked_math.h"

namespace tritonlite {

bool HasRaggedIO(const ModelSpec& spec) {
  if (!spec.batch_inputs.empty() || !spec.batch_outputs.empty()) return true;
  return std::any_of(spec.inputs.begin(), spec.inputs.end(),
                     [](const TensorSpec& s) { return s.ragged; });
}

std::vector<std::string> RaggedInputNames(const ModelSpec& spec) {
  std::vector<std::string> names;
  for (const auto& s : spec.inputs) {
    if (s.ragged) names.push_back(s.name);
  }
  return names;
}

Tensor GatherRagged(const std::vector<const Tensor*>& parts) {
  if (parts.empty()) throw Error(StatusCode::kInternal, "GatherRagged of nothing");
  const DataType dtype = parts[0]->dtype();
  const size_t item = DataTypeSize(dtype);  // 0 for BYTES
  size_t total_bytes = 0;
  int64_t total_elements = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor* p = parts[i];
    const auto which = [i] { return "batch part " + std::to_string(i); };  // errors only
    if (p == nullptr) throw Error(StatusCode::kInvalidArg, which() + " is missing");
    if (p->dtype() != dtype) {
      throw Error(StatusCode::kInvalidArg, which() + " has datatype " + DataTypeName(p->dtype()) +
                                               ", the first has " + DataTypeName(dtype));
    }
    if (p->device().kind != DeviceKind::kCPU) {
      throw Error(StatusCode::kInvalidArg,
                  which() + " is in GPU memory: batches are gathered in host memory");
    }
    const int64_t count = ElementCount(p->shape());  // overflow-checked, throws
    if (item != 0) {  // BYTES: its layout was checked when the view was made
      size_t expected = 0;
      if (!CheckedMul(static_cast<size_t>(count), item, &expected) || expected != p->byte_size()) {
        throw Error(StatusCode::kInvalidArg,
                    which() + " holds " + std::to_string(p->byte_size()) + " bytes, not the " +
                        DataTypeName(dtype) + " " + ShapeToString(p->shape()) + " it claims to be");
      }
    }
    if (!CheckedAdd(total_bytes, p->byte_size(), &total_bytes) ||
        __builtin_add_overflow(total_elements, count, &total_elements) ||
        static_cast<uint64_t>(total_elements) > kMaxElements || total_bytes > kMaxTensorSize) {
      throw Error(StatusCode::kInvalidArg, "batch is too large");
    }
  }
  if (parts.size() == 1) return parts[0]->Reshaped(Shape{total_elements});  // a view
  Tensor out = Tensor::Allocate(dtype, Shape{total_elements}, total_bytes);
  uint8_t* dst = out.mutable_data();
  for (const Tensor* p : parts) {
    if (p->byte_size()) std::memcpy(dst, p->data(), p->byte_size());
    dst += p->byte_size();
  }
  return out;
}

namespace {

using Kind = BatchInputSpec::Kind;

const Tensor& SourceOf(const BatchInputSpec& spec, const InferRequest& r) {
  const Tensor* t = r.FindInput(spec.source_input);
  if (t == nullptr) {
    throw Error(StatusCode::kInvalidArg,
                RequestIdPrefix(r.id) + "batch input '" + spec.target_names[0] +
                    "' needs input '" + spec.source_input + "', which the request does not have");
  }
  return *t;
}

// The values, as int64, then laid out as the batch input's datatype.
Tensor Typed(const BatchInputSpec& spec, Shape shape, const std::vector<int64_t>& values) {
  Tensor out = Tensor::Allocate(spec.dtype, std::move(shape));  // sizes checked
  const size_t n = std::min(values.size(), out.byte_size() / 4);
  if (spec.dtype == DataType::kFp32) {
    float* dst = reinterpret_cast<float*>(out.mutable_data());
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(values[i]);
  } else {
    int32_t* dst = reinterpret_cast<int32_t*>(out.mutable_data());
    for (size_t i = 0; i < n; ++i) {
      if (values[i] > std::numeric_limits<int32_t>::max()) {
        throw Error(StatusCode::kInvalidArg,
                    "batch input '" + spec.target_names[0] + "': " + std::to_string(values[i]) +
                        " does not fit TYPE_INT32");
      }
      dst[i] = static_cast<int32_t>(values[i]);
    }
  }
  if (out.byte_size() > n * 4) std::memset(out.mutable_data() + n * 4, 0, out.byte_size() - n * 4);
  return out;
}

}  // namespace

Tensor MakeBatchInput(const BatchInputSpec& spec, const std::vector<const InferRequest*>& requests,
                      int64_t max_rows) {
  std::vector<int64_t> values;
  const int64_t n = static_cast<int64_t>(requests.size());
  switch (spec.kind) {
    case Kind::kElementCount:
    case Kind::kAccumulatedElementCount:
    case Kind::kAccumulatedElementCountWithZero: {
      const bool accumulate = spec.kind != Kind::kElementCount;
      const bool zero = spec.kind == Kind::kAccumulatedElementCountWithZero;
      values.reserve(requests.size() + 1);
      if (zero) values.push_back(0);
      int64_t sum = 0;
      for (const InferRequest* r : requests) {
        const int64_t count = ElementCount(SourceOf(spec, *r).shape());
        if (__builtin_add_overflow(sum, count, &sum)) {
          throw Error(StatusCode::kInvalidArg, "batch is too large");
        }
        values.push_back(accumulate ? sum : count);
      }
      return Typed(spec, Shape{zero ? n + 1 : n}, values);
    }
    case Kind::kMaxElementCountAsShape: {
      // Described by its shape alone: Triton leaves the data unset (zeros here).
      int64_t most = 0;
      for (const InferRequest* r : requests) {
        most = std::max(most, ElementCount(SourceOf(spec, *r).shape()));
      }
      return Typed(spec, Shape{most}, {});
    }
    case Kind::kItemShape:
    case Kind::kItemShapeFlatten: {
      // One entry per batch item (a request's row): the source's shape without the batch dim.
      int64_t rows = 0;
      int64_t width = 0;
      for (const InferRequest* r : requests) {
        const Shape& shape = SourceOf(spec, *r).shape();
        if (shape.empty()) {
          throw Error(StatusCode::kInvalidArg,
                      "batch input '" + spec.target_names[0] + "' needs input '" +
                          spec.source_input + "' to have a batch dimension");
        }
        if (shape[0] > std::max<int64_t>(max_rows, 1)) {
          throw Error(StatusCode::kInvalidArg,
                      "batch input '" + spec.target_names[0] + "': input '" + spec.source_input +
                          "' has " + std::to_string(shape[0]) + " rows, more than " +
                          std::to_string(std::max<int64_t>(max_rows, 1)));
        }
        width = static_cast<int64_t>(shape.size()) - 1;  // Triton: the last request's rank
        rows += shape[0];
        for (int64_t row = 0; row < shape[0]; ++row) {
          values.insert(values.end(), shape.begin() + 1, shape.end());
        }
      }
      int64_t flat = 0;
      if (__builtin_mul_overflow(rows, width, &flat)) {
        throw Error(StatusCode::kInvalidArg, "batch is too large");
      }
      return Typed(spec, spec.kind == Kind::kItemShape ? Shape{rows, width} : Shape{flat}, values);
    }
  }
  throw Error(StatusCode::kInternal, "unknown batch input kind");
}

Shape BatchOutputShape(const BatchOutputSpec& spec, const Shape& source) {
  Shape shape = spec.shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] != -1) continue;
    if (i >= source.size()) {
      throw Error(StatusCode::kInternal,
                  "batch output of input '" + spec.source_input + "' " + ShapeToString(source) +
                      ": no dim " + std::to_string(i) + " for the output's shape " +
                      ShapeToString(spec.shape));
    }
    shape[i] = source[i];
  }
  return shape;
}

std::vector<Tensor> ScatterWithInputShape(const std::string& model, const std::string& name,
                                          const BatchOutputSpec& spec, const Tensor& output,
                                          const std::vector<const InferRequest*>& requests) {
  const auto fail = [&](const std::string& why) {
    return Error(StatusCode::kInternal, "model '" + model + "' returned output '" + name +
                                            "' that cannot be scattered by the shapes of input '" +
                                            spec.source_input + "': " + why);
  };
  const size_t item = DataTypeSize(output.dtype());
  if (item == 0) throw fail("it is not of a fixed-size datatype");
  if (output.device().kind != DeviceKind::kCPU) throw fail("it is not in host memory");
  std::vector<Tensor> parts;
  parts.reserve(requests.size());
  size_t offset = 0;
  for (const InferRequest* r : requests) {
    const Tensor* source = r->FindInput(spec.source_input);
    if (source == nullptr) throw fail("a request does not have that input");
    Shape shape = BatchOutputShape(spec, source->shape());
    size_t bytes = 0;
    size_t end = 0;
    if (!CheckedByteSize(shape, item, &bytes) || !CheckedAdd(offset, bytes, &end) ||
        end > output.byte_size()) {
      throw fail("it holds " + std::to_string(output.byte_size()) +
                 " bytes, fewer than its requests' shapes need");
    }
    parts.push_back(Tensor::View(output.dtype(), std::move(shape), output.data() + offset, bytes,
                                 output.owner(), output.device()));
    offset = end;
  }
  return parts;
}

}  // namespace tritonlite
