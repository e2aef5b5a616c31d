// The CUDA runtime as Python sees it: whether this build has CUDA, the devices, the library.
#include <string>

#include "core/cuda_runtime.h"
#include "python/bind.h"

namespace tritonlite::python {

namespace {

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

}  // namespace

void BindCuda(py::module_& m) {
  m.attr("built_with_cuda") = cuda::Supported();
  m.def("cuda_device_count", &CudaDeviceCount,
        "Number of CUDA devices visible (0 without CUDA, a driver or a GPU). The first call "
        "loads the CUDA runtime (libcudart) where one is installed.");
  m.def("cuda_runtime_library", &CudaRuntimeLibrary,
        "Path of the CUDA runtime library in use, or None when none could be loaded (or this "
        "build has no CUDA). Loads it on first call.");
}

}  // namespace tritonlite::python
