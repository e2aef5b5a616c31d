// What the core needs to know about a loaded model version: its tensors (for validation) and its
// scheduling configuration. Filled by the Python layer from the parsed ModelConfig.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/datatype.h"
#include "core/tensor.h"

namespace tritonlite {

struct TensorSpec {
  std::string name;
  DataType dtype = DataType::kInvalid;
  Shape dims;  // without the batch dim; -1 = any size
  bool optional = false;
  // allow_ragged_batch: requests batch whatever this input's shape, and a gathered batch gets
  // it flattened to [total elements] (Triton's batching backends).
  bool ragged = false;
};

// batch_input: a tensor the core derives from each batch for the batching backends, as Triton's
// backend input collector does (see scheduling/ragged.h).
struct BatchInputSpec {
  enum class Kind {
    kElementCount,
    kAccumulatedElementCount,
    kAccumulatedElementCountWithZero,
    kMaxElementCountAsShape,
    kItemShape,
    kItemShapeFlatten,
  };
  Kind kind = Kind::kElementCount;
  std::vector<std::string> target_names;
  DataType dtype = DataType::kInt32;  // kInt32 or kFp32 (validated with the config)
  std::string source_input;
};

// batch_output BATCH_SCATTER_WITH_INPUT_SHAPE: the model returns the outputs `target_names` for
// the whole batch, and each request gets the next `shape` worth of elements, where a -1 in
// `shape` takes the request's `source_input` dim at the same index.
struct BatchOutputSpec {
  std::vector<std::string> target_names;
  std::string source_input;
  Shape shape;  // [-1] + the output's dims (or reshape) when the model batches, else those dims
};

struct QueuePolicy {
  bool delay_on_timeout = false;  // timeout_action DELAY (else REJECT)
  uint64_t default_timeout_us = 0;
  bool allow_timeout_override = false;
  uint32_t max_queue_size = 0;  // 0 = unbounded
};

struct SchedulerConfig {
  bool dynamic_batching = false;  // batch across requests (needs max_batch_size > 0)
  std::vector<int64_t> preferred_batch_sizes;
  uint64_t max_queue_delay_us = 0;
  bool preserve_ordering = false;
  uint64_t priority_levels = 0;  // 0: one level
  uint64_t default_priority_level = 0;
  QueuePolicy default_policy;
  std::map<uint64_t, QueuePolicy> priority_policies;
};

// sequence_batching's control inputs: tensors the server fills in for every request.
struct SequenceControl {
  enum class Kind { kStart, kEnd, kReady, kCorrId };
  Kind kind = Kind::kReady;
  std::string input_name;
  DataType dtype = DataType::kInt32;  // the tensor's type (int32/fp32/bool false-true, or CORRID's)
  double false_value = 0, true_value = 1;
};

// sequence_batching's implicit state: `input_name` gets the previous request's `output_name`.
struct SequenceStateSpec {
  std::string input_name;
  std::string output_name;
  DataType dtype = DataType::kInvalid;
  Shape dims;  // the state's dims (without the batch dim); -1: the model's output decides
  // A sequence's first state (one batch row): `dims` with every -1 as 1, as Triton, and its
  // data (BYTES: serialized elements), from initial_state or zeros.
  Shape initial_shape;
  std::string initial;
};

struct SequenceConfig {
  bool enabled = false;
  bool oldest = false;  // strategy: oldest (else direct)
  uint64_t max_sequence_idle_us = 1'000'000;
  uint64_t max_queue_delay_us = 0;
  double min_slot_utilization = 0;       // direct: minimum_slot_utilization (0: do not wait)
  uint32_t max_candidate_sequences = 0;  // oldest
  uint32_t max_backlog = 0;  // sequences allowed to wait for a free slot (0: unlimited)
  std::vector<int64_t> preferred_batch_sizes;  // oldest
  std::vector<SequenceControl> controls;
  std::vector<SequenceStateSpec> states;
};

struct ModelSpec {
  std::string name;
  int64_t version = 1;
  int64_t max_batch_size = 0;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  SchedulerConfig scheduler;
  SequenceConfig sequence;
  std::vector<BatchInputSpec> batch_inputs;
  std::vector<BatchOutputSpec> batch_outputs;
  // Backends that take the batch as a list of requests (python backend) instead of gathered
  // tensors.
  bool per_request_execution = false;
  // An ensemble (per-request): counted as Triton counts ensembles. Only a successful request
  // counts an execution (when it completes); a failed one counts two failures, reason OTHER
  // (Triton's ensemble scheduler reports the error response and then the request).
  bool ensemble = false;
};

}  // namespace tritonlite
