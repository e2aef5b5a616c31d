#include "python/tensor_convert.h"

#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include "core/bytes_codec.h"
#include "core/dlpack.h"
#include "core/status.h"
#include "python/errors.h"

namespace tritonlite::python {

namespace {

// Owners: keep Python objects alive from C++; released with the GIL held, from any thread.
std::shared_ptr<const void> PyOwner(py::handle obj) {
  PyObject* raw = obj.ptr();
  Py_INCREF(raw);
  return std::shared_ptr<const void>(raw, [](const void* p) {
    if (!Py_IsInitialized()) return;  // interpreter gone: nothing left to release into
    py::gil_scoped_acquire gil;
    Py_DECREF(static_cast<PyObject*>(const_cast<void*>(p)));
  });
}

// A held buffer export (PEP 3118): the exporter stays alive and locked while the view lives.
struct HeldBuffer {
  Py_buffer view{};
  ~HeldBuffer() {
    if (view.obj != nullptr && Py_IsInitialized()) {
      py::gil_scoped_acquire gil;
      PyBuffer_Release(&view);
    }
  }
};

py::object Bfloat16Dtype() {
  static py::object* cached = nullptr;  // leaked on purpose: lives as long as the interpreter
  if (cached == nullptr) {
    py::object value = py::none();
    try {
      value = py::module_::import("ml_dtypes").attr("bfloat16");
    } catch (py::error_already_set&) {
    }
    cached = new py::object(value);
  }
  return *cached;
}

Shape ShapeFromSequence(const std::vector<int64_t>& dims) { return Shape(dims.begin(), dims.end()); }

bool IsCompactRowMajor(const DLTensor& t) {
  if (t.strides == nullptr) return true;
  int64_t expected = 1;
  for (int32_t i = t.ndim - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

Tensor TensorFromDLPackCapsule(py::capsule capsule) {
  if (std::strcmp(capsule.name(), "dltensor") != 0) {
    ThrowInvalid(std::string("expected a 'dltensor' DLPack capsule, got '") + capsule.name() +
                 "' (a capsule can be consumed only once)");
  }
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (managed == nullptr) throw py::error_already_set();
  // From here on we own `managed`: the owner's deleter hands it back to its producer.
  std::shared_ptr<const void> owner(managed, [](const void* p) {
    auto* m = static_cast<DLManagedTensor*>(const_cast<void*>(p));
    if (m->deleter == nullptr || !Py_IsInitialized()) return;
    py::gil_scoped_acquire gil;
    m->deleter(m);
  });
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");
  const DLTensor& dl = managed->dl_tensor;
  DataType dtype = DataTypeFromDLPack(dl.dtype.code, dl.dtype.bits, dl.dtype.lanes);
  if (dtype == DataType::kInvalid) {
    ThrowInvalid("unsupported DLPack dtype (code " + std::to_string(dl.dtype.code) + ", bits " +
                 std::to_string(dl.dtype.bits) + ", lanes " + std::to_string(dl.dtype.lanes) + ")");
  }
  Device device;
  switch (dl.device.device_type) {
    case kDLCPU: case kDLCUDAHost: break;
    case kDLCUDA: case kDLCUDAManaged:
      device.kind = DeviceKind::kGPU;
      device.id = dl.device.device_id;
      break;
    default:
      ThrowInvalid("unsupported DLPack device type " + std::to_string(dl.device.device_type));
  }
  Shape shape(dl.shape, dl.shape + dl.ndim);
  if (!IsCompactRowMajor(dl)) {
    ThrowInvalid("non-contiguous tensor of shape " + ShapeToString(shape) +
                 ": tensors must be C-contiguous (make a contiguous copy first)");
  }
  const size_t bytes = ByteSize(dtype, shape);  // overflow-checked
  const auto* data = static_cast<const uint8_t*>(dl.data) + dl.byte_offset;
  return Tensor::View(dtype, std::move(shape), data, bytes, std::move(owner), device);
}

py::capsule KeepAlive(const Tensor& t) {
  auto holder = std::make_unique<std::shared_ptr<const void>>(t.owner());
  py::capsule cap(holder.get(), [](void* p) {
    std::unique_ptr<std::shared_ptr<const void>> reclaim(static_cast<std::shared_ptr<const void>*>(p));
  });
  holder.release();  // now owned by the capsule
  return cap;
}

// What a DLPack capsule owns: the exported view (or copy) and the managed tensor a consumer
// takes; legacy (v0.8) and versioned (v1.0) exports differ only in the managed struct.
template <typename Managed>
struct DLPackExport {
  Tensor tensor;
  std::vector<int64_t> shape;
  Managed managed{};
};

template <typename Managed>
py::capsule MakeDLPackCapsule(const Tensor& t, uint8_t code, uint8_t bits, const char* name,
                              uint64_t flags) {
  auto ctx = std::make_unique<DLPackExport<Managed>>();
  ctx->tensor = t;
  ctx->shape = t.shape();
  DLTensor& dl = ctx->managed.dl_tensor;
  dl.data = t.mutable_data();
  dl.device.device_type = t.device().kind == DeviceKind::kGPU ? kDLCUDA : kDLCPU;
  dl.device.device_id = t.device().id;
  dl.ndim = static_cast<int32_t>(ctx->shape.size());
  dl.dtype = DLDataType{code, bits, 1};
  dl.shape = ctx->shape.data();
  dl.strides = nullptr;
  dl.byte_offset = 0;
  if constexpr (std::is_same_v<Managed, DLManagedTensorVersioned>) {
    ctx->managed.version = DLPackVersion{1, 0};
    ctx->managed.flags = flags;
  }
  ctx->managed.manager_ctx = ctx.get();
  ctx->managed.deleter = [](Managed* self) {
    std::unique_ptr<DLPackExport<Managed>> reclaim(
        static_cast<DLPackExport<Managed>*>(self->manager_ctx));
  };
  Managed* managed = &ctx->managed;
  ctx.release();  // owned by the capsule until a consumer takes it
  PyCapsule_Destructor destructor;
  if constexpr (std::is_same_v<Managed, DLManagedTensorVersioned>) {
    destructor = [](PyObject* capsule) {
      if (PyCapsule_IsValid(capsule, "dltensor_versioned")) {  // never consumed
        auto* m = static_cast<Managed*>(PyCapsule_GetPointer(capsule, "dltensor_versioned"));
        m->deleter(m);
      }
    };
  } else {
    destructor = [](PyObject* capsule) {
      if (PyCapsule_IsValid(capsule, "dltensor")) {  // never consumed
        auto* m = static_cast<Managed*>(PyCapsule_GetPointer(capsule, "dltensor"));
        m->deleter(m);
      }
    };
  }
  PyObject* cap = PyCapsule_New(managed, name, destructor);
  if (cap == nullptr) {
    managed->deleter(managed);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(cap);
}

}  // namespace

DataType DataTypeFromNumpy(const py::dtype& dt) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  switch (kind) {
    case 'b': return DataType::kBool;
    case 'u':
      return size == 1 ? DataType::kUint8 : size == 2 ? DataType::kUint16
             : size == 4 ? DataType::kUint32 : size == 8 ? DataType::kUint64 : DataType::kInvalid;
    case 'i':
      return size == 1 ? DataType::kInt8 : size == 2 ? DataType::kInt16
             : size == 4 ? DataType::kInt32 : size == 8 ? DataType::kInt64 : DataType::kInvalid;
    case 'f':
      return size == 2 ? DataType::kFp16 : size == 4 ? DataType::kFp32
             : size == 8 ? DataType::kFp64 : DataType::kInvalid;
    case 'O': case 'S': case 'U': return DataType::kBytes;
    case 'V':
      if (size == 2 && py::str(dt.attr("name")).cast<std::string>() == "bfloat16") {
        return DataType::kBf16;
      }
      return DataType::kInvalid;
    default: return DataType::kInvalid;
  }
}

py::dtype NumpyDtype(DataType dtype) {
  // By type number (PyArray_DescrFromType: numpy's cached descriptor), not by parsing a name:
  // this runs for every tensor handed to Python (each batch's inputs).
  using api = py::detail::npy_api;
  constexpr int kNpyHalf = 23;  // NPY_HALF in numpy's C ABI (pybind11 names no constant for it)
  switch (dtype) {
    case DataType::kBool: return py::dtype(api::NPY_BOOL_);
    case DataType::kUint8: return py::dtype(api::NPY_UINT8_);
    case DataType::kUint16: return py::dtype(api::NPY_UINT16_);
    case DataType::kUint32: return py::dtype(api::NPY_UINT32_);
    case DataType::kUint64: return py::dtype(api::NPY_UINT64_);
    case DataType::kInt8: return py::dtype(api::NPY_INT8_);
    case DataType::kInt16: return py::dtype(api::NPY_INT16_);
    case DataType::kInt32: return py::dtype(api::NPY_INT32_);
    case DataType::kInt64: return py::dtype(api::NPY_INT64_);
    case DataType::kFp16: return py::dtype(kNpyHalf);
    case DataType::kFp32: return py::dtype(api::NPY_FLOAT_);
    case DataType::kFp64: return py::dtype(api::NPY_DOUBLE_);
    case DataType::kBf16: {
      py::object bf16 = Bfloat16Dtype();
      if (bf16.is_none()) {
        ThrowInvalid("BF16 tensors need the 'ml_dtypes' package to be viewed as numpy arrays "
                     "(or use DLPack, e.g. torch.from_dlpack)");
      }
      return py::dtype::from_args(bf16);
    }
    case DataType::kBytes: return py::dtype(api::NPY_OBJECT_);
    default: ThrowInvalid("no numpy dtype for datatype " + std::string(DataTypeName(dtype)));
  }
}

DataType ParseDataType(const std::string& name) {
  DataType dt = DataTypeFromName(name);
  if (dt == DataType::kInvalid) ThrowInvalid("unsupported datatype '" + name + "'");
  return dt;
}

Tensor SerializeBytes(const py::array& arr) {
  Shape shape(arr.shape(), arr.shape() + arr.ndim());
  const int64_t count = ElementCount(shape);
  auto buf = std::make_shared<std::string>();
  py::object flat = arr.attr("ravel")();  // C order, whatever the layout
  int64_t seen = 0;
  for (py::handle item : flat) {
    ++seen;
    PyObject* o = item.ptr();
    if (PyBytes_Check(o)) {
      AppendBytesElement(buf.get(), PyBytes_AS_STRING(o), static_cast<size_t>(PyBytes_GET_SIZE(o)));
    } else {
      // Like tritonclient: anything else is str(item) encoded as UTF-8.
      py::str s = PyUnicode_Check(o) ? py::reinterpret_borrow<py::str>(item) : py::str(item);
      Py_ssize_t n = 0;
      const char* p = PyUnicode_AsUTF8AndSize(s.ptr(), &n);
      if (p == nullptr) throw py::error_already_set();
      AppendBytesElement(buf.get(), p, static_cast<size_t>(n));
    }
  }
  if (seen != count) throw Error(StatusCode::kInternal, "BYTES serialization lost elements");
  const void* data = buf->data();
  const size_t size = buf->size();
  return Tensor::View(DataType::kBytes, std::move(shape), data, size, std::move(buf));
}

py::array DeserializeBytes(const Tensor& t) {
  if (t.device().kind != DeviceKind::kCPU) ThrowInvalid("BYTES tensor is not in host memory");
  auto elems = ParseBytes(t.data(), t.byte_size(), t.element_count());
  py::array out(py::dtype("object"), std::vector<py::ssize_t>(t.shape().begin(), t.shape().end()));
  auto** slots = static_cast<PyObject**>(out.mutable_data());
  for (size_t i = 0; i < elems.size(); ++i) {
    PyObject* b = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(t.data() + elems[i].offset),
                                            static_cast<Py_ssize_t>(elems[i].size));
    if (b == nullptr) throw py::error_already_set();
    Py_XDECREF(slots[i]);  // numpy fills new object arrays with None
    slots[i] = b;
  }
  return out;
}

Tensor TensorFromNumpy(const py::array& arr) {
  DataType dtype = DataTypeFromNumpy(arr.dtype());
  if (dtype == DataType::kInvalid) {
    ThrowInvalid("unsupported numpy dtype '" + py::str(arr.dtype()).cast<std::string>() +
                 "': no Triton datatype matches it");
  }
  if (dtype == DataType::kBytes) return SerializeBytes(arr);
  if (!(arr.flags() & py::array::c_style)) {
    ThrowInvalid("non-contiguous array of shape " +
                 ShapeToString(Shape(arr.shape(), arr.shape() + arr.ndim())) +
                 ": tensors must be C-contiguous (use numpy.ascontiguousarray)");
  }
  Shape shape(arr.shape(), arr.shape() + arr.ndim());
  return Tensor::View(dtype, std::move(shape), arr.data(), static_cast<size_t>(arr.nbytes()),
                      PyOwner(arr));
}

Tensor TensorFromDLPack(py::object obj) {
  if (py::isinstance<py::capsule>(obj)) return TensorFromDLPackCapsule(obj.cast<py::capsule>());
  if (!py::hasattr(obj, "__dlpack__")) {
    ThrowInvalid("object of type " + py::str(py::type::of(obj).attr("__name__")).cast<std::string>() +
                 " does not support DLPack (__dlpack__)");
  }
  py::object capsule = obj.attr("__dlpack__")();
  return TensorFromDLPackCapsule(capsule.cast<py::capsule>());
}

// Any array-like: Tensor as-is, numpy arrays by the buffer (zero-copy), other DLPack producers by
// DLPack, everything else through numpy.asarray (a copy, e.g. Python lists).
Tensor TensorFromAny(py::handle obj) {
  // numpy first: what backends return (a type check, cheaper than pybind11's class lookup).
  if (py::isinstance<py::array>(obj)) return TensorFromNumpy(py::reinterpret_borrow<py::array>(obj));
  if (py::isinstance<Tensor>(obj)) return obj.cast<Tensor>();
  if (py::hasattr(obj, "__dlpack__")) return TensorFromDLPack(py::reinterpret_borrow<py::object>(obj));
  return TensorFromNumpy(py::module_::import("numpy").attr("asarray")(obj));
}

Tensor TensorFromBuffer(const std::string& datatype, const std::vector<int64_t>& dims,
                        py::handle buffer, size_t offset, py::object byte_size) {
  DataType dtype = ParseDataType(datatype);
  auto held = std::make_shared<HeldBuffer>();
  if (PyObject_GetBuffer(buffer.ptr(), &held->view, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    ThrowInvalid("buffer of type " +
                 py::str(py::type::of(buffer).attr("__name__")).cast<std::string>() +
                 " is not a C-contiguous buffer");
  }
  const size_t total = static_cast<size_t>(held->view.len);
  const size_t size = byte_size.is_none() ? (offset <= total ? total - offset : 0)
                                          : byte_size.cast<size_t>();
  if (offset > total || size > total - offset) {
    ThrowInvalid("byte range [" + std::to_string(offset) + ", " + std::to_string(offset + size) +
                 ") is outside the buffer of " + std::to_string(total) + " bytes");
  }
  const auto* data = static_cast<const uint8_t*>(held->view.buf) + offset;
  const bool readonly = held->view.readonly != 0;
  Tensor t = Tensor::View(dtype, ShapeFromSequence(dims), data, size, std::move(held));
  if (readonly) t.set_read_only();
  return t;
}

py::array TensorToNumpy(const Tensor& t) {
  if (t.device().kind != DeviceKind::kCPU) {
    ThrowInvalid("tensor is in GPU memory: use DLPack (e.g. cupy.from_dlpack) instead of numpy");
  }
  if (t.dtype() == DataType::kBytes) return DeserializeBytes(t);
  py::dtype dt = NumpyDtype(t.dtype());
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  py::array arr(dt, shape, {}, t.data(), KeepAlive(t));
  if (t.read_only()) {
    // PyArray_CLEARFLAGS(arr, NPY_ARRAY_WRITEABLE), as numpy's own macro does it: not through
    // arr.flags.writeable (a flags object and two attribute lookups per tensor).
    py::detail::array_proxy(arr.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  }
  return arr;
}

// __dlpack__: a versioned (DLPack 1.0) capsule when the consumer asks for one with
// max_version >= (1, 0), else a legacy one. A read-only tensor (a view of a received request's
// bytes) is exported read-only: the versioned capsule carries DLPACK_FLAG_BITMASK_READ_ONLY
// (numpy >= 2.1 then gives a non-writable array); the legacy capsule cannot say so, so a legacy
// consumer gets a private copy (copy=False refuses instead), and writes can never reach the
// request's memory. copy=True always exports a copy (CPU tensors only).
py::capsule TensorToDLPack(const Tensor& t, py::object stream, py::object max_version,
                           py::object dl_device, py::object copy) {
  uint8_t code = 0, bits = 0;
  if (!DataTypeToDLPack(t.dtype(), &code, &bits)) {
    ThrowInvalid("BYTES tensors have no DLPack representation: use .numpy()");
  }
  bool versioned = false;
  if (!max_version.is_none()) {
    auto version = max_version.cast<py::tuple>();
    if (version.size() < 1) throw py::type_error("__dlpack__: max_version must be (major, minor)");
    versioned = version[0].cast<int64_t>() >= 1;
  }
  const bool force_copy = !copy.is_none() && copy.cast<bool>();
  const bool never_copy = !copy.is_none() && !copy.cast<bool>();
  const bool legacy_read_only = t.read_only() && !versioned;
  if (legacy_read_only && never_copy) {
    throw py::buffer_error(
        "tritonlite.Tensor.__dlpack__: the tensor is read-only and a legacy (DLPack < 1.0) "
        "capsule cannot mark it so: ask with max_version=(1, 0), or allow a copy");
  }
  Tensor exported = t;
  uint64_t flags = 0;
  if (force_copy || legacy_read_only) {
    if (t.device().kind != DeviceKind::kCPU) {
      throw py::buffer_error("tritonlite.Tensor.__dlpack__: cannot copy a GPU tensor");
    }
    exported = Tensor::Allocate(t.dtype(), t.shape(), t.byte_size());
    if (t.byte_size() > 0) std::memcpy(exported.mutable_data(), t.data(), t.byte_size());
    flags |= DLPACK_FLAG_BITMASK_IS_COPIED;
  } else if (t.read_only()) {
    flags |= DLPACK_FLAG_BITMASK_READ_ONLY;
  }
  if (versioned) {
    return MakeDLPackCapsule<DLManagedTensorVersioned>(exported, code, bits,
                                                       "dltensor_versioned", flags);
  }
  return MakeDLPackCapsule<DLManagedTensor>(exported, code, bits, "dltensor", 0);
}

py::tuple DLPackDevice(const Tensor& t) {
  return py::make_tuple(t.device().kind == DeviceKind::kGPU ? static_cast<int>(kDLCUDA)
                                                           : static_cast<int>(kDLCPU),
                        t.device().id);
}

NamedTensors NamedTensorsFromPy(py::handle tensors) {
  NamedTensors out;
  if (py::isinstance<py::dict>(tensors)) {
    auto d = py::reinterpret_borrow<py::dict>(tensors);
    out.reserve(d.size());
    for (auto kv : d) out.emplace_back(py::str(kv.first).cast<std::string>(), TensorFromAny(kv.second));
  } else {
    for (py::handle item : tensors) {
      auto pair = py::reinterpret_borrow<py::tuple>(item);
      out.emplace_back(pair[0].cast<std::string>(), TensorFromAny(pair[1]));
    }
  }
  return out;
}

py::object NamedTensorsToPy(NamedTensors& tensors, bool as_numpy) {
  if (as_numpy) {
    py::dict d;
    for (auto& kv : tensors) d[py::str(kv.first)] = TensorToNumpy(kv.second);
    return std::move(d);
  }
  py::list l(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    l[i] = py::make_tuple(tensors[i].first, py::cast(std::move(tensors[i].second)));
  }
  return std::move(l);
}

}  // namespace tritonlite::python
