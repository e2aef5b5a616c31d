// ResponseCache: Triton's local response cache, shared by the models that enable it.
#include <cstddef>
#include <memory>

#include "python/bind.h"
#include "scheduling/response_cache.h"

namespace tritonlite::python {

void BindResponseCache(py::module_& m) {
  py::class_<ResponseCache, std::shared_ptr<ResponseCache>>(
      m, "ResponseCache",
      "Triton's local response cache: successful responses in LRU order within a byte budget.")
      .def(py::init<size_t>(), py::arg("byte_size"))
      .def("usage", [](const ResponseCache& c) {
        ResponseCache::Usage u = c.usage();
        py::dict d;
        d["byte_size"] = u.byte_budget;
        d["bytes"] = u.bytes;
        d["entries"] = u.entries;
        d["lookups"] = u.lookups;
        d["hits"] = u.hits;
        d["misses"] = u.misses;
        d["insertions"] = u.insertions;
        d["evictions"] = u.evictions;
        d["lookup_ns"] = u.lookup_ns;
        d["insertion_ns"] = u.insertion_ns;
        return d;
      }, "Budget, bytes and entries held, and lookup/insertion counters.");
}

}  // namespace tritonlite::python
