#include "python/grpc_options.h"

#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "python/errors.h"
#include "python/gil.h"
#include "transport/grpc/compression.h"
#include "transport/http2/connection.h"

namespace tritonlite::python {

namespace {

// A duration option in milliseconds as nanoseconds: at least `min_ms`; INT_MAX (gRPC's
// "infinite") and beyond, or None: never.
uint64_t MillisToNs(const char* name, std::optional<int64_t> ms, int64_t min_ms = 0) {
  if (!ms.has_value() || *ms >= INT32_MAX) return grpc::kNever;
  if (*ms < 0) ThrowInvalid(std::string(name) + " must be >= 0 ms, got " + std::to_string(*ms));
  return static_cast<uint64_t>(std::max(*ms, min_ms)) * 1000000ull;
}

uint32_t Count(const char* name, int64_t value) {
  if (value < 0 || value > UINT32_MAX) {
    ThrowInvalid(std::string(name) + " must be in [0, 4294967295], got " + std::to_string(value));
  }
  return static_cast<uint32_t>(value);
}

grpc::GrpcServerOptions GrpcServerOptionsFromArgs(
    std::string host, int port, int io_threads, uint64_t max_message_bytes,
    std::vector<std::string> streaming_methods, bool fast_infer, uint32_t max_concurrent_streams,
    uint32_t initial_stream_window, uint32_t connection_window, uint32_t max_frame_size,
    uint32_t max_header_list_size, int64_t keepalive_time_ms, int64_t keepalive_timeout_ms,
    bool keepalive_permit_without_calls, int64_t http2_max_pings_without_data,
    int64_t http2_min_recv_ping_interval_without_data_ms, int64_t http2_max_ping_strikes,
    std::optional<int64_t> max_connection_age_ms, std::optional<int64_t> max_connection_age_grace_ms,
    const std::string& response_compression,
    std::optional<std::pair<std::string, std::string>> fast_infer_header, int64_t max_connections,
    std::optional<int64_t> preface_timeout_ms, std::optional<int64_t> max_connection_idle_ms,
    int64_t max_connection_memory, int64_t control_frames_per_second,
    int64_t resets_per_second, int64_t max_continuation_frames) {
  if (port < 0 || port > 65535) ThrowInvalid("port must be in [0, 65535], got " + std::to_string(port));
  if (max_message_bytes == 0 || max_message_bytes > 0xffffffffull) {
    ThrowInvalid("max_message_bytes must be in [1, 4294967295] (gRPC's 32-bit length prefix)");
  }
  if (initial_stream_window == 0 || initial_stream_window > http2::kMaxWindowSize) {
    ThrowInvalid("initial_stream_window must be in [1, 2147483647]");
  }
  if (connection_window < http2::kDefaultWindowSize || connection_window > http2::kMaxWindowSize) {
    ThrowInvalid("connection_window must be in [65535, 2147483647]");
  }
  if (max_frame_size < http2::kMinMaxFrameSize || max_frame_size > http2::kMaxMaxFrameSize) {
    ThrowInvalid("max_frame_size must be in [16384, 16777215]");
  }
  grpc::GrpcServerOptions options;
  options.host = std::move(host);
  options.port = port;
  options.io_threads = io_threads;
  options.transport.max_message_bytes = static_cast<size_t>(max_message_bytes);
  options.transport.streaming_methods = std::move(streaming_methods);
  options.transport.fast_infer = fast_infer;
  if (fast_infer_header) {
    std::string key = fast_infer_header->first;
    for (char& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (key.empty()) ThrowInvalid("fast_infer_header needs a header name");
    options.transport.fast_infer_header_key = std::move(key);
    options.transport.fast_infer_header_value = fast_infer_header->second;
  }
  options.transport.http2.max_concurrent_streams = max_concurrent_streams;
  options.transport.http2.initial_stream_window = initial_stream_window;
  options.transport.http2.connection_window = connection_window;
  options.transport.http2.max_frame_size = max_frame_size;
  options.transport.http2.max_header_list_size = max_header_list_size;
  grpc::ConnectionTimerOptions& timers = options.transport.timers;
  timers.keepalive_time_ns = MillisToNs("keepalive_time_ms", keepalive_time_ms, 1);
  timers.keepalive_timeout_ns = MillisToNs("keepalive_timeout_ms", keepalive_timeout_ms);
  timers.keepalive_permit_without_calls = keepalive_permit_without_calls;
  timers.max_connection_age_ns = MillisToNs("max_connection_age_ms", max_connection_age_ms);
  timers.max_connection_age_grace_ns =
      MillisToNs("max_connection_age_grace_ms", max_connection_age_grace_ms);
  http2::PingPolicyOptions& pings = options.transport.http2.pings;
  pings.permit_without_streams = keepalive_permit_without_calls;
  pings.min_recv_ping_interval_ns = MillisToNs("http2_min_recv_ping_interval_without_data_ms",
                                               http2_min_recv_ping_interval_without_data_ms);
  pings.max_ping_strikes = Count("http2_max_ping_strikes", http2_max_ping_strikes);
  // Validated only: it limits a client's own pings, and gRPC core servers (since 1.46) do not
  // throttle their keepalive pings by it.
  Count("http2_max_pings_without_data", http2_max_pings_without_data);
  options.max_connections = Count("max_connections", max_connections);
  // 0 as well as None: no limit.
  timers.preface_timeout_ns = preface_timeout_ms.value_or(0) == 0
                                  ? grpc::kNever
                                  : MillisToNs("preface_timeout_ms", preface_timeout_ms, 1);
  timers.max_connection_idle_ns =
      max_connection_idle_ms.value_or(0) == 0
          ? grpc::kNever
          : MillisToNs("max_connection_idle_ms", max_connection_idle_ms, 1);
  if (max_connection_memory < 0) {
    ThrowInvalid("max_connection_memory must be >= 0, got " +
                 std::to_string(max_connection_memory));
  }
  options.transport.max_connection_memory = static_cast<size_t>(max_connection_memory);
  http2::FloodOptions& flood = options.transport.http2.flood;
  flood.control_frames_per_second = Count("control_frames_per_second", control_frames_per_second);
  flood.resets_per_second = Count("resets_per_second", resets_per_second);
  flood.max_continuation_frames = Count("max_continuation_frames", max_continuation_frames);
  grpc::CompressionLevel& level = options.transport.response_compression;
  if (!grpc::ParseCompressionLevel(response_compression, &level)) {
    ThrowInvalid("response_compression must be 'none', 'low', 'medium' or 'high', got '" +
                 response_compression + "'");
  }
  grpc::Encoding gzip;
  if (level != grpc::CompressionLevel::kNone && !grpc::ParseCompression("gzip", &gzip)) {
    ThrowInvalid("response_compression '" + response_compression +
                 "' is not available: this build of tritonlite was made without zlib");
  }
  return options;
}

// GrpcServer's constructor for py::init: the checked options (with the same parameters as
// `options`), then the server, bound and listening. Constructing binds the port and
// destruction stops the I/O threads: neither holds the GIL.
template <typename... Args>
auto ServerFactory(grpc::GrpcServerOptions (*options)(Args...)) {
  return [options](Args... args) {
    grpc::GrpcServerOptions checked = options(std::forward<Args>(args)...);
    grpc::GrpcServer* raw = nullptr;
    {
      py::gil_scoped_release release;
      raw = new grpc::GrpcServer(std::move(checked));
    }
    return OwnedWithoutGil(raw);
  };
}

}  // namespace

void BindGrpcServerInit(GrpcServerClass& server) {
  server.def(py::init(ServerFactory(&GrpcServerOptionsFromArgs)),
             py::arg("host") = "0.0.0.0", py::arg("port") = 8001,
             py::arg("io_threads") = 1, py::arg("max_message_bytes") = 2147483647ull,
             py::arg("streaming_methods") = std::vector<std::string>{"ModelStreamInfer"},
             py::arg("fast_infer") = true, py::arg("max_concurrent_streams") = 1024,
             py::arg("initial_stream_window") = 1u << 20, py::arg("connection_window") = 16u << 20,
             py::arg("max_frame_size") = 16384, py::arg("max_header_list_size") = 64u << 10,
             py::arg("keepalive_time_ms") = 7200000, py::arg("keepalive_timeout_ms") = 20000,
             py::arg("keepalive_permit_without_calls") = false,
             py::arg("http2_max_pings_without_data") = 2,
             py::arg("http2_min_recv_ping_interval_without_data_ms") = 300000,
             py::arg("http2_max_ping_strikes") = 2, py::arg("max_connection_age_ms") = py::none(),
             py::arg("max_connection_age_grace_ms") = py::none(),
             py::arg("response_compression") = "none", py::arg("fast_infer_header") = py::none(),
             py::arg("max_connections") = 4096, py::arg("preface_timeout_ms") = 10000,
             py::arg("max_connection_idle_ms") = 600000,
             py::arg("max_connection_memory") = int64_t{256} << 20,
             py::arg("control_frames_per_second") = 1000, py::arg("resets_per_second") = 500,
             py::arg("max_continuation_frames") = 32,
             "Bind and listen (port 0: any free port). Raises TritonError(UNAVAILABLE) when the "
             "address cannot be bound. Keepalive, ping policing and connection age follow gRPC "
             "core's server channel arguments of the same names (milliseconds; 2147483647 or None: "
             "infinite; http2_max_pings_without_data is accepted but, as in gRPC core servers, "
             "does not throttle the server's pings). response_compression ('none', 'low', 'medium', "
             "'high': gRPC's compression level) compresses the responses of ModelInfer and "
             "ModelStreamInfer with the algorithm gRPC core picks among those the client accepts. "
             "fast_infer_header (name, value): only ModelInfer calls with that header take the "
             "C++ path; the others are forwarded (restricted 'inference' protocol). Budgets (0 "
             "or None: unlimited): max_connections (beyond it a new connection gets "
             "GOAWAY(ENHANCE_YOUR_CALM) and is closed), preface_timeout_ms (a connection without "
             "the client preface by then is closed), max_connection_idle_ms (a connection without "
             "calls that long gets a graceful GOAWAY), max_connection_memory (bytes of requests "
             "and unread responses one connection may hold), control_frames_per_second (SETTINGS, "
             "PING, WINDOW_UPDATE, PRIORITY/unknown and empty DATA frames, each kind), "
             "resets_per_second (RST_STREAM), max_continuation_frames (per header block): "
             "beyond them GOAWAY(ENHANCE_YOUR_CALM).");
}

}  // namespace tritonlite::python
