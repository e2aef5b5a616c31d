// ModelRunner: one loaded model version as tritonlite.server drives it: built from the spec
// dict, the backend instances and warmup samples; requests queued with a completion queue
// (enqueue) or run to completion (infer); statistics.
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "python/backend.h"
#include "python/bind.h"
#include "python/completion_queue.h"
#include "python/errors.h"
#include "python/gil.h"
#include "python/model_spec.h"
#include "python/statistics.h"
#include "python/tensor_convert.h"
#include "scheduling/completion_queue.h"
#include "scheduling/model_runner.h"

namespace tritonlite::python {

namespace {

struct RequestArgs {
  std::string id;
  uint64_t priority = 0;
  uint64_t timeout_us = 0;
  uint64_t correlation_id = 0;
  std::string correlation_id_str;
  uint32_t flags = 0;
  std::string parameters;
};

RequestPtr MakeRequest(uint64_t token, py::handle inputs, py::handle outputs, RequestArgs args) {
  auto r = std::make_unique<InferRequest>();
  r->token = token;
  r->inputs = NamedTensorsFromPy(inputs);
  if (!outputs.is_none()) {
    for (py::handle o : outputs) r->requested_outputs.push_back(py::str(o).cast<std::string>());
  }
  r->id = std::move(args.id);
  r->priority = args.priority;
  r->timeout_us = args.timeout_us;
  r->correlation_id = args.correlation_id;
  r->correlation_id_str = std::move(args.correlation_id_str);
  r->flags = args.flags;
  r->parameters = std::move(args.parameters);
  return r;
}

// model_warmup samples: [{"name", "count", "batch_size", "inputs": {name: tensor}}], checked
// and built by the Python layer (tritonlite.warmup).
std::vector<WarmupSample> WarmupFromPy(const py::handle& samples) {
  std::vector<WarmupSample> out;
  if (samples.is_none()) return out;
  for (py::handle item : samples) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    WarmupSample s;
    s.name = d["name"].cast<std::string>();
    s.count = d["count"].cast<uint32_t>();
    s.batch_size = d["batch_size"].cast<int64_t>();
    s.inputs = NamedTensorsFromPy(d["inputs"]);
    out.push_back(std::move(s));
  }
  return out;
}

std::shared_ptr<ModelRunner> MakeRunner(const py::dict& spec_dict, const py::list& instances,
                                        std::shared_ptr<ResponseCache> cache,
                                        const py::object& warmup,
                                        std::shared_ptr<RateLimitRegistration> rate_limit) {
  ModelSpec spec = ModelSpecFromPy(spec_dict);
  std::vector<WarmupSample> samples = WarmupFromPy(warmup);
  if (spec.per_request_execution) {
    for (py::handle inst : instances) {
      if (!py::hasattr(inst, "execute_requests")) {
        ThrowInvalid("model '" + spec.name + "': a per-request backend instance needs an "
                     "execute_requests(requests) method");
      }
    }
  }
  std::vector<std::unique_ptr<InstanceBackend>> backends;
  for (py::handle inst : instances) {
    backends.push_back(MakePyInstanceBackend(py::reinterpret_borrow<py::object>(inst)));
  }
  ModelRunner* raw = nullptr;
  {
    py::gil_scoped_release release;  // workers may need the GIL as soon as they start
    raw = new ModelRunner(std::move(spec), std::move(backends), std::move(cache),
                          std::move(samples), std::move(rate_limit));
    // Every instance runs the warmup samples before the version may serve (Triton's rule).
    Status warmed = raw->WaitForWarmup();
    if (!warmed.ok()) {
      delete raw;  // stops and joins the workers, which close their instances
      throw Error(warmed);
    }
  }
  // Destroying a runner joins its workers, which may need the GIL: never do it while holding it.
  return OwnedWithoutGil(raw);
}

}  // namespace

void BindModelRunner(py::module_& m) {
  py::class_<ModelRunner, std::shared_ptr<ModelRunner>>(
      m, "ModelRunner", "One loaded model version: validation, batcher, instance workers, stats.")
      .def(py::init(&MakeRunner), py::arg("spec"), py::arg("instances"),
           py::arg("cache") = nullptr, py::arg("warmup") = py::none(),
           py::arg("rate_limit") = nullptr,
           "Start the model's instance workers; with `warmup` samples, run them on every "
           "instance first (a failing sample raises, the workers stopped). `rate_limit`: the "
           "instances' RateLimiter.register() result (None: not rate limited).")
      .def("enqueue",
           [](ModelRunner& runner, std::shared_ptr<CompletionQueue> queue, uint64_t token, py::handle inputs,
              py::handle outputs, std::string request_id, uint64_t priority, uint64_t timeout_us,
              uint64_t correlation_id, std::string correlation_id_str, uint32_t flags,
              std::string parameters, uint64_t trace_id) {
             RequestPtr r = MakeRequest(token, inputs, outputs,
                                        RequestArgs{std::move(request_id), priority, timeout_us,
                                                    correlation_id, std::move(correlation_id_str), flags,
                                                    std::move(parameters)});
             r->sink = std::move(queue);
             r->trace_id = trace_id;
             runner.Validate(r.get());
             auto cancel = std::make_shared<CancelFlag>();
             r->cancel = cancel;
             // A hit answers on the completion queue at once (its lock is never held by a
             // thread that waits for the GIL).
             if (runner.caches_responses() && runner.ServeFromCache(r)) return cancel;
             // Never wait for the scheduler's lock with the GIL held (its holder may need the
             // GIL, e.g. to release a Python-owned tensor): try it, else let go of the GIL.
             if (!runner.TryEnqueueValidated(r)) {
               py::gil_scoped_release release;
               runner.EnqueueValidated(std::move(r));
             }
             return cancel;
           },
           py::arg("queue"), py::arg("token"), py::arg("inputs"), py::arg("outputs") = py::none(),
           py::arg("request_id") = "", py::arg("priority") = 0, py::arg("timeout_us") = 0,
           py::arg("correlation_id") = 0, py::arg("correlation_id_str") = "", py::arg("flags") = 0,
           py::arg("parameters") = "", py::arg("trace_id") = 0,
           "Validate and queue a request; its response arrives on `queue` with `token`. "
           "`parameters`: the request's own parameters as JSON object text. `trace_id`: "
           "non-zero for a traced request, whose responses carry its timestamps (see "
           "CompletionQueue.dispatch). Returns the request's CancelHandle.")
      .def("infer",
           [](ModelRunner& runner, py::handle inputs, py::handle outputs, std::string request_id,
              uint64_t priority, uint64_t timeout_us, uint64_t correlation_id,
              std::string correlation_id_str, uint32_t flags, std::string parameters) {
             auto sink = std::make_shared<BlockingSink>();
             RequestPtr r = MakeRequest(0, inputs, outputs,
                                        RequestArgs{std::move(request_id), priority, timeout_us,
                                                    correlation_id, std::move(correlation_id_str), flags,
                                                    std::move(parameters)});
             r->sink = sink;
             std::vector<InferResponse> responses;
             {
               // Release the GIL before queueing, so the worker finds it free.
               py::gil_scoped_release release;
               runner.Enqueue(std::move(r));
               responses = sink->Wait();
             }
             py::list out(responses.size());
             for (size_t i = 0; i < responses.size(); ++i) out[i] = ResponseToPy(std::move(responses[i]));
             return out;
           },
           py::arg("inputs"), py::arg("outputs") = py::none(), py::arg("request_id") = "",
           py::arg("priority") = 0, py::arg("timeout_us") = 0, py::arg("correlation_id") = 0,
           py::arg("correlation_id_str") = "", py::arg("flags") = 0, py::arg("parameters") = "",
           "Run a request and block (without the GIL) until its responses arrive.")
      .def("stop", &ModelRunner::Stop, py::call_guard<py::gil_scoped_release>(),
           "Stop accepting requests, finish queued and in-flight ones, join the workers.")
      .def("statistics", [](const ModelRunner& r, bool histograms) {
        StatsSnapshot s;
        {
          py::gil_scoped_release release;  // takes the scheduler's and the statistics' locks
          s = r.Statistics();
        }
        return StatsToPy(s, histograms);
      }, py::arg("histograms") = false,
      "The statistics as a dict; histograms: with the latency histograms' bucket counts.")
      .def_property_readonly("caches_responses", &ModelRunner::caches_responses,
                             "Whether its successful responses go to the response cache.")
      .def_property_readonly("name", [](const ModelRunner& r) { return r.spec().name; })
      .def_property_readonly("version", [](const ModelRunner& r) { return r.spec().version; });
}

}  // namespace tritonlite::python
