// The CUDA runtime, loaded lazily: libcudart is never a link-time dependency of _core. On first
// use it is dlopen()ed from where the user has one (already loaded by torch/cupy/onnxruntime-gpu,
// the nvidia-cuda-runtime wheel next to this package, or the system's), so one build imports and
// serves on machines without CUDA and uses CUDA where it is present.
#pragma once

#include <cstddef>
#include <string>

namespace tritonlite::cuda {

// True when this build has CUDA support compiled in (TRITONLITE_CUDA not OFF).
bool Supported();

// Number of visible CUDA devices: 0 without CUDA support, a runtime, a driver or a GPU. Never
// throws. The first call loads the runtime (thread-safe).
int DeviceCount();

// Copies `n` bytes of device memory to host memory. False (with `error` set) when no runtime
// could be loaded or the copy failed.
bool CopyDeviceToHost(void* dst, const void* src, size_t n, std::string* error);

// The path of the loaded runtime library, or "" when none could be loaded (loads on first call).
std::string LibraryPath();

}  // namespace tritonlite::cuda
