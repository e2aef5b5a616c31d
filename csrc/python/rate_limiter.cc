// RateLimiter: Triton's rate limiter, one per server; a model version registers its instances'
// resources and priorities ([{resources, priority, device}] dicts from tritonlite.rate_limit).
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "python/bind.h"
#include "python/gil.h"
#include "scheduling/rate_limiter.h"

namespace tritonlite::python {

namespace {

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
  return OwnedWithoutGil(raw);  // unregistering takes the limiter's lock
}

}  // namespace

void BindRateLimiter(py::module_& m) {
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
}

}  // namespace tritonlite::python
