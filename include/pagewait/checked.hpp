// pagewait/checked.hpp — the checked mode: pagewait reports misuse of its words.
//
// A build option for debugging programs that use pagewait: configure with
// `-DPAGEWAIT_CHECKED=ON` and the library and every program that links it (the option is a
// public compile definition, PAGEWAIT_CHECKED=1) check each operation. Off by default: the
// ordinary build is unchanged, instruction for instruction (the checks are `if constexpr`
// branches that are not compiled there, and fastpath_test checks the generated code).
//
// What it reports, each with the word's address and the bit:
//   relock               a thread locks (lock_bit, its timed and stop forms, try_lock_bit,
//                        bit_lock, mutex) a bit it already holds: the blocking forms would wait
//                        for themselves forever; or waits with wait_bit_clear (the untimed form)
//                        for a bit it holds. (A bounded wait for it just returns false.)
//   unlock_not_owner     unlock_bit (or bit_lock/mutex unlock, or clear_bit_and_wake of a bit
//                        held as a lock) by a thread that does not hold the bit: another thread
//                        holds it, or it was never locked through pagewait (set by hand).
//                        A lock that one thread takes and another releases, as a page lock
//                        taken by an I/O's submitter and released by its completion, is handed
//                        over with disown_bit() first.
//   concurrent_release   two threads releasing the same set bit at once (unlock_bit or
//                        clear_bit_and_wake). Unchecked, both can return normally, and the later
//                        one can clear an event that a third thread started after the first clear.
//   bit_cleared_by_hand  waiters are queued on a bit that is clear, or on a word whose waiters
//                        bit is clear while its bit is set: the bit (or the waiters bit) was
//                        changed without pagewait. Unchecked, those waiters are never woken.
//   word_overwritten     waiters are queued on a word whose bit and waiters bit are both clear:
//                        the object was freed and its memory reused, or the word was assigned.
//   word_freed           waiters are queued on a word whose memory is unmapped, or (in an
//                        AddressSanitizer build) freed. Unchecked, an untimed wait hangs forever.
//
// When: the owner and release checks at each call; the queue checks at each call on the word,
// and, for a waiter that nobody else disturbs, by the waiter itself every poll interval (see
// set_checked_poll) while it is queued.
//
// Costs (checked builds only): each call takes a lock of a side table (the owners of held lock
// bits and the releases in progress, sharded by address) and its bucket's lock to look at the
// word's queue, which it walks whole (the bound on a hold's visits, CONTRACT §3.7, does not hold
// in a checked build); every release takes the slow path; a queued waiter wakes every poll
// interval. The side table allocates: a program whose operator new or delete itself uses
// pagewait locks cannot use the checked mode (it could deadlock on the table). If memory runs
// out while recording, the check is skipped rather than the operation failing.
//
// How a report ends: the handler (set_violation_handler) is called in the thread that found
// the violation, outside every lock of the library. The default prints one line to stderr
// ("pagewait checked: ...") and aborts. A handler may return instead: the operation then goes
// on as in an unchecked build (a relock of a blocking lock then waits forever; an unlock by a
// non-owner unlocks). A handler must not throw (it may be called from noexcept unlocks and
// from inside a wait) and may use pagewait only on other words.
//
// All translation units of a program must agree: a program compiled with PAGEWAIT_CHECKED=1
// against a library built without it fails to link (the checked hooks are missing), with the
// missing symbols named pagewait::detail::checked::...
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <type_traits>

#include "pagewait/bits.hpp"
#include "pagewait/detail/deadline.hpp"

#ifndef PAGEWAIT_CHECKED
#define PAGEWAIT_CHECKED 0
#endif

namespace pagewait {

// Whether this translation unit is compiled in checked mode.
inline constexpr bool checked_build = PAGEWAIT_CHECKED != 0;

enum class violation_kind {
  relock,
  unlock_not_owner,
  concurrent_release,
  bit_cleared_by_hand,
  word_overwritten,
  word_freed,
};

const char* to_string(violation_kind k) noexcept;

struct violation {
  violation_kind kind;
  const void* word;      // the word's address (the object may be gone: an address only)
  std::uint64_t bit;     // the bit concerned
  std::uint64_t thread;  // the reporting thread (a small id, unique in the process, 1, 2, ...)
  std::uint64_t other;   // the holder (relock, unlock_not_owner) or the other releaser
                         // (concurrent_release); 0 if none
  std::size_t waiters;   // the waiters found queued on the bit (the queue kinds); else 0
  const char* message;   // the whole report, one line; valid during the handler call only
};

using violation_handler = void (*)(const violation&) noexcept;

// Installs h (nullptr: the default, print and abort) and returns the previous handler. Takes
// effect for reports that start after it returns. Available in every build; an unchecked build
// never calls it.
violation_handler set_violation_handler(violation_handler h) noexcept;

// How often a queued waiter checks its own word (checked builds). Default 100 ms. Throws
// std::invalid_argument unless 1 ms <= interval <= 1 hour.
void set_checked_poll(std::chrono::milliseconds interval);
std::chrono::milliseconds get_checked_poll() noexcept;

// The calling thread's id as violation::thread reports it.
std::uint64_t checked_thread_id() noexcept;

// Gives up this thread's ownership of a held lock bit, so that another thread may unlock it
// (checked builds; elsewhere it only checks `bit`). The bit stays set. A bit this thread does
// not hold is reported as unlock_not_owner. Throws std::invalid_argument for a bad bit.
template <word_type W>
void disown_bit(std::atomic<W>& word, std::type_identity_t<W> bit);

namespace detail::checked {
// The hooks the public operations call in checked builds (src/checked.cpp; defined only in a
// checked library). Each is a whole operation: the checks around the shipped core's.
enum class lock_how { try_once, block };
template <word_type W>
bool lock(std::atomic<W>& word, W bit, lock_how how, const deadline& dl, const std::stop_token* stop);
template <word_type W>
void release(std::atomic<W>& word, W bit, bool event);
template <word_type W>
void before_wait(std::atomic<W>& word, W bit, bool unbounded);
template <word_type W>
void disown(std::atomic<W>& word, W bit);
// An asynchronous lock (pagewait/async.hpp) took the bit: its owner is the waiter, not a thread
// (the callback runs on the releasing thread, a coroutine resumes on its loop), so the bit is
// recorded as disowned: any thread may unlock it.
template <word_type W>
void acquired_async(std::atomic<W>& word, W bit) noexcept;
}  // namespace detail::checked

template <word_type W>
void disown_bit(std::atomic<W>& word, std::type_identity_t<W> bit) {
  detail::check_bit(bit);
  if constexpr (checked_build) detail::checked::disown(word, bit);
}

}  // namespace pagewait
