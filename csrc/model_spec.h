// What the core needs to know about a loaded model version: its tensors (for validation) and its
// scheduling configuration. Filled by the Python layer from the parsed ModelConfig.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "datatype.h"
#include "tensor.h"

namespace tritonlite {

struct TensorSpec {
  std::string name;
  DataType dtype = DataType::kInvalid;
  Shape dims;  // without the batch dim; -1 = any size
  bool optional = false;
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
  uint32_t priority_levels = 0;  // 0: one level
  uint32_t default_priority_level = 0;
  QueuePolicy default_policy;
  std::map<uint32_t, QueuePolicy> priority_policies;
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
  Shape dims;  // initial state's shape (without the batch dim)
};

struct SequenceConfig {
  bool enabled = false;
  bool oldest = false;  // strategy: oldest (else direct)
  uint64_t max_sequence_idle_us = 1'000'000;
  uint64_t max_queue_delay_us = 0;
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
  // Backends that take the batch as a list of requests (python backend) instead of gathered
  // tensors.
  bool per_request_execution = false;
  // An ensemble (per-request): counted as Triton counts ensembles. Only a successful request
  // counts an execution (when it completes); a failed one counts two failures, reason OTHER
  // (Triton's ensemble scheduler reports the error response and then the request).
  bool ensemble = false;
};

}  // namespace tritonlite
