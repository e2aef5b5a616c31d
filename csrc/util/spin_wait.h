// Bounded spinning before blocking. Waking a sleeping thread costs tens of microseconds on a
// virtual machine (measured: ~70 us for a condition-variable round trip on the 2-core dev VM,
// ~1.3 us when the other side spins), so a thread that expects work soon polls for a short while
// before it sleeps. The spin is bounded so an idle server burns no CPU.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>

namespace tritonlite {

constexpr uint64_t kSpinBeforeBlockNs = 50'000;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls `ready()` for up to `budget_ns`; true as soon as it holds.
template <typename Pred>
bool SpinUntil(Pred ready, uint64_t budget_ns = kSpinBeforeBlockNs) {
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
