// libFuzzer target: a whole native gRPC connection (csrc/transport/grpc/connection.cc) over a
// socketpair: HTTP/2, call routing, grpc-timeout, grpc-encoding, message framing and decompression,
// the ModelInfer fast path into a real ModelRunner (a C++ echo backend, dynamic batching), calls
// forwarded to the Python bridge (answered here instead), answers delivered back, deadlines.
//
// Input: bytes 0-1 seed how the client's bytes are cut into writes; the rest is what the client
// sends (the seeds are captured tritonclient connections: preface, SETTINGS, HEADERS, DATA).
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "fuzz_common.h"
#include "scheduling/model_runner.h"
#include "transport/grpc/connection.h"

using namespace tritonlite;
using namespace tritonlite::grpc;

namespace {

class EchoBackend : public InstanceBackend {
 public:
  Status Execute(const NamedTensors& inputs, const std::vector<std::string>& output_names,
                 NamedTensors* outputs) override {
    for (const std::string& name : output_names) {
      if (!inputs.empty()) outputs->emplace_back(name, inputs[0].second);
    }
    return Status::Success();
  }
};

std::shared_ptr<ModelRunner> MakeRunner(const std::string& name, DataType dtype, int64_t batch) {
  ModelSpec spec;
  spec.name = name;
  spec.max_batch_size = batch;
  spec.inputs = {{"INPUT0", dtype, {-1}}};
  spec.outputs = {{"OUTPUT0", dtype, {-1}}};
  spec.scheduler.dynamic_batching = batch > 0;
  std::vector<std::unique_ptr<InstanceBackend>> backends;
  backends.push_back(std::make_unique<EchoBackend>());
  return std::make_shared<ModelRunner>(std::move(spec), std::move(backends));
}

struct Deadlines : DeadlineScheduler {
  std::vector<uint32_t> streams;
  void AddDeadline(uint64_t, uint64_t, uint32_t stream_id) override {
    if (streams.size() < 64) streams.push_back(stream_id);
  }
};

struct Shared {
  TransportContext context;
  std::shared_ptr<Outbox> outbox = std::make_shared<Outbox>();
  Shared() {
    context.options.max_message_bytes = 1u << 20;
    context.options.response_compression = CompressionLevel::kLow;
    // Leaked on purpose: the workers outlive every iteration and exit with the process.
    context.registry.Set("echo_fp32", {{1, MakeRunner("echo_fp32", DataType::kFp32, 8)}});
    context.registry.Set("echo_bytes", {{1, MakeRunner("echo_bytes", DataType::kBytes, 0)}});
  }
};

// Answers what the connection forwarded to "Python".
void AnswerForwarded(Shared& shared) {
  for (CallEvent& event : shared.context.bridge->Drain()) {
    if (event.call == nullptr) continue;
    switch (event.kind) {
      case CallEventKind::kUnary:
        event.call->Reply("\x08\x01", 2);
        break;
      case CallEventKind::kMessage:
        event.call->Consumed();  // its flow-control credit goes back (HoldData/ReleaseData)
        event.call->Send("", 0);
        break;
      case CallEventKind::kHalfClose:
        event.call->Finish(GrpcStatus::kOk, "");
        break;
      default:
        break;
    }
  }
}

void Deliver(Shared& shared, GrpcConnection& conn) {
  for (Outbound& item : shared.outbox->Drain()) {
    if (item.connection_id == conn.id()) conn.Deliver(std::move(item));
  }
}

void DrainPeer(int fd) {
  char buf[65536];
  while (read(fd, buf, sizeof(buf)) > 0) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Shared* shared = new Shared();
  static uint64_t next_id = 1;
  fuzz::Input in(data, size);
  fuzz::Chunker chunker(in.U16());
  const std::string wire = in.Rest();

  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) return 0;
  Deadlines deadlines;
  uint64_t now = 1000000000;
  {
    GrpcConnection conn(fds[0], next_id++, &shared->context, shared->outbox, &deadlines, now);
    std::vector<uint8_t> scratch(16384);
    size_t pos = 0;
    bool open = true;
    while (pos < wire.size() && open && !conn.finished()) {
      const size_t n = chunker.Next(wire.size() - pos);
      const ssize_t written = write(fds[1], wire.data() + pos, n);
      if (written > 0) pos += static_cast<size_t>(written);
      now += 1000000;
      open = conn.OnReadable(scratch.data(), scratch.size(), now);
      AnswerForwarded(*shared);
      Deliver(*shared, conn);
      open = open && conn.Flush();
      DrainPeer(fds[1]);
    }
    // Fast-path answers come from the model's worker thread: wait a little for them.
    for (int i = 0; i < 20 && open && conn.call_count() > 0; ++i) {
      pollfd p{shared->outbox->fd(), POLLIN, 0};
      poll(&p, 1, 1);
      AnswerForwarded(*shared);
      Deliver(*shared, conn);
      open = conn.Flush();
      DrainPeer(fds[1]);
    }
    for (uint32_t stream : deadlines.streams) {
      if (stream != 0) conn.OnDeadline(stream);
    }
    (void)conn.OnTimer(conn.timer_at(), now + 3600ull * 1000000000);
    conn.Flush();
    DrainPeer(fds[1]);
  }  // the connection closes fds[0] and cancels what is left
  close(fds[1]);
  AnswerForwarded(*shared);
  shared->outbox->Drain();
  return 0;
}
