// PingPolicy: gRPC core's policing of the peer's HTTP/2 PINGs on a server connection (chttp2's
// ping abuse policy). A peer that pings more often than allowed while the server sends nothing
// collects strikes; one strike past the limit and the connection is closed with
// GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings"). Sending HEADERS, DATA or a connection
// WINDOW_UPDATE forgives the strikes. (GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA limits a client's
// own pings only: gRPC core servers do not throttle their keepalive pings by it since 1.46, and
// neither does this one.) Times are steady-clock nanoseconds from the caller; no clock is read
// here. Not thread-safe.
#pragma once

#include <cstdint>

namespace tritonlite {
namespace http2 {

struct PingPolicyOptions {
  // GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS: the peer may ping at the minimum interval even
  // with no stream open; otherwise a ping sooner than two hours after the previous one, with no
  // stream open, is a strike.
  bool permit_without_streams = false;
  // GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS: the shortest interval between the
  // peer's pings while the server sends no data.
  uint64_t min_recv_ping_interval_ns = 300ull * 1000000000ull;
  // GRPC_ARG_HTTP2_MAX_PING_STRIKES: strikes tolerated (0: any number).
  uint32_t max_ping_strikes = 2;
};

class PingPolicy {
 public:
  // The interval without streams when pings without them are not permitted (as TCP keepalive's
  // default, RFC 1122).
  static constexpr uint64_t kIdleInterval = 2ull * 3600 * 1000000000ull;

  explicit PingPolicy(const PingPolicyOptions& options) : options_(options) {}

  // A PING from the peer at `now_ns`; true when it is one strike too many.
  bool ReceivedPing(uint64_t now_ns, bool streams_open) {
    const uint64_t interval = !streams_open && !options_.permit_without_streams
                                  ? kIdleInterval
                                  : options_.min_recv_ping_interval_ns;
    const bool too_soon = has_last_ping_ && now_ns - last_ping_ns_ < interval;
    last_ping_ns_ = now_ns;
    has_last_ping_ = true;
    if (!too_soon) return false;
    ++strikes_;
    return options_.max_ping_strikes != 0 && strikes_ > options_.max_ping_strikes;
  }

  // The server sent HEADERS, DATA or a connection WINDOW_UPDATE.
  void SentData() {
    has_last_ping_ = false;
    strikes_ = 0;
  }

  uint32_t strikes() const { return strikes_; }

 private:
  const PingPolicyOptions options_;
  uint64_t last_ping_ns_ = 0;
  bool has_last_ping_ = false;  // false: the next ping is never too soon
  uint32_t strikes_ = 0;
};

}  // namespace http2
}  // namespace tritonlite
