#include "scheduler.h"

#include <algorithm>

namespace tritonlite {

bool ShapesCompatible(const InferRequest& a, const InferRequest& b) {
  if (a.inputs.size() != b.inputs.size()) return false;
  for (const auto& kv : a.inputs) {
    const Tensor* other = b.FindInput(kv.first);
    if (other == nullptr || other->dtype() != kv.second.dtype()) return false;
    const Shape& x = kv.second.shape();
    const Shape& y = other->shape();
    if (x.size() != y.size() || !std::equal(x.begin() + 1, x.end(), y.begin() + 1)) return false;
  }
  return true;
}

}  // namespace tritonlite
