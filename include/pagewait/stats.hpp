// pagewait/stats.hpp — contention statistics, opt-in.
//
//   pagewait::enable_stats();               // off by default
//   ... run ...
//   pagewait::stats_snapshot s = pagewait::get_stats();
//   s.total.lock_waits, s.total.longest_wait, s.buckets (the busy buckets, by index)
//   pagewait::reset_stats();
//
// Free when off: the fast paths (one RMW to lock, one to release, one load to wait) never look
// at them, on or off; the slow paths test one relaxed flag. When on, each slow-path wait reads
// the clock twice and updates a few relaxed counters of its bucket; each bucket-lock hold reads
// the clock twice. Counts are per bucket of the wait table (words that hash to one bucket share
// its counters: `bucket_of(&word)` tells which) and summed in `total`.
//
// What is counted (a "wait" is a call that took the slow path: the bit was set, or a waiter was
// queued, when it came):
//   lock_waits, shared_waits   slow-path lock calls (lock_bit and its timed and stop forms) and
//                              wait_bit_clear calls; a lock that took the bit in the spin before
//                              queueing (pauses, then yields) counts too
//   gave_up                    of those, the ones that returned false (deadline or stop)
//   lost_races                 lock waiters woken to race for the bit that lost it to another
//                              thread (each one a step towards a hand-off); asynchronous lock
//                              waiters (pagewait/async.hpp) included, though their waits are not
//                              counted in lock_waits (nor in gave_up or longest_wait)
//   releases, handoffs         releases that took the slow path (waiters bit set) and walked the
//                              bucket; unlocks among them that handed the lock to a waiter
//   longest_wait               the longest slow-path wait, from its start to its return
//   longest_hold, longest_walk the longest bucket-lock hold (any holder), and the most nodes one
//                              release visited (bounded per hold by the walk's chunk)
//   wake_syscalls, sleeps      (the snapshot's, whole process) futex wake system calls made to
//                              unpark a waiter, and futex sleeps entered by waiters; an unpark of a
//                              waiter that has not gone to sleep yet makes none
// These are the process's statistics of pagewait.hpp's words; a wait domain's words (shm.hpp)
// are counted by the domain, for all its processes (shm::domain::get_stats), never here.
// Counters are updated with relaxed atomics: a snapshot taken while threads wait is a
// consistent-enough sum, not an instant; reset_stats() while waits are in progress may keep
// parts of theirs.
//
// Attributing contention to call sites: set_contention_hook(fn, arg) has fn called (while stats
// are on) at the end of every slow-path wait, in the waiting thread, after the wait and outside
// any lock of the library, with the word, the bit, the kind, how long it waited and whether it
// got what it waited for. Take a stack trace there (as absl's mutex profiler does with its
// hook) to learn where contention comes from. The hook must not throw; it may use pagewait (its
// own slow-path waits are counted but do not call it again).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace pagewait {

struct contention_stats {
  std::uint64_t lock_waits = 0;
  std::uint64_t shared_waits = 0;
  std::uint64_t gave_up = 0;
  std::uint64_t lost_races = 0;
  std::uint64_t releases = 0;
  std::uint64_t handoffs = 0;
  std::chrono::nanoseconds longest_wait{0};
  std::chrono::nanoseconds longest_hold{0};
  std::uint64_t longest_walk = 0;
};

// Adds `s` into `into`: counts add up, the longest are the larger of the two.
inline contention_stats& operator+=(contention_stats& into, const contention_stats& s) noexcept {
  into.lock_waits += s.lock_waits;
  into.shared_waits += s.shared_waits;
  into.gave_up += s.gave_up;
  into.lost_races += s.lost_races;
  into.releases += s.releases;
  into.handoffs += s.handoffs;
  if (s.longest_wait > into.longest_wait) into.longest_wait = s.longest_wait;
  if (s.longest_hold > into.longest_hold) into.longest_hold = s.longest_hold;
  if (s.longest_walk > into.longest_walk) into.longest_walk = s.longest_walk;
  return into;
}

struct stats_snapshot {
  contention_stats total;
  // Whole process (a parker does not know the bucket): futex wake system calls made to unpark a
  // waiter, and sleeps (futex waits) waiters entered. An unpark of a waiter that had not yet gone
  // to sleep makes no system call; a sleep may end spuriously and be entered again.
  std::uint64_t wake_syscalls = 0;
  std::uint64_t sleeps = 0;
  // (bucket index, its counters), ascending, for the buckets with anything counted.
  std::vector<std::pair<std::size_t, contention_stats>> buckets;
};

// Turns counting on or off (off by default). Turning it on the first time allocates the
// counters (one cache line per bucket of the wait table).
void enable_stats(bool on = true);
bool stats_enabled() noexcept;
stats_snapshot get_stats();
void reset_stats() noexcept;
// The bucket of the wait table whose queue `word`'s waiters use (and whose counters count them).
std::size_t bucket_of(const void* word) noexcept;

enum class wait_kind { lock, shared };
using contention_hook = void (*)(void* arg, const void* word, std::uint64_t bit, wait_kind kind,
                                 std::chrono::nanoseconds waited, bool got_it);
// Installs the hook (nullptr: none). Calls already running may still use the previous one.
void set_contention_hook(contention_hook hook, void* arg = nullptr) noexcept;

}  // namespace pagewait
