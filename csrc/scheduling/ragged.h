// Ragged batching (Triton's allow_ragged_batch, batch_input and batch_output) for the backends
// that take gathered batches. What Triton's backend input collector and output responder do:
//   - a ragged input is handed over flattened: the batch's requests' elements concatenated in
//     request order, shape [total elements] (also for a batch of one request);
//   - each batch_input is a new tensor derived from the batch's requests' source input shapes;
//   - a batch_output (BATCH_SCATTER_WITH_INPUT_SHAPE) is split back to the requests by each
//     request's source input shape rather than by rows.
// Every count and size is overflow-checked; every buffer is sized from shapes whose data the
// requests actually carry (a batch input's size is bounded by its requests' element counts and
// batch rows).
#pragma once

#include <string>
#include <vector>

#include "core/model_spec.h"
#include "core/request.h"

namespace tritonlite {

// Whether the model has anything ragged to gather or scatter (else the plain path runs).
bool HasRaggedIO(const ModelSpec& spec);

// The inputs that may differ in shape within a batch (allow_ragged_batch).
std::vector<std::string> RaggedInputNames(const ModelSpec& spec);

// The requests' `name` inputs flattened and concatenated: shape [total elements]. A single
// request's input is reshaped in place (a view, no copy). Throws INVALID_ARG naming the request
// part on a datatype/device/size mismatch.
Tensor GatherRagged(const std::vector<const Tensor*>& parts);

// The batch input `spec` for `requests` (Triton's BatchInputShape + ProcessBatchInput), laid
// out as its `dtype` (INT32 or FP32). Throws INVALID_ARG when a request lacks the source input,
// a count does not fit INT32, or (for the item-shape kinds) a request has more rows than
// `max_rows` (the model's max_batch_size, at least 1).
Tensor MakeBatchInput(const BatchInputSpec& spec, const std::vector<const InferRequest*>& requests,
                      int64_t max_rows);

// The per-request shape of a batch output: `shape` with every -1 taken from `source`'s dim at
// the same index. Throws INTERNAL when `source` has too few dims.
Shape BatchOutputShape(const BatchOutputSpec& spec, const Shape& source);

// Views into `output` for each request, in order: request i gets BatchOutputShape(its source
// input) worth of elements after request i-1's. Throws INTERNAL (naming `model` and `name`)
// when the output is not a fixed-size host tensor or is too small for the requests.
std::vector<Tensor> ScatterWithInputShape(const std::string& model, const std::string& name,
                                          const BatchOutputSpec& spec, const Tensor& output,
                                          const std::vector<const InferRequest*>& requests);

}  // namespace tritonlite
