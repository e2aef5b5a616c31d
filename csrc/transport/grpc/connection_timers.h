// ConnectionTimers: what one native gRPC connection does over time, as gRPC core does it on a
// server: keepalive PINGs (GRPC_ARG_KEEPALIVE_TIME_MS, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
// GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS) and the maximum connection age
// (GRPC_ARG_MAX_CONNECTION_AGE_MS, GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS).
//
// - Keepalive: keepalive_time after the last bytes read, a PING goes out if a call is open or
//   pings without calls are permitted (otherwise the timer just starts over). When neither its
//   ACK nor any other bytes arrive within keepalive_timeout, the connection is closed.
// - Age: after max_connection_age (spread by +-10%, so connections made together do not all
//   go away together) the graceful GOAWAY starts; max_connection_age_grace later the
//   connection is closed, cancelling what is still open.
// - Preface: a connection whose client preface (and first SETTINGS) has not arrived within
//   preface_timeout is closed.
// - Idle (GRPC_ARG_MAX_CONNECTION_IDLE_MS): a connection without calls for max_connection_idle
//   gets the graceful GOAWAY ("max_idle") and closes once it has gone through.
//
// A state machine over steady-clock times the caller passes in: Poll() says what is due and
// the connection does it. No clock, no socket. Not thread-safe.
#pragma once

#include <cstdint>
#include <limits>

namespace tritonlite {
namespace grpc {

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

struct ConnectionTimerOptions {
  uint64_t keepalive_time_ns = 2ull * 3600 * 1000000000ull;  // kNever: no keepalive pings
  uint64_t keepalive_timeout_ns = 20ull * 1000000000ull;
  bool keepalive_permit_without_calls = false;
  uint64_t max_connection_age_ns = kNever;        // kNever: unlimited
  uint64_t max_connection_age_grace_ns = kNever;  // kNever: unlimited
  uint64_t preface_timeout_ns = 10ull * 1000000000ull;  // kNever: wait forever
  uint64_t max_connection_idle_ns = 600ull * 1000000000ull;  // kNever: unlimited
};

class ConnectionTimers {
 public:
  // `jitter` in [-1, 1] spreads the age by up to 10% either way.
  ConnectionTimers(const ConnectionTimerOptions& options, uint64_t now_ns, double jitter);

  struct Due {
    bool ping = false;            // send a keepalive PING (ping_id()) now, then PingSent()
    bool go_away = false;         // the age is reached: begin the graceful GOAWAY
    bool idle_go_away = false;    // idle too long: begin the graceful GOAWAY ("max_idle")
    bool finish_go_away = false;  // the GOAWAY's PING went unanswered: send the final GOAWAY
    const char* close = nullptr;  // close the connection now, for this reason
  };
  // What is due at `now_ns`; `calls_open`: whether any stream is open.
  Due Poll(uint64_t now_ns, bool calls_open);

  // Bytes arrived at `now_ns` (the I/O thread's time of the wakeup): the peer is alive, which
  // answers a keepalive PING sent before (gRPC core cancels the PING's timeout on any read).
  void OnRead(uint64_t now_ns) {
    last_read_ns_ = now_ns;
    if (pinging_ && now_ns > ping_sent_ns_) PingAnswered();
  }
  // The client preface arrived: no more preface timeout.
  void PrefaceReceived() { preface_deadline_ns_ = kNever; }
  // The last call ended at `now_ns`: the connection is idle from then on.
  void CallsEnded(uint64_t now_ns) { idle_since_ns_ = now_ns; }
  // The opaque data for the keepalive PING to send.
  uint64_t ping_id() const { return ping_id_; }
  void PingSent(uint64_t now_ns);
  void OnPingAck(uint64_t opaque);

  // The earliest time Poll will have something to do (kNever: never).
  uint64_t next_ns() const;

 private:
  uint64_t KeepaliveDue() const;
  uint64_t IdleDue() const;
  void PingAnswered();

  const ConnectionTimerOptions options_;
  uint64_t base_ns_;           // keepalive counts from here or the last read, the later
  uint64_t last_read_ns_ = 0;
  uint64_t ping_id_ = 1;
  uint64_t ping_sent_ns_ = 0;
  bool pinging_ = false;  // a keepalive PING is unanswered (its timeout may be infinite)
  uint64_t ping_deadline_ns_ = kNever;  // ... until then
  uint64_t age_at_ns_;
  bool went_away_ = false;
  uint64_t finish_go_away_at_ns_ = kNever;
  uint64_t close_at_ns_ = kNever;
  uint64_t preface_deadline_ns_;
  uint64_t idle_since_ns_;
};

}  // namespace grpc
}  // namespace tritonlite
