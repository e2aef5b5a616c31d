// Checks a request against its model's tensors before it is queued, with Triton's error texts.
#pragma once

#include <string>

#include "core/model_spec.h"
#include "core/request.h"

namespace tritonlite {

// Throws INVALID_ARG naming the model and tensor. Sets request->batch_size.
void ValidateRequest(const ModelSpec& spec, InferRequest* request);

// "[request id: <id>] " ("<id_unknown>" for an empty id): how Triton prefixes the errors of
// its request checks.
std::string RequestIdPrefix(const std::string& id);

}  // namespace tritonlite
