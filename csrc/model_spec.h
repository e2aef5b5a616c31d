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

struct ModelSpec {
  std::string name;
  int64_t version = 1;
  int64_t max_batch_size = 0;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  SchedulerConfig scheduler;
  // Backends that take the batch as a list of requests (python backend) instead of gathered
  // tensors.
  bool per_request_execution = false;
};

}  // namespace tritonlite
