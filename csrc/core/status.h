// Error kinds shared by the whole core. Triton's status codes, carried either by a thrown
// `Error` (synchronous API misuse, bad input) or by a `Status` value (per-request results).
// the pybind11 seam (csrc/python/) is the only place that turns them into Python exceptions.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace tritonlite {

enum class StatusCode {
  kSuccess = 0,
  kUnknown,
  kInternal,
  kNotFound,
  kInvalidArg,
  kUnavailable,
  kUnsupported,
  kAlreadyExists,
  kCancelled,
};

const char* StatusCodeName(StatusCode code);

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Success() { return Status(); }
  bool ok() const { return code_ == StatusCode::kSuccess; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kSuccess;
  std::string message_;
};

class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  explicit Error(const Status& status) : Error(status.code(), status.message()) {}
  StatusCode code() const { return code_; }

 private:
  StatusCode code_;
};

}  // namespace tritonlite
