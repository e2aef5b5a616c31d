#include "core/tensor.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/bytes_codec.h"
#include "core/status.h"
#include "util/checked_math.h"

namespace tritonlite {

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t ElementCount(const Shape& shape) {
  int64_t n = 0;
  if (!CheckedElementCount(shape, &n)) {
    for (int64_t d : shape) {
      if (d < 0) {
        throw Error(StatusCode::kInvalidArg, "negative dimension in shape " + ShapeToString(shape));
      }
    }
    throw Error(StatusCode::kInvalidArg, "shape " + ShapeToString(shape) + " is too large");
  }
  return n;
}

size_t ByteSize(DataType dtype, const Shape& shape) {
  const int64_t count = ElementCount(shape);  // negative dims and overflow: its errors
  size_t bytes = 0;
  if (!CheckedByteSize(shape, DataTypeSize(dtype), &bytes)) {
    throw Error(StatusCode::kInvalidArg,
                std::string("shape ") + ShapeToString(shape) + " of " + std::to_string(count) +
                    " " + DataTypeName(dtype) + " elements is too large: its byte size exceeds " +
                    std::to_string(kMaxTensorSize) + " bytes");
  }
  return bytes;
}

Tensor Tensor::Allocate(DataType dtype, Shape shape, size_t byte_size) {
  std::shared_ptr<uint8_t[]> buffer(new uint8_t[byte_size == 0 ? 1 : byte_size]);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = buffer.get();
  t.byte_size_ = byte_size;
  t.owner_ = std::shared_ptr<const void>(buffer, buffer.get());
  return t;
}

Tensor Tensor::Allocate(DataType dtype, Shape shape) {
  if (dtype == DataType::kBytes || dtype == DataType::kInvalid) {
    throw Error(StatusCode::kInvalidArg, "Allocate(shape) needs a fixed-size datatype");
  }
  const size_t bytes = ByteSize(dtype, shape);
  return Allocate(dtype, std::move(shape), bytes);
}

Tensor Tensor::View(DataType dtype, Shape shape, const void* data, size_t byte_size,
                    std::shared_ptr<const void> owner, Device device) {
  if (dtype == DataType::kInvalid) {
    throw Error(StatusCode::kInvalidArg, "invalid datatype");
  }
  int64_t count = ElementCount(shape);
  if (dtype == DataType::kBytes) {
    if (device.kind == DeviceKind::kCPU) {
      CheckBytes(static_cast<const uint8_t*>(data), byte_size, count);
    }
  } else {
    // Overflow-checked: a shape like [2**62] of FP32 must not wrap to a size of 0.
    size_t expected = 0;
    if (!CheckedByteSize(shape, DataTypeSize(dtype), &expected)) {
      throw Error(StatusCode::kInvalidArg,
                  std::string("unexpected byte size for ") + DataTypeName(dtype) +
                      " tensor of shape " + ShapeToString(shape) + ": expected more than " +
                      std::to_string(kMaxTensorSize) + " bytes, got " + std::to_string(byte_size));
    }
    if (expected != byte_size) {
      throw Error(StatusCode::kInvalidArg,
                  std::string("unexpected byte size for ") + DataTypeName(dtype) + " tensor of shape " +
                      ShapeToString(shape) + ": expected " + std::to_string(expected) +
                      " bytes, got " + std::to_string(byte_size));
    }
  }
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.device_ = device;
  t.data_ = static_cast<const uint8_t*>(data);
  t.byte_size_ = byte_size;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::SliceRows(int64_t begin, int64_t count) const {
  if (shape_.empty()) throw Error(StatusCode::kInternal, "cannot slice a scalar tensor");
  if (begin < 0 || count < 0 || begin > shape_[0] || count > shape_[0] - begin) {
    throw Error(StatusCode::kInternal, "row slice [" + std::to_string(begin) + ", " +
                                           std::to_string(begin + count) + ") out of range for shape " +
                                           ShapeToString(shape_));
  }
  // Elements per row: a sub-product of this tensor's shape, which was overflow-checked when it
  // was made (no temporary Shape: this runs per output of every request in a batch).
  int64_t row_elems = 1;
  for (size_t i = 1; i < shape_.size(); ++i) row_elems *= shape_[i];
  size_t start, end;
  if (dtype_ == DataType::kBytes) {
    start = BytesElementOffset(data_, byte_size_, begin * row_elems);
    end = start + BytesElementOffset(data_ + start, byte_size_ - start, count * row_elems);
  } else {
    size_t row_bytes = static_cast<size_t>(row_elems) * DataTypeSize(dtype_);
    start = static_cast<size_t>(begin) * row_bytes;
    end = start + static_cast<size_t>(count) * row_bytes;
  }
  Tensor t = *this;
  t.shape_[0] = count;
  t.data_ = data_ + start;
  t.byte_size_ = end - start;
  return t;
}

Tensor Tensor::Reshaped(Shape shape) const {
  if (ElementCount(shape) != element_count()) {
    throw Error(StatusCode::kInvalidArg, "cannot reshape " + ShapeToString(shape_) + " to " +
                                             ShapeToString(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor ConcatRows(const std::vector<const Tensor*>& parts) {
  if (parts.empty()) throw Error(StatusCode::kInternal, "ConcatRows of nothing");
  // Every part is checked against the first before anything is copied: the output's shape is
  // the first part's, so a part of another width would be read past its end.
  const Tensor& first = *parts[0];
  const DataType dtype = first.dtype();
  const Shape& first_shape = first.shape();
  if (first_shape.empty()) {
    throw Error(StatusCode::kInvalidArg, "cannot batch a tensor without a batch dimension");
  }
  const size_t item = DataTypeSize(dtype);  // 0 for BYTES
  constexpr size_t kMaxSize = std::numeric_limits<size_t>::max();
  size_t total = 0;
  int64_t rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor* p = parts[i];
    const auto which = [i] { return "batch part " + std::to_string(i); };  // errors only
    if (p == nullptr) throw Error(StatusCode::kInvalidArg, which() + " is missing");
    if (p->dtype() != dtype) {
      throw Error(StatusCode::kInvalidArg, which() + " has datatype " + DataTypeName(p->dtype()) +
                                               ", the first has " + DataTypeName(dtype));
    }
    const Shape& shape = p->shape();
    if (shape.size() != first_shape.size() ||
        !std::equal(shape.begin() + 1, shape.end(), first_shape.begin() + 1)) {
      throw Error(StatusCode::kInvalidArg, which() + " has shape " + ShapeToString(shape) +
                                               ", which does not batch with the first's " +
                                               ShapeToString(first_shape));
    }
    if (p->device().kind != DeviceKind::kCPU) {
      throw Error(StatusCode::kInvalidArg,
                  which() + " is in GPU memory: batches are gathered in host memory");
    }
    if (item != 0) {  // BYTES: its layout was checked when the view was made
      const size_t count = static_cast<size_t>(ElementCount(shape));  // overflow-checked
      if (count > kMaxSize / item || count * item != p->byte_size()) {
        throw Error(StatusCode::kInvalidArg,
                    which() + " holds " + std::to_string(p->byte_size()) + " bytes, not the " +
                        DataTypeName(dtype) + " " + ShapeToString(shape) + " it claims to be");
      }
    }
    if (p->byte_size() > kMaxSize - total || shape[0] > std::numeric_limits<int64_t>::max() - rows) {
      throw Error(StatusCode::kInvalidArg, "batch is too large");
    }
    total += p->byte_size();
    rows += shape[0];
  }
  Shape shape = first_shape;
  shape[0] = rows;
  Tensor out = Tensor::Allocate(dtype, std::move(shape), total);
  uint8_t* dst = out.mutable_data();
  for (const Tensor* p : parts) {
    if (p->byte_size()) std::memcpy(dst, p->data(), p->byte_size());
    dst += p->byte_size();
  }
  return out;
}

}  // namespace tritonlite
