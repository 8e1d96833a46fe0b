// pagewait/detail/deadline.hpp — every conversion of a user's timeout happens here.
//
// The core and the parkers see only `deadline`: "never" or an absolute steady_clock instant.
// A user's duration or time point on any clock is turned into one once, at the API boundary.
#pragma once

#include <chrono>

namespace pagewait::detail {

struct deadline {
  using clock = std::chrono::steady_clock;
  clock::time_point at{clock::time_point::max()};

  static constexpr deadline never() noexcept { return {}; }
  constexpr bool is_never() const noexcept { return at == clock::time_point::max(); }

  template <class Rep, class Period>
  static deadline after(const std::chrono::duration<Rep, Period>& rel) {
    const auto now = clock::now();
    // Saturate instead of overflowing: a huge timeout means "never".
    if (rel >= std::chrono::duration<Rep, Period>::max() / 2 ||
        std::chrono::duration_cast<std::chrono::duration<double>>(rel) >
            std::chrono::duration<double>(clock::time_point::max() - now) / 2)
      return never();
    if (rel <= rel.zero()) return {now};
    return {now + std::chrono::ceil<clock::duration>(rel)};
  }

  template <class Clock, class Duration>
  static deadline until(const std::chrono::time_point<Clock, Duration>& abs) {
    // Compared in long double seconds first: a time point in a coarse unit (seconds, hours) can
    // be far beyond what steady_clock's nanoseconds hold, and converting it would overflow into
    // the past (a wait meant to be unbounded would give up at once).
    const long double horizon = seconds_of(clock::duration::max()) / 2;  // as after(): "never"
    if constexpr (std::is_same_v<Clock, clock>) {
      const long double at = seconds_of(abs.time_since_epoch());
      if (at >= horizon) return never();
      if (at <= 0) return {clock::time_point{}};  // steady_clock's epoch: long past
      return {std::chrono::ceil<clock::duration>(abs)};
    } else {
      // Another clock: wait for the time remaining on that clock, as std::condition_variable
      // does. If that clock is adjusted meanwhile the wait is not re-timed.
      const long double left =
          seconds_of(abs.time_since_epoch()) - seconds_of(Clock::now().time_since_epoch());
      if (left >= horizon) return never();
      return after(std::chrono::duration<long double>(left));
    }
  }

  template <class Rep, class Period>
  static long double seconds_of(const std::chrono::duration<Rep, Period>& d) noexcept {
    return std::chrono::duration<long double>(d).count();
  }
};

}  // namespace pagewait::detail
