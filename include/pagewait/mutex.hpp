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
// thread that locks it twice deadlocks, as with std::mutex. A checked build
// (pagewait/checked.hpp) reports both, and destroying it while threads wait on it. Like any pagewait word it
// may be destroyed the instant another thread's unlock makes it free (release is the last touch). Memory
// ordering: as lock_bit/unlock_bit (pagewait.hpp): a successful lock or try_lock acquires, unlock releases; a
// failed try_lock or a timed-out try_lock_for orders nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "pagewait/pagewait.hpp"

namespace pagewait {

class mutex {
 public:
#if PAGEWAIT_TSAN_ANNOTATE
  // Under ThreadSanitizer it is a TSan mutex (pagewait.hpp, "ThreadSanitizer"). One that is not
  // constant-initialized is created and destroyed for TSan, so that destroying it while locked is
  // reported; a global one is not (its destructor does nothing, and threads may still lock it as
  // the program exits).
  constexpr mutex() noexcept {
    if (!std::is_constant_evaluated()) detail::tsan::mutex_create(&word_);
  }
  constexpr ~mutex() {
    if (!std::is_constant_evaluated()) detail::tsan::mutex_destroy(&word_);
  }
#else
  constexpr mutex() noexcept = default;
  ~mutex() = default;
#endif
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  void lock() {
    detail::tsan::mutex_locking t(&word_, false);
    if constexpr (checked_build)
      detail::checked::lock(word_, locked_bit, detail::checked::lock_how::block, detail::deadline::never(),
                            nullptr);
    else
      core::lock(word_, locked_bit);
    t.done(true);
  }
  bool try_lock() noexcept {
    detail::tsan::mutex_locking t(&word_, true);
    if constexpr (checked_build)
      return t.done(detail::checked::lock(word_, locked_bit, detail::checked::lock_how::try_once,
                                          detail::deadline::never(), nullptr));
    return t.done(core::try_lock(word_, locked_bit));
  }
  void unlock() noexcept {
    try {
      detail::tsan::mutex_unlocking t(&word_);
      if constexpr (checked_build)
        detail::checked::release(word_, locked_bit, false);
      else
        core::release(word_, locked_bit, detail::release_kind::unlock);
    } catch (...) {
      detail::fatal_not_set("pagewait::mutex::unlock", &word_, locked_bit);
    }
  }

  // Timeouts as in pagewait.hpp ("Timeouts"): NaN throws std::invalid_argument, +infinity
  // waits without limit, now or earlier tries once.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) {
    detail::deadline::check(rel);  // a NaN throws before the word is touched
    detail::tsan::mutex_locking t(&word_, true);
    if constexpr (checked_build)
      return t.done(detail::checked::lock(word_, locked_bit, detail::checked::lock_how::block,
                                          detail::deadline::after(rel), nullptr));
    return t.done(detail::lock_for(word_, locked_bit, rel));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs) {
    detail::deadline::check(abs);
    detail::tsan::mutex_locking t(&word_, true);
    if constexpr (checked_build)
      return t.done(detail::checked::lock(word_, locked_bit, detail::checked::lock_how::block,
                                          detail::deadline::until(abs), nullptr));
    return t.done(detail::lock_until(word_, locked_bit, abs));
  }

 private:
  using core = detail::shipped<std::uint32_t>;
  static constexpr std::uint32_t locked_bit = 1u;
  std::atomic<std::uint32_t> word_{0};
};

static_assert(sizeof(mutex) == 4);

}  // namespace pagewait
