// Tensor: a typed, shaped view over memory that is kept alive by an owner (owned buffers,
// Python objects, DLPack producers). Copying a Tensor copies the view, never the data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/datatype.h"

namespace tritonlite {

enum class DeviceKind : uint8_t { kCPU = 0, kGPU = 1 };

struct Device {
  DeviceKind kind = DeviceKind::kCPU;
  int32_t id = 0;
  bool operator==(const Device& o) const { return kind == o.kind && id == o.id; }
};

using Shape = std::vector<int64_t>;

std::string ShapeToString(const Shape& shape);
// Product of dims; throws INVALID_ARG for negative dims or more than 2**60 elements, zero
// dims aside (util/checked_math.h).
int64_t ElementCount(const Shape& shape);
// Bytes of a fixed-size `dtype` tensor of `shape`; throws INVALID_ARG where ElementCount does
// (the size then never exceeds 2**63-1, and never wraps).
size_t ByteSize(DataType dtype, const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // Newly allocated, uninitialized host memory of `byte_size` bytes (for BYTES the caller fills a
  // serialized buffer of that size).
  static Tensor Allocate(DataType dtype, Shape shape, size_t byte_size);
  // Newly allocated host memory sized for a fixed-size dtype.
  static Tensor Allocate(DataType dtype, Shape shape);
  // A view over `data`, kept alive by `owner`. Validates that byte_size fits the shape (fixed-size
  // types) or that the buffer is a well-formed BYTES serialization with shape's element count.
  static Tensor View(DataType dtype, Shape shape, const void* data, size_t byte_size,
                     std::shared_ptr<const void> owner, Device device = Device{});

  DataType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Device& device() const { return device_; }
  size_t byte_size() const { return byte_size_; }
  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data() const { return const_cast<uint8_t*>(data_); }
  const std::shared_ptr<const void>& owner() const { return owner_; }
  bool defined() const { return dtype_ != DataType::kInvalid; }
  // Views over immutable memory (e.g. a received request's bytes) must not be written through.
  bool read_only() const { return read_only_; }
  void set_read_only() { read_only_ = true; }
  int64_t element_count() const { return ElementCount(shape_); }

  // Rows [begin, begin+count) along dim 0, as a view sharing this tensor's owner.
  Tensor SliceRows(int64_t begin, int64_t count) const;
  // Same memory, another shape with the same element count.
  Tensor Reshaped(Shape shape) const;

 private:
  DataType dtype_ = DataType::kInvalid;
  Shape shape_;
  Device device_;
  const uint8_t* data_ = nullptr;
  size_t byte_size_ = 0;
  bool read_only_ = false;
  std::shared_ptr<const void> owner_;
};

// Concatenates tensors along dim 0 into one new host buffer. Every part must be a host tensor
// with the first's dtype and non-batch dims whose byte size matches its shape; throws
// INVALID_ARG naming the part otherwise. BYTES buffers concatenate as-is.
Tensor ConcatRows(const std::vector<const Tensor*>& parts);

}  // namespace tritonlite
