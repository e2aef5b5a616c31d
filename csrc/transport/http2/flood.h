// Flood limits for one HTTP/2 connection: frames that cost the server work (an ACK to write, a
// stream to set up and tear down, a table walk) but carry nothing of value are counted per
// kind, and a peer that sends more than allowed is cut off with GOAWAY(ENHANCE_YOUR_CALM), as
// nghttp2 and Go's net/http2 do. Each kind has a token bucket that holds `per_second` tokens
// and refills at `per_second` tokens a second: bursts up to one second's worth are fine, a
// sustained excess is not. Times are steady-clock nanoseconds from the caller. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tritonlite {
namespace http2 {

struct FloodOptions {
  // SETTINGS, PING, WINDOW_UPDATE, PRIORITY / unknown frames, and empty DATA frames without
  // END_STREAM: each kind may arrive this often (0: unlimited).
  uint32_t control_frames_per_second = 1000;
  // RST_STREAM frames from the peer and resets it provokes (rapid reset, CVE-2023-44487, and
  // MadeYouReset; 0: unlimited).
  uint32_t resets_per_second = 500;
  // CONTINUATION frames one header block may span (CVE-2024-27316 and friends; 0: unlimited).
  uint32_t max_continuation_frames = 32;
};

class TokenBucket {
 public:
  explicit TokenBucket(uint32_t per_second)
      : rate_(per_second), tokens_(static_cast<double>(per_second)) {}

  // Takes a token at `now_ns`; false when none is left (the peer is flooding).
  bool Take(uint64_t now_ns) {
    if (rate_ == 0) return true;
    if (now_ns > last_ns_) {
      const double refill = static_cast<double>(now_ns - last_ns_) * 1e-9 * rate_;
      tokens_ = std::min(static_cast<double>(rate_), tokens_ + refill);
      last_ns_ = now_ns;
    }
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  const uint32_t rate_;
  double tokens_;
  uint64_t last_ns_ = 0;
};

}  // namespace http2
}  // namespace tritonlite
