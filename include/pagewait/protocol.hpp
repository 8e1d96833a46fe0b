// pagewait/protocol.hpp — the four release protocols of CONTRACT §4.
//
// The library ships `atomic_clear`. The other three reproduce the kernel's history so that the
// checker, the demo and the benchmarks can run them on the same core (detail/core.hpp): they
// differ from it only in the release, in one place.
#pragma once

#include <optional>
#include <string_view>

namespace pagewait {

enum class release_protocol {
  // Clear the bit, then look at the waiters bit and wake. Touches the word after the clear:
  // Linux v5.9 end_page_writeback() before the Nov 2020 fix.
  clear_then_wake,
  // As clear_then_wake, but an extra reference (the caller's pin) is held around clear+wake so
  // the object cannot be freed in between: Hugh Dickins' fix, 073861ed77b6.
  pinned,
  // One atomic xor clears the bit and reports the waiters bit; wake if it was set; still pinned:
  // mainline today (folio_xor_flags_has_waiters).
  xor_waiters,
  // The seed: a cmpxchg clears the bit while the waiters bit is clear; otherwise the bit is
  // cleared under the bucket lock at the end of the wake walk, and a hand-off never clears it.
  atomic_clear,
};

inline constexpr release_protocol all_release_protocols[] = {
    release_protocol::clear_then_wake, release_protocol::pinned, release_protocol::xor_waiters,
    release_protocol::atomic_clear};

constexpr std::string_view to_string(release_protocol p) noexcept {
  switch (p) {
    case release_protocol::clear_then_wake: return "clear-then-wake";
    case release_protocol::pinned: return "pinned";
    case release_protocol::xor_waiters: return "xor-waiters";
    case release_protocol::atomic_clear: return "atomic-clear";
  }
  return "?";
}

constexpr std::optional<release_protocol> parse_release_protocol(std::string_view s) noexcept {
  for (auto p : all_release_protocols)
    if (to_string(p) == s) return p;
  return std::nullopt;
}

// Does the protocol take the caller's pin (an extra reference) around the release?
constexpr bool protocol_pins(release_protocol p) noexcept {
  return p == release_protocol::pinned || p == release_protocol::xor_waiters;
}

// A pin that does nothing: what atomic_clear and clear_then_wake are given.
struct no_pin {
  void get() noexcept {}
  void put() noexcept {}
};

}  // namespace pagewait
