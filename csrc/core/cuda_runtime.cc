// Lazy loading of libcudart (see core/cuda_runtime.h). Only the few entry points the core uses are
// resolved; their types are declared here so that building needs no CUDA toolkit. Where the
// toolkit's headers are present at build time (TRITONLITE_CUDA_HEADERS), the declarations are
// checked against them.
#include "core/cuda_runtime.h"

#ifdef TRITONLITE_WITH_CUDA
#include <dlfcn.h>

#include <array>
#include <string>
#endif

#ifdef TRITONLITE_CUDA_HEADERS
#include <cuda_runtime_api.h>

#include <type_traits>
#endif

namespace tritonlite::cuda {

#ifdef TRITONLITE_WITH_CUDA
namespace {

// cudaError_t and cudaMemcpyKind are C enums (int-sized) in every CUDA release.
constexpr int kCudaSuccess = 0;
constexpr int kCudaMemcpyDeviceToHost = 2;
using GetDeviceCountFn = int (*)(int*);
using MemcpyFn = int (*)(void*, const void*, size_t, int);

#ifdef TRITONLITE_CUDA_HEADERS
static_assert(static_cast<int>(cudaSuccess) == kCudaSuccess);
static_assert(static_cast<int>(cudaMemcpyDeviceToHost) == kCudaMemcpyDeviceToHost);
static_assert(sizeof(cudaError_t) == sizeof(int) && sizeof(cudaMemcpyKind) == sizeof(int));
static_assert(std::is_same_v<decltype(&::cudaGetDeviceCount), cudaError_t (*)(int*)>);
static_assert(std::is_same_v<decltype(&::cudaMemcpy),
                             cudaError_t (*)(void*, const void*, size_t, cudaMemcpyKind)>);
#endif

// Newest first; the unversioned name last (a toolkit's development link).
constexpr std::array<const char*, 3> kSonames = {"libcudart.so.13", "libcudart.so.12",
                                                 "libcudart.so"};
// Where the nvidia-cuda-runtime wheels put the library, relative to site-packages.
constexpr std::array<const char*, 2> kWheelDirs = {"nvidia/cu13/lib", "nvidia/cuda_runtime/lib"};

struct Runtime {
  void* handle = nullptr;
  GetDeviceCountFn get_device_count = nullptr;
  MemcpyFn copy = nullptr;
  std::string path;
};

// site-packages (the folder above the tritonlite package holding this module), or "".
std::string SitePackagesDir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&SitePackagesDir), &info) == 0 || !info.dli_fname) return {};
  std::string path = info.dli_fname;
  for (int up = 0; up < 2; ++up) {  // .../site-packages/tritonlite/_core.so -> .../site-packages
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) return {};
    path.resize(slash);
  }
  return path;
}

void* OpenRuntime() {
  // 1. One already in the process (torch, cupy or onnxruntime-gpu loaded it): use the same one.
  for (const char* name : kSonames) {
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD)) return h;
  }
  // 2. The nvidia-cuda-runtime wheel installed beside tritonlite.
  const std::string site = SitePackagesDir();
  if (!site.empty()) {
    for (const char* dir : kWheelDirs) {
      for (const char* name : kSonames) {
        const std::string candidate = site + "/" + dir + "/" + name;
        if (void* h = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
      }
    }
  }
  // 3. The system's (LD_LIBRARY_PATH, ld.so.cache, default folders).
  for (const char* name : kSonames) {
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) return h;
  }
  return nullptr;
}

Runtime Load() {
  Runtime rt;
  void* h = OpenRuntime();
  if (!h) return rt;
  auto count = reinterpret_cast<GetDeviceCountFn>(dlsym(h, "cudaGetDeviceCount"));
  auto copy = reinterpret_cast<MemcpyFn>(dlsym(h, "cudaMemcpy"));
  if (!count || !copy) {  // not a CUDA runtime after all: never used, never unloaded
    return rt;
  }
  rt.handle = h;
  rt.get_device_count = count;
  rt.copy = copy;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(count), &info) != 0 && info.dli_fname) rt.path = info.dli_fname;
  return rt;
}

// Loaded once, on first use, and kept for the life of the process (never dlclose()d).
const Runtime& Get() {
  static const Runtime runtime = Load();
  return runtime;
}

}  // namespace

bool Supported() { return true; }

int DeviceCount() {
  const Runtime& rt = Get();
  if (!rt.get_device_count) return 0;
  int n = 0;
  if (rt.get_device_count(&n) != kCudaSuccess || n < 0) return 0;
  return n;
}

bool CopyDeviceToHost(void* dst, const void* src, size_t n, std::string* error) {
  const Runtime& rt = Get();
  if (!rt.copy) {
    *error = "no CUDA runtime (libcudart) could be loaded";
    return false;
  }
  const int rc = rt.copy(dst, src, n, kCudaMemcpyDeviceToHost);
  if (rc != kCudaSuccess) {
    *error = "cudaMemcpy failed with CUDA error " + std::to_string(rc);
    return false;
  }
  return true;
}

std::string LibraryPath() { return Get().path; }

#else  // a CPU-only build: no CUDA code at all

bool Supported() { return false; }
int DeviceCount() { return 0; }
bool CopyDeviceToHost(void*, const void*, size_t, std::string* error) {
  *error = "this build has no CUDA";
  return false;
}
std::string LibraryPath() { return {}; }

#endif

}  // namespace tritonlite::cuda
