// src/futex.cpp — sleeping and waking (detail/futex.hpp): the futex system calls. (The spin
// before queueing also yields the CPU: native_policy::yield_cpu.)
#include "pagewait/detail/futex.hpp"

#include <cerrno>
#include <climits>
#include <ctime>
#include <new>

#if PAGEWAIT_HAVE_FUTEX
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace pagewait::detail {

#if PAGEWAIT_HAVE_FUTEX

namespace {
long futex(std::atomic<std::uint32_t>* addr, int op, std::uint32_t val, const timespec* ts,
           std::uint32_t mask) noexcept {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), op, val, ts, nullptr, mask);
}
}  // namespace

namespace {
bool futex_wait(std::atomic<std::uint32_t>* value, bool shared, std::uint32_t expected,
                const deadline& dl) noexcept {
  if (dl.is_never()) {
    futex(value, shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE, expected, nullptr, 0);
    return true;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, which is steady_clock on Linux:
  // no conversion, and no drift across spurious wake-ups.
  const auto since_epoch = dl.at.time_since_epoch();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(secs.count());
  ts.tv_nsec =
      static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
  const long r = futex(value, shared ? FUTEX_WAIT_BITSET : FUTEX_WAIT_BITSET_PRIVATE, expected, &ts,
                       FUTEX_BITSET_MATCH_ANY);
  return !(r == -1 && errno == ETIMEDOUT);
}
}  // namespace

bool sleep_word::wait(std::uint32_t expected, const deadline& dl) noexcept {
  return futex_wait(&value, false, expected, dl);
}
bool sleep_word::wait_shared(std::uint32_t expected, const deadline& dl) noexcept {
  return futex_wait(&value, true, expected, dl);
}
void sleep_word::wake_one_shared() noexcept { futex(&value, FUTEX_WAKE, 1, nullptr, 0); }

void sleep_word::wake_one() noexcept { futex(&value, FUTEX_WAKE_PRIVATE, 1, nullptr, 0); }
void sleep_word::wake_all() noexcept { futex(&value, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, 0); }

#else

bool sleep_word::wait(std::uint32_t expected, const deadline& dl) noexcept {
  std::unique_lock<std::mutex> g(m);
  if (value.load(std::memory_order_relaxed) != expected) return true;
  if (dl.is_never()) {
    cv.wait(g);
    return true;
  }
  return cv.wait_until(g, dl.at) == std::cv_status::no_timeout;
}

// The waker's store happened before this call; taking the mutex orders it against a sleeper
// that checked the value under the mutex, so the wake cannot fall between its check and wait.
void sleep_word::wake_one() noexcept {
  { std::lock_guard<std::mutex> g(m); }
  cv.notify_one();
}
void sleep_word::wake_all() noexcept {
  { std::lock_guard<std::mutex> g(m); }
  cv.notify_all();
}
// No domain exists without futexes (shm::domain refuses to be created); these only keep the
// parkers' code the same in both forms.
bool sleep_word::wait_shared(std::uint32_t expected, const deadline& dl) noexcept {
  return wait(expected, dl);
}
void sleep_word::wake_one_shared() noexcept { wake_one(); }

#endif

void sleep_word::reset_after_fork() noexcept {
  value.store(0, std::memory_order_relaxed);
#if !PAGEWAIT_HAVE_FUTEX
  new (&m) std::mutex;  // the old one may be locked by a thread the child does not have
  new (&cv) std::condition_variable;
#endif
}

}  // namespace pagewait::detail
