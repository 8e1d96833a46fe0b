// tools/numeric_option.hpp — the numeric options of the `pagewait` commands: one rule for all.
//
//   tool::real_in(app.add_option("--seconds", o.seconds, "..."), 0.05, 3600.0);
//   tool::whole_in(app.add_option("--runs", o.runs, "..."), std::uint64_t{1});
//
// A value is accepted only if it is a plain decimal number (digits, for a whole number; digits,
// a point and an exponent, for a real one) inside the option's range. Anything else — NaN,
// infinities, a sign where the range has none, a fraction for a count, hex, trailing text, an
// overflow — is refused with a message that names the option and the range, e.g.
//   --runs: got '-5', expected a whole number, 1 or more
// which the commands print and exit 2 with. The value is handed on to CLI11 rewritten in
// canonical form, so that CLI11's own conversion (strtoull with base 0 reads "010" as 8) never
// reads it differently from the check.
//
// Header-only: checker/standalone compiles checker/check_command.cpp with tools/ on its include
// path but none of tools/*.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <system_error>
#include <type_traits>

namespace pagewait::tool {

namespace detail {

// The shortest decimal form that reads back as v: 0.05, 100 (not 0.050000000000000003, 1e+02).
inline std::string format_real(double v) {
  char b[64];
  const auto [end, ec] = std::to_chars(b, b + sizeof b, v);
  return ec == std::errc() ? std::string(b, end) : std::string("?");
}

}  // namespace detail

// The option takes a whole number in [lo, hi] (both inclusive), in decimal digits (a leading '-'
// only if lo < 0). Returns the option.
template <class T>
CLI::Option* whole_in(CLI::Option* opt, T lo, T hi = std::numeric_limits<T>::max()) {
  static_assert(std::is_integral_v<T>);
  const bool open = hi == std::numeric_limits<T>::max();
  const std::string expected =
      open ? "a whole number, " + std::to_string(lo) + " or more"
           : "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi);
  opt->type_name(open ? "INT >= " + std::to_string(lo)
                      : "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return opt->transform(CLI::Validator(
      [lo, hi, expected](std::string& s) -> std::string {
        const std::string got = "got '" + s + "', expected " + expected;
        const char* b = s.data();
        const char* e = s.data() + s.size();
        if (b == e) return got;
        // from_chars takes no '+', and takes '-' for signed types only: check the characters
        // here so that the message never depends on the type's signedness.
        for (const char* p = b; p != e; ++p)
          if (!(*p >= '0' && *p <= '9') && !(p == b && *p == '-' && e - b > 1)) return got;
        if (*b == '-' && lo >= 0) return got;
        T v{};
        const auto [end, ec] = std::from_chars(b, e, v, 10);
        if (ec != std::errc() || end != e || v < lo || v > hi) return got;
        s = std::to_string(v);
        return {};
      },
      ""));
}

// The option takes a finite real number in [lo, hi] (both inclusive), in decimal: "4", "0.5",
// "2e-1". Returns the option.
inline CLI::Option* real_in(CLI::Option* opt, double lo, double hi) {
  const std::string expected = "a number from " + detail::format_real(lo) + " to " + detail::format_real(hi);
  opt->type_name("NUMBER in [" + detail::format_real(lo) + ", " + detail::format_real(hi) + "]");
  return opt->transform(CLI::Validator(
      [lo, hi, expected](std::string& s) -> std::string {
        const std::string got = "got '" + s + "', expected " + expected;
        const char* b = s.data();
        const char* e = s.data() + s.size();
        if (b == e) return got;
        // Digits, one point, an exponent and signs only: no "nan", "inf", "0x1p3".
        for (const char* p = b; p != e; ++p)
          if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '-' || *p == '+'))
            return got;
        double v = 0;
        const auto [end, ec] = std::from_chars(b, e, v, std::chars_format::general);
        if (ec != std::errc() || end != e || !std::isfinite(v) || v < lo || v > hi) return got;
        s = detail::format_real(v);
        return {};
      },
      ""));
}

}  // namespace pagewait::tool
