// src/wait_table.cpp — the native wait table and its bucket lock.
#include <thread>

#include "pagewait/detail/native_policy.hpp"
#include "pagewait/detail/wait_table.hpp"

namespace pagewait::detail {

void word_lock::lock_slow() noexcept {
  // Spin a little: the lock is held for at most chunk_visits node visits.
  for (int i = 0; i < 100; ++i) {
    std::uint32_t c = w_.value.load(std::memory_order_relaxed);
    if (c == 0 && w_.value.compare_exchange_weak(c, 1, std::memory_order_acquire, std::memory_order_relaxed))
      return;
    native_policy::cpu_relax();
  }
  // Drepper's futex mutex: mark "held with sleepers" and sleep until we take it.
  while (w_.value.exchange(2, std::memory_order_acquire) != 0) w_.wait(2, deadline::never());
}

wait_table<native_policy>& native_policy::table() noexcept {
  // Created on first contention, outside any bucket lock; never freed, so that threads still
  // running after main returns can use it.
  static auto* t = new wait_table<native_policy>(
      wait_table<native_policy>::size_for_machine(std::thread::hardware_concurrency()));
  return *t;
}

}  // namespace pagewait::detail
