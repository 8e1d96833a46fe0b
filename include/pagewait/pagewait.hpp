// <pagewait/pagewait.hpp> — lock, wait on and release single bits of your own atomic words.
//
// pagewait brings the Linux kernel's page-flag waiting to user space. Any bit of any
// std::atomic<std::uint32_t> or std::atomic<std::uint64_t> can be used as a lock (lock_bit /
// unlock_bit) or as an event (set it with an atomic OR, release it with clear_bit_and_wake,
// wait for it with wait_bit_clear). pagewait stores nothing per object: one bit of each word,
// the most significant (waiters_bit<W>), is reserved to say "somebody may be waiting", and
// waiters sleep in one global hashed table.
//
// What it costs
//   * Uncontended (waiters bit clear): lock is one atomic RMW (`lock bts`), release is one
//     atomic RMW (`lock cmpxchg`, after a plain load of the line it already owns). No table,
//     no syscall, no fence beyond the RMW's own.
//   * Contended: a bucket lock, a node on the waiter's stack, a futex sleep and wake.
//
// The lifetime promise (what sets pagewait apart from the kernel's page locks today)
//   * Release is the last touch. unlock_bit and clear_bit_and_wake make their last access to
//     the word in the very step that makes the bit clear (or hands the lock to a waiter). The
//     moment another thread can see the bit clear, or owns the lock by hand-off, it may destroy
//     the object: the releasing thread will not touch it again, even while it is still waking
//     other threads. No extra reference ("pin") around the release is needed.
//   * A waiter wakes only after the bit was cleared, never to find it still set from before.
//     wait_bit_clear does not read the word once it is queued: a waiter that holds no reference
//     to the object needs it alive only while the bit is set (the kernel's DROP wait).
//
// Fairness: locking hands the lock directly to a waiter once it has lost too many races to
// threads that never waited, or has waited too long (set_fairness), even past threads queued
// ahead of it in wait_bit_clear on the same bit (which, the bit never being clear, wait on).
// No lock waiter found queued by an unlock starves.
//
// Memory ordering (what each operation orders, in the C++ memory model)
//   * lock_bit, a try_lock_bit or timed lock that returns true, bit_lock/mutex lock: acquire.
//     The new owner sees everything the previous owner wrote before its unlock, whether it took
//     the bit itself or was handed it (the hand-off's unpark releases, the park acquires).
//   * unlock_bit, bit_lock/mutex unlock: release. Pairs with the next owner's acquire.
//   * clear_bit_and_wake: release. Pairs with the acquire of every wait_bit_clear that returns
//     because of this clear (or sees the bit clear), and of the next lock of that bit.
//   * wait_bit_clear, a bounded form that returns true: acquire; it sees everything written
//     before the release that cleared the bit.
//   * A try_lock that fails, a timed lock or a bounded wait that gives up (false), and any
//     operation that throws: no ordering is promised (treat them as relaxed).
//   * Your own RMWs on the word (fetch_or to start an event) order what you ask of them; pagewait
//     adds nothing. The waiters bit carries no data and no ordering.
//
// ThreadSanitizer
//   A program built with -fsanitize=thread can link the release library as it is (built without
//   TSan). TSan cannot see the library's slow paths (hand-offs, clears under the bucket lock,
//   futex wake-ups), so pagewait's headers tell it the orderings above: in a TSan build each
//   successful lock acquires, each release (unlock_bit, clear_bit_and_wake, unlock) releases, and
//   each wait_bit_clear that returns true acquires what the releases of the word before it
//   published (through a slot picked by a hash of the word's address, which outlives the object;
//   rarely another word shares it). Data a pagewait lock or event orders raises no report;
//   data touched outside them still does. pagewait::mutex is a TSan mutex: lock-order
//   inversions, unlocking an unlocked mutex and destroying a locked one are reported, and race
//   reports name it. A bit lock is not (several bits of one word can be held at once): for TSan a
//   release of any bit of a word happens before every later lock of any bit of it, as the
//   word's atomics already say. pagewait's own accesses to the word are not checked (as a
//   mutex's internals are not): freeing an object the instant its bit is seen clear is rightly
//   not reported, but neither is a free that races with another thread's pagewait call on the
//   word. Outside TSan builds nothing changes: the fast paths are the same instructions. If the
//   library itself is built with TSan, TSan sees everything and the annotations step aside;
//   define PAGEWAIT_TSAN_ANNOTATIONS to 0 to turn them off, to 1 to keep them on even then.
//   How and why: detail/tsan.hpp.
//
// fork()
//   A child may use pagewait on any word it can reach, at once, from its one thread and from
//   threads it starts. The waits, locks and releases that the parent's *other* threads had in
//   progress do not exist in the child (those threads are not there): handlers registered with
//   pthread_atfork when the library is loaded drop them from the child's copy of the wait table
//   and free any table lock such a thread held. Nothing is added to the fast paths; the parent
//   pays for two uncontended mutex lock/unlock pairs per fork. What the child inherits:
//   * Every word exactly as the parent left it. A bit another parent thread held stays set and
//     nobody in the child will release it, as with a std::mutex held across fork: wait for it
//     only with a deadline. A release another thread had begun may not have cleared its bit.
//   * The forking thread's own bits are still its own: it may release them in the child.
//   * A waiters bit left set by the dropped waiters is harmless: the next release clears it.
//   * vfork() and posix_spawn() children that only exec need none of this.
//
// Checked mode
//   A build option (-DPAGEWAIT_CHECKED=ON) that reports misuse: a relock of a held bit, an unlock
//   by a thread that does not hold it (hand a lock to another thread with disown_bit), two
//   releases of one set bit at once, a bit cleared by hand or a word freed, unmapped or
//   overwritten while waiters are queued on it. The manual: pagewait/checked.hpp.
//
// Rules for the word
//   * The waiters bit is pagewait's; every other bit is yours. Change your bits only with atomic
//     RMWs (fetch_or to start an event, any RMW on bits that are not pagewait-managed).
//   * Release a bit only through unlock_bit / clear_bit_and_wake, never by clearing it yourself:
//     a waiter queued on it would not be woken.
//   * A `bit` argument is a mask with exactly one bit set, not the waiters bit; anything else
//     throws std::invalid_argument before the word is touched. Releasing a bit that is not set
//     throws pagewait::usage_error and leaves the word as it was.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>
#include <type_traits>

#include "pagewait/bits.hpp"
#include "pagewait/checked.hpp"
#include "pagewait/detail/core.hpp"
#include "pagewait/detail/deadline.hpp"
#include "pagewait/detail/native_policy.hpp"
#include "pagewait/detail/tsan.hpp"
#include "pagewait/protocol.hpp"

namespace pagewait {

namespace detail {
template <word_type W>
using shipped = core<native_policy, release_protocol::atomic_clear, W>;
}
// The slow paths of the shipped protocol are compiled once, in the library.
extern template struct detail::core<detail::native_policy, release_protocol::atomic_clear, std::uint32_t>;
extern template struct detail::core<detail::native_policy, release_protocol::atomic_clear, std::uint64_t>;

namespace detail {
// The timed locks without argument checks or TSan annotations (the callers do both): one try,
// then the slow path. The deadline is computed after the try, so an uncontended timed lock reads
// no clock; a NaN has been thrown by the caller's deadline::check.
template <word_type W, class Clock, class Duration>
bool lock_until(std::atomic<W>& word, W bit, const std::chrono::time_point<Clock, Duration>& abs) {
  if (shipped<W>::try_lock(word, bit)) return true;
  return shipped<W>::lock_slow(word, bit, deadline::until(abs), nullptr);
}
template <word_type W, class Rep, class Period>
bool lock_for(std::atomic<W>& word, W bit, const std::chrono::duration<Rep, Period>& rel) {
  if (shipped<W>::try_lock(word, bit)) return true;
  return shipped<W>::lock_slow(word, bit, deadline::after(rel), nullptr);
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Exclusive: bit locks.

// Sets `bit` if it is clear and returns true; returns false at once if it is set. Never blocks.
// Cost: one atomic RMW.
template <word_type W>
bool try_lock_bit(std::atomic<W>& word, std::type_identity_t<W> bit) {
  detail::check_bit(bit);
  detail::tsan::acquiring t(&word);
  if constexpr (checked_build)
    return t.locked(detail::checked::lock(word, bit, detail::checked::lock_how::try_once,
                                          detail::deadline::never(), nullptr));
  return t.locked(detail::shipped<W>::try_lock(word, bit));
}

// Blocks until this thread owns `bit` (it was clear and this thread set it, or the previous
// owner handed it over). Uncontended: one atomic RMW.
template <word_type W>
void lock_bit(std::atomic<W>& word, std::type_identity_t<W> bit) {
  detail::check_bit(bit);
  detail::tsan::acquiring t(&word);
  if constexpr (checked_build)
    detail::checked::lock(word, bit, detail::checked::lock_how::block, detail::deadline::never(), nullptr);
  else
    detail::shipped<W>::lock(word, bit);
  t.locked(true);
}

// Timeouts. The timed forms (try_lock_bit_for/_until, wait_bit_clear_for/_until, and
// bit_lock's try_lock_for/_until) take a std::chrono duration or a time point on any clock,
// with an integer or a floating-point representation:
//   * Now or earlier (zero, negative, -infinity, a time point long past): no wait, one try. A
//     free bit is still taken (locks) or seen clear (waits).
//   * Too far for steady_clock's nanoseconds (half their range, about 146 years, or more:
//     +infinity, duration::max(), time_point::max()): "never"; the wait is unbounded.
//   * NaN: throws std::invalid_argument ("pagewait: timeout is NaN ...") before the word is
//     touched, whatever state the bit is in: no bit is taken, no waiter is queued, the word
//     (waiters bit included) is left exactly as it was.
// A time point on another clock than steady_clock becomes the time left on that clock when
// the call starts (as std::condition_variable does): adjusting that clock does not re-time a
// wait in progress. A lock's timeout is checked before its one-RMW try; the untimed forms have
// no timeout and nothing to check.

// As lock_bit, but gives up when the deadline passes: returns whether this thread owns `bit`.
// If a release handed the lock over just as the deadline passed, the thread owns it and true
// is returned: ownership is never dropped on the floor.
template <word_type W, class Clock, class Duration>
bool try_lock_bit_until(std::atomic<W>& word, std::type_identity_t<W> bit,
                        const std::chrono::time_point<Clock, Duration>& abs) {
  detail::check_bit(bit);
  detail::deadline::check(abs);  // a NaN throws here, before the try below touches the word
  detail::tsan::acquiring t(&word);
  if constexpr (checked_build)
    return t.locked(detail::checked::lock(word, bit, detail::checked::lock_how::block,
                                          detail::deadline::until(abs), nullptr));
  return t.locked(detail::lock_until(word, bit, abs));
}

template <word_type W, class Rep, class Period>
bool try_lock_bit_for(std::atomic<W>& word, std::type_identity_t<W> bit,
                      const std::chrono::duration<Rep, Period>& rel) {
  detail::check_bit(bit);
  detail::deadline::check(rel);  // as above
  detail::tsan::acquiring t(&word);
  if constexpr (checked_build)
    return t.locked(detail::checked::lock(word, bit, detail::checked::lock_how::block,
                                          detail::deadline::after(rel), nullptr));
  return t.locked(detail::lock_for(word, bit, rel));
}

// As lock_bit, but gives up when stop is requested: returns whether this thread owns `bit`.
// A free bit is taken even if stop was already requested.
template <word_type W>
bool lock_bit(std::atomic<W>& word, std::type_identity_t<W> bit, std::stop_token stop) {
  detail::check_bit(bit);
  detail::tsan::acquiring t(&word);
  if constexpr (checked_build)
    return t.locked(
        detail::checked::lock(word, bit, detail::checked::lock_how::block, detail::deadline::never(), &stop));
  if (detail::shipped<W>::try_lock(word, bit)) return t.locked(true);
  return t.locked(detail::shipped<W>::lock_slow(word, bit, detail::deadline::never(), &stop));
}

// Releases a held lock bit. The first lock waiter queued for the bit decides, whatever
// wait_bit_clear waiters are queued ahead of it. If it has earned a hand-off (set_fairness), the
// lock passes to it and the bit never becomes clear, so threads in wait_bit_clear on this bit
// are not woken: they wait on through the hand-off, until an unlock that clears the bit. (A
// lock bit handed from owner to owner without a pause can keep such readers waiting for as
// long as that lasts.) Otherwise the bit is cleared and waiters are woken: all waiters in
// wait_bit_clear, and that first lock waiter, which races for the bit (lock waiters that
// arrived while a long release walk was in progress are all woken to race). Throws usage_error
// if the bit is not set (the word is left unchanged).
// Lifetime: the step that clears the bit or hands the lock off is this call's last access to
// the word; the object may be destroyed by another thread from that instant.
// Cost: one atomic RMW when the waiters bit is clear.
template <word_type W>
void unlock_bit(std::atomic<W>& word, std::type_identity_t<W> bit) {
  detail::check_bit(bit);
  detail::tsan::releasing t(&word);
  if constexpr (checked_build)
    detail::checked::release(word, bit, false);
  else
    detail::shipped<W>::release(word, bit, detail::release_kind::unlock);
}

// ---------------------------------------------------------------------------------------------
// Events: set with word.fetch_or(bit), released with clear_bit_and_wake, awaited with
// wait_bit_clear (like the kernel's PG_writeback).

// Clears `bit` and wakes every thread waiting on it (lock waiters too: they race for it).
// Never hands off. Throws usage_error if the bit is not set (word unchanged).
// Lifetime: as unlock_bit, the clearing step is the last touch of the word; this is the
// end_page_writeback() of the seed, safe without an extra reference.
// Cost: one atomic RMW when the waiters bit is clear.
template <word_type W>
void clear_bit_and_wake(std::atomic<W>& word, std::type_identity_t<W> bit) {
  detail::check_bit(bit);
  detail::tsan::releasing t(&word);
  if constexpr (checked_build)
    detail::checked::release(word, bit, true);
  else
    detail::shipped<W>::release(word, bit, detail::release_kind::event);
}

// Returns once `bit` is clear: at once if it is clear now, else after a release cleared it.
// Woken means cleared: it returns after a clear that happened after it began to wait, and
// that clear (and what the releaser wrote before it) is visible to it. It does not go back to
// sleep if somebody sets the bit again before it runs. Once queued it never reads the word
// again. Cost when clear: one load.
template <word_type W>
void wait_bit_clear(std::atomic<W>& word, std::type_identity_t<W> bit) {
  detail::check_bit(bit);
  if constexpr (checked_build) detail::checked::before_wait(word, bit, true);
  detail::tsan::acquiring t(&word);
  t.waited(detail::shipped<W>::wait_clear(word, bit, detail::deadline::never(), nullptr));
}

// Bounded forms: return whether the bit was seen clear (true) or the deadline/stop came first.
// Timeouts as for the timed locks above: the deadline is computed (and a NaN thrown) before
// wait_clear looks at the word.
template <word_type W, class Clock, class Duration>
bool wait_bit_clear_until(std::atomic<W>& word, std::type_identity_t<W> bit,
                          const std::chrono::time_point<Clock, Duration>& abs) {
  detail::check_bit(bit);
  const detail::deadline dl = detail::deadline::until(abs);
  if constexpr (checked_build) detail::checked::before_wait(word, bit, false);
  detail::tsan::acquiring t(&word);
  return t.waited(detail::shipped<W>::wait_clear(word, bit, dl, nullptr));
}

template <word_type W, class Rep, class Period>
bool wait_bit_clear_for(std::atomic<W>& word, std::type_identity_t<W> bit,
                        const std::chrono::duration<Rep, Period>& rel) {
  detail::check_bit(bit);
  const detail::deadline dl = detail::deadline::after(rel);
  if constexpr (checked_build) detail::checked::before_wait(word, bit, false);
  detail::tsan::acquiring t(&word);
  return t.waited(detail::shipped<W>::wait_clear(word, bit, dl, nullptr));
}

template <word_type W>
bool wait_bit_clear(std::atomic<W>& word, std::type_identity_t<W> bit, std::stop_token stop) {
  detail::check_bit(bit);
  if constexpr (checked_build) detail::checked::before_wait(word, bit, false);
  detail::tsan::acquiring t(&word);
  return t.waited(detail::shipped<W>::wait_clear(word, bit, detail::deadline::never(), &stop));
}

// ---------------------------------------------------------------------------------------------
// Tuning.

// Bounded unfairness (applies to lock waits that start after the call). max_lost_races = 0
// means strict FIFO hand-off. Throws std::invalid_argument for a negative max_wait.
void set_fairness(const fairness_settings& s);
fairness_settings get_fairness() noexcept;

// The number of buckets in the wait table (sized once from the hardware thread count).
std::size_t wait_table_size() noexcept;

}  // namespace pagewait

#include "pagewait/bit_lock.hpp"
