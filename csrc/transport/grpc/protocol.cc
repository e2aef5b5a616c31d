#include "transport/grpc/protocol.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "transport/grpc/compression.h"
#include "transport/http2/hpack.h"

namespace tritonlite {
namespace grpc {

GrpcStatus GrpcStatusFromCore(StatusCode code) {
  switch (code) {
    case StatusCode::kSuccess: return GrpcStatus::kOk;
    case StatusCode::kUnknown: return GrpcStatus::kUnknown;
    case StatusCode::kInternal: return GrpcStatus::kInternal;
    case StatusCode::kNotFound: return GrpcStatus::kNotFound;
    case StatusCode::kInvalidArg: return GrpcStatus::kInvalidArgument;
    case StatusCode::kUnavailable: return GrpcStatus::kUnavailable;
    case StatusCode::kUnsupported: return GrpcStatus::kUnimplemented;
    case StatusCode::kAlreadyExists: return GrpcStatus::kAlreadyExists;
    case StatusCode::kCancelled: return GrpcStatus::kCancelled;
  }
  return GrpcStatus::kUnknown;
}

std::string PercentEncode(std::string_view message) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (char ch : message) {
    const auto c = static_cast<uint8_t>(ch);
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

bool ParseGrpcTimeout(std::string_view value, uint64_t* nanoseconds) {
  if (value.size() < 2 || value.size() > 9) return false;
  uint64_t amount = 0;
  for (size_t i = 0; i + 1 < value.size(); ++i) {
    const char c = value[i];
    if (c < '0' || c > '9') return false;
    amount = amount * 10 + static_cast<uint64_t>(c - '0');
  }
  uint64_t unit_ns = 0;
  switch (value.back()) {
    case 'H': unit_ns = 3600ull * 1000000000ull; break;
    case 'M': unit_ns = 60ull * 1000000000ull; break;
    case 'S': unit_ns = 1000000000ull; break;
    case 'm': unit_ns = 1000000ull; break;
    case 'u': unit_ns = 1000ull; break;
    case 'n': unit_ns = 1ull; break;
    default: return false;
  }
  constexpr uint64_t kNoDeadlineBeyondNs = 1ull << 62;
  if (amount > kNoDeadlineBeyondNs / unit_ns) return false;  // 99999999H would overflow
  *nanoseconds = amount * unit_ns;
  return true;
}

const std::string& ResponseHeaderBlock(Encoding encoding) {
  static const std::array<std::string, 3> blocks = [] {
    std::string b;
    http2::HpackAppendIndexed(&b, http2::kStaticStatus200);
    http2::HpackAppendLiteralWithIndexedName(&b, http2::kStaticContentType, "application/grpc");
    http2::HpackAppendLiteral(&b, "grpc-accept-encoding", AcceptedEncodings());
    std::string deflate = b, gzip = b;
    http2::HpackAppendLiteral(&deflate, "grpc-encoding", EncodingName(Encoding::kDeflate));
    http2::HpackAppendLiteral(&gzip, "grpc-encoding", EncodingName(Encoding::kGzip));
    return std::array<std::string, 3>{b, deflate, gzip};
  }();
  return blocks[static_cast<size_t>(encoding)];
}

std::string TrailerBlock(GrpcStatus status, std::string_view message, bool trailers_only) {
  std::string b = trailers_only ? ResponseHeaderBlock() : std::string();
  http2::HpackAppendLiteral(&b, "grpc-status", std::to_string(static_cast<int>(status)));
  if (!message.empty()) http2::HpackAppendLiteral(&b, "grpc-message", PercentEncode(message));
  return b;
}

std::string HttpErrorBlock(int http_status, GrpcStatus status, std::string_view message) {
  std::string b;
  http2::HpackAppendLiteralWithIndexedName(&b, http2::kStaticStatus200,
                                           std::to_string(http_status));
  http2::HpackAppendLiteral(&b, "grpc-status", std::to_string(static_cast<int>(status)));
  if (!message.empty()) http2::HpackAppendLiteral(&b, "grpc-message", PercentEncode(message));
  return b;
}

void WriteMessagePrefix(uint8_t* prefix, size_t size) {
  prefix[0] = 0;
  prefix[1] = static_cast<uint8_t>(size >> 24);
  prefix[2] = static_cast<uint8_t>(size >> 16);
  prefix[3] = static_cast<uint8_t>(size >> 8);
  prefix[4] = static_cast<uint8_t>(size);
}

std::string FrameMessage(const void* data, size_t size) {
  std::string framed(kMessagePrefixSize + size, '\0');
  WriteMessagePrefix(reinterpret_cast<uint8_t*>(&framed[0]), size);
  if (size) std::memcpy(&framed[kMessagePrefixSize], data, size);
  return framed;
}

namespace {

// The first reservation for a message whose bytes arrive in pieces: enough for one HTTP/2 DATA
// frame or four, never more than the bytes that arrived otherwise (an announced length costs
// the peer nothing, so 200 streams announcing 30 MiB with 3 bytes each must not reserve 200 MiB).
constexpr size_t kInitialMessageCapacity = 64u << 10;

// Uninitialized bytes: every one is written before it is read.
std::unique_ptr<uint8_t[]> AllocateBytes(size_t size) {
  return std::unique_ptr<uint8_t[]>(new uint8_t[size == 0 ? 1 : size]);
}

}  // namespace

MessageBuffer::MessageBuffer(std::unique_ptr<uint8_t[]> data, size_t size)
    : owned_(std::move(data)), data_(owned_.get()), size_(size) {}

MessageBuffer::MessageBuffer(size_t size)
    : owned_(AllocateBytes(size)), data_(owned_.get()), size_(size) {}

MessageBuffer::MessageBuffer(std::string bytes)
    : string_(std::move(bytes)),
      data_(reinterpret_cast<uint8_t*>(&string_[0])),
      size_(string_.size()) {}

void MessageReader::Grow(size_t needed) {
  if (needed <= capacity_) return;
  size_t capacity = std::max(capacity_ * 2, std::min(length_, kInitialMessageCapacity));
  capacity = std::min(std::max(capacity, needed), length_);
  std::unique_ptr<uint8_t[]> bigger = AllocateBytes(capacity);
  if (filled_) std::memcpy(bigger.get(), buffer_.get(), filled_);
  buffer_ = std::move(bigger);
  capacity_ = capacity;
}

bool MessageReader::Append(const uint8_t* data, size_t size, std::vector<ReceivedMessage>* out,
                           std::string* error) {
  while (size > 0) {
    if (!in_message_) {
      const size_t take = std::min(kMessagePrefixSize - prefix_filled_, size);
      std::memcpy(prefix_ + prefix_filled_, data, take);
      prefix_filled_ += take;
      data += take;
      size -= take;
      if (prefix_filled_ < kMessagePrefixSize) break;
      length_ = (size_t{prefix_[1]} << 24) | (size_t{prefix_[2]} << 16) |
                (size_t{prefix_[3]} << 8) | size_t{prefix_[4]};
      if (length_ > max_message_bytes_) {
        *error = "Received message larger than max (" + std::to_string(length_) + " vs. " +
                 std::to_string(max_message_bytes_) + ")";
        return false;
      }
      compressed_ = (prefix_[0] & 1) != 0;
      filled_ = 0;
      capacity_ = 0;
      buffer_.reset();
      in_message_ = true;
    }
    const size_t take = std::min(length_ - filled_, size);
    if (take) {
      Grow(filled_ + take);
      std::memcpy(buffer_.get() + filled_, data, take);
      filled_ += take;
      data += take;
      size -= take;
    }
    if (filled_ == length_) {
      if (buffer_ == nullptr) buffer_ = AllocateBytes(0);
      out->push_back(ReceivedMessage{std::make_shared<MessageBuffer>(std::move(buffer_), length_),
                                     compressed_});
      in_message_ = false;
      prefix_filled_ = 0;
      capacity_ = 0;
    }
  }
  return true;
}

}  // namespace grpc
}  // namespace tritonlite
