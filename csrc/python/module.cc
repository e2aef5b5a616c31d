// The only file that includes pybind11: exposes the C++ core as `tritonlite._core`, converts
// between Python objects (numpy, DLPack producers, buffers) and core types, and translates core
// errors into Python exceptions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/bytes_codec.h"
#include "core/cancel_flag.h"
#include "core/cuda_runtime.h"
#include "core/datatype.h"
#include "core/dlpack.h"
#include "core/model_spec.h"
#include "core/owned_request.h"
#include "core/status.h"
#include "core/tensor.h"
#include "scheduling/backend.h"
#include "scheduling/completion_queue.h"
#include "scheduling/model_runner.h"
#include "scheduling/rate_limiter.h"
#include "scheduling/response_cache.h"
#include "testing/closed_loop.h"
#include "transport/grpc/compression.h"
#include "transport/grpc/infer_codec.h"
#include "transport/grpc/infer_fast_path.h"
#include "transport/grpc/server.h"
#include "transport/http2/huffman.h"


namespace py = pybind11;
using namespace tritonlite;

namespace {

[[noreturn]] void ThrowInvalid(const std::string& msg) { throw Error(StatusCode::kInvalidArg, msg); }

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// numpy <-> DataType

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
  switch (dtype) {
    case DataType::kBool: return py::dtype("bool");
    case DataType::kUint8: return py::dtype("uint8");
    case DataType::kUint16: return py::dtype("uint16");
    case DataType::kUint32: return py::dtype("uint32");
    case DataType::kUint64: return py::dtype("uint64");
    case DataType::kInt8: return py::dtype("int8");
    case DataType::kInt16: return py::dtype("int16");
    case DataType::kInt32: return py::dtype("int32");
    case DataType::kInt64: return py::dtype("int64");
    case DataType::kFp16: return py::dtype("float16");
    case DataType::kFp32: return py::dtype("float32");
    case DataType::kFp64: return py::dtype("float64");
    case DataType::kBf16: {
      py::object bf16 = Bfloat16Dtype();
      if (bf16.is_none()) {
        ThrowInvalid("BF16 tensors need the 'ml_dtypes' package to be viewed as numpy arrays "
                     "(or use DLPack, e.g. torch.from_dlpack)");
      }
      return py::dtype::from_args(bf16);
    }
    case DataType::kBytes: return py::dtype("object");
    default: ThrowInvalid("no numpy dtype for datatype " + std::string(DataTypeName(dtype)));
  }
}

DataType ParseDataType(const std::string& name) {
  DataType dt = DataTypeFromName(name);
  if (dt == DataType::kInvalid) ThrowInvalid("unsupported datatype '" + name + "'");
  return dt;
}

Shape ShapeFromSequence(const std::vector<int64_t>& dims) { return Shape(dims.begin(), dims.end()); }

// ---------------------------------------------------------------------------------------------
// BYTES <-> numpy object arrays

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

// ---------------------------------------------------------------------------------------------
// Python objects -> Tensor

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
  if (py::isinstance<Tensor>(obj)) return obj.cast<Tensor>();
  if (py::isinstance<py::array>(obj)) return TensorFromNumpy(py::reinterpret_borrow<py::array>(obj));
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

// ---------------------------------------------------------------------------------------------
// Tensor -> Python

py::capsule KeepAlive(const Tensor& t) {
  auto holder = std::make_unique<std::shared_ptr<const void>>(t.owner());
  py::capsule cap(holder.get(), [](void* p) {
    std::unique_ptr<std::shared_ptr<const void>> reclaim(static_cast<std::shared_ptr<const void>*>(p));
  });
  holder.release();  // now owned by the capsule
  return cap;
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
    arr.attr("flags").attr("writeable") = false;
  }
  return arr;
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

// Acquire loads and release stores of 32-bit words in a writable buffer (shared memory mapped
// by two processes): Python has no atomics, and the python backend's arena ring needs them to be
// correct on weakly ordered CPUs (see backends/python/shm.py).
uint32_t* SharedWord(py::handle buffer, int64_t offset, bool writable, Py_buffer* view) {
  if (PyObject_GetBuffer(buffer.ptr(), view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) != 0) {
    throw py::error_already_set();
  }
  const auto len = static_cast<int64_t>(view->len);
  const auto address = reinterpret_cast<uintptr_t>(view->buf) + static_cast<uintptr_t>(offset);
  if (offset < 0 || offset > len - 4 || address % alignof(uint32_t) != 0) {
    PyBuffer_Release(view);
    ThrowInvalid("atomic access at offset " + std::to_string(offset) + " of a " +
                 std::to_string(len) + "-byte buffer: out of bounds or not 4-byte aligned");
  }
  return reinterpret_cast<uint32_t*>(address);
}

uint32_t AtomicLoadU32(py::handle buffer, int64_t offset) {
  Py_buffer view;
  uint32_t value = __atomic_load_n(SharedWord(buffer, offset, false, &view), __ATOMIC_ACQUIRE);
  PyBuffer_Release(&view);
  return value;
}

void AtomicStoreU32(py::handle buffer, int64_t offset, uint32_t value) {
  Py_buffer view;
  __atomic_store_n(SharedWord(buffer, offset, true, &view), value, __ATOMIC_RELEASE);
  PyBuffer_Release(&view);
}

py::tuple DLPackDevice(const Tensor& t) {
  return py::make_tuple(t.device().kind == DeviceKind::kGPU ? static_cast<int>(kDLCUDA)
                                                           : static_cast<int>(kDLCPU),
                        t.device().id);
}

// ---------------------------------------------------------------------------------------------
// Scheduling: model spec from Python, Python backends, requests and responses.

StatusCode StatusCodeFromName(const std::string& name) {
  static const std::pair<const char*, StatusCode> kNames[] = {
      {"INVALID_ARG", StatusCode::kInvalidArg}, {"NOT_FOUND", StatusCode::kNotFound},
      {"UNAVAILABLE", StatusCode::kUnavailable}, {"INTERNAL", StatusCode::kInternal},
      {"UNSUPPORTED", StatusCode::kUnsupported}, {"ALREADY_EXISTS", StatusCode::kAlreadyExists},
      {"CANCELLED", StatusCode::kCancelled}, {"UNKNOWN", StatusCode::kUnknown}};
  for (const auto& kv : kNames) {
    if (name == kv.first) return kv.second;
  }
  return StatusCode::kInternal;
}

// The status of a Python exception: a TritonError keeps its kind, anything else is INTERNAL.
Status StatusFromPython(py::error_already_set& e) {
  py::object value = e.value();
  std::string message = py::str(value).cast<std::string>();
  if (message.empty()) message = py::str(py::type::of(value).attr("__name__")).cast<std::string>();
  StatusCode code = StatusCode::kInternal;
  if (py::hasattr(value, "status")) {
    code = StatusCodeFromName(py::str(value.attr("status")).cast<std::string>());
  }
  return Status(code, message);
}

std::vector<TensorSpec> TensorSpecsFromPy(py::handle list) {
  std::vector<TensorSpec> specs;
  for (py::handle item : list) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    TensorSpec s;
    s.name = d["name"].cast<std::string>();
    s.dtype = ParseDataType(d["datatype"].cast<std::string>());
    s.dims = d["dims"].cast<std::vector<int64_t>>();
    s.optional = d.contains("optional") && d["optional"].cast<bool>();
    s.ragged = d.contains("allow_ragged_batch") && d["allow_ragged_batch"].cast<bool>();
    specs.push_back(std::move(s));
  }
  return specs;
}

template <typename T>
T Get(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) && !d[key].is_none() ? d[key].cast<T>() : fallback;
}

QueuePolicy QueuePolicyFromPy(const py::dict& d) {
  QueuePolicy p;
  p.delay_on_timeout = Get<std::string>(d, "timeout_action", "REJECT") == "DELAY";
  p.default_timeout_us = Get<uint64_t>(d, "default_timeout_microseconds", 0);
  p.allow_timeout_override = Get<bool>(d, "allow_timeout_override", false);
  p.max_queue_size = Get<uint32_t>(d, "max_queue_size", 0);
  return p;
}

SequenceConfig SequenceConfigFromPy(const py::dict& d) {
  SequenceConfig c;
  c.enabled = true;
  c.oldest = Get<bool>(d, "oldest", false);
  c.max_sequence_idle_us = Get<uint64_t>(d, "max_sequence_idle_microseconds", 1'000'000);
  c.max_queue_delay_us = Get<uint64_t>(d, "max_queue_delay_microseconds", 0);
  c.max_candidate_sequences = Get<uint32_t>(d, "max_candidate_sequences", 0);
  c.min_slot_utilization = Get<double>(d, "minimum_slot_utilization", 0);
  c.max_backlog = Get<uint32_t>(d, "sequence_backlog_limit", 0);
  c.preferred_batch_sizes = Get<std::vector<int64_t>>(d, "preferred_batch_size", {});
  static const std::pair<const char*, SequenceControl::Kind> kKinds[] = {
      {"CONTROL_SEQUENCE_START", SequenceControl::Kind::kStart},
      {"CONTROL_SEQUENCE_END", SequenceControl::Kind::kEnd},
      {"CONTROL_SEQUENCE_READY", SequenceControl::Kind::kReady},
      {"CONTROL_SEQUENCE_CORRID", SequenceControl::Kind::kCorrId}};
  for (py::handle item : Get<py::list>(d, "controls", py::list())) {
    auto cd = py::reinterpret_borrow<py::dict>(item);
    SequenceControl ctl;
    const auto kind = cd["kind"].cast<std::string>();
    bool known = false;
    for (const auto& kv : kKinds) {
      if (kind == kv.first) {
        ctl.kind = kv.second;
        known = true;
      }
    }
    if (!known) ThrowInvalid("unknown sequence control kind '" + kind + "'");
    ctl.input_name = cd["input_name"].cast<std::string>();
    ctl.dtype = ParseDataType(cd["datatype"].cast<std::string>());
    ctl.false_value = Get<double>(cd, "false_value", 0);
    ctl.true_value = Get<double>(cd, "true_value", 1);
    c.controls.push_back(std::move(ctl));
  }
  for (py::handle item : Get<py::list>(d, "states", py::list())) {
    auto sd = py::reinterpret_borrow<py::dict>(item);
    SequenceStateSpec s;
    s.input_name = sd["input_name"].cast<std::string>();
    s.output_name = sd["output_name"].cast<std::string>();
    s.dtype = ParseDataType(sd["datatype"].cast<std::string>());
    s.dims = sd["dims"].cast<std::vector<int64_t>>();
    s.initial_shape = sd["initial_shape"].cast<std::vector<int64_t>>();
    s.initial = sd["initial"].cast<std::string>();
    // Checked as any tensor is (BYTES: a well-formed serialization of the shape's elements).
    Tensor::View(s.dtype, s.initial_shape, s.initial.data(), s.initial.size(), nullptr);
    c.states.push_back(std::move(s));
  }
  return c;
}

// batch_input: [{"kind", "target_name": [..], "datatype", "source_input"}] (validated with the
// config: one source input, INT32 or FP32).
std::vector<BatchInputSpec> BatchInputsFromPy(py::handle list) {
  static const std::pair<const char*, BatchInputSpec::Kind> kKinds[] = {
      {"BATCH_ELEMENT_COUNT", BatchInputSpec::Kind::kElementCount},
      {"BATCH_ACCUMULATED_ELEMENT_COUNT", BatchInputSpec::Kind::kAccumulatedElementCount},
      {"BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
       BatchInputSpec::Kind::kAccumulatedElementCountWithZero},
      {"BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", BatchInputSpec::Kind::kMaxElementCountAsShape},
      {"BATCH_ITEM_SHAPE", BatchInputSpec::Kind::kItemShape},
      {"BATCH_ITEM_SHAPE_FLATTEN", BatchInputSpec::Kind::kItemShapeFlatten}};
  std::vector<BatchInputSpec> specs;
  for (py::handle item : list) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    BatchInputSpec b;
    const auto kind = d["kind"].cast<std::string>();
    bool known = false;
    for (const auto& kv : kKinds) {
      if (kind == kv.first) {
        b.kind = kv.second;
        known = true;
      }
    }
    if (!known) ThrowInvalid("unknown batch input kind '" + kind + "'");
    b.target_names = d["target_name"].cast<std::vector<std::string>>();
    b.dtype = ParseDataType(d["datatype"].cast<std::string>());
    if (b.dtype != DataType::kInt32 && b.dtype != DataType::kFp32) {
      ThrowInvalid("batch input data type must be TYPE_INT32 or TYPE_FP32");
    }
    b.source_input = d["source_input"].cast<std::string>();
    if (b.target_names.empty()) ThrowInvalid("batch input '" + kind + "' has no target_name");
    specs.push_back(std::move(b));
  }
  return specs;
}

// batch_output: [{"target_name": [..], "source_input", "shape"}] (BATCH_SCATTER_WITH_INPUT_SHAPE).
std::vector<BatchOutputSpec> BatchOutputsFromPy(py::handle list) {
  std::vector<BatchOutputSpec> specs;
  for (py::handle item : list) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    BatchOutputSpec b;
    b.target_names = d["target_name"].cast<std::vector<std::string>>();
    b.source_input = d["source_input"].cast<std::string>();
    b.shape = d["shape"].cast<std::vector<int64_t>>();
    specs.push_back(std::move(b));
  }
  return specs;
}

// The spec is a plain dict built by tritonlite.server from the model's ModelConfig.
ModelSpec ModelSpecFromPy(const py::dict& d) {
  ModelSpec spec;
  spec.name = d["name"].cast<std::string>();
  spec.version = Get<int64_t>(d, "version", 1);
  spec.max_batch_size = Get<int64_t>(d, "max_batch_size", 0);
  spec.inputs = TensorSpecsFromPy(d["inputs"]);
  spec.outputs = TensorSpecsFromPy(d["outputs"]);
  spec.per_request_execution = Get<bool>(d, "per_request_execution", false);
  if (d.contains("batch_input")) spec.batch_inputs = BatchInputsFromPy(d["batch_input"]);
  if (d.contains("batch_output")) spec.batch_outputs = BatchOutputsFromPy(d["batch_output"]);
  spec.ensemble = Get<bool>(d, "ensemble", false);
  if (d.contains("sequence_batching") && !d["sequence_batching"].is_none()) {
    spec.sequence = SequenceConfigFromPy(d["sequence_batching"].cast<py::dict>());
  }
  if (d.contains("dynamic_batching") && !d["dynamic_batching"].is_none()) {
    auto db = d["dynamic_batching"].cast<py::dict>();
    SchedulerConfig& s = spec.scheduler;
    s.dynamic_batching = true;
    s.preferred_batch_sizes = Get<std::vector<int64_t>>(db, "preferred_batch_size", {});
    s.max_queue_delay_us = Get<uint64_t>(db, "max_queue_delay_microseconds", 0);
    s.preserve_ordering = Get<bool>(db, "preserve_ordering", false);
    s.priority_levels = Get<uint64_t>(db, "priority_levels", 0);
    s.default_priority_level = Get<uint64_t>(db, "default_priority_level", 0);
    if (db.contains("default_queue_policy")) {
      s.default_policy = QueuePolicyFromPy(db["default_queue_policy"].cast<py::dict>());
    }
    if (db.contains("priority_queue_policy")) {
      for (auto kv : db["priority_queue_policy"].cast<py::dict>()) {
        s.priority_policies[kv.first.cast<uint64_t>()] = QueuePolicyFromPy(kv.second.cast<py::dict>());
      }
    }
    if (s.priority_levels > 0 &&
        (s.default_priority_level == 0 || s.default_priority_level > s.priority_levels)) {
      ThrowInvalid("model '" + spec.name + "': default_priority_level must be in [1, " +
                   std::to_string(s.priority_levels) + "]");
    }
  }
  return spec;
}

// Runs batches through a Python backend instance: instance.execute(inputs, output_names).
class PyInstanceBackend : public InstanceBackend {
 public:
  explicit PyInstanceBackend(py::object instance) : instance_(std::move(instance)) {
    execute_ = py::getattr(instance_, "execute", py::none());
  }
  ~PyInstanceBackend() override {
    if (!Py_IsInitialized()) {
      execute_.release();
      instance_.release();
      return;
    }
    py::gil_scoped_acquire gil;
    execute_ = py::object();
    instance_ = py::object();
  }

  Status Execute(const NamedTensors& inputs, const std::vector<std::string>& output_names,
                 NamedTensors* outputs) override {
    py::gil_scoped_acquire gil;
    try {
      py::dict in;
      for (const auto& kv : inputs) {
        in[py::str(kv.first)] = kv.second.device().kind == DeviceKind::kCPU
                                    ? py::object(TensorToNumpy(kv.second))
                                    : py::cast(kv.second);
      }
      py::list names;
      for (const auto& n : output_names) names.append(n);  // the worker always names them
      py::object result = execute_(in, names);
      if (!py::isinstance<py::dict>(result)) {
        return Status(StatusCode::kInternal, "backend execute() must return a dict of outputs, got " +
                                                 py::str(py::type::of(result).attr("__name__")).cast<std::string>());
      }
      for (auto item : result.cast<py::dict>()) {
        outputs->emplace_back(py::str(item.first).cast<std::string>(), TensorFromAny(item.second));
      }
      return Status::Success();
    } catch (py::error_already_set& e) {
      return StatusFromPython(e);
    } catch (const Error& e) {
      return Status(e.code(), e.what());
    }
  }

  Status ExecuteRequests(const std::vector<std::shared_ptr<OwnedRequest>>& requests) override {
    py::gil_scoped_acquire gil;
    try {
      py::list list(requests.size());
      for (size_t i = 0; i < requests.size(); ++i) list[i] = py::cast(requests[i]);
      instance_.attr("execute_requests")(list);
      return Status::Success();
    } catch (py::error_already_set& e) {
      return StatusFromPython(e);
    } catch (const Error& e) {
      return Status(e.code(), e.what());
    }
  }

  // The worker keeps one Python thread state for its whole life: creating one per GIL
  // acquisition would cost microseconds on every batch.
  void Start() override {
    py::gil_scoped_acquire gil;
    gil.inc_ref();
  }

  void Close() override {
    py::gil_scoped_acquire gil;
    try {
      if (py::hasattr(instance_, "close")) instance_.attr("close")();
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("tritonlite backend instance close()");
    }
    gil.dec_ref();  // the thread state goes when `gil` does
  }

 private:
  py::object instance_;
  py::object execute_;
};

NamedTensors InputsFromPy(py::handle inputs) {
  NamedTensors out;
  if (py::isinstance<py::dict>(inputs)) {
    auto d = py::reinterpret_borrow<py::dict>(inputs);
    out.reserve(d.size());
    for (auto kv : d) out.emplace_back(py::str(kv.first).cast<std::string>(), TensorFromAny(kv.second));
  } else {
    for (py::handle item : inputs) {
      auto pair = py::reinterpret_borrow<py::tuple>(item);
      out.emplace_back(pair[0].cast<std::string>(), TensorFromAny(pair[1]));
    }
  }
  return out;
}

struct RequestArgs {
  std::string id;
  uint64_t priority = 0;
  uint64_t timeout_us = 0;
  uint64_t correlation_id = 0;
  std::string correlation_id_str;
  uint32_t flags = 0;
  std::string parameters;
};

RequestPtr MakeRequest(uint64_t token, py::handle inputs, py::handle outputs, RequestArgs args) {
  auto r = std::make_unique<InferRequest>();
  r->token = token;
  r->inputs = InputsFromPy(inputs);
  if (!outputs.is_none()) {
    for (py::handle o : outputs) r->requested_outputs.push_back(py::str(o).cast<std::string>());
  }
  r->id = std::move(args.id);
  r->priority = args.priority;
  r->timeout_us = args.timeout_us;
  r->correlation_id = args.correlation_id;
  r->correlation_id_str = std::move(args.correlation_id_str);
  r->flags = args.flags;
  r->parameters = std::move(args.parameters);
  return r;
}

// (token, error, outputs, final): error is None or (status, message); outputs a list of
// (name, Tensor) pairs. Dropping the response here releases its inputs with the GIL held.
py::tuple ResponseToPy(InferResponse&& r) {
  py::object error = py::none();
  if (!r.status.ok()) error = py::make_tuple(StatusCodeName(r.status.code()), r.status.message());
  py::list outputs(r.outputs.size());
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    outputs[i] = py::make_tuple(r.outputs[i].first, py::cast(std::move(r.outputs[i].second)));
  }
  py::tuple t = py::make_tuple(r.token, error, outputs, r.final);
  r.keepalive.clear();
  return t;
}

py::object OutputsToPy(NamedTensors& outputs, bool as_numpy) {
  if (as_numpy) {
    py::dict d;
    for (auto& kv : outputs) d[py::str(kv.first)] = TensorToNumpy(kv.second);
    return std::move(d);
  }
  py::list l(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    l[i] = py::make_tuple(outputs[i].first, py::cast(std::move(outputs[i].second)));
  }
  return std::move(l);
}

// The queue's responses, never waiting for its lock with the GIL held.
std::vector<InferResponse> DrainQueue(CompletionQueue& queue) {
  std::vector<InferResponse> ready;
  if (!queue.TryDrain(&ready)) {
    py::gil_scoped_release release;
    ready = queue.Drain();
  }
  return ready;
}

size_t DispatchResponses(CompletionQueue& queue, py::dict pending, py::object error_class,
                         bool as_numpy) {
  std::vector<InferResponse> ready = DrainQueue(queue);
  size_t unmatched = 0;
  for (InferResponse& r : ready) {
    py::int_ token(r.token);
    PyObject* entry_raw = PyDict_GetItem(pending.ptr(), token.ptr());  // borrowed
    if (entry_raw == nullptr) {
      ++unmatched;
      continue;
    }
    py::object entry = py::reinterpret_borrow<py::object>(entry_raw);
    if (r.final) PyDict_DelItem(pending.ptr(), token.ptr());
    py::object error = py::none();
    if (!r.status.ok()) error = error_class(r.status.message(), StatusCodeName(r.status.code()));
    py::object outputs = r.status.ok() ? OutputsToPy(r.outputs, as_numpy) : py::none();
    r.keepalive.clear();
    try {
      if (r.traced) {  // a traced request's entry is a callable that also takes its timestamps
        const TraceTimes& t = r.trace;
        entry(error, outputs, r.final,
              py::make_tuple(t.queue_start, t.compute_start, t.compute_input_end,
                             t.compute_output_start, t.compute_end));
      } else if (PyCallable_Check(entry.ptr())) {
        entry(error, outputs, r.final);
      } else if (error.is_none()) {
        entry.attr("set_result")(outputs);
      } else {
        entry.attr("set_exception")(error);
      }
    } catch (py::error_already_set& e) {
      // A future cancelled by its awaiter refuses results (InvalidStateError): drop it. Any
      // other failure belongs to the callback and must not stop the other responses.
      static py::object* invalid_state = new py::object(
          py::module_::import("asyncio").attr("InvalidStateError"));  // leaked: process lifetime
      if (!e.matches(*invalid_state)) e.discard_as_unraisable("tritonlite response dispatch");
    }
  }
  return unmatched;
}

py::dict DurationToPy(const Duration& d) {
  py::dict o;
  o["count"] = d.count;
  o["ns"] = d.ns;
  return o;
}

py::dict StatsToPy(const StatsSnapshot& s) {
  py::dict o;
  o["inference_count"] = s.inference_count;
  o["execution_count"] = s.execution_count;
  o["last_inference"] = s.last_inference_ms;
  o["pending_request_count"] = s.pending;
  py::dict inf;
  inf["success"] = DurationToPy(s.success);
  inf["fail"] = DurationToPy(s.fail);
  inf["queue"] = DurationToPy(s.queue);
  inf["compute_input"] = DurationToPy(s.compute_input);
  inf["compute_infer"] = DurationToPy(s.compute_infer);
  inf["compute_output"] = DurationToPy(s.compute_output);
  inf["cache_hit"] = DurationToPy(s.cache_hit);
  inf["cache_miss"] = DurationToPy(s.cache_miss);
  o["inference_stats"] = inf;
  py::dict reasons;  // nv_inference_request_failure's reason label (not a ModelStatistics field)
  for (size_t i = 0; i < kFailReasons; ++i) {
    reasons[FailReasonName(static_cast<FailReason>(i))] = s.fail_reasons[i];
  }
  o["fail_reasons"] = reasons;
  py::list batches;
  for (const auto& kv : s.batch_stats) {
    py::dict b;
    b["batch_size"] = kv.first;
    b["compute_input"] = DurationToPy(kv.second.compute_input);
    b["compute_infer"] = DurationToPy(kv.second.compute_infer);
    b["compute_output"] = DurationToPy(kv.second.compute_output);
    batches.append(b);
  }
  o["batch_stats"] = batches;
  return o;
}

// model_warmup samples: [{"name", "count", "batch_size", "inputs": {name: tensor}}], checked
// and built by the Python layer (tritonlite.warmup).
std::vector<WarmupSample> WarmupFromPy(const py::handle& samples) {
  std::vector<WarmupSample> out;
  if (samples.is_none()) return out;
  for (py::handle item : samples) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    WarmupSample s;
    s.name = d["name"].cast<std::string>();
    s.count = d["count"].cast<uint32_t>();
    s.batch_size = d["batch_size"].cast<int64_t>();
    s.inputs = InputsFromPy(d["inputs"]);
    out.push_back(std::move(s));
  }
  return out;
}

// Runs `fn` without the GIL when the caller holds it (the limiter's lock is never waited for
// with the GIL held: the rule in scheduler.h).
template <typename Fn>
auto WithoutGil(Fn&& fn) {
  if (PyGILState_Check()) {
    py::gil_scoped_release release;
    return fn();
  }
  return fn();
}

std::vector<InstanceRateLimit> InstanceRateLimitsFromPy(const py::list& instances) {
  std::vector<InstanceRateLimit> out;
  for (py::handle h : instances) {
    py::dict d = py::reinterpret_borrow<py::dict>(h);
    InstanceRateLimit limit;
    limit.priority = d.contains("priority") ? d["priority"].cast<uint32_t>() : 0;
    limit.device = d.contains("device") ? d["device"].cast<int>() : 0;
    if (d.contains("resources")) {
      for (py::handle rh : d["resources"].cast<py::list>()) {
        py::dict r = py::reinterpret_borrow<py::dict>(rh);
        RateLimitResource res;
        res.name = r["name"].cast<std::string>();
        res.global = r.contains("global") && r["global"].cast<bool>();
        res.count = r["count"].cast<uint64_t>();
        limit.resources.push_back(std::move(res));
      }
    }
    out.push_back(std::move(limit));
  }
  return out;
}

std::shared_ptr<RateLimitRegistration> RegisterInstances(std::shared_ptr<RateLimiter> limiter,
                                                         const py::list& instances) {
  std::vector<InstanceRateLimit> limits = InstanceRateLimitsFromPy(instances);
  RateLimitRegistration* raw = WithoutGil([&] {
    return new RateLimitRegistration(std::move(limiter), limits);  // throws INVALID_ARG
  });
  return std::shared_ptr<RateLimitRegistration>(raw, [](RateLimitRegistration* r) {
    WithoutGil([r] {
      delete r;  // unregisters: takes the limiter's lock
      return 0;
    });
  });
}

std::shared_ptr<ModelRunner> MakeRunner(const py::dict& spec_dict, const py::list& instances,
                                        std::shared_ptr<ResponseCache> cache,
                                        const py::object& warmup,
                                        std::shared_ptr<RateLimitRegistration> rate_limit) {
  ModelSpec spec = ModelSpecFromPy(spec_dict);
  std::vector<WarmupSample> samples = WarmupFromPy(warmup);
  if (spec.per_request_execution) {
    for (py::handle inst : instances) {
      if (!py::hasattr(inst, "execute_requests")) {
        ThrowInvalid("model '" + spec.name + "': a per-request backend instance needs an "
                     "execute_requests(requests) method");
      }
    }
  }
  std::vector<std::unique_ptr<InstanceBackend>> backends;
  for (py::handle inst : instances) {
    backends.push_back(
        std::make_unique<PyInstanceBackend>(py::reinterpret_borrow<py::object>(inst)));
  }
  ModelRunner* raw = nullptr;
  {
    py::gil_scoped_release release;  // workers may need the GIL as soon as they start
    raw = new ModelRunner(std::move(spec), std::move(backends), std::move(cache),
                          std::move(samples), std::move(rate_limit));
    // Every instance runs the warmup samples before the version may serve (Triton's rule).
    Status warmed = raw->WaitForWarmup();
    if (!warmed.ok()) {
      delete raw;  // stops and joins the workers, which close their instances
      throw Error(warmed);
    }
  }
  // Destroying a runner joins its workers, which may need the GIL: never do it while holding it.
  return std::shared_ptr<ModelRunner>(raw, [](ModelRunner* r) {
    if (PyGILState_Check()) {
      py::gil_scoped_release release;
      std::unique_ptr<ModelRunner> owned(r);
    } else {
      std::unique_ptr<ModelRunner> owned(r);
    }
  });
}

int CudaDeviceCount() {
  py::gil_scoped_release release;  // the first call loads libcudart (file system, driver)
  return cuda::DeviceCount();
}

py::object CudaRuntimeLibrary() {
  std::string path;
  {
    py::gil_scoped_release release;
    path = cuda::LibraryPath();
  }
  if (path.empty()) return py::none();
  return py::str(path);
}


// ---------------------------------------------------------------------------------------------
// Native gRPC transport (grpc_server.h): the server, forwarded calls for the Python bridge, and
// the codec pieces for tests.

// A duration option in milliseconds as nanoseconds: at least `min_ms`; INT_MAX (gRPC's
// "infinite") and beyond, or None: never.
uint64_t MillisToNs(const char* name, std::optional<int64_t> ms, int64_t min_ms = 0) {
  if (!ms.has_value() || *ms >= INT32_MAX) return grpc::kNever;
  if (*ms < 0) ThrowInvalid(std::string(name) + " must be >= 0 ms, got " + std::to_string(*ms));
  return static_cast<uint64_t>(std::max(*ms, min_ms)) * 1000000ull;
}

uint32_t Count(const char* name, int64_t value) {
  if (value < 0 || value > UINT32_MAX) {
    ThrowInvalid(std::string(name) + " must be in [0, 4294967295], got " + std::to_string(value));
  }
  return static_cast<uint32_t>(value);
}

std::shared_ptr<grpc::GrpcServer> MakeGrpcServer(
    std::string host, int port, int io_threads, uint64_t max_message_bytes,
    std::vector<std::string> streaming_methods, bool fast_infer, uint32_t max_concurrent_streams,
    uint32_t initial_stream_window, uint32_t connection_window, uint32_t max_frame_size,
    uint32_t max_header_list_size, int64_t keepalive_time_ms, int64_t keepalive_timeout_ms,
    bool keepalive_permit_without_calls, int64_t http2_max_pings_without_data,
    int64_t http2_min_recv_ping_interval_without_data_ms, int64_t http2_max_ping_strikes,
    std::optional<int64_t> max_connection_age_ms, std::optional<int64_t> max_connection_age_grace_ms,
    const std::string& response_compression,
    std::optional<std::pair<std::string, std::string>> fast_infer_header, int64_t max_connections,
    std::optional<int64_t> preface_timeout_ms, std::optional<int64_t> max_connection_idle_ms,
    int64_t max_connection_memory, int64_t control_frames_per_second,
    int64_t resets_per_second, int64_t max_continuation_frames) {
  if (port < 0 || port > 65535) ThrowInvalid("port must be in [0, 65535], got " + std::to_string(port));
  if (max_message_bytes == 0 || max_message_bytes > 0xffffffffull) {
    ThrowInvalid("max_message_bytes must be in [1, 4294967295] (gRPC's 32-bit length prefix)");
  }
  if (initial_stream_window == 0 || initial_stream_window > http2::kMaxWindowSize) {
    ThrowInvalid("initial_stream_window must be in [1, 2147483647]");
  }
  if (connection_window < http2::kDefaultWindowSize || connection_window > http2::kMaxWindowSize) {
    ThrowInvalid("connection_window must be in [65535, 2147483647]");
  }
  if (max_frame_size < http2::kMinMaxFrameSize || max_frame_size > http2::kMaxMaxFrameSize) {
    ThrowInvalid("max_frame_size must be in [16384, 16777215]");
  }
  grpc::GrpcServerOptions options;
  options.host = std::move(host);
  options.port = port;
  options.io_threads = io_threads;
  options.transport.max_message_bytes = static_cast<size_t>(max_message_bytes);
  options.transport.streaming_methods = std::move(streaming_methods);
  options.transport.fast_infer = fast_infer;
  if (fast_infer_header) {
    std::string key = fast_infer_header->first;
    for (char& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (key.empty()) ThrowInvalid("fast_infer_header needs a header name");
    options.transport.fast_infer_header_key = std::move(key);
    options.transport.fast_infer_header_value = fast_infer_header->second;
  }
  options.transport.http2.max_concurrent_streams = max_concurrent_streams;
  options.transport.http2.initial_stream_window = initial_stream_window;
  options.transport.http2.connection_window = connection_window;
  options.transport.http2.max_frame_size = max_frame_size;
  options.transport.http2.max_header_list_size = max_header_list_size;
  grpc::ConnectionTimerOptions& timers = options.transport.timers;
  timers.keepalive_time_ns = MillisToNs("keepalive_time_ms", keepalive_time_ms, 1);
  timers.keepalive_timeout_ns = MillisToNs("keepalive_timeout_ms", keepalive_timeout_ms);
  timers.keepalive_permit_without_calls = keepalive_permit_without_calls;
  timers.max_connection_age_ns = MillisToNs("max_connection_age_ms", max_connection_age_ms);
  timers.max_connection_age_grace_ns =
      MillisToNs("max_connection_age_grace_ms", max_connection_age_grace_ms);
  http2::PingPolicyOptions& pings = options.transport.http2.pings;
  pings.permit_without_streams = keepalive_permit_without_calls;
  pings.min_recv_ping_interval_ns = MillisToNs("http2_min_recv_ping_interval_without_data_ms",
                                               http2_min_recv_ping_interval_without_data_ms);
  pings.max_ping_strikes = Count("http2_max_ping_strikes", http2_max_ping_strikes);
  // Validated only: it limits a client's own pings, and gRPC core servers (since 1.46) do not
  // throttle their keepalive pings by it.
  Count("http2_max_pings_without_data", http2_max_pings_without_data);
  options.max_connections = Count("max_connections", max_connections);
  // 0 as well as None: no limit.
  timers.preface_timeout_ns = preface_timeout_ms.value_or(0) == 0
                                  ? grpc::kNever
                                  : MillisToNs("preface_timeout_ms", preface_timeout_ms, 1);
  timers.max_connection_idle_ns =
      max_connection_idle_ms.value_or(0) == 0
          ? grpc::kNever
          : MillisToNs("max_connection_idle_ms", max_connection_idle_ms, 1);
  if (max_connection_memory < 0) {
    ThrowInvalid("max_connection_memory must be >= 0, got " +
                 std::to_string(max_connection_memory));
  }
  options.transport.max_connection_memory = static_cast<size_t>(max_connection_memory);
  http2::FloodOptions& flood = options.transport.http2.flood;
  flood.control_frames_per_second = Count("control_frames_per_second", control_frames_per_second);
  flood.resets_per_second = Count("resets_per_second", resets_per_second);
  flood.max_continuation_frames = Count("max_continuation_frames", max_continuation_frames);
  grpc::CompressionLevel& level = options.transport.response_compression;
  if (!grpc::ParseCompressionLevel(response_compression, &level)) {
    ThrowInvalid("response_compression must be 'none', 'low', 'medium' or 'high', got '" +
                 response_compression + "'");
  }
  grpc::Encoding gzip;
  if (level != grpc::CompressionLevel::kNone && !grpc::ParseCompression("gzip", &gzip)) {
    ThrowInvalid("response_compression '" + response_compression +
                 "' is not available: this build of tritonlite was made without zlib");
  }
  grpc::GrpcServer* raw = nullptr;
  {
    py::gil_scoped_release release;
    raw = new grpc::GrpcServer(std::move(options));
  }
  // Destruction stops the I/O threads: never while holding the GIL.
  return std::shared_ptr<grpc::GrpcServer>(raw, [](grpc::GrpcServer* s) {
    if (PyGILState_Check()) {
      py::gil_scoped_release release;
      std::unique_ptr<grpc::GrpcServer> owned(s);
    } else {
      std::unique_ptr<grpc::GrpcServer> owned(s);
    }
  });
}

// Header bytes (paths, metadata) as str: HTTP/2 allows any octets, so invalid UTF-8 is
// replaced rather than refused.
py::str HeaderText(const std::string& s) {
  PyObject* text = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (text == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(text);
}

// [(kind, call, payload)]: payload is the request message as bytes (UNARY, MESSAGE) or None.
py::list DrainGrpcCalls(grpc::GrpcServer& server) {
  std::vector<grpc::CallEvent> events = server.bridge()->Drain();
  py::list out(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    grpc::CallEvent& e = events[i];
    py::object payload = py::none();
    if (e.message != nullptr) {
      payload = py::bytes(reinterpret_cast<const char*>(e.message->data()), e.message->size());
    }
    out[i] = py::make_tuple(static_cast<int>(e.kind), py::cast(e.call), payload);
  }
  return out;
}

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
  NamedTensors tensors = InputsFromPy(outputs);
  std::string out;
  EncodeModelInferResponse(model_name, version, id, tensors, &out);
  return py::bytes(out);
}

void BindGrpcServer(py::module_& m) {
  py::class_<grpc::ForwardedCall, std::shared_ptr<grpc::ForwardedCall>>(
      m, "GrpcCall",
      "A call the native gRPC transport forwards to Python. Answer it with reply() (unary), "
      "send() then finish() (streaming), or finish() with an error; each returns False once "
      "the call is over (answered, cancelled by the client, past its deadline, disconnected).")
      .def_property_readonly("id", &grpc::ForwardedCall::id)
      .def_property_readonly("method",
                             [](const grpc::ForwardedCall& c) { return HeaderText(c.method()); },
                             "RPC name: 'ModelInfer' for /inference.GRPCInferenceService/"
                             "ModelInfer, else the path without '/' "
                             "('grpc.health.v1.Health/Check').")
      .def_property_readonly("path",
                             [](const grpc::ForwardedCall& c) { return HeaderText(c.path()); })
      .def_property_readonly("metadata", [](const grpc::ForwardedCall& c) {
        py::list out;
        for (const auto& kv : c.metadata()) {
          out.append(py::make_tuple(HeaderText(kv.first), HeaderText(kv.second)));
        }
        return out;
      }, "Custom request headers as (key, value) str pairs ('-bin' values still base64; "
         "invalid UTF-8 replaced).")
      .def_property_readonly("streaming", &grpc::ForwardedCall::streaming)
      .def_property_readonly("received_ns", &grpc::ForwardedCall::received_ns,
                             "When the transport had the call (steady clock ns, as "
                             "time.monotonic_ns): a unary call's request was read by then.")
      .def_property_readonly("cancelled", &grpc::ForwardedCall::cancelled)
      .def_property_readonly("finished", &grpc::ForwardedCall::finished)
      .def("time_remaining", [](const grpc::ForwardedCall& c) -> py::object {
        if (c.deadline_ns() == 0) return py::none();
        const uint64_t now = NowNs();
        return py::float_(c.deadline_ns() > now ? (c.deadline_ns() - now) / 1e9 : 0.0);
      }, "Seconds left before the client's deadline (grpc-timeout), or None.")
      .def("send", [](grpc::ForwardedCall& c, py::buffer data) {
        py::buffer_info info = data.request();
        const auto size = static_cast<size_t>(info.size * info.itemsize);
        if (!c.compresses()) return c.Send(info.ptr, size);
        py::gil_scoped_release release;  // compressing: `data` stays referenced by the caller
        return c.Send(info.ptr, size);
      }, py::arg("message"), "Send one serialized response message.")
      .def("reply", [](grpc::ForwardedCall& c, py::buffer data) {
        py::buffer_info info = data.request();
        const auto size = static_cast<size_t>(info.size * info.itemsize);
        if (!c.compresses()) return c.Reply(info.ptr, size);
        py::gil_scoped_release release;
        return c.Reply(info.ptr, size);
      }, py::arg("message"), "Unary answer: the serialized response, then status OK.")
      .def_property_readonly("compresses", &grpc::ForwardedCall::compresses,
                             "Whether send() and reply() compress (grpc-encoding).")
      .def("consumed", &grpc::ForwardedCall::Consumed,
           "Streaming: the oldest request message was taken; its flow-control credit goes "
           "back to the client.")
      .def("finish", [](grpc::ForwardedCall& c, int code, std::string message) {
        if (code < 0 || code > 16) ThrowInvalid("gRPC status code must be in [0, 16], got " + std::to_string(code));
        return c.Finish(static_cast<grpc::GrpcStatus>(code), std::move(message));
      }, py::arg("code"), py::arg("message") = "",
      "End the call with a gRPC status code (0 = OK) and message.");

  py::class_<grpc::GrpcServer, std::shared_ptr<grpc::GrpcServer>> server(
      m, "GrpcServer",
      "Native gRPC transport (HTTP/2 over plain TCP, no TLS). ModelInfer requests for models "
      "registered with set_model() are served in C++; every other call is forwarded: fd() "
      "becomes readable and drain_calls() returns [(kind, GrpcCall, payload)] events.");
  server
      .def(py::init(&MakeGrpcServer), py::arg("host") = "0.0.0.0", py::arg("port") = 8001,
           py::arg("io_threads") = 1, py::arg("max_message_bytes") = 2147483647ull,
           py::arg("streaming_methods") = std::vector<std::string>{"ModelStreamInfer"},
           py::arg("fast_infer") = true, py::arg("max_concurrent_streams") = 1024,
           py::arg("initial_stream_window") = 1u << 20, py::arg("connection_window") = 16u << 20,
           py::arg("max_frame_size") = 16384, py::arg("max_header_list_size") = 64u << 10,
           py::arg("keepalive_time_ms") = 7200000, py::arg("keepalive_timeout_ms") = 20000,
           py::arg("keepalive_permit_without_calls") = false,
           py::arg("http2_max_pings_without_data") = 2,
           py::arg("http2_min_recv_ping_interval_without_data_ms") = 300000,
           py::arg("http2_max_ping_strikes") = 2, py::arg("max_connection_age_ms") = py::none(),
           py::arg("max_connection_age_grace_ms") = py::none(),
           py::arg("response_compression") = "none", py::arg("fast_infer_header") = py::none(),
           py::arg("max_connections") = 4096, py::arg("preface_timeout_ms") = 10000,
           py::arg("max_connection_idle_ms") = 600000,
           py::arg("max_connection_memory") = int64_t{256} << 20,
           py::arg("control_frames_per_second") = 1000, py::arg("resets_per_second") = 500,
           py::arg("max_continuation_frames") = 32,
           "Bind and listen (port 0: any free port). Raises TritonError(UNAVAILABLE) when the "
           "address cannot be bound. Keepalive, ping policing and connection age follow gRPC "
           "core's server channel arguments of the same names (milliseconds; 2147483647 or None: "
           "infinite; http2_max_pings_without_data is accepted but, as in gRPC core servers, "
           "does not throttle the server's pings). response_compression ('none', 'low', 'medium', "
           "'high': gRPC's compression level) compresses the responses of ModelInfer and "
           "ModelStreamInfer with the algorithm gRPC core picks among those the client accepts. "
           "fast_infer_header (name, value): only ModelInfer calls with that header take the "
           "C++ path; the others are forwarded (restricted 'inference' protocol). Budgets (0 "
           "or None: unlimited): max_connections (beyond it a new connection gets "
           "GOAWAY(ENHANCE_YOUR_CALM) and is closed), preface_timeout_ms (a connection without "
           "the client preface by then is closed), max_connection_idle_ms (a connection without "
           "calls that long gets a graceful GOAWAY), max_connection_memory (bytes of requests "
           "and unread responses one connection may hold), control_frames_per_second (SETTINGS, "
           "PING, WINDOW_UPDATE, PRIORITY/unknown and empty DATA frames, each kind), "
           "resets_per_second (RST_STREAM), max_continuation_frames (per header block): "
           "beyond them GOAWAY(ENHANCE_YOUR_CALM).")
      .def("start", &grpc::GrpcServer::Start, py::call_guard<py::gil_scoped_release>(),
           "Start the I/O threads.")
      .def("shutdown", &grpc::GrpcServer::Shutdown, py::call_guard<py::gil_scoped_release>(),
           "Graceful, non-blocking: refuse new connections, GOAWAY to every connection; calls in "
           "flight complete and connections close when idle (see connection_count()).")
      .def("stop", &grpc::GrpcServer::Stop, py::call_guard<py::gil_scoped_release>(),
           "Close every connection now (open calls are cancelled) and join the I/O threads.")
      .def_property_readonly("port", &grpc::GrpcServer::port)
      .def("connection_count", &grpc::GrpcServer::connection_count)
      .def("fd", [](const grpc::GrpcServer& s) { return s.bridge()->fd(); },
           "Readable when forwarded-call events are waiting (for loop.add_reader).")
      .def("drain_calls", &DrainGrpcCalls,
           "Every waiting event as (kind, GrpcCall, payload): payload is the request message "
           "(bytes) for UNARY and MESSAGE, else None.")
      .def("set_model", [](grpc::GrpcServer& s, const std::string& name, py::dict versions) {
        grpc::ModelRegistry::Versions v;
        for (auto kv : versions) {
          v[kv.first.cast<int64_t>()] = kv.second.cast<std::shared_ptr<ModelRunner>>();
        }
        s.models().Set(name, std::move(v));
      }, py::arg("name"), py::arg("versions"),
      "Serve ModelInfer for these versions ({version: ModelRunner}; the highest is latest) on "
      "the fast path; an empty dict removes the model.")
      .def("remove_model", [](grpc::GrpcServer& s, const std::string& name) { s.models().Remove(name); },
           py::arg("name"))
      .def("clear_models", [](grpc::GrpcServer& s) { s.models().Clear(); })
      .def("models", [](const grpc::GrpcServer& s) {
        return const_cast<grpc::GrpcServer&>(s).models().Snapshot();
      }, "{name: [versions]} served on the fast path.");
  server.attr("UNARY") = static_cast<int>(grpc::CallEventKind::kUnary);
  server.attr("START") = static_cast<int>(grpc::CallEventKind::kStart);
  server.attr("MESSAGE") = static_cast<int>(grpc::CallEventKind::kMessage);
  server.attr("HALF_CLOSE") = static_cast<int>(grpc::CallEventKind::kHalfClose);
  server.attr("CANCEL") = static_cast<int>(grpc::CallEventKind::kCancel);

  py::module_ codec = m.def_submodule("grpc_codec", "Codec pieces of the native gRPC transport, for tests.");
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
  codec.def("can_compress", [](const std::string& name) {
    grpc::Encoding e;
    return grpc::ParseCompression(name, &e);
  }, py::arg("encoding"), "Whether this build can compress responses with 'identity', 'deflate' or 'gzip'.");
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
  codec.def("grpc_status_for", [](const std::string& status) {
    return static_cast<int>(grpc::GrpcStatusFromCore(StatusCodeFromName(status)));
  }, py::arg("status"), "gRPC status code Triton uses for a status kind ('INVALID_ARG' -> 3).");
  codec.def("decode_model_infer_request", &DecodeInferRequestToPy, py::arg("message"),
            "ModelInferRequest bytes -> dict of its fields (None if protobuf would refuse them).");
  codec.def("fast_path_request", &FastPathRequestToPy, py::arg("message"),
            "The core request the fast path would queue for these bytes (None: forwarded).");
  codec.def("encode_model_infer_response", &EncodeInferResponseFromPy, py::arg("model_name"),
            py::arg("model_version"), py::arg("id"), py::arg("outputs"),
            "Serialized ModelInferResponse for (name, array) outputs.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "tritonlite C++ core: tensors, requests, schedulers";

  // Errors: core errors are raised as the Python class installed by set_error_class
  // (tritonlite.errors.TritonError); `.status` carries Triton's status kind.
  static PyObject* error_type = PyExc_RuntimeError;
  m.def("set_error_class", [](py::object cls) {
    Py_INCREF(cls.ptr());
    error_type = cls.ptr();
  }, py::arg("cls"), "Install the exception class that core errors are raised as: cls(message, status).");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object exc = py::reinterpret_borrow<py::object>(error_type)(e.what(), StatusCodeName(e.code()));
      PyErr_SetObject(error_type, exc.ptr());
    }
  });

  m.attr("built_with_cuda") = cuda::Supported();
  m.def("cuda_device_count", &CudaDeviceCount,
        "Number of CUDA devices visible (0 without CUDA, a driver or a GPU). The first call "
        "loads the CUDA runtime (libcudart) where one is installed.");
  m.def("cuda_runtime_library", &CudaRuntimeLibrary,
        "Path of the CUDA runtime library in use, or None when none could be loaded (or this "
        "build has no CUDA). Loads it on first call.");

  py::class_<Tensor>(m, "Tensor",
                     "A typed tensor over memory kept alive by its owner (zero-copy views).")
      .def_static("from_numpy", &TensorFromNumpy, py::arg("array"),
                  "Zero-copy view of a C-contiguous numpy array (object/bytes arrays are "
                  "serialized as BYTES).")
      .def_static("from_dlpack", &TensorFromDLPack, py::arg("obj"),
                  "Zero-copy view of any DLPack producer (numpy, torch, cupy, ...) or capsule.")
      .def_static("from_array", &TensorFromAny, py::arg("obj"),
                  "Tensor from any array-like: zero-copy where the source allows it.")
      .def_static("from_buffer", &TensorFromBuffer, py::arg("datatype"), py::arg("shape"),
                  py::arg("buffer"), py::arg("offset") = 0, py::arg("byte_size") = py::none(),
                  "Zero-copy view of a C-contiguous buffer (bytes, memoryview, mmap, ...) holding "
                  "raw tensor data in Triton's layout.")
      .def_property_readonly("datatype",
                             [](const Tensor& t) { return std::string(DataTypeName(t.dtype())); })
      .def_property_readonly("shape", [](const Tensor& t) {
        py::tuple out(t.shape().size());
        for (size_t i = 0; i < t.shape().size(); ++i) out[i] = t.shape()[i];
        return out;
      })
      .def_property_readonly("byte_size", &Tensor::byte_size)
      .def_property_readonly("data_ptr",
                             [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data()); })
      .def_property_readonly("is_cpu",
                             [](const Tensor& t) { return t.device().kind == DeviceKind::kCPU; })
      .def("tobytes", [](const Tensor& t) {
        if (t.device().kind != DeviceKind::kCPU) ThrowInvalid("tensor is in GPU memory");
        return py::bytes(reinterpret_cast<const char*>(t.data()), t.byte_size());
      }, "The raw bytes in Triton's layout (BYTES tensors: the serialized form); a copy.")
      .def("numpy", &TensorToNumpy,
           "Zero-copy numpy view (BYTES tensors are decoded into an object array of bytes).")
      .def("__dlpack__", &TensorToDLPack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none())
      .def("__dlpack_device__", &DLPackDevice)
      .def("__repr__", [](const Tensor& t) {
        return std::string("Tensor(") + DataTypeName(t.dtype()) + ", shape=" +
               ShapeToString(t.shape()) + (t.device().kind == DeviceKind::kGPU ? ", gpu:" +
               std::to_string(t.device().id) : std::string()) + ")";
      });

  py::class_<CompletionQueue, std::shared_ptr<CompletionQueue>>(
      m, "CompletionQueue",
      "Responses from worker threads, drained in batches by one consumer (the asyncio loop): "
      "fd() becomes readable when responses are waiting.")
      .def(py::init<>())
      .def("fd", &CompletionQueue::fd)
      .def("drain", [](CompletionQueue& q) {
        std::vector<InferResponse> ready = DrainQueue(q);
        py::list out(ready.size());
        for (size_t i = 0; i < ready.size(); ++i) out[i] = ResponseToPy(std::move(ready[i]));
        return out;
      }, "Every response ready now as (token, error, outputs, final) tuples.")
      .def("dispatch", &DispatchResponses, py::arg("pending"), py::arg("error_class"),
           py::arg("as_numpy"),
           "Resolve every ready response in one call: pending[token] is an asyncio future "
           "(resolved with the outputs, or the error) or a callable taking (error, outputs, "
           "final) for multi-response requests; the entry is removed with the final response. "
           "A traced request's entry (queued with a trace_id) is a callable taking (error, "
           "outputs, final, (queue_start, compute_start, compute_input_end, "
           "compute_output_start, compute_end)): steady-clock ns, 0 where not reached. "
           "Outputs are a dict of numpy arrays when as_numpy, else (name, Tensor) pairs. "
           "Returns how many responses had no pending entry.");

  m.def("closed_loop",
        [](std::shared_ptr<ModelRunner> runner, py::handle inputs, int concurrency, double seconds) {
          if (concurrency < 1) ThrowInvalid("concurrency must be >= 1");
          auto loop = std::make_shared<ClosedLoop>(runner, InputsFromPy(inputs), seconds);
          ClosedLoopResult result;
          {
            py::gil_scoped_release release;
            result = loop->Run(concurrency);
          }
          py::dict out;
          out["completed"] = result.completed;
          out["errors"] = result.errors;
          out["elapsed_s"] = result.elapsed_s;
          out["latencies_ns"] = result.latencies_ns;
          return out;
        },
        py::arg("runner"), py::arg("inputs"), py::arg("concurrency"), py::arg("seconds"),
        "Benchmark load generator: keep `concurrency` requests with these inputs in flight for "
        "`seconds`, re-submitting from C++ as each completes (no Python on the request path).");

  py::class_<CancelFlag, std::shared_ptr<CancelFlag>>(
      m, "CancelHandle", "Cancels one queued or running request, from any thread.")
      .def("cancel", &CancelFlag::Cancel, "Cancel the request (idempotent).")
      .def_property_readonly("cancelled", &CancelFlag::cancelled);

  py::class_<CancelBoard, std::shared_ptr<CancelBoard>>(
      m, "CancelBoard",
      "uint32 words in a memfd, one per slot, that a python stub reads to see its requests' "
      "cancellation (see Request.mirror_cancel). Maps `slots * 4` bytes of `fd` itself.")
      .def(py::init([](int fd, int64_t slots) {
             if (slots <= 0 || slots > (int64_t{1} << 24)) {
               throw py::value_error("a cancel board has between 1 and 2**24 slots");
             }
             return std::make_shared<CancelBoard>(fd, static_cast<size_t>(slots));
           }),
           py::arg("fd"), py::arg("slots"))
      .def_property_readonly("slots", &CancelBoard::slots)
      .def("is_set", [](CancelBoard& b, int64_t slot) {
        if (slot < 0 || static_cast<uint64_t>(slot) >= b.slots()) {
          throw py::index_error("cancel board slot " + std::to_string(slot) + " out of range");
        }
        return b.word(static_cast<size_t>(slot)).load(std::memory_order_acquire) != 0;
      }, py::arg("slot"));

  py::class_<OwnedRequest, std::shared_ptr<OwnedRequest>>(
      m, "Request",
      "A request handed to a backend that answers it itself: any number of respond() calls, "
      "exactly one with final=True. Dropped without a final response, it fails with an error.")
      .def_property_readonly("id", [](const OwnedRequest& r) { return r.request().id; })
      .def_property_readonly("correlation_id",
                             [](const OwnedRequest& r) { return r.request().correlation_id; })
      .def_property_readonly("correlation_id_str",
                             [](const OwnedRequest& r) { return r.request().correlation_id_str; })
      .def_property_readonly("flags", [](const OwnedRequest& r) { return r.request().flags; })
      .def_property_readonly("null_request",
                             [](const OwnedRequest& r) { return r.request().null_request; },
                             "A sequence batcher's filler for an empty slot (READY false): "
                             "no client waits for it and it requests no outputs.")
      .def_property_readonly("parameters",
                             [](const OwnedRequest& r) {
                               const std::string& p = r.request().parameters;
                               return p.empty() ? std::string("{}") : p;
                             },
                             "The request's own parameters as a JSON object text.")
      .def_property_readonly("priority", [](const OwnedRequest& r) { return r.request().priority; })
      .def_property_readonly("trace_id", [](const OwnedRequest& r) { return r.request().trace_id; },
                             "The request's trace id (0: not traced).")
      .def_property_readonly("timeout_us",
                             [](const OwnedRequest& r) { return r.request().timeout_us; })
      .def_property_readonly("batch_size",
                             [](const OwnedRequest& r) { return r.request().batch_size; })
      .def_property_readonly("requested_outputs",
                             [](const OwnedRequest& r) { return r.request().requested_outputs; })
      .def_property_readonly("cancelled", [](const OwnedRequest& r) { return r.request().cancelled(); },
                             "Whether the request was cancelled (lock-free).")
      .def("cancel", [](OwnedRequest& r) {
        if (r.request().cancel) r.request().cancel->Cancel();
      }, "Cancel the request (as its client would).")
      .def("mirror_cancel",
           [](OwnedRequest& r, std::shared_ptr<CancelBoard> board, int64_t slot) {
             if (slot < 0 || static_cast<uint64_t>(slot) >= board->slots()) {
               throw py::index_error("cancel board slot " + std::to_string(slot) + " out of range");
             }
             if (!r.request().cancel) return;  // nobody can cancel it: the slot stays 0
             r.request().cancel->Mirror(std::move(board), static_cast<size_t>(slot));
           },
           py::arg("board"), py::arg("slot"),
           "From now on a cancellation stores 1 into `slot` of `board` (at once when already "
           "cancelled).")
      .def("unmirror_cancel", [](OwnedRequest& r) {
        if (r.request().cancel) r.request().cancel->Unmirror();
      }, "Stop mirroring and store 0 into the slot; then nothing writes it any more.")
      .def_property_readonly("finished", [](const OwnedRequest& r) {
        py::gil_scoped_release release;  // r's lock
        return r.finished();
      })
      .def("inputs", [](const OwnedRequest& r) {
        NamedTensors inputs;
        {
          py::gil_scoped_release release;  // r's lock: a respond() may be sending
          inputs = r.Inputs();
        }
        py::list out;
        for (auto& kv : inputs) out.append(py::make_tuple(kv.first, py::cast(std::move(kv.second))));
        return out;
      }, "The inputs as (name, Tensor) pairs (none once the final response was sent).")
      .def("respond",
           [](OwnedRequest& r, py::object outputs, py::object error, bool final,
              bool model_error) {
             NamedTensors tensors;
             if (!outputs.is_none()) tensors = InputsFromPy(outputs);
             Status status;
             if (!error.is_none()) {
               auto e = error.cast<py::tuple>();
               status = Status(StatusCodeFromName(e[0].cast<std::string>()), e[1].cast<std::string>());
             }
             py::gil_scoped_release release;
             r.Respond(std::move(tensors), std::move(status), final, model_error);
           },
           py::arg("outputs") = py::none(), py::arg("error") = py::none(), py::arg("final") = true,
           py::arg("model_error") = false,
           "Send a response: outputs as a dict (or (name, array) pairs), error as (status, "
           "message). Raises if the final response was already sent. An error response counts "
           "the request as failed (BACKEND) unless `model_error`: an error the model itself "
           "answered with, which Triton's python backend counts as a success.");

  py::class_<ResponseCache, std::shared_ptr<ResponseCache>>(
      m, "ResponseCache",
      "Triton's local response cache: successful responses in LRU order within a byte budget.")
      .def(py::init<size_t>(), py::arg("byte_size"))
      .def("usage", [](const ResponseCache& c) {
        ResponseCache::Usage u = c.usage();
        py::dict d;
        d["byte_size"] = u.byte_budget;
        d["bytes"] = u.bytes;
        d["entries"] = u.entries;
        d["lookups"] = u.lookups;
        d["hits"] = u.hits;
        d["misses"] = u.misses;
        d["insertions"] = u.insertions;
        d["evictions"] = u.evictions;
        d["lookup_ns"] = u.lookup_ns;
        d["insertion_ns"] = u.insertion_ns;
        return d;
      }, "Budget, bytes and entries held, and lookup/insertion counters.");

  py::class_<RateLimitRegistration, std::shared_ptr<RateLimitRegistration>>(
      m, "RateLimitRegistration",
      "One model version's instances registered with a RateLimiter; unregistered when dropped.");
  py::class_<RateLimiter, std::shared_ptr<RateLimiter>>(
      m, "RateLimiter",
      "Triton's execution_count rate limiter, shared by every model of a server.")
      .def(py::init([](const std::vector<std::tuple<std::string, uint64_t, int>>& resources) {
             std::vector<ExplicitResource> explicit_resources;
             for (const auto& r : resources) {
               explicit_resources.push_back(
                   ExplicitResource{std::get<0>(r), std::get<1>(r), std::get<2>(r)});
             }
             return std::make_shared<RateLimiter>(std::move(explicit_resources));
           }),
           py::arg("resources") = std::vector<std::tuple<std::string, uint64_t, int>>{},
           "`resources`: --rate-limit-resource as (name, count, device) (-1: every device); "
           "empty: a resource's count is the largest any instance asks for.")
      .def("register", &RegisterInstances, py::arg("instances"),
           "Register one model version's instances ([{resources: [{name, global, count}], "
           "priority, device}] in instance order). Raises INVALID_ARG with Triton's text when "
           "the server cannot give an instance what it asks for.")
      .def("available",
           [](RateLimiter& l) { return WithoutGil([&] { return l.Available(); }); },
           "Each resource's count ('name' global, 'name@device' per device).");

  py::class_<ModelRunner, std::shared_ptr<ModelRunner>>(
      m, "ModelRunner", "One loaded model version: validation, batcher, instance workers, stats.")
      .def(py::init(&MakeRunner), py::arg("spec"), py::arg("instances"),
           py::arg("cache") = nullptr, py::arg("warmup") = py::none(),
           py::arg("rate_limit") = nullptr,
           "Start the model's instance workers; with `warmup` samples, run them on every "
           "instance first (a failing sample raises, the workers stopped). `rate_limit`: the "
           "instances' RateLimiter.register() result (None: not rate limited).")
      .def("enqueue",
           [](ModelRunner& runner, std::shared_ptr<CompletionQueue> queue, uint64_t token, py::handle inputs,
              py::handle outputs, std::string request_id, uint64_t priority, uint64_t timeout_us,
              uint64_t correlation_id, std::string correlation_id_str, uint32_t flags,
              std::string parameters, uint64_t trace_id) {
             RequestPtr r = MakeRequest(token, inputs, outputs,
                                        RequestArgs{std::move(request_id), priority, timeout_us,
                                                    correlation_id, std::move(correlation_id_str), flags,
                                                    std::move(parameters)});
             r->sink = std::move(queue);
             r->trace_id = trace_id;
             runner.Validate(r.get());
             auto cancel = std::make_shared<CancelFlag>();
             r->cancel = cancel;
             // A hit answers on the completion queue at once (its lock is never held by a
             // thread that waits for the GIL).
             if (runner.caches_responses() && runner.ServeFromCache(r)) return cancel;
             // Never wait for the scheduler's lock with the GIL held (its holder may need the
             // GIL, e.g. to release a Python-owned tensor): try it, else let go of the GIL.
             if (!runner.TryEnqueueValidated(r)) {
               py::gil_scoped_release release;
               runner.EnqueueValidated(std::move(r));
             }
             return cancel;
           },
           py::arg("queue"), py::arg("token"), py::arg("inputs"), py::arg("outputs") = py::none(),
           py::arg("request_id") = "", py::arg("priority") = 0, py::arg("timeout_us") = 0,
           py::arg("correlation_id") = 0, py::arg("correlation_id_str") = "", py::arg("flags") = 0,
           py::arg("parameters") = "", py::arg("trace_id") = 0,
           "Validate and queue a request; its response arrives on `queue` with `token`. "
           "`parameters`: the request's own parameters as JSON object text. `trace_id`: "
           "non-zero for a traced request, whose responses carry its timestamps (see "
           "CompletionQueue.dispatch). Returns the request's CancelHandle.")
      .def("infer",
           [](ModelRunner& runner, py::handle inputs, py::handle outputs, std::string request_id,
              uint64_t priority, uint64_t timeout_us, uint64_t correlation_id,
              std::string correlation_id_str, uint32_t flags, std::string parameters) {
             auto sink = std::make_shared<BlockingSink>();
             RequestPtr r = MakeRequest(0, inputs, outputs,
                                        RequestArgs{std::move(request_id), priority, timeout_us,
                                                    correlation_id, std::move(correlation_id_str), flags,
                                                    std::move(parameters)});
             r->sink = sink;
             std::vector<InferResponse> responses;
             {
               // Release the GIL before queueing, so the worker finds it free.
               py::gil_scoped_release release;
               runner.Enqueue(std::move(r));
               responses = sink->Wait();
             }
             py::list out(responses.size());
             for (size_t i = 0; i < responses.size(); ++i) out[i] = ResponseToPy(std::move(responses[i]));
             return out;
           },
           py::arg("inputs"), py::arg("outputs") = py::none(), py::arg("request_id") = "",
           py::arg("priority") = 0, py::arg("timeout_us") = 0, py::arg("correlation_id") = 0,
           py::arg("correlation_id_str") = "", py::arg("flags") = 0, py::arg("parameters") = "",
           "Run a request and block (without the GIL) until its responses arrive.")
      .def("stop", &ModelRunner::Stop, py::call_guard<py::gil_scoped_release>(),
           "Stop accepting requests, finish queued and in-flight ones, join the workers.")
      .def("statistics", [](const ModelRunner& r) {
        StatsSnapshot s;
        {
          py::gil_scoped_release release;  // takes the scheduler's and the statistics' locks
          s = r.Statistics();
        }
        return StatsToPy(s);
      })
      .def_property_readonly("caches_responses", &ModelRunner::caches_responses,
                             "Whether its successful responses go to the response cache.")
      .def_property_readonly("name", [](const ModelRunner& r) { return r.spec().name; })
      .def_property_readonly("version", [](const ModelRunner& r) { return r.spec().version; });

  m.def("atomic_load_u32", &AtomicLoadU32, py::arg("buffer"), py::arg("offset"),
        "Load the 4-byte-aligned uint32 at `offset` of a buffer with acquire ordering.");
  m.def("atomic_store_u32", &AtomicStoreU32, py::arg("buffer"), py::arg("offset"),
        py::arg("value"), "Store a uint32 at `offset` of a writable buffer with release ordering.");
  m.def("datatype_to_numpy", [](const std::string& name) { return NumpyDtype(ParseDataType(name)); },
        py::arg("datatype"), "numpy dtype for a Triton datatype name ('INT32' or 'TYPE_INT32').");
  m.def("numpy_to_datatype", [](py::object dtype) {
        DataType dt = DataTypeFromNumpy(py::dtype::from_args(dtype));
        if (dt == DataType::kInvalid) {
          ThrowInvalid("no Triton datatype for numpy dtype '" + py::str(dtype).cast<std::string>() + "'");
        }
        return std::string(DataTypeName(dt));
      }, py::arg("dtype"), "Triton datatype name for a numpy dtype.");
  m.def("datatype_size", [](const std::string& name) { return DataTypeSize(ParseDataType(name)); },
        py::arg("datatype"), "Bytes per element (0 for BYTES).");
  m.def("serialize_bytes", [](py::array arr) {
        Tensor t = SerializeBytes(arr);
        return py::bytes(reinterpret_cast<const char*>(t.data()), t.byte_size());
      }, py::arg("array"), "Triton BYTES serialization of an array's elements (C order).");
  m.def("bytes_element_count", [](py::handle buf) {
        // C-contiguous only: a strided or reversed view's bytes are not where ptr..ptr+len is.
        Py_buffer view;
        if (PyObject_GetBuffer(buf.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
          PyErr_Clear();
          ThrowInvalid("BYTES data must be a C-contiguous buffer");
        }
        const std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> release(&view, PyBuffer_Release);
        return CountBytesElements(static_cast<const uint8_t*>(view.buf),
                                  static_cast<size_t>(view.len));
      }, py::arg("buffer"), "Elements in a Triton BYTES serialization (nothing is allocated).");
  m.def("deserialize_bytes", [](py::buffer buf, std::vector<int64_t> shape) {
        return DeserializeBytes(TensorFromBuffer("BYTES", shape, buf, 0, py::none()));
      }, py::arg("buffer"), py::arg("shape"),
      "Decode Triton BYTES serialization into an object array of bytes with `shape`.");

  BindGrpcServer(m);
}
