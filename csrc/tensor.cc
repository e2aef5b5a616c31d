#include "tensor.h"

#include <cstring>
#include <limits>

#include "bytes_codec.h"
#include "status.h"

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
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      throw Error(StatusCode::kInvalidArg, "negative dimension in shape " + ShapeToString(shape));
    }
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      throw Error(StatusCode::kInvalidArg, "shape " + ShapeToString(shape) + " is too large");
    }
    n *= d;
  }
  return n;
}

namespace {

// element_count * element size, refused when it does not fit in size_t (a shape from the wire
// could otherwise wrap around to the byte size it came with).
size_t ByteSizeOf(DataType dtype, const Shape& shape) {
  const auto count = static_cast<uint64_t>(ElementCount(shape));
  const uint64_t size = DataTypeSize(dtype);
  if (size != 0 && count > std::numeric_limits<size_t>::max() / size) {
    throw Error(StatusCode::kInvalidArg, std::string("shape ") + ShapeToString(shape) +
                                             " is too large for " + DataTypeName(dtype));
  }
  return static_cast<size_t>(count * size);
}

}  // namespace

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
  const size_t bytes = ByteSizeOf(dtype, shape);
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
      ParseBytes(static_cast<const uint8_t*>(data), byte_size, count);
    }
  } else {
    const size_t expected = ByteSizeOf(dtype, shape);
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
  if (begin < 0 || count < 0 || begin + count > shape_[0]) {
    throw Error(StatusCode::kInternal, "row slice [" + std::to_string(begin) + ", " +
                                           std::to_string(begin + count) + ") out of range for shape " +
                                           ShapeToString(shape_));
  }
  Shape row_shape(shape_.begin() + 1, shape_.end());
  int64_t row_elems = ElementCount(row_shape);
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
  size_t total = 0;
  int64_t rows = 0;
  for (const Tensor* p : parts) {
    total += p->byte_size();
    rows += p->shape().empty() ? 1 : p->shape()[0];
  }
  Shape shape = parts[0]->shape();
  if (shape.empty()) shape.push_back(rows); else shape[0] = rows;
  Tensor out = Tensor::Allocate(parts[0]->dtype(), std::move(shape), total);
  uint8_t* dst = out.mutable_data();
  for (const Tensor* p : parts) {
    if (p->byte_size()) std::memcpy(dst, p->data(), p->byte_size());
    dst += p->byte_size();
  }
  return out;
}

}  // namespace tritonlite
