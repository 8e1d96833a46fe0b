// pagewait/detail/deadline.hpp — every conversion of a user's timeout happens here.
//
// The core and the parkers see only `deadline`: "never" or an absolute steady_clock instant.
// A user's duration or time point on any clock is turned into one once, at the API boundary.
#pragma once

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <type_traits>

namespace pagewait::detail {

// Floating-point timeouts (the rule is documented in pagewait.hpp, "Timeouts"): NaN throws
// std::invalid_argument; +infinity, like any timeout beyond the horizon below, is "never";
// -infinity, like any time already past, is "now". Every range decision is taken on the value
// in long double seconds, and a value reaches std::chrono::ceil (a conversion to the clock's
// integer ticks) only once it is known to be finite and well inside the clock's range: there
// is no float-to-integer conversion of a NaN, an infinity or an out-of-range value.
struct deadline {
  using clock = std::chrono::steady_clock;
  clock::time_point at{clock::time_point::max()};

  static constexpr deadline never() noexcept { return {}; }
  constexpr bool is_never() const noexcept { return at == clock::time_point::max(); }

  // Throws std::invalid_argument if `t` is NaN; otherwise does nothing. It reads no clock and
  // touches nothing: the timed operations call it before their fast path, so that an invalid
  // timeout never gets as far as the word. No code at all for an integer representation.
  template <class Rep, class Period>
  static void check(const std::chrono::duration<Rep, Period>& t) {
    if constexpr (!std::is_integral_v<Rep>) (void)checked_seconds(t);
  }
  template <class Clock, class Duration>
  static void check(const std::chrono::time_point<Clock, Duration>& t) {
    check(t.time_since_epoch());
  }

  template <class Rep, class Period>
  static deadline after(const std::chrono::duration<Rep, Period>& rel) {
    const long double s = checked_seconds(rel);
    const auto now = clock::now();
    // Saturate instead of overflowing: a huge timeout (+infinity included) means "never".
    if (s >= seconds_of(clock::time_point::max() - now) / 2) return never();
    if (s <= 0) return {now};  // -infinity included
    // Finite and below half the clock's remaining range: the conversion cannot overflow.
    return {now + std::chrono::ceil<clock::duration>(rel)};
  }

  template <class Clock, class Duration>
  static deadline until(const std::chrono::time_point<Clock, Duration>& abs) {
    // Compared in long double seconds first: a time point in a coarse unit (seconds, hours) can
    // be far beyond what steady_clock's nanoseconds hold, and converting it would overflow into
    // the past (a wait meant to be unbounded would give up at once).
    const long double horizon = seconds_of(clock::duration::max()) / 2;  // as after(): "never"
    const long double at = checked_seconds(abs.time_since_epoch());
    if constexpr (std::is_same_v<Clock, clock>) {
      if (at >= horizon) return never();          // +infinity included
      if (at <= 0) return {clock::time_point{}};  // steady_clock's epoch: long past (-infinity too)
      return {std::chrono::ceil<clock::duration>(abs)};
    } else {
      // Another clock: wait for the time remaining on that clock, as std::condition_variable
      // does. If that clock is adjusted meanwhile the wait is not re-timed. `at` is not NaN and
      // the clock's now is finite, so `left` is not NaN either (±infinity stays ±infinity).
      const long double left = at - seconds_of(Clock::now().time_since_epoch());
      if (left >= horizon) return never();
      return after(std::chrono::duration<long double>(left));
    }
  }

  template <class Rep, class Period>
  static long double seconds_of(const std::chrono::duration<Rep, Period>& d) noexcept {
    return std::chrono::duration<long double>(d).count();
  }

 private:
  // `d` in seconds; throws if it is NaN. (Scaling by Period may overflow a finite value to an
  // infinity, which then saturates as it should; it never makes a NaN.)
  template <class Rep, class Period>
  static long double checked_seconds(const std::chrono::duration<Rep, Period>& d) {
    const long double s = seconds_of(d);
    if (std::isnan(s)) [[unlikely]]
      throw_nan();
    return s;
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void throw_nan() {
    throw std::invalid_argument(
        "pagewait: timeout is NaN (a NaN duration or time point); pass +infinity to wait without limit");
  }
};

}  // namespace pagewait::detail
