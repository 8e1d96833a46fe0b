// pagewait/bit_lock.hpp — a (word, bit) pair as a standard TimedLockable, for
// std::unique_lock, std::scoped_lock, std::lock_guard and std::lock.
//
//   std::atomic<std::uint32_t> state{0};
//   pagewait::bit_lock<std::uint32_t> io(state, 1u << 3);
//   { std::scoped_lock g(io); ... }
//
// A bit_lock is a view: it does not own the word, costs two words, and is freely copyable.
#pragma once

#include <atomic>
#include <chrono>
#include <type_traits>

#include "pagewait/pagewait.hpp"

namespace pagewait {

template <word_type W>
class bit_lock {
 public:
  // Throws std::invalid_argument for a bad bit (see pagewait.hpp).
  bit_lock(std::atomic<W>& word, std::type_identity_t<W> bit) : word_(&word), bit_(bit) {
    detail::check_bit(bit);
  }

  // Under ThreadSanitizer these are annotated as lock_bit, try_lock_bit and unlock_bit are (see
  // pagewait.hpp, "ThreadSanitizer"): a bit_lock is not a TSan mutex, since other bits of its
  // word may be held by other threads at the same time (detail/tsan.hpp says why).
  void lock() {
    detail::tsan::acquiring t(word_);
    if constexpr (checked_build)
      detail::checked::lock(*word_, bit_, detail::checked::lock_how::block, detail::deadline::never(),
                            nullptr);
    else
      detail::shipped<W>::lock(*word_, bit_);
    t.locked(true);
  }
  bool try_lock() noexcept {
    detail::tsan::acquiring t(word_);
    if constexpr (checked_build)
      return t.locked(detail::checked::lock(*word_, bit_, detail::checked::lock_how::try_once,
                                            detail::deadline::never(), nullptr));
    return t.locked(detail::shipped<W>::try_lock(*word_, bit_));
  }
  // noexcept, as the standard's Lockable requirements ask (it runs in unique_lock's and
  // scoped_lock's destructors). Unlocking a bit that is not set is a broken invariant: a clear
  // message naming the word and the bit, then abort (unlock_bit throws usage_error instead).
  void unlock() noexcept {
    try {
      detail::tsan::releasing t(word_);
      if constexpr (checked_build)
        detail::checked::release(*word_, bit_, false);
      else
        detail::shipped<W>::release(*word_, bit_, detail::release_kind::unlock);
    } catch (...) {
      detail::fatal_not_set("bit_lock::unlock", word_, bit_);
    }
  }

  // Timeouts as in pagewait.hpp: NaN throws std::invalid_argument (the word untouched),
  // +infinity waits without limit, -infinity tries once.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& rel) {
    return pagewait::try_lock_bit_for(*word_, bit_, rel);
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& abs) {
    return pagewait::try_lock_bit_until(*word_, bit_, abs);
  }

  std::atomic<W>& word() const noexcept { return *word_; }
  W bit() const noexcept { return bit_; }

 private:
  std::atomic<W>* word_;
  W bit_;
};

}  // namespace pagewait
