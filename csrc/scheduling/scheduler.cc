#include "scheduling/scheduler.h"

#include <algorithm>

namespace tritonlite {

bool ShapesCompatible(const InferRequest& a, const InferRequest& b) {
  return ShapesCompatible(a, b, {});
}

bool ShapesCompatible(const InferRequest& a, const InferRequest& b,
                      const std::vector<std::string>& ragged) {
  if (a.inputs.size() != b.inputs.size()) return false;
  for (const auto& kv : a.inputs) {
    const Tensor* other = b.FindInput(kv.first);
    if (other == nullptr || other->dtype() != kv.second.dtype()) return false;
    // Batches are gathered in host memory: device tensors run one request at a time.
    if (kv.second.device().kind != DeviceKind::kCPU || other->device().kind != DeviceKind::kCPU) {
      return false;
    }
    if (std::find(ragged.begin(), ragged.end(), kv.first) != ragged.end()) continue;
    const Shape& x = kv.second.shape();
    const Shape& y = other->shape();
    if (x.size() != y.size() || !std::equal(x.begin() + 1, x.end(), y.begin() + 1)) return false;
  }
  return true;
}

}  // namespace tritonlite
