// GrpcServer: the native gRPC transport. A listening TCP socket and a few I/O threads, each
// with its own epoll set, connections (GrpcConnection), outbox and deadline timers; connections
// go to whichever thread accepts them. ModelInfer for registered models is served in C++; every
// other call is forwarded to Python through bridge(). Plain TCP only: no TLS (use the Python
// grpcio transport when TLS is needed). Beyond max_connections, new connections are told
// GOAWAY(ENHANCE_YOUR_CALM) and closed at once; when accept() runs out of file descriptors
// (EMFILE, ENFILE), the waiting connection is closed through a reserve descriptor and
// accepting pauses briefly instead of spinning. An I/O thread runs the batches its reads made
// ready itself (ModelRunner::RunReady) and writes their responses in the same pass: all of them
// on a CPU budget below two, those of models whose recent batches were short with more
// (util/spin_wait.h InlineBatchesMode).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "transport/grpc/connection.h"

namespace tritonlite {
namespace grpc {

struct GrpcServerOptions {
  std::string host = "0.0.0.0";  // an address to bind (IPv4 or IPv6 literal, or a host name)
  int port = 8001;               // 0: any free port (see port())
  int io_threads = 1;
  int listen_backlog = 1024;
  size_t max_connections = 4096;  // open at once, over all I/O threads (0: unlimited)
  TransportOptions transport;
};

class IoThread;

class GrpcServer {
 public:
  // Binds and listens; throws Error(UNAVAILABLE) when the address cannot be bound.
  explicit GrpcServer(GrpcServerOptions options);
  // Stop().
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Starts the I/O threads (once).
  void Start();
  // Graceful and non-blocking: no new connections, GOAWAY on every connection; calls in
  // flight go on, and each connection closes once it has none.
  void Shutdown();
  // Closes every connection now (open calls are cancelled) and joins the I/O threads.
  // Idempotent. Forwarded calls still get their kCancel events on bridge().
  void Stop();

  int port() const { return port_; }
  size_t connection_count() const;
  ModelRegistry& models() { return context_.registry; }
  const std::shared_ptr<Bridge>& bridge() const { return context_.bridge; }
  const GrpcServerOptions& options() const { return options_; }

 private:
  const GrpcServerOptions options_;
  TransportContext context_;
  int listen_fd_ = -1;
  int port_ = 0;
  mutable std::mutex lifecycle_mu_;
  bool started_ = false;
  bool stopped_ = false;
  std::vector<std::unique_ptr<IoThread>> threads_;
  std::atomic<size_t> open_connections_{0};
};

}  // namespace grpc
}  // namespace tritonlite
