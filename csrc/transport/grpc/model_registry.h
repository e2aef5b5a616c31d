// ModelRegistry: the model versions the native gRPC transport may serve itself (the ModelInfer
// fast path), kept in step with the Python Server as it installs and retires versions. A model
// that is not here is not an error: its requests are forwarded to Python, which answers them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "scheduling/model_runner.h"

namespace tritonlite {
namespace grpc {

class ModelRegistry {
 public:
  using Versions = std::map<int64_t, std::shared_ptr<ModelRunner>>;

  // Serves exactly `versions` of `name` (the highest is "latest"); empty removes the model.
  void Set(const std::string& name, Versions versions);
  void Remove(const std::string& name);
  void Clear();
  // The runner for a request's model_name and model_version ("" = latest), or nullptr when
  // the fast path does not serve it (unknown name or version, a version that is not a number).
  std::shared_ptr<ModelRunner> Find(std::string_view name, std::string_view version) const;
  // name -> served versions, ascending.
  std::map<std::string, std::vector<int64_t>> Snapshot() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, Versions, std::less<>> models_;
};

}  // namespace grpc
}  // namespace tritonlite
