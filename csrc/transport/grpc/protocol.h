// gRPC over HTTP/2 (the gRPC PROTOCOL-HTTP2 spec), transport-independent pieces: status codes
// and Triton's mapping to them, length-prefixed message framing in both directions, the
// response header and trailer blocks, grpc-timeout parsing and grpc-message percent-encoding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "transport/grpc/compression.h"

namespace tritonlite {
namespace grpc {

// grpc/status.h codes.
enum class GrpcStatus : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// Triton's mapping (GrpcStatusUtil::CodeToStatus): INVALID_ARG -> INVALID_ARGUMENT, UNSUPPORTED
// -> UNIMPLEMENTED, and so on.
GrpcStatus GrpcStatusFromCore(StatusCode code);

// grpc-message encoding: bytes outside 0x20..0x7e and '%' become %XX.
std::string PercentEncode(std::string_view message);

// Parses a grpc-timeout value ("<1-8 digits><H|M|S|m|u|n>") into nanoseconds. False for a
// malformed value, and for one beyond 2^62 ns (~146 years), which is no deadline at all (and
// would overflow when added to the clock).
bool ParseGrpcTimeout(std::string_view value, uint64_t* nanoseconds);

// The response header block: ":status 200", "content-type: application/grpc", the encodings
// this build accepts, and "grpc-encoding" when the response messages use `encoding`.
const std::string& ResponseHeaderBlock(Encoding encoding = Encoding::kIdentity);
// Trailers (grpc-status, grpc-message). A trailers-only response (an error before any
// message) also carries the response headers.
std::string TrailerBlock(GrpcStatus status, std::string_view message, bool trailers_only);
// A plain HTTP error response for requests that are not gRPC (e.g. 415 for a wrong
// content-type), with a grpc-status for clients that look.
std::string HttpErrorBlock(int http_status, GrpcStatus status, std::string_view message);

constexpr size_t kMessagePrefixSize = 5;  // compressed flag + 4-byte big-endian length

// Writes the 5-byte prefix for an uncompressed message of `size` bytes.
void WriteMessagePrefix(uint8_t* prefix, size_t size);
// `size` bytes of message, framed (prefix + bytes) in a new string.
std::string FrameMessage(const void* data, size_t size);

// One received message, contiguous. Tensors decoded from it are views kept alive by it.
class MessageBuffer {
 public:
  // Takes over `size` bytes at `data` (uninitialized memory the reader filled).
  MessageBuffer(std::unique_ptr<uint8_t[]> data, size_t size);
  explicit MessageBuffer(size_t size);        // `size` uninitialized bytes, to be filled
  explicit MessageBuffer(std::string bytes);  // takes over decompressed bytes
  MessageBuffer(const MessageBuffer&) = delete;
  MessageBuffer& operator=(const MessageBuffer&) = delete;
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint8_t[]> owned_;
  std::string string_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};
using MessagePtr = std::shared_ptr<MessageBuffer>;

struct ReceivedMessage {
  MessagePtr message;
  bool compressed = false;
};

// Reassembles length-prefixed messages from a stream's body bytes, which arrive in arbitrary
// pieces. Each message is copied once, into its own buffer. Memory follows the bytes that
// arrived, not the length a prefix announces (which a peer could inflate for free): the buffer
// starts at up to 64 KiB (or the bytes that arrived) and doubles as needed.
class MessageReader {
 public:
  explicit MessageReader(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}
  // Appends complete messages to `out`. Returns false (with a RESOURCE_EXHAUSTED `error`)
  // when a message announces more than the maximum size.
  bool Append(const uint8_t* data, size_t size, std::vector<ReceivedMessage>* out,
              std::string* error);
  // A message has started but not finished (an error at the end of the stream).
  bool partial() const { return prefix_filled_ > 0; }
  // Bytes held for the message being assembled (its buffer as allocated).
  size_t buffered_bytes() const { return capacity_ + prefix_filled_; }

 private:
  void Grow(size_t needed);

  const size_t max_message_bytes_;
  uint8_t prefix_[kMessagePrefixSize] = {};
  size_t prefix_filled_ = 0;
  bool in_message_ = false;
  bool compressed_ = false;
  size_t length_ = 0;  // of the current message
  size_t filled_ = 0;
  std::unique_ptr<uint8_t[]> buffer_;
  size_t capacity_ = 0;
};

}  // namespace grpc
}  // namespace tritonlite
