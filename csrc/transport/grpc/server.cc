#include "transport/grpc/server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <queue>
#include <thread>
#include <unordered_map>

#include "transport/grpc/infer_fast_path.h"
#include "util/spin_wait.h"
#include "util/thread_exit.h"

namespace tritonlite {
namespace grpc {

namespace {

constexpr uint64_t kListenerToken = 0;
constexpr uint64_t kOutboxToken = 1;
constexpr uint64_t kFirstConnectionId = 2;
constexpr size_t kReadBufferSize = 256u << 10;
constexpr int kMaxEvents = 256;
constexpr size_t kCompactDeadlinesAt = 4096;
constexpr uint64_t kStaleClockOkNs = 1000000000;  // 1 s
// CoalesceReads: how long reads wait while a batch runs on the one CPU. Well below the peers'
// TCP loss-probe timers (a few ms): the kernel's ACKs wait for our reads.
constexpr uint64_t kCoalesceReadsNs = 500000;  // 500 µs
// How long accepting pauses after accept() ran out of file descriptors.
constexpr uint64_t kAcceptPauseNs = 100000000;  // 100 ms

// The answer to a connection beyond the limit: the server preface and GOAWAY.
const std::string& TooManyConnectionsReply() {
  static const std::string reply = [] {
    std::string out;
    http2::AppendSettingsFrame(&out, "");
    http2::AppendGoAway(&out, 0, http2::ErrorCode::kEnhanceYourCalm, "too many connections");
    return out;
  }();
  return reply;
}

int OpenReserveFd() { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

std::string Errno() { return std::strerror(errno); }

}  // namespace

// One I/O thread: its epoll set, connections, outbox and deadline timers (calls' deadlines,
// and one entry per connection for its keepalive and age timers: stream 0).
class IoThread : public DeadlineScheduler {
 public:
  IoThread(TransportContext* context, int listen_fd, std::atomic<uint64_t>* next_connection_id,
           std::atomic<size_t>* open_connections, size_t max_connections)
      : context_(context),
        listen_fd_(listen_fd),
        next_connection_id_(next_connection_id),
        open_connections_(open_connections),
        max_connections_(max_connections),
        outbox_(std::make_shared<Outbox>()),
        read_buffer_(kReadBufferSize),
        reserve_fd_(OpenReserveFd()) {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) throw Error(StatusCode::kInternal, "epoll_create1 failed: " + Errno());
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kOutboxToken;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, outbox_->fd(), &ev) != 0) {
      close(epoll_fd_);
      throw Error(StatusCode::kInternal, "epoll_ctl failed: " + Errno());
    }
    // Every thread watches the listener; EPOLLEXCLUSIVE wakes one of them per connection.
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u64 = kListenerToken;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
      close(epoll_fd_);
      throw Error(StatusCode::kInternal, "epoll_ctl failed: " + Errno());
    }
  }

  ~IoThread() override {
    RequestStop();
    Join();
    close(epoll_fd_);
    if (reserve_fd_ >= 0) close(reserve_fd_);
  }

  void Start(int index) {
    thread_ = std::thread([this, index] {
      const std::string name = "grpc-io-" + std::to_string(index);  // as shown by top -H
      pthread_setname_np(pthread_self(), name.c_str());
      Run();
    });
  }
  void RequestShutdown() {
    int expected = kRun;
    command_.compare_exchange_strong(expected, kShutdown);
    outbox_->Wake();
  }
  void RequestStop() {
    command_.store(kStop);
    outbox_->Wake();
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  size_t connection_count() const { return connection_count_.load(std::memory_order_relaxed); }

  // Compaction waits for the end of the wakeup (Run): a connection being constructed arms its
  // timer before it is in connections_, and compacting then would drop that entry.
  void AddDeadline(uint64_t deadline_ns, uint64_t connection_id, uint32_t stream_id) override {
    deadlines_.push(Deadline{deadline_ns, connection_id, stream_id});
  }

 private:
  enum Command : int { kRun = 0, kShutdown = 1, kStop = 2 };
  struct Entry {
    std::unique_ptr<GrpcConnection> connection;
    bool watching_write = false;
    bool touched = false;
  };
  struct Deadline {
    uint64_t at;
    uint64_t connection_id;
    uint32_t stream_id;
    bool operator>(const Deadline& o) const { return at > o.at; }
  };

  void Run() {
    std::vector<epoll_event> events(kMaxEvents);
    while (true) {
      const int command = command_.load(std::memory_order_acquire);
      if (command == kStop) break;
      if (command == kShutdown && !shut_down_) BeginShutdown();
      const bool coalesced = behind_running_batch_ && CoalesceReads();
      const int n =
          epoll_wait(epoll_fd_, events.data(), kMaxEvents, coalesced ? 0 : NextTimeoutMs());
      if (n < 0 && errno != EINTR) break;
      now_ns_ = NowNs();  // one clock read per wakeup: reads and timers use it
      if (accept_paused_ && now_ns_ >= accept_resume_ns_) ResumeAccepting();
      // The models that requests read in this pass went to: woken once each after the pass,
      // or their ready batches run right here (RunReadyBatches): all on a one-CPU budget,
      // those of models whose batches are short with more (ModelRunner::RunReady).
      DeferredWakeups pass(inline_);
      {
        DeferredWakeups::Scope scope(&pass);
        for (int i = 0; i < n; ++i) {
          const uint64_t token = events[i].data.u64;
          if (token == kListenerToken) {
            AcceptAll();
          } else if (token == kOutboxToken) {
            DeliverQueued(/*drain=*/true);
          } else {
            OnConnectionEvent(token, events[i].events);
          }
        }
      }
      // (With two or more CPUs only when one of them may run here: taking the outbox's items
      // in that pass would leave the workers' signal for them to wake this thread for nothing.)
      if (!pass.empty() && (inline_ == InlineBatches::kAll || pass.RunsAnyHere())) {
        RunReadyBatches(&pass);
      } else {
        pass.WakeAll();
      }
      behind_running_batch_ = pass.behind_running_batch();
      ExpireDeadlines();
      if (deadlines_.size() >= compact_deadlines_at_) CompactDeadlines();
      FlushTouched();
    }
    StopListening();
    outbox_->Close();
    open_connections_->fetch_sub(connections_.size(), std::memory_order_relaxed);
    connections_.clear();  // cancels what is still open
    connection_count_.store(0);
    RunThreadExitHooks();  // e.g. the Python thread state of a batch run here
  }

  // This thread runs the batches its reads made ready, as inline_ allows (no hand-off to the
  // instance's thread and back: two wakeups and context switches per batch). Their responses go
  // to this thread's own outbox without signalling it, and are taken here: they go out with this
  // pass's flush (one write per connection). What other threads post meanwhile signals as usual.
  void RunReadyBatches(DeferredWakeups* pass) {
    {
      ConsumerPosting self(outbox_.get());
      pass->WakeAll();
    }
    DeliverQueued(/*drain=*/false);
  }

  // One CPU, while a batch that requests of the last pass wait behind runs on another thread
  // (the instance's worker): the requests that arrive meanwhile cannot run before it ends, and
  // reading each as it comes would preempt the batch's thread on the CPU both share (a wakeup,
  // two context switches and cold caches per request: issue #20's mlp). So this waits for the
  // outbox only (the batch's responses, a stop) for up to kCoalesceReadsNs, then reads what
  // arrived meanwhile in one pass. Returns false (wait as usual) when a timer is due sooner.
  bool CoalesceReads() {
    const uint64_t now = NowNs();
    if (!deadlines_.empty() && deadlines_.top().at <= now + kCoalesceReadsNs) return false;
    if (accept_paused_) return false;
    pollfd outbox{outbox_->fd(), POLLIN, 0};
    const timespec wait{0, static_cast<long>(kCoalesceReadsNs)};
    while (ppoll(&outbox, 1, &wait, nullptr) < 0 && errno == EINTR) {
    }
    return true;
  }

  void AcceptAll() {
    while (listening_ && !accept_paused_) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          OutOfDescriptors();
          return;
        }
        // EAGAIN: nothing left. EINVAL: the listener was shut down.
        if (errno == EINVAL) StopListening();
        return;
      }
      if (max_connections_ != 0 &&
          open_connections_->load(std::memory_order_relaxed) >= max_connections_) {
        // Read what the client sent first: closing with unread bytes would reset the
        // connection before it could read the GOAWAY.
        for (int i = 0; i < 4 && recv(fd, read_buffer_.data(), read_buffer_.size(),
                                      MSG_DONTWAIT) > 0; ++i) {
        }
        const std::string& reply = TooManyConnectionsReply();
        (void)!send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        continue;
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      const uint64_t id = next_connection_id_->fetch_add(1, std::memory_order_relaxed);
      std::unique_ptr<GrpcConnection> connection;
      try {
        connection = std::make_unique<GrpcConnection>(fd, id, context_, outbox_, this, now_ns_);
      } catch (const std::exception&) {
        close(fd);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = id;
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) continue;  // closed by the dtor
      Entry& e = connections_[id];
      e.connection = std::move(connection);
      open_connections_->fetch_add(1, std::memory_order_relaxed);
      connection_count_.store(connections_.size(), std::memory_order_relaxed);
      Touch(id, e);  // the server preface goes out now
    }
  }

  void StopListening() {
    if (!listening_) return;
    listening_ = false;
    if (!accept_paused_) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  }

  // accept() found no descriptor left. The listener stays readable while a connection waits,
  // so retrying at once would spin: the waiting connection is accepted with the reserve
  // descriptor and closed (its client hears at once, rather than after a timeout), and this
  // thread stops watching the listener for a while.
  void OutOfDescriptors() {
    if (reserve_fd_ >= 0) {
      close(reserve_fd_);
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) close(fd);
      reserve_fd_ = OpenReserveFd();
    }
    accept_paused_ = true;
    accept_resume_ns_ = now_ns_ + kAcceptPauseNs;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  }

  void ResumeAccepting() {
    accept_paused_ = false;
    if (!listening_) return;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u64 = kListenerToken;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    if (reserve_fd_ < 0) reserve_fd_ = OpenReserveFd();
  }

  void BeginShutdown() {
    shut_down_ = true;
    StopListening();
    for (auto& kv : connections_) {
      kv.second.connection->Shutdown();
      Touch(kv.first, kv.second);
    }
    FlushTouched();
  }

  // Runs `work` on one connection; a connection whose work throws (out of memory) is closed,
  // never the thread.
  template <typename Work>
  void WithConnection(uint64_t id, Work work) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    try {
      if (!work(*it->second.connection)) {
        CloseConnection(id);
        return;
      }
    } catch (const std::exception&) {
      CloseConnection(id);
      return;
    }
    Touch(id, it->second);
  }

  // The outbox's items (drain: clearing its signal) delivered through a vector kept from the
  // last time: the outbox and this thread swap two vectors that keep their capacity (the
  // outbox otherwise regrows one from nothing for every pass: ~log2(batch) allocations and
  // moves of every item).
  void DeliverQueued(bool drain) {
    constexpr size_t kKeepCapacity = 1024;
    std::vector<Outbound> items;
    items.swap(spare_outbound_);
    if (drain) {
      outbox_->DrainInto(&items);
    } else {
      outbox_->TakeQueuedInto(&items);
    }
    Deliver(items);
    items.clear();
    if (items.capacity() <= kKeepCapacity) items.swap(spare_outbound_);
  }

  void Deliver(std::vector<Outbound>& items) {
    for (Outbound& item : items) {
      // A connection that is gone took its calls with it.
      WithConnection(item.connection_id, [&item](GrpcConnection& c) {
        c.Deliver(std::move(item));
        return true;
      });
    }
  }

  void OnConnectionEvent(uint64_t id, uint32_t events) {
    WithConnection(id, [&](GrpcConnection& c) {
      // EPOLLOUT needs nothing here: the connection is touched and flushed below.
      return !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
             c.OnReadable(read_buffer_.data(), read_buffer_.size(), now_ns_);
    });
  }

  void ExpireDeadlines() {
    const uint64_t now = now_ns_;
    while (!deadlines_.empty() && deadlines_.top().at <= now) {
      const Deadline d = deadlines_.top();
      deadlines_.pop();
      WithConnection(d.connection_id, [&d, now](GrpcConnection& c) {
        if (d.stream_id == 0) return c.OnTimer(d.at, now);  // the connection's own timer
        c.OnDeadline(d.stream_id);
        return true;
      });
    }
  }

  // Calls that finished before their deadline leave their entry behind; keep the heap in
  // proportion to the calls that still have one.
  void CompactDeadlines() {
    std::vector<Deadline> live;
    while (!deadlines_.empty()) {
      const Deadline d = deadlines_.top();
      deadlines_.pop();
      auto it = connections_.find(d.connection_id);
      if (it == connections_.end()) continue;
      const GrpcConnection& c = *it->second.connection;
      if (d.stream_id == 0 ? c.timer_at() == d.at : c.has_call(d.stream_id)) live.push_back(d);
    }
    for (const Deadline& d : live) deadlines_.push(d);
    compact_deadlines_at_ = std::max<size_t>(kCompactDeadlinesAt, 2 * deadlines_.size());
  }

  int NextTimeoutMs() const {
    if (deadlines_.empty() && !accept_paused_) return -1;
    uint64_t at = deadlines_.empty() ? kNever : deadlines_.top().at;
    if (accept_paused_) at = std::min(at, accept_resume_ns_);
    // A distant timer (keepalive, age) can do with the wakeup's time; a near one reads the clock.
    const uint64_t now = at > now_ns_ + kStaleClockOkNs ? now_ns_ : NowNs();
    if (at <= now) return 0;
    const uint64_t ms = (at - now + 999999) / 1000000;
    return ms > INT_MAX / 2 ? INT_MAX / 2 : static_cast<int>(ms);
  }

  void Touch(uint64_t id, Entry& e) {
    if (e.touched) return;
    e.touched = true;
    touched_.push_back(id);
  }

  // Writes what each touched connection has, closes the finished ones, and watches for
  // writability only while output is blocked.
  void FlushTouched() {
    for (size_t i = 0; i < touched_.size(); ++i) {
      const uint64_t id = touched_[i];
      auto it = connections_.find(id);
      if (it == connections_.end()) continue;
      Entry& e = it->second;
      e.touched = false;
      GrpcConnection& c = *e.connection;
      bool open = false;
      try {
        open = c.Flush() && !c.finished();
      } catch (const std::exception&) {
      }
      if (!open) {
        CloseConnection(id);
        continue;
      }
      const bool want = c.wants_write();
      if (want != e.watching_write) {
        epoll_event ev{};
        ev.events = static_cast<uint32_t>(EPOLLIN) | (want ? static_cast<uint32_t>(EPOLLOUT) : 0u);
        ev.data.u64 = id;
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd(), &ev);
        e.watching_write = want;
      }
    }
    touched_.clear();
  }

  void CloseConnection(uint64_t id) {
    // The destructor closes the socket (and leaves epoll with it).
    if (connections_.erase(id) != 0) open_connections_->fetch_sub(1, std::memory_order_relaxed);
    connection_count_.store(connections_.size(), std::memory_order_relaxed);
  }

  TransportContext* const context_;
  const int listen_fd_;
  std::atomic<uint64_t>* const next_connection_id_;
  std::atomic<size_t>* const open_connections_;  // over all threads
  const size_t max_connections_;
  int epoll_fd_ = -1;
  const std::shared_ptr<Outbox> outbox_;
  std::vector<Outbound> spare_outbound_;  // empty; its capacity serves the next DeliverQueued
  std::thread thread_;
  std::atomic<int> command_{kRun};
  uint64_t now_ns_ = NowNs();  // steady clock, read after each epoll_wait
  bool listening_ = true;
  bool shut_down_ = false;
  std::unordered_map<uint64_t, Entry> connections_;
  std::atomic<size_t> connection_count_{0};
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<Deadline>> deadlines_;
  size_t compact_deadlines_at_ = kCompactDeadlinesAt;
  std::vector<uint8_t> read_buffer_;
  std::vector<uint64_t> touched_;
  int reserve_fd_ = -1;  // given up for one accept() when descriptors run out
  bool accept_paused_ = false;
  uint64_t accept_resume_ns_ = 0;
  // Which ready batches run on this thread instead of waking the models' workers: all on a CPU
  // budget below two, those of models whose batches are short from two (util/spin_wait.h).
  const InlineBatches inline_ = InlineBatchesMode();
  bool behind_running_batch_ = false;  // the last pass's requests wait behind a running batch
};

namespace {

std::atomic<uint64_t> g_next_connection_id{kFirstConnectionId};

}  // namespace

GrpcServer::GrpcServer(GrpcServerOptions options) : options_(std::move(options)) {
  context_.options = options_.transport;
  const std::string where = options_.host + ":" + std::to_string(options_.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(options_.port);
  const int rc = getaddrinfo(options_.host.empty() ? nullptr : options_.host.c_str(),
                             service.c_str(), &hints, &found);
  if (rc != 0) {
    throw Error(StatusCode::kUnavailable,
                "cannot resolve gRPC address " + where + ": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, freeaddrinfo);
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          a->ai_protocol);
    if (fd < 0) {
      error = Errno();
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, options_.listen_backlog) != 0) {
      error = Errno();
      close(fd);
      continue;
    }
    listen_fd_ = fd;
    break;
  }
  if (listen_fd_ < 0) {
    throw Error(StatusCode::kUnavailable, "cannot bind gRPC server to " + where + ": " + error);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = bound.ss_family == AF_INET6
              ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
              : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

GrpcServer::~GrpcServer() { Stop(); }

void GrpcServer::Start() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (started_ || stopped_) return;
  started_ = true;
  const int n = options_.io_threads < 1 ? 1 : options_.io_threads;
  for (int i = 0; i < n; ++i) {
    threads_.push_back(std::make_unique<IoThread>(&context_, listen_fd_, &g_next_connection_id,
                                                  &open_connections_, options_.max_connections));
  }
  for (size_t i = 0; i < threads_.size(); ++i) threads_[i]->Start(static_cast<int>(i));
}

void GrpcServer::Shutdown() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (stopped_) return;
  for (auto& t : threads_) t->RequestShutdown();
  // Refuse new connections right away (accept() then fails with EINVAL).
  ::shutdown(listen_fd_, SHUT_RDWR);
}

void GrpcServer::Stop() {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  if (stopped_) return;
  stopped_ = true;
  for (auto& t : threads_) t->RequestStop();
  threads_.clear();  // joins
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
}

size_t GrpcServer::connection_count() const {
  std::lock_guard<std::mutex> lock(lifecycle_mu_);
  size_t n = 0;
  for (const auto& t : threads_) n += t->connection_count();
  return n;
}

}  // namespace grpc
}  // namespace tritonlite
