// tests/stall_policy.hpp — the native runtime with one change: while `armed`, every node visit
// of a release walk (made under the bucket lock) stalls until `killed` is set or `stall_ms` pass.
// It has its own wait table, so only cores instantiated with it are affected. Used to hold a
// release in the middle of its walk while another thread frees the object (lifetime tests).
#pragma once

#include <atomic>
#include <chrono>
#include <pagewait/pagewait.hpp>
#include <thread>

namespace pwtest {

struct stall_policy : pagewait::detail::native_policy {
  static pagewait::detail::wait_table<stall_policy>& table() noexcept {
    static auto* t = new pagewait::detail::wait_table<stall_policy>(256);
    return *t;
  }
  static inline std::atomic<bool> armed{false};
  static inline std::atomic<bool> killed{false};
  static inline std::atomic<int> stalls{0};
  static inline std::atomic<int> stall_ms{50};
  static void visit(const void*) noexcept {
    if (!armed.load()) return;
    stalls.fetch_add(1);
    const auto until = now() + std::chrono::milliseconds(stall_ms.load());
    while (!killed.load() && now() < until) std::this_thread::yield();
  }
};

}  // namespace pwtest
