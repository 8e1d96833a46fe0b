// pagewait/detail/futex.hpp — the only place that makes a sleeping or waking system call.
//
// On Linux: private futexes, absolute CLOCK_MONOTONIC deadlines (steady_clock is
// CLOCK_MONOTONIC there). Elsewhere, or with PAGEWAIT_PORTABLE_PARKING defined, a mutex and a
// condition variable per parking word: std::atomic::wait would do for untimed waits but has no
// timed form, and every wait here may carry a deadline.
#pragma once

#include <atomic>
#include <cstdint>

#include "pagewait/detail/deadline.hpp"

#if defined(__linux__) && !defined(PAGEWAIT_PORTABLE_PARKING)
#define PAGEWAIT_HAVE_FUTEX 1
#else
#define PAGEWAIT_HAVE_FUTEX 0
#include <condition_variable>
#include <mutex>
#endif

namespace pagewait::detail {

// A 32-bit word a thread can sleep on until it changes.
struct sleep_word {
  std::atomic<std::uint32_t> value{0};
#if !PAGEWAIT_HAVE_FUTEX
  std::mutex m;
  std::condition_variable cv;
#endif

  // Sleeps while value == expected, until woken or the deadline. May return spuriously:
  // callers re-check their condition. Returns false only if the deadline had passed.
  bool wait(std::uint32_t expected, const deadline& dl) noexcept;
  // Wakes one sleeper (or all, for the bucket lock's use it is always at most one that matters).
  void wake_one() noexcept;
  void wake_all() noexcept;
  // The same on a word in memory shared between processes (a wait domain, pagewait/shm.hpp):
  // the kernel keys these futexes by the page and offset, not by this process's address, so
  // the sleeper and the waker may map the word at different addresses. Linux only: a domain
  // cannot be created without futexes (PAGEWAIT_HAVE_FUTEX).
  bool wait_shared(std::uint32_t expected, const deadline& dl) noexcept;
  void wake_one_shared() noexcept;
  // In a child after fork(), single-threaded: back to the initial state (value 0, and the
  // portable form's mutex, which a thread of the parent may have held, made anew).
  void reset_after_fork() noexcept;
};

}  // namespace pagewait::detail
