// pagewait/bits.hpp — the word, its reserved waiters bit, and argument checking.
//
// A *word* is a std::atomic<W>, W = std::uint32_t or std::uint64_t, owned by the user.
// pagewait reserves exactly one bit of it, the most significant one, as the waiters bit.
// The word's states, for one user bit B:
//
//   B  waiters | meaning
//   -----------+------------------------------------------------------------------------
//   0  0       | B is free; nobody waits on this word. Locking is one RMW.
//   1  0       | B is held (lock) or in progress (event); nobody waits. Release is one RMW.
//   1  1       | B is held and somebody may wait on this word (on B or on another bit):
//              | the release goes to the wait table and clears B under the bucket lock.
//   0  1       | B is free; a waiter for another bit of the word may be queued, or the
//              | waiters bit is stale (a timed-out waiter, a hash neighbour): the next
//              | slow release on this word clears it.
//
// The invariant that makes the table optional: while any waiter for a word is queued in the
// wait table, the word's waiters bit is set. It is set only by a waiter holding its bucket lock,
// and cleared only by a releaser holding the same bucket lock that has seen no waiter for the
// word remain (detail/core.hpp).
#pragma once

#include <atomic>
#include <bit>
#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace pagewait {

// The word types pagewait accepts.
template <class W>
concept word_type = std::same_as<W, std::uint32_t> || std::same_as<W, std::uint64_t>;

// The reserved bit: the most significant bit, so that "were there waiters" is the sign of
// the value one atomic instruction returns.
template <word_type W>
inline constexpr W waiters_bit = W(1) << (sizeof(W) * 8 - 1);

// Thrown when a release finds its bit not set (releasing what is not held). It is a
// programming error, hence a std::logic_error. The word is left as it was.
class usage_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {

[[noreturn]] void throw_bad_bit(std::uint64_t bit, std::uint64_t waiters);
[[noreturn]] void throw_not_set(std::uint64_t bit);
// For the Lockable unlocks, which may not throw: prints "pagewait: fatal: <who> of bit <bit> of
// the word at <address>, which is not set (not locked, or unlocked twice)" and aborts.
[[noreturn]] void fatal_not_set(const char* who, const void* word, std::uint64_t bit) noexcept;

// A bit argument has exactly one bit set and is not the waiters bit. Checked before the word
// is touched, so bad input never changes it. No memory access: a few ALU instructions
// (written without std::has_single_bit, which is a library call without -mpopcnt).
template <word_type W>
inline void check_bit(W bit) {
  if (bit == 0 || (bit & (bit - 1)) != 0 || bit == waiters_bit<W>) [[unlikely]]
    throw_bad_bit(bit, waiters_bit<W>);
}

}  // namespace detail
}  // namespace pagewait
