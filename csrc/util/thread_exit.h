// AtThreadExit: work a thread must do before it ends, registered by code it ran on the way
// (e.g. a Python thread state a backend kept across calls made from this thread). A thread that
// runs other components' code — the gRPC I/O thread running batches itself on a one-CPU budget —
// calls RunThreadExitHooks() at the end of its loop, while whatever the hooks need still exists
// (the interpreter: the server is stopped with the GIL released). Hooks a thread registered and
// never ran are dropped with the thread, unrun.
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace tritonlite {

namespace detail {
inline std::vector<std::function<void()>>& ThreadExitHooks() {
  thread_local std::vector<std::function<void()>> hooks;
  return hooks;
}
}  // namespace detail

// Registers `hook` to run on this thread in RunThreadExitHooks().
inline void AtThreadExit(std::function<void()> hook) {
  detail::ThreadExitHooks().push_back(std::move(hook));
}

// Runs this thread's hooks, the last registered first, each once.
inline void RunThreadExitHooks() {
  auto& hooks = detail::ThreadExitHooks();
  while (!hooks.empty()) {
    std::function<void()> hook = std::move(hooks.back());
    hooks.pop_back();
    hook();
  }
}

}  // namespace tritonlite
