#include "python/model_spec.h"

#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "python/errors.h"
#include "python/tensor_convert.h"

namespace tritonlite::python {

namespace {

std::vector<TensorSpec> TensorSpecsFromPy(py::handle list) {
  std::vector<TensorSpec> specs;
  for (py::handle item : list) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    TensorSpec s;
    s.name = d["name"].cast<std::string>();
    s.dtype = ParseDataType(d["datatype"].cast<std::string>());
    s.dims = d["dims"].cast<std::vector<int64_t>>();
    s.optional = d.contains("optional") && d["optional"].cast<bool>();
    s.ragged = d.contains("allow_ragged_batch") && d["allow_ragged_batch"].cast<bool>();
    specs.push_back(std::move(s));
  }
  return specs;
}

template <typename T>
T Get(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) && !d[key].is_none() ? d[key].cast<T>() : fallback;
}

// The enum value named `name` in `table`; an unknown name raises "unknown <what> '<name>'".
template <typename Kind, size_t N>
Kind KindFromName(const std::pair<const char*, Kind> (&table)[N], const std::string& name,
                  const char* what) {
  for (const auto& kv : table) {
    if (name == kv.first) return kv.second;
  }
  ThrowInvalid(std::string("unknown ") + what + " '" + name + "'");
}

QueuePolicy QueuePolicyFromPy(const py::dict& d) {
  QueuePolicy p;
  p.delay_on_timeout = Get<std::string>(d, "timeout_action", "REJECT") == "DELAY";
  p.default_timeout_us = Get<uint64_t>(d, "default_timeout_microseconds", 0);
  p.allow_timeout_override = Get<bool>(d, "allow_timeout_override", false);
  p.max_queue_size = Get<uint32_t>(d, "max_queue_size", 0);
  return p;
}

SequenceConfig SequenceConfigFromPy(const py::dict& d) {
  SequenceConfig c;
  c.enabled = true;
  c.oldest = Get<bool>(d, "oldest", false);
  c.max_sequence_idle_us = Get<uint64_t>(d, "max_sequence_idle_microseconds", 1'000'000);
  c.max_queue_delay_us = Get<uint64_t>(d, "max_queue_delay_microseconds", 0);
  c.max_candidate_sequences = Get<uint32_t>(d, "max_candidate_sequences", 0);
  c.min_slot_utilization = Get<double>(d, "minimum_slot_utilization", 0);
  c.max_backlog = Get<uint32_t>(d, "sequence_backlog_limit", 0);
  c.preferred_batch_sizes = Get<std::vector<int64_t>>(d, "preferred_batch_size", {});
  static const std::pair<const char*, SequenceControl::Kind> kKinds[] = {
      {"CONTROL_SEQUENCE_START", SequenceControl::Kind::kStart},
      {"CONTROL_SEQUENCE_END", SequenceControl::Kind::kEnd},
      {"CONTROL_SEQUENCE_READY", SequenceControl::Kind::kReady},
      {"CONTROL_SEQUENCE_CORRID", SequenceControl::Kind::kCorrId}};
  for (py::handle item : Get<py::list>(d, "controls", py::list())) {
    auto cd = py::reinterpret_borrow<py::dict>(item);
    SequenceControl ctl;
    ctl.kind = KindFromName(kKinds, cd["kind"].cast<std::string>(), "sequence control kind");
    ctl.input_name = cd["input_name"].cast<std::string>();
    ctl.dtype = ParseDataType(cd["datatype"].cast<std::string>());
    ctl.false_value = Get<double>(cd, "false_value", 0);
    ctl.true_value = Get<double>(cd, "true_value", 1);
    c.controls.push_back(std::move(ctl));
  }
  for (py::handle item : Get<py::list>(d, "states", py::list())) {
    auto sd = py::reinterpret_borrow<py::dict>(item);
    SequenceStateSpec s;
    s.input_name = sd["input_name"].cast<std::string>();
    s.output_name = sd["output_name"].cast<std::string>();
    s.dtype = ParseDataType(sd["datatype"].cast<std::string>());
    s.dims = sd["dims"].cast<std::vector<int64_t>>();
    s.initial_shape = sd["initial_shape"].cast<std::vector<int64_t>>();
    s.initial = sd["initial"].cast<std::string>();
    // Checked as any tensor is (BYTES: a well-formed serialization of the shape's elements).
    Tensor::View(s.dtype, s.initial_shape, s.initial.data(), s.initial.size(), nullptr);
    c.states.push_back(std::move(s));
  }
  return c;
}

// batch_input: [{"kind", "target_name": [..], "datatype", "source_input"}] (validated with the
// config: one source input, INT32 or FP32). The datatype and target_name checks stay: the
// gatherer (scheduling/ragged.cc) writes 4-byte values and names the input by its first target.
std::vector<BatchInputSpec> BatchInputsFromPy(py::handle list) {
  static const std::pair<const char*, BatchInputSpec::Kind> kKinds[] = {
      {"BATCH_ELEMENT_COUNT", BatchInputSpec::Kind::kElementCount},
      {"BATCH_ACCUMULATED_ELEMENT_COUNT", BatchInputSpec::Kind::kAccumulatedElementCount},
      {"BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
       BatchInputSpec::Kind::kAccumulatedElementCountWithZero},
      {"BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", BatchInputSpec::Kind::kMaxElementCountAsShape},
      {"BATCH_ITEM_SHAPE", BatchInputSpec::Kind::kItemShape},
      {"BATCH_ITEM_SHAPE_FLATTEN", BatchInputSpec::Kind::kItemShapeFlatten}};
  std::vector<BatchInputSpec> specs;
  for (py::handle item : list) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    BatchInputSpec b;
    const auto kind = d["kind"].cast<std::string>();
    b.kind = KindFromName(kKinds, kind, "batch input kind");
    b.target_names = d["target_name"].cast<std::vector<std::string>>();
    b.dtype = ParseDataType(d["datatype"].cast<std::string>());
    if (b.dtype != DataType::kInt32 && b.dtype != DataType::kFp32) {
      ThrowInvalid("batch input data type must be TYPE_INT32 or TYPE_FP32");
    }
    b.source_input = d["source_input"].cast<std::string>();
    if (b.target_names.empty()) ThrowInvalid("batch input '" + kind + "' has no target_name");
    specs.push_back(std::move(b));
  }
  return specs;
}

// batch_output: [{"target_name": [..], "source_input", "shape"}] (BATCH_SCATTER_WITH_INPUT_SHAPE).
std::vector<BatchOutputSpec> BatchOutputsFromPy(py::handle list) {
  std::vector<BatchOutputSpec> specs;
  for (py::handle item : list) {
    auto d = py::reinterpret_borrow<py::dict>(item);
    BatchOutputSpec b;
    b.target_names = d["target_name"].cast<std::vector<std::string>>();
    b.source_input = d["source_input"].cast<std::string>();
    b.shape = d["shape"].cast<std::vector<int64_t>>();
    specs.push_back(std::move(b));
  }
  return specs;
}

}  // namespace

ModelSpec ModelSpecFromPy(const py::dict& d) {
  ModelSpec spec;
  spec.name = d["name"].cast<std::string>();
  spec.version = Get<int64_t>(d, "version", 1);
  spec.max_batch_size = Get<int64_t>(d, "max_batch_size", 0);
  spec.inputs = TensorSpecsFromPy(d["inputs"]);
  spec.outputs = TensorSpecsFromPy(d["outputs"]);
  spec.per_request_execution = Get<bool>(d, "per_request_execution", false);
  if (d.contains("batch_input")) spec.batch_inputs = BatchInputsFromPy(d["batch_input"]);
  if (d.contains("batch_output")) spec.batch_outputs = BatchOutputsFromPy(d["batch_output"]);
  spec.ensemble = Get<bool>(d, "ensemble", false);
  if (d.contains("sequence_batching") && !d["sequence_batching"].is_none()) {
    spec.sequence = SequenceConfigFromPy(d["sequence_batching"].cast<py::dict>());
  }
  if (d.contains("dynamic_batching") && !d["dynamic_batching"].is_none()) {
    auto db = d["dynamic_batching"].cast<py::dict>();
    SchedulerConfig& s = spec.scheduler;
    s.dynamic_batching = true;
    s.preferred_batch_sizes = Get<std::vector<int64_t>>(db, "preferred_batch_size", {});
    s.max_queue_delay_us = Get<uint64_t>(db, "max_queue_delay_microseconds", 0);
    s.preserve_ordering = Get<bool>(db, "preserve_ordering", false);
    s.priority_levels = Get<uint64_t>(db, "priority_levels", 0);
    s.default_priority_level = Get<uint64_t>(db, "default_priority_level", 0);
    if (db.contains("default_queue_policy")) {
      s.default_policy = QueuePolicyFromPy(db["default_queue_policy"].cast<py::dict>());
    }
    if (db.contains("priority_queue_policy")) {
      for (auto kv : db["priority_queue_policy"].cast<py::dict>()) {
        s.priority_policies[kv.first.cast<uint64_t>()] = QueuePolicyFromPy(kv.second.cast<py::dict>());
      }
    }
  }
  return spec;
}

}  // namespace tritonlite::python
