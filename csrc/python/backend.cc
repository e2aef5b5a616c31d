#include "python/backend.h"

#include <string>
#include <utility>
#include <vector>

#include "python/errors.h"
#include "python/tensor_convert.h"
#include "util/thread_exit.h"

namespace tritonlite::python {

namespace {

// Whether this thread keeps its Python thread state between GIL acquisitions (an instance's
// worker from Start to Close; another thread that ran a batch, until its RunThreadExitHooks):
// creating one per acquisition would cost microseconds on every batch.
thread_local bool t_keeps_thread_state = false;

// For a thread that is not an instance's worker (the gRPC I/O thread running batches itself):
// keep the thread state from its first batch until the thread ends.
void KeepThreadState(py::gil_scoped_acquire& gil) {
  if (t_keeps_thread_state) return;
  gil.inc_ref();
  t_keeps_thread_state = true;
  AtThreadExit([] {
    if (!t_keeps_thread_state || !Py_IsInitialized()) return;
    py::gil_scoped_acquire again;
    again.dec_ref();  // the thread state goes when `again` does
    t_keeps_thread_state = false;
  });
}

// Runs batches through a Python backend instance: instance.execute(inputs, output_names).
// A backend whose `runs_on_any_thread` attribute is true may run on threads other than its
// instance's (RunsOnAnyThread).
class PyInstanceBackend : public InstanceBackend {
 public:
  explicit PyInstanceBackend(py::object instance) : instance_(std::move(instance)) {
    execute_ = py::getattr(instance_, "execute", py::none());
    any_thread_ = py::bool_(py::getattr(instance_, "runs_on_any_thread", py::bool_(false)));
  }
  ~PyInstanceBackend() override {
    if (!Py_IsInitialized()) {
      execute_.release();
      instance_.release();
      return;
    }
    py::gil_scoped_acquire gil;
    execute_ = py::object();
    instance_ = py::object();
  }

  Status Execute(const NamedTensors& inputs, const std::vector<std::string>& output_names,
                 NamedTensors* outputs) override {
    py::gil_scoped_acquire gil;
    KeepThreadState(gil);
    try {
      py::dict in;
      for (const auto& kv : inputs) {
        in[py::str(kv.first)] = kv.second.device().kind == DeviceKind::kCPU
                                    ? py::object(TensorToNumpy(kv.second))
                                    : py::cast(kv.second);
      }
      py::list names;
      for (const auto& n : output_names) names.append(n);  // the worker always names them
      py::object result = execute_(in, names);
      if (!py::isinstance<py::dict>(result)) {
        return Status(StatusCode::kInternal, "backend execute() must return a dict of outputs, got " +
                                                 py::str(py::type::of(result).attr("__name__")).cast<std::string>());
      }
      for (auto item : result.cast<py::dict>()) {
        outputs->emplace_back(py::str(item.first).cast<std::string>(), TensorFromAny(item.second));
      }
      return Status::Success();
    } catch (py::error_already_set& e) {
      return StatusFromPython(e);
    } catch (const Error& e) {
      return Status(e.code(), e.what());
    }
  }

  Status ExecuteRequests(const std::vector<std::shared_ptr<OwnedRequest>>& requests) override {
    py::gil_scoped_acquire gil;
    KeepThreadState(gil);
    try {
      py::list list(requests.size());
      for (size_t i = 0; i < requests.size(); ++i) list[i] = py::cast(requests[i]);
      instance_.attr("execute_requests")(list);
      return Status::Success();
    } catch (py::error_already_set& e) {
      return StatusFromPython(e);
    } catch (const Error& e) {
      return Status(e.code(), e.what());
    }
  }

  // The worker keeps one Python thread state for its whole life: creating one per GIL
  // acquisition would cost microseconds on every batch.
  void Start() override {
    py::gil_scoped_acquire gil;
    gil.inc_ref();
    t_keeps_thread_state = true;
  }

  bool RunsOnAnyThread() const override { return any_thread_; }

  void Close() override {
    py::gil_scoped_acquire gil;
    try {
      if (py::hasattr(instance_, "close")) instance_.attr("close")();
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("tritonlite backend instance close()");
    }
    gil.dec_ref();  // the thread state goes when `gil` does
    t_keeps_thread_state = false;
  }

 private:
  py::object instance_;
  py::object execute_;
  bool any_thread_ = false;
};

}  // namespace

std::unique_ptr<InstanceBackend> MakePyInstanceBackend(py::object instance) {
  return std::make_unique<PyInstanceBackend>(std::move(instance));
}

}  // namespace tritonlite::python
