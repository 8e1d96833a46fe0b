// pagewait/mutex.hpp — pagewait::mutex, an owning 4-byte mutex on the pagewait protocol.
//
//   pagewait::mutex m;                       // constexpr, noexcept, 4 bytes, all zero
//   { std::scoped_lock g(m); ... }
//   if (m.try_lock_for(5ms)) { ...; m.unlock(); }
//
// It meets the standard's Mutex and TimedMutex requirements (std::mutex and std::timed_mutex
// in one type): default-constructible with a constexpr noexcept constructor, neither copyable
// nor movable, lock/try_lock/unlock/try_lock_for/try_lock_until. It is one bit lock on a word
// of its own, through the same core as lock_bit (no second protocol): uncontended, lock is one
// `lock bts` and unlock one `lock cmpxchg`; a contended unlock hands the lock to a waiter that
// lost too many races or waited too long (set_fairness).
//
// Differences from std::mutex: unlock by a thread that does not hold it is not checked (as
// with std::mutex, only an unlock of an unlocked mutex is detected: message, then abort); a
// thread that locks it twice deadlocks, as with std::mutex. Like any pagewait word it may be
// destroyed the instant another thread's unlock makes it free (release is the last touch).
// Memory ordering: as lock_bit/unlock_bit (pagewait.hpp): a successful lock or try_lock
// acquires, unlock releases; a failed try_lock or a timed-out try_lock_for orders nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "pagewait/pagewait.hpp"

namespace pagewait {

class mutex {
 public:
  constexpr mutex() noexcept = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;
  ~mutex() = default;

  void lock() { core::lock(word_, locked_bit); }
  bool try_lock() noexcept { return core::try_lock(word_, locked_bit); }
  void unlock() noexcept {
    try {
      core::release(word_, locked_bit, detail::release_kind::unlock);
    } catch (...) {
      detail::fatal_not_set("pagewait::mutex::unlock", &word_, locked_bit);
    }
  }

  // Timeouts as in pagewait.hpp ("Timeouts"): NaN throws std::invalid_argument, +infinity
  // waits without limit, now or earlier tries once.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) {
    return pagewait::try_lock_bit_for(word_, locked_bit, rel);
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs) {
    return pagewait::try_lock_bit_until(word_, locked_bit, abs);
  }

 private:
  using core = detail::shipped<std::uint32_t>;
  static constexpr std::uint32_t locked_bit = 1u;
  std::atomic<std::uint32_t> word_{0};
};

static_assert(sizeof(mutex) == 4);

}  // namespace pagewait
