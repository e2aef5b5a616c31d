// Tensors across the seam: numpy arrays, DLPack producers and buffers become core Tensors
// (zero-copy views that keep the Python owner alive), and Tensors become numpy arrays or DLPack
// capsules. Datatype names and numpy dtypes map here. Every function needs the GIL.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/datatype.h"
#include "core/request.h"
#include "core/tensor.h"

namespace tritonlite::python {

namespace py = pybind11;

// numpy dtype <-> DataType. DataTypeFromNumpy gives kInvalid where nothing matches; NumpyDtype
// and ParseDataType ('INT32' or 'TYPE_INT32') raise INVALID_ARG.
DataType DataTypeFromNumpy(const py::dtype& dt);
py::dtype NumpyDtype(DataType dtype);
DataType ParseDataType(const std::string& name);

// BYTES: a numpy array's elements in Triton's serialization; a BYTES tensor as an object array.
Tensor SerializeBytes(const py::array& arr);
py::array DeserializeBytes(const Tensor& t);

// Python -> Tensor, zero-copy where the source allows it.
Tensor TensorFromNumpy(const py::array& arr);
Tensor TensorFromDLPack(py::object obj);
// Tensor as-is, numpy by the buffer, DLPack producers by DLPack, anything else via numpy.asarray.
Tensor TensorFromAny(py::handle obj);
Tensor TensorFromBuffer(const std::string& datatype, const std::vector<int64_t>& dims,
                        py::handle buffer, size_t offset, py::object byte_size);

// Tensor -> Python: a numpy view (BYTES decoded), the __dlpack__ protocol.
py::array TensorToNumpy(const Tensor& t);
py::capsule TensorToDLPack(const Tensor& t, py::object stream, py::object max_version,
                           py::object dl_device, py::object copy);
py::tuple DLPackDevice(const Tensor& t);

// Named tensors from a dict {name: array} or (name, array) pairs.
NamedTensors NamedTensorsFromPy(py::handle tensors);
// Named tensors as a dict of numpy arrays (as_numpy) or (name, Tensor) pairs; moves them out.
py::object NamedTensorsToPy(NamedTensors& tensors, bool as_numpy);

}  // namespace tritonlite::python
