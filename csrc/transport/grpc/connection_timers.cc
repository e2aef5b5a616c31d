#include "transport/grpc/connection_timers.h"

#include <algorithm>
#include <cmath>

namespace tritonlite {
namespace grpc {

namespace {

constexpr double kMaxAgeJitter = 0.1;  // gRPC core's
// How long the graceful GOAWAY waits for its PING's answer before the final GOAWAY goes out
// anyway (gRPC core waits 20 s, or the keepalive timeout when longer).
constexpr uint64_t kGoAwayPingTimeoutNs = 20ull * 1000000000ull;

uint64_t Add(uint64_t t, uint64_t d) { return d == kNever || t > kNever - d ? kNever : t + d; }

uint64_t Jittered(uint64_t age_ns, double jitter) {
  if (age_ns == kNever) return kNever;
  const double spread = std::clamp(jitter, -1.0, 1.0) * kMaxAgeJitter;
  const double jittered = std::round(static_cast<double>(age_ns) * (1.0 + spread));
  return jittered >= static_cast<double>(kNever) ? kNever : static_cast<uint64_t>(jittered);
}

}  // namespace

ConnectionTimers::ConnectionTimers(const ConnectionTimerOptions& options, uint64_t now_ns,
                                   double jitter)
    : options_(options),
      base_ns_(now_ns),
      age_at_ns_(Add(now_ns, Jittered(options.max_connection_age_ns, jitter))),
      preface_deadline_ns_(Add(now_ns, options.preface_timeout_ns)),
      idle_since_ns_(now_ns) {}

uint64_t ConnectionTimers::KeepaliveDue() const {
  return Add(std::max(base_ns_, last_read_ns_), options_.keepalive_time_ns);
}

ConnectionTimers::Due ConnectionTimers::Poll(uint64_t now_ns, bool calls_open) {
  Due due;
  if (now_ns >= ping_deadline_ns_) {
    due.close = "keepalive ping not acknowledged";
    return due;
  }
  if (now_ns >= close_at_ns_) {
    due.close = "max connection age grace period over";
    return due;
  }
  if (now_ns >= preface_deadline_ns_) {
    due.close = "no HTTP/2 client preface within the preface timeout";
    return due;
  }
  if (calls_open) idle_since_ns_ = now_ns;
  if (!went_away_ && now_ns >= age_at_ns_) {
    went_away_ = true;
    due.go_away = true;
    close_at_ns_ = Add(now_ns, options_.max_connection_age_grace_ns);
    finish_go_away_at_ns_ =
        Add(now_ns, std::max(kGoAwayPingTimeoutNs, options_.keepalive_timeout_ns));
  } else if (!went_away_ && now_ns >= IdleDue()) {
    // Nothing is open, so there is no grace period to wait for: the final GOAWAY closes it.
    went_away_ = true;
    due.idle_go_away = true;
    finish_go_away_at_ns_ =
        Add(now_ns, std::max(kGoAwayPingTimeoutNs, options_.keepalive_timeout_ns));
  } else if (now_ns >= finish_go_away_at_ns_) {
    due.finish_go_away = true;
    finish_go_away_at_ns_ = kNever;
  }
  if (!pinging_ && now_ns >= KeepaliveDue()) {
    if (calls_open || options_.keepalive_permit_without_calls) {
      due.ping = true;
    } else {
      base_ns_ = now_ns;  // nothing to keep alive: look again keepalive_time later
    }
  }
  return due;
}

void ConnectionTimers::PingSent(uint64_t now_ns) {
  ping_sent_ns_ = now_ns;
  pinging_ = true;
  ping_deadline_ns_ = Add(now_ns, options_.keepalive_timeout_ns);
}

void ConnectionTimers::PingAnswered() {
  pinging_ = false;
  ping_deadline_ns_ = kNever;
  ++ping_id_;  // a late ACK of this PING is ignored
}

void ConnectionTimers::OnPingAck(uint64_t opaque) {
  if (opaque == ping_id_ && pinging_) PingAnswered();
}

uint64_t ConnectionTimers::IdleDue() const {
  return Add(idle_since_ns_, options_.max_connection_idle_ns);
}

uint64_t ConnectionTimers::next_ns() const {
  uint64_t next = std::min({close_at_ns_, finish_go_away_at_ns_, preface_deadline_ns_});
  next = std::min(next, pinging_ ? ping_deadline_ns_ : KeepaliveDue());
  if (!went_away_) next = std::min({next, age_at_ns_, IdleDue()});
  return next;
}

}  // namespace grpc
}  // namespace tritonlite
