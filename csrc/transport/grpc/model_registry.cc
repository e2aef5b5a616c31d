#include "transport/grpc/model_registry.h"

#include <utility>

namespace tritonlite {
namespace grpc {

namespace {

// A model_version string as Triton reads it: decimal digits only, else not found.
bool ParseVersion(std::string_view s, int64_t* version) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *version = v;
  return true;
}

}  // namespace

void ModelRegistry::Set(const std::string& name, Versions versions) {
  Versions retired;  // released after the lock: dropping a runner may join its workers
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it != models_.end()) retired.swap(it->second);
    if (versions.empty()) {
      if (it != models_.end()) models_.erase(it);
    } else {
      models_[name] = std::move(versions);
    }
  }
}

void ModelRegistry::Remove(const std::string& name) { Set(name, {}); }

void ModelRegistry::Clear() {
  std::map<std::string, Versions, std::less<>> retired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    retired.swap(models_);
  }
}

std::shared_ptr<ModelRunner> ModelRegistry::Find(std::string_view name,
                                                 std::string_view version) const {
  int64_t wanted = 0;
  const bool latest = version.empty();
  if (!latest && !ParseVersion(version, &wanted)) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.empty()) return nullptr;
  const Versions& versions = it->second;
  if (latest) return versions.rbegin()->second;
  auto v = versions.find(wanted);
  return v == versions.end() ? nullptr : v->second;
}

std::map<std::string, std::vector<int64_t>> ModelRegistry::Snapshot() const {
  std::map<std::string, std::vector<int64_t>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& kv : models_) {
    for (const auto& v : kv.second) out[kv.first].push_back(v.first);
  }
  return out;
}

}  // namespace grpc
}  // namespace tritonlite
