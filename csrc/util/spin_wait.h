// Bounded spinning before blocking, where the machine can afford it. Waking a sleeping thread
// costs tens of microseconds on a virtual machine (measured: ~70 us for a condition-variable
// round trip on the 2-core dev VM, ~1.3 us when the other side spins), so a thread that expects
// work soon polls for a short while before it sleeps. The spin is bounded so an idle server
// burns no CPU, and it happens only when the process has a CPU to spare: with a budget of one
// CPU (affinity mask or cgroup quota) the thread it waits for needs that very CPU, so spinning
// only delays it (issue #20). TRITONLITE_SPIN_US overrides the choice, TRITONLITE_CPU_BUDGET the
// budget (for every choice made from it: spinning, batches run on the gRPC I/O thread, the
// default size of onnxruntime's shared pool), TRITONLITE_INLINE_BATCHES the batches run on the
// gRPC I/O thread alone.
#pragma once

#include <sched.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace tritonlite {

// The spin when the CPU budget allows one.
constexpr uint64_t kSpinBeforeBlockNs = 50'000;
// Spinning needs a CPU besides the one the awaited thread runs on.
constexpr double kMinCpusToSpin = 2.0;
constexpr uint64_t kMaxSpinUs = 1'000'000;
constexpr const char* kSpinEnv = "TRITONLITE_SPIN_US";
constexpr const char* kCpuBudgetEnv = "TRITONLITE_CPU_BUDGET";
constexpr double kMaxCpuBudget = 65536;

// A cgroup v2 cpu.max ("$MAX $PERIOD", MAX may be "max") as CPUs; 0 when unlimited or
// unreadable.
inline double ParseCpuMax(const std::string& text) {
  std::istringstream in(text);
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  if (end == quota.c_str() || *end != '\0' || !(q > 0) || !std::isfinite(q)) return 0;
  return q / period;
}

// The CPU quota of this process's cgroup and of every cgroup above it (the smallest), in CPUs;
// 0 when none is set. cgroup v2 (cpu.max), else cgroup v1 (cpu.cfs_quota_us / cpu.cfs_period_us).
inline double CgroupQuotaCpus(const std::string& root = "/sys/fs/cgroup",
                              const std::string& self = "/proc/self/cgroup") {
  auto read = [](const std::string& path) {
    std::ifstream f(path);
    std::string s;
    std::getline(f, s, '\0');
    return s;
  };
  double best = 0;
  auto take = [&best](double cpus) {
    if (cpus > 0 && (best == 0 || cpus < best)) best = cpus;
  };
  std::string v2_path = "/";
  std::istringstream lines(read(self));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("0::", 0) == 0) v2_path = line.substr(3);
  }
  // From the process's own cgroup up to the root (inside a container the root is its own).
  for (std::string p = v2_path;;) {
    take(ParseCpuMax(read(root + (p == "/" ? "" : p) + "/cpu.max")));
    if (p.empty() || p == "/") break;
    const size_t slash = p.find_last_of('/');
    p = slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
  }
  const std::string v1 = root + "/cpu";
  const std::string quota = read(v1 + "/cpu.cfs_quota_us");
  const std::string period = read(v1 + "/cpu.cfs_period_us");
  if (!quota.empty() && !period.empty()) take(ParseCpuMax(quota + " " + period));
  return best;
}

// CPUs this process may run on (its affinity mask); 0 when unknown.
inline int AffinityCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  return CPU_COUNT(&set);
}

// What the process may use: its affinity, capped by its cgroup quota.
inline double CpuBudget() {
  double cpus = AffinityCpus();
  if (cpus <= 0) cpus = std::thread::hardware_concurrency();
  const double quota = CgroupQuotaCpus();
  return quota > 0 && quota < cpus ? quota : cpus;
}

struct BudgetSetting {
  double cpus = 0;
  std::string error;  // a TRITONLITE_CPU_BUDGET that is neither "auto" nor a number of CPUs
};

// The budget for `env` (TRITONLITE_CPU_BUDGET; null, "" or "auto": `measured`), a positive
// number of CPUs (fractions allowed, as a cgroup quota).
inline BudgetSetting ResolveCpuBudget(const char* env, double measured) {
  BudgetSetting b;
  b.cpus = measured;
  const std::string text = env == nullptr ? "" : env;
  if (text.empty() || text == "auto") return b;
  char* end = nullptr;
  const double cpus = std::strtod(text.c_str(), &end);
  const bool plain = (text[0] >= '0' && text[0] <= '9') || text[0] == '.';  // no sign, no space
  if (plain && end != text.c_str() && *end == '\0' && text.find_first_of("xXpP") == std::string::npos &&
      cpus > 0 && cpus <= kMaxCpuBudget) {
    b.cpus = cpus;
    return b;
  }
  b.error = std::string(kCpuBudgetEnv) + " must be 'auto' or a number of CPUs greater than 0 " +
            "and at most " + std::to_string(static_cast<int>(kMaxCpuBudget)) + ", got '" + text + "'";
  return b;
}

// This process's budget, decided once: TRITONLITE_CPU_BUDGET when set, else CpuBudget() (an
// invalid setting falls back to the measured budget here; the Python server refuses it).
inline const BudgetSetting& ProcessCpuBudget() {
  static const BudgetSetting setting = [] {
    return ResolveCpuBudget(std::getenv(kCpuBudgetEnv), CpuBudget());
  }();
  return setting;
}

// Below this budget the gRPC I/O thread runs a model's ready batches itself (on one CPU a
// hand-off to the instance's thread and back costs two wakeups and two context switches).
constexpr double kMinCpusForWorkerHandOff = 2.0;

constexpr const char* kInlineBatchesEnv = "TRITONLITE_INLINE_BATCHES";
constexpr const char* kInlineBatchUsEnv = "TRITONLITE_INLINE_BATCH_US";
// A per-request (python) model's batches run on the gRPC I/O thread that read their requests
// while its recent batches ran for at most this long (ModelRunner::short_batches). A small
// batch's stub round trip takes ~100-300 us on the 2-CPU dev VM (issue #20), and saves a
// hand-off to the worker and a wakeup back (~30-70 us each) there: with 250 us the estimate
// flapped around the limit at one request in flight. Short enough that the thread's other
// connections hardly notice.
constexpr uint64_t kDefaultInlineBatchNs = 500'000;
constexpr uint64_t kMaxInlineBatchUs = 10'000'000;  // 10 s: beyond any sensible setting

// Which ready batches a gRPC I/O thread runs itself instead of waking the instance's thread
// (ModelRunner::RunReady): none; the short ones of models that execute per request (python:
// the worker would only relay them to the stub process, and the hand-off and the wakeup back
// cost about as much as such a batch, issue #20); all (one CPU, where the threads would share
// the CPU anyway; a per-request model's still only while short).
enum class InlineBatches { kNone, kShort, kAll };

struct InlineSetting {
  bool on = false;  // every ready batch: mode == kAll
  InlineBatches mode = InlineBatches::kNone;
  uint64_t short_ns = kDefaultInlineBatchNs;  // a short per-request batch: at most this long
  // A TRITONLITE_INLINE_BATCHES that is not "auto", "0" or "1", or a TRITONLITE_INLINE_BATCH_US
  // that is not a whole number of microseconds up to kMaxInlineBatchUs.
  std::string error;
};

// For `env` (TRITONLITE_INLINE_BATCHES: null, "" or "auto": all below two CPUs of `cpus`, short
// per-request ones from two; "0": never; "1": all) and `us_env` (TRITONLITE_INLINE_BATCH_US:
// null, "" or "auto": kDefaultInlineBatchNs; else how many microseconds make a short batch).
inline InlineSetting ResolveInlineBatches(const char* env, double cpus,
                                          const char* us_env = nullptr) {
  InlineSetting s;
  const std::string us = us_env == nullptr ? "" : us_env;
  if (!us.empty() && us != "auto") {
    uint64_t value = 0;
    bool ok = us.size() <= 8;
    for (char c : us) ok = ok && c >= '0' && c <= '9';
    if (ok) {
      for (char c : us) value = value * 10 + static_cast<uint64_t>(c - '0');
      ok = value <= kMaxInlineBatchUs;
    }
    if (ok) {
      s.short_ns = value * 1000;
    } else {
      s.error = std::string(kInlineBatchUsEnv) +
                " must be 'auto' or a whole number of microseconds up to " +
                std::to_string(kMaxInlineBatchUs) + ", got '" + us + "'";
    }
  }
  const std::string text = env == nullptr ? "" : env;
  if (text == "0" || text == "1") {
    s.mode = text == "1" ? InlineBatches::kAll : InlineBatches::kNone;
  } else {
    if (!text.empty() && text != "auto") {
      s.error = std::string(kInlineBatchesEnv) + " must be 'auto', '0' or '1', got '" + text + "'";
    }
    s.mode = cpus < kMinCpusForWorkerHandOff ? InlineBatches::kAll : InlineBatches::kShort;
  }
  s.on = s.mode == InlineBatches::kAll;
  return s;
}

// This process's choice, made once (an invalid setting falls back to "auto" here; the Python
// server refuses it).
inline const InlineSetting& ProcessInlineBatches() {
  static const InlineSetting setting = [] {
    return ResolveInlineBatches(std::getenv(kInlineBatchesEnv), ProcessCpuBudget().cpus,
                                std::getenv(kInlineBatchUsEnv));
  }();
  return setting;
}

// Whether a thread that queued requests should run all their ready batches itself rather than
// wake the model's worker thread: by default only below two CPUs, where the two would share one
// anyway (InlineBatchesMode: which batches, at any budget).
inline bool RunBatchesInline() { return ProcessInlineBatches().on; }
inline InlineBatches InlineBatchesMode() { return ProcessInlineBatches().mode; }

struct SpinSetting {
  uint64_t ns = 0;
  std::string error;  // a TRITONLITE_SPIN_US that is neither "auto" nor a number of µs
};

// The spin for `env` (TRITONLITE_SPIN_US; null or "auto": decided by `cpus`) and a CPU budget.
inline SpinSetting ResolveSpin(const char* env, double cpus) {
  SpinSetting s;
  const std::string text = env == nullptr ? "" : env;
  if (!text.empty() && text != "auto") {
    char* end = nullptr;
    const unsigned long long us = std::strtoull(text.c_str(), &end, 10);
    if (text.find_first_not_of("0123456789") == std::string::npos && *end == '\0' &&
        us <= kMaxSpinUs) {
      s.ns = us * 1000;
      return s;
    }
    s.error = std::string(kSpinEnv) + " must be 'auto' or a whole number of microseconds from 0 to " +
              std::to_string(kMaxSpinUs) + ", got '" + text + "'";
  }
  s.ns = cpus >= kMinCpusToSpin ? kSpinBeforeBlockNs : 0;
  return s;
}

// This process's setting, decided once (an invalid TRITONLITE_SPIN_US falls back to "auto"
// here; the Python server refuses to start with it).
inline const SpinSetting& ProcessSpin() {
  static const SpinSetting setting = [] {
    return ResolveSpin(std::getenv(kSpinEnv), ProcessCpuBudget().cpus);
  }();
  return setting;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls `ready()` for up to `budget_ns` (by default this process's spin); true as soon as it
// holds. With a zero budget it only looks once.
template <typename Pred>
bool SpinUntil(Pred ready, uint64_t budget_ns = ProcessSpin().ns) {
  if (budget_ns == 0) return ready();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(budget_ns);
  while (true) {
    for (int i = 0; i < 16; ++i) {
      if (ready()) return true;
      CpuRelax();
    }
    // If the thread we wait for shares our CPU, let it run now rather than after our budget.
    std::this_thread::yield();
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

}  // namespace tritonlite
