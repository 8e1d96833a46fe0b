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
    if constexpr (std::is_same_v<Clock, clock>) {
      if (abs >= std::chrono::time_point<Clock, Duration>::max()) return never();
      return {std::chrono::time_point_cast<clock::duration>(abs)};
    } else {
      // Another clock: wait for the time remaining on that clock, as std::condition_variable
      // does. If that clock is adjusted meanwhile the wait is not re-timed.
      return after(abs - Clock::now());
    }
  }
};

}  // namespace pagewait::detail
