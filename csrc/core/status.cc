#include "core/status.h"

namespace tritonlite {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kSuccess: return "SUCCESS";
    case StatusCode::kUnknown: return "UNKNOWN";
    case StatusCode::kInternal: return "INTERNAL";
    case StatusCode::kNotFound: return "NOT_FOUND";
    case StatusCode::kInvalidArg: return "INVALID_ARG";
    case StatusCode::kUnavailable: return "UNAVAILABLE";
    case StatusCode::kUnsupported: return "UNSUPPORTED";
    case StatusCode::kAlreadyExists: return "ALREADY_EXISTS";
    case StatusCode::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

}  // namespace tritonlite
