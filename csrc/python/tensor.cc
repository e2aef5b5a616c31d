// Tensor as a Python class (zero-copy views, numpy, DLPack) and the datatype and BYTES helpers.
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/bytes_codec.h"
#include "python/bind.h"
#include "python/errors.h"
#include "python/tensor_convert.h"

namespace tritonlite::python {

void BindTensor(py::module_& m) {
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
}

}  // namespace tritonlite::python
