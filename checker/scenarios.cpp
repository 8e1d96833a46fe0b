// checker/scenarios.cpp — scenarios, search strategies, traces.
//
// Every scenario runs the shipped core, detail::core<model_policy, R, W>, through the user
// operations below (the same calls the public API makes). Bits: bit 0 is a lock bit
// ("locked", PG_locked), bit 1 an event bit ("writeback", PG_writeback).
#include "scenarios.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <random>

#include "pagewait/detail/core.hpp"

namespace pagewait::check {

namespace {

using namespace std::chrono_literals;
constexpr std::uint32_t LCK = 1u << 0;
constexpr std::uint32_t WBK = 1u << 1;
constexpr auto untimed = std::chrono::nanoseconds(-1);

// The user's side of the API, on the model: each call names its object (so that an access to
// a freed or reused object is recognised) and checks what CONTRACT §3 promises when it returns.
template <class P, release_protocol R, class W>
struct user {
  using C = detail::core<P, R, W>;
  static std::atomic<W>& word(obj o) { return rt().template word<W>(o); }

  // clear_bit_and_wake. Writeback holds no reference of its own (the kernel's case): only the
  // pinning protocols take one, through the pin.
  static void end_writeback(obj o, W bit) {
    runtime& r = rt();
    r.set_target(o);
    if constexpr (R == release_protocol::atomic_clear) r.begin_last_touch_check(o, bit);
    r.begin_release(o, bit, false, false);  // checks that every waiter queued at its start is woken
    C::release(word(o), bit, detail::release_kind::event, model_pin{o});
    r.end_release();
    r.end_last_touch_check();
  }
  static bool wait(obj o, W bit, std::chrono::nanoseconds timeout = untimed) {
    runtime& r = rt();
    r.set_target(o);
    const auto start = r.begin_wait(o, bit);
    const detail::deadline dl =
        timeout < 0ns
            ? detail::deadline::never()
            : detail::deadline{r.clock() +
                               std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout)};
    const bool ok = C::wait_clear(word(o), bit, dl, nullptr);
    r.end_wait(start, ok);
    return ok;
  }
  static bool lock(obj o, W bit, std::chrono::nanoseconds timeout = untimed) {
    runtime& r = rt();
    r.set_target(o);
    r.locking(o, timeout >= 0ns);
    bool ok = true;
    if (timeout < 0ns) {
      C::lock(word(o), bit);
    } else {
      const detail::deadline dl{r.clock() +
                                std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout)};
      ok = C::try_lock(word(o), bit) || C::lock_slow(word(o), bit, dl, nullptr);
    }
    if (ok)
      r.acquired(o, bit);
    else
      r.lock_failed();
    return ok;
  }
  // A thread's body: lock and unlock `bit` of `o`, `times` times.
  static std::function<void()> locker(obj o, W bit, int times = 1) {
    return [o, bit, times] {
      for (int i = 0; i < times; ++i) {
        lock(o, bit);
        unlock(o, bit);
      }
    };
  }
  // The sink of an asynchronous waiter whose node is `n`, on the calling thread: its completion
  // (run on the releasing thread) wakes this thread's parker with the token, as an event loop
  // would be woken, after destroying the node if `free_frame`.
  static model_async_sink& async_sink_for(typename C::node& n, model_parker& pk, bool free_frame) {
    using node = typename C::node;
    runtime& r = rt();
    pk.prepare();
    model_async_sink& sink = r.new_sink();
    sink.actor = r.current();
    sink.callback = [np = &n, &pk, free_frame](std::uint32_t token) {
      if (free_frame) np->~node();
      rt().loop_wake(pk, token);
    };
    return sink;
  }
  // An asynchronous wait for `bit` of `o` (pagewait/async.hpp on the model). The calling thread
  // starts it and then waits for its completion, as an event loop waits for its next event: it
  // parks, and the completion, run on the releasing thread, unparks it with the token. The node
  // lives in a raw buffer of this frame, the request's "frame". `free_frame`: the completion
  // destroys the node, as a callback that frees its request may (a later touch of it by the
  // release is then caught). `cancel`: right after a pending start the thread cancels, as a loop
  // does on a timeout; if that withdrew the wait, no completion may come. Returns the result as
  // the caller sees it: true = the bit was seen clear (at the start, or by a `cleared` token).
  static bool wait_async(obj o, W bit, bool free_frame, bool cancel = false) {
    using node = typename C::node;
    runtime& r = rt();
    r.set_target(o);
    const auto start = r.begin_wait(o, bit);
    model_parker& pk = r.current_parker();
    alignas(node) unsigned char frame[sizeof(node)];
    node* n = new (frame) node;
    model_async_sink& sink = async_sink_for(*n, pk, free_frame);
    C::prepare_async(*n, word(o), bit, &sink);
    if (C::start_wait_clear_async(word(o), bit, *n)) {
      n->~node();
      r.end_wait(start, true);
      return true;
    }
    sink.pending = true;
    if (cancel && C::cancel_async(*n)) {
      sink.withdrawn = true;
      n->~node();
      r.end_wait(start, false);
      return false;
    }
    const std::uint32_t t = pk.park(detail::deadline::never(), nullptr);
    if (!free_frame) n->~node();
    const bool ok = t == detail::token_cleared;
    if (!ok && t != detail::token_abandoned) {
      r.msg_ = "an asynchronous wait for a bit to clear completed with token " + std::to_string(t) +
               " (only cleared, or abandoned after a cancel)";
      r.fail();
    }
    if (!ok && !cancel) {
      r.msg_ = "an asynchronous wait that nobody cancelled completed as cancelled";
      r.fail();
    }
    r.end_wait(start, ok);
    return ok;
  }
  // An asynchronous lock of `bit` of `o` (async_wait::start_lock on the model), as wait_async:
  // the thread starts it and parks until the completion, run on the releasing thread, wakes it.
  // A lock waiter woken to race has raced before that, on the releasing thread (core::race_async),
  // and may have queued again: its completion then comes later. `free_frame`: the completion
  // destroys the node. `cancel`: cancels right after a pending start. Returns whether the thread
  // owns the bit (it then unlocks it, as the caller of lock_async must).
  static bool lock_async(obj o, W bit, bool free_frame, bool cancel = false) {
    using node = typename C::node;
    runtime& r = rt();
    r.set_target(o);
    // A waiter that may cancel may leave the queue before an unlock's walk reaches it, as a timed
    // one may at its deadline: the unlock is then not bound to hand off to it.
    r.locking(o, cancel);
    model_parker& pk = r.current_parker();
    alignas(node) unsigned char frame[sizeof(node)];
    node* n = new (frame) node;
    model_async_sink& sink = async_sink_for(*n, pk, free_frame);
    C::prepare_async(*n, word(o), bit, &sink, true);
    bool ok = true;
    if (C::start_lock_async(word(o), bit, *n)) {
      n->~node();
    } else {
      sink.pending = true;
      if (cancel) {
        if (C::cancel_async(*n)) {
          sink.withdrawn = true;
          n->~node();
          r.lock_failed();
          return false;
        }
        r.cancel_too_late();
      }
      const std::uint32_t t = pk.park(detail::deadline::never(), nullptr);
      if (!free_frame) n->~node();
      ok = t == detail::token_handoff;
      if (!ok && (t != detail::token_abandoned || !cancel)) {
        r.msg_ = "an asynchronous lock completed with token " + std::to_string(t) +
                 (cancel ? " (only locked, or abandoned after a cancel)"
                         : " though nobody cancelled it (only locked)");
        r.fail();
      }
    }
    if (!ok) {
      r.lock_failed();
      return false;
    }
    r.acquired(o, bit);
    unlock(o, bit);
    return true;
  }
  static void unlock(obj o, W bit) {
    runtime& r = rt();
    r.set_target(o);
    r.releasing(o, bit);
    // The old protocols clear the bit before they walk, so their hand-off can be lost to a
    // barger in between (the kernel's too); the hand-off rules are checked for atomic-clear.
    if constexpr (R == release_protocol::atomic_clear) r.begin_last_touch_check(o, bit);
    r.unlock_must_hand_off(R == release_protocol::atomic_clear && r.fair.max_lost_races == 0);
    r.begin_release(o, bit, true, R == release_protocol::atomic_clear);
    C::release(word(o), bit, detail::release_kind::unlock, model_pin{o});
    r.end_release();
    r.unlock_must_hand_off(false);
    r.end_last_touch_check();
  }
};

void names(runtime& r) { r.bit_names = {"locked", "writeback"}; }

// writeback-free (CONTRACT §5): T1 ends writeback; T2 waits for it, then drops the last reference
// (truncation frees the page); T3 reuses the memory for a new page and writes it back. Any
// touch of the first page after the free is the 2020 bug.
struct writeback_free {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    const obj a = r.new_object("page", WBK, false, 1);  // the only reference is the truncator's
    r.add_thread("T1 writeback", [a] { U::end_writeback(a, WBK); });
    r.add_thread("T2 truncate", [a] {
      U::wait(a, WBK);
      rt().put(a);
    });
    r.add_thread("T3 reuse", [a] {
      const obj b = rt().alloc(a.slot, 0);
      rt().start_bit(b, WBK);
      U::end_writeback(b, WBK);
      rt().put(b);
    });
  }
};

// Three lockers that lock and unlock one bit twice each, under the fairness bounds `f`.
template <class P, release_protocol R>
void three_lockers_twice(runtime& r, fairness_settings f) {
  using U = user<P, R, std::uint32_t>;
  names(r);
  install_table<P>(r, 1, 64);
  r.fair = f;
  const obj a = r.new_object("page", 0, false, 1);
  for (const char* n : {"T1 locker", "T2 locker", "T3 locker"}) r.add_thread(n, U::locker(a, LCK, 2));
}

// lock-handoff (CONTRACT §5): three threads lock and unlock one bit twice each. Hand-off is earned
// after one lost race (the kernel allows five), so that both ways of unlocking are explored.
struct lock_handoff {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    three_lockers_twice<P, R>(r, {1, std::chrono::hours(1)});
  }
};

// mixed-bits (CONTRACT §5): waiters on two bits of one 64-bit word, and two words in one bucket.
struct mixed_bits {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint64_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1, std::chrono::hours(1)};
    const obj a = r.new_object("A", WBK, true, 1);
    const obj b = r.new_object("B", WBK, true, 1);
    r.add_thread("T1 locker", U::locker(a, LCK));
    r.add_thread("T2 locker", U::locker(a, LCK));
    r.add_thread("T3 waiter", [a, b] {
      U::wait(a, WBK);
      U::wait(b, WBK);
    });
    r.add_thread("T4 writeback", [a, b] {
      U::end_writeback(a, WBK);
      U::end_writeback(b, WBK);
    });
  }
};

// timeout-race (CONTRACT §5): a timed waiter's deadline may fire at any step, including while the
// release is dequeuing it; likewise a timed lock waiter against the unlock.
struct timeout_race {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1, std::chrono::hours(1)};
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 timed waiter", [a] { U::wait(a, WBK, 10ms); });
    r.add_thread("T2 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T3 writeback", [a] {
      U::lock(a, LCK);
      U::end_writeback(a, WBK);
      U::unlock(a, LCK);
    });
    r.add_thread("T4 timed locker", [a] {
      if (U::lock(a, LCK, 10ms)) U::unlock(a, LCK);
    });
  }
};

// bookmark-walk (CONTRACT §5): chunk of 2 visits, three waiters (one timed, which may leave while
// the bookmark holds the walk's place) on two words in one bucket.
struct bookmark_walk {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 2);
    const obj a = r.new_object("A", WBK, false, 1);
    const obj b = r.new_object("B", WBK, false, 1);
    r.add_thread("T1 waiter A", [a] { U::wait(a, WBK); });
    r.add_thread("T2 timed waiter A", [a] { U::wait(a, WBK, 10ms); });
    r.add_thread("T3 waiter B", [b] { U::wait(b, WBK); });
    r.add_thread("T4 writeback", [a, b] {
      U::end_writeback(a, WBK);
      U::end_writeback(b, WBK);
    });
  }
};

// writeback-restart (Linus, linux-xfs, Sep 2024): writeback ends and is started again while
// waiters wait (two, so that a release that saw the waiters bit set by one can find the other). The waiter
// must return after the first writeback that ends after it queued, and never be released into a writeback
// that started before it waited (the Jan 2021 race).
struct writeback_restart {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 writeback", [a] { U::end_writeback(a, WBK); });
    r.add_thread("T2 restarter", [a] {
      for (int i = 0; i < 2; ++i) {
        rt().start_bit(a, WBK);
        U::end_writeback(a, WBK);
      }
    });
    r.add_thread("T3 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T4 waiter", [a] { U::wait(a, WBK); });
  }
};

// arrivals-during-walk: chunk of 1 visit, two queued waiters, and a third that keeps arriving
// while the release walks: the walk must end, and every waiter be woken after the clear.
struct arrivals_during_walk {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T2 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T3 late waiter", [a] {
      U::wait(a, WBK);
      U::wait(a, WBK);
    });
    r.add_thread("T4 writeback", [a] { U::end_writeback(a, WBK); });
  }
};

// handoff-walk (beyond CONTRACT §5): every lock waiter has earned a hand-off, the chunk is 1
// visit, so unlocks hand off in multi-hold walks while other lockers arrive and join the
// release (and are re-queued behind the new owner); meanwhile a writeback waiter and the end
// of writeback work on another bit of the same word.
struct handoff_walk {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {0, std::chrono::hours(1)};
    const obj a = r.new_object("page", WBK, false, 1);
    for (const char* n : {"T1 locker", "T2 locker", "T3 locker"}) r.add_thread(n, U::locker(a, LCK));
    r.add_thread("T4 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T5 writeback", [a] { U::end_writeback(a, WBK); });
  }
};

// handoff-past-reader (review of the core, issue 8): strict fairness, so every queued locker
// has earned a hand-off. T1 unlocks and at once locks again (a barger); T2 waits for the lock
// bit to clear (a reader, e.g. waiting for a page's read to finish); T3 queues to lock, possibly
// behind T2. An unlock that finds T3 queued must hand it the lock, even with T2 first in the
// queue, and must not wake T2 (or T4) into a bit that never cleared. Chunk of 1: the walk that dequeues
// T2 and then meets T3 spans holds, and T2 goes back to the queue.
struct handoff_past_reader {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {0, std::chrono::nanoseconds(0)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 barger", U::locker(a, LCK, 2));
    r.add_thread("T2 reader", [a] { U::wait(a, LCK); });
    r.add_thread("T3 locker", U::locker(a, LCK));
    // Its deadline may pass while a walk holds it dequeued and then hands off: it must leave
    // with "timed out" (the bit never cleared), not be re-queued nor woken as if cleared.
    r.add_thread("T4 timed reader", [a] { U::wait(a, LCK, 10ms); });
  }
};

// event-to-locker (mutation gaps, issue 8): a lock waiter on an event bit (lock_bit on the writeback bit
// while writeback runs, which the manual allows: clear_bit_and_wake wakes lock waiters to race).
struct event_to_locker {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 locker", U::locker(a, WBK));
    r.add_thread("T2 writeback", [a] { U::end_writeback(a, WBK); });
    r.add_thread("T3 waiter", [a] { U::wait(a, WBK); });
  }
};

// event-to-joiner: as above, but the end of writeback walks in chunks of 1 (two waiters
// queued) and a lock waiter that has earned a hand-off joins it: an event release never hands
// off, it clears and wakes everybody.
struct event_to_joiner {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {0, std::chrono::hours(1)};
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T2 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T3 writeback", [a] { U::end_writeback(a, WBK); });
    r.add_thread("T4 locker", U::locker(a, WBK));
  }
};

// timed-lock-gives-up: a timed lock that gives up must leave the bit as it found it: the
// same thread then locks untimed (a bit left set by its failed attempt would never clear).
// Strict fairness, so that the timed locker is also handed the lock.
struct timed_lock_gives_up {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {0, std::chrono::hours(1)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 locker", U::locker(a, LCK, 2));
    r.add_thread("T2 timed locker", [a] {
      if (U::lock(a, LCK, 10ms)) U::unlock(a, LCK);
      U::lock(a, LCK);
      U::unlock(a, LCK);
    });
  }
};

// timed-lock-lost-race (mutation gap lock-abandon-after-race-claims-owner): a timed locker
// woken to race for the bit loses it to a barger after the other timed locker's park has timed
// out, which moved the clock past both deadlines. The loser must give up with one more try,
// never claim the bit: the barger holds it [I5]. Not earned at the first wake-up (a lost race
// earns it), so that wake-up is a retry, which the barger can win.
struct timed_lock_lost_race {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1, std::chrono::hours(1)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 holder", U::locker(a, LCK));
    for (const char* name : {"T2 timed locker", "T3 timed locker"})
      r.add_thread(name, [a] {
        if (U::lock(a, LCK, 10ms)) U::unlock(a, LCK);
      });
    r.add_thread("T4 barger", U::locker(a, LCK));
  }
};

// designated-waker (CONTRACT 3.4): hand-offs never earned, so that every unlock with two lock
// waiters queued wakes the first to race and may make it their designated waker, clearing the
// waiters bit. The holder then ends writeback on another bit of the word, for which a reader
// waits (queued before, during or after the window: with it queued no waker is designated); one
// locker is timed, so that a waker may be one whose deadline passed. Every lock waiter must get
// the lock or give up, and the reader must be woken by the clear.
struct designated_waker {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1000, std::chrono::hours(1)};
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 holder", [a] {
      U::lock(a, LCK);
      U::unlock(a, LCK);
      U::end_writeback(a, WBK);
    });
    r.add_thread("T2 timed locker", [a] {
      if (U::lock(a, LCK, 10ms)) U::unlock(a, LCK);
    });
    r.add_thread("T3 locker", U::locker(a, LCK));
    r.add_thread("T4 reader", [a] { U::wait(a, WBK); });
  }
};

// handoff-by-time: lock-handoff with the time bound only (max_lost_races 5, max_wait 0):
// a queued locker has earned its hand-off the moment it queues (the model clock stands still),
// by time and not by count.
struct handoff_by_time {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    three_lockers_twice<P, R>(r, {5, std::chrono::nanoseconds(0)});
  }
};

// requeue-two-holds: a hand-off re-queues two readers of the lock bit, one per hold
// (chunk 1); between the two holds the end of writeback (another bit of the word) finds no
// waiter queued and clears the waiters bit. The re-queue must set it again in each hold.
struct requeue_two_holds {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {0, std::chrono::hours(1)};
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 owner", U::locker(a, LCK));
    r.add_thread("T2 reader", [a] { U::wait(a, LCK); });
    r.add_thread("T3 reader", [a] { U::wait(a, LCK); });
    r.add_thread("T4 locker", U::locker(a, LCK));
    r.add_thread("T5 writeback", [a] { U::end_writeback(a, WBK); });
  }
};

// The quiescence probe, the last thread of every scenario: once every other thread has
// returned and the table is empty, a release on each live word whose waiters bit is still set
// (left for nobody, which CONTRACT 3.4 allows) must clear it: "the next release clears it".
// It releases a bit of its own (bit 4, used by no scenario) with clear_bit_and_wake.
// handoff-time-requeue (mutation gaps, issue 8): the time bound runs from a locker's first
// queueing, across the re-queue after a lost race. T2 queues behind the barger T1, is woken to
// race and loses; T3's deadline (a wait on the writeback bit, which never ends) moves the model
// clock past max_wait before T2 queues again. T1's next unlock must hand T2 the lock: it has
// waited long enough since it first queued, though not since it queued again.
struct handoff_time_requeue {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {5, std::chrono::milliseconds(5)};
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 barger", U::locker(a, LCK, 2));
    r.add_thread("T2 locker", U::locker(a, LCK));
    r.add_thread("T3 timed waiter", [a] { U::wait(a, WBK, 10ms); });
  }
};

// joiner-unearned (mutation gaps, issue 8): lock waiters join an unlock's walk, which two
// readers of the lock bit make span holds (chunk 1) and in which no lock waiter is queued.
// A joiner gets the lock only if it has earned it (max_lost_races 1: a joiner that has lost no
// race has not), else the bit clears and the joiners race (DESIGN.md item 2).
struct joiner_unearned {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {1, std::chrono::hours(1)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 owner", U::locker(a, LCK));
    r.add_thread("T2 locker", U::locker(a, LCK));
    r.add_thread("T3 reader", [a] { U::wait(a, LCK); });
    r.add_thread("T4 reader", [a] { U::wait(a, LCK); });
  }
};

// spin-race: three lockers, once each, deep enough (4 preemptions) that a locker's spin sees
// the bit clear and loses it to another before its own test-and-set.
struct spin_race {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1, std::chrono::hours(1)};
    const obj a = r.new_object("page", 0, false, 1);
    for (const char* n : {"T1 locker", "T2 locker", "T3 locker"}) r.add_thread(n, U::locker(a, LCK));
  }
};

// async-frame-freed (issue 11): writeback-free with an asynchronous waiter. T1 ends writeback; A
// waits for it without a thread: its completion, run by T1's release, frees A's frame (the node),
// and A then drops its reference to the page; T2, a blocking waiter, drops the other; the last
// put frees the page and T3 reuses the memory. A touch of the node
// after its completion began, or of the page after the clear, is caught; so is a completion
// under the bucket lock, a second one, or none.
struct async_frame_freed {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    const obj a = r.new_object("page", WBK, false, 2);  // A's reference and T2's
    r.add_thread("T1 writeback", [a] { U::end_writeback(a, WBK); });
    r.add_thread("A async truncate", [a] {
      U::wait_async(a, WBK, true);
      rt().put(a);
    });
    r.add_thread("T2 waiter", [a] {
      U::wait(a, WBK);
      rt().put(a);
    });
    r.add_thread("T3 reuse", [a] {
      const obj b = rt().alloc(a.slot, 0);
      rt().start_bit(b, WBK);
      U::end_writeback(b, WBK);
      rt().put(b);
    });
  }
};

// async-handoff-cancel and async-handoff-reader (issue 11): an asynchronous reader of a lock bit
// that is handed from owner to owner (every lock waiter has earned a hand-off). Its node may be
// claimed by a walk, put back in the queue after a hand-off, or withdrawn. It must not be
// completed while the bit is handed off ("woken means cleared"), must be completed exactly once
// unless a cancel withdrew it, and never after that.
//   async-handoff-cancel: the reader cancels right after it starts.
//   async-handoff-reader: not cancelled; its completion frees the node; the walk spans holds
//   (chunk of 1), so the reader may also join an unlock in progress and be re-queued from the
//   joined list.
template <unsigned Chunk, bool FreeFrame, bool Cancel>
struct async_handoff {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, Chunk);
    r.fair = {0, std::chrono::nanoseconds(0)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 barger", U::locker(a, LCK, 2));
    r.add_thread("A async reader", [a] { U::wait_async(a, LCK, FreeFrame, Cancel); });
    r.add_thread("T2 locker", U::locker(a, LCK));
  }
};
using async_handoff_cancel = async_handoff<64, false, true>;
using async_handoff_reader = async_handoff<1, true, false>;

// async-double-cancel (issue 11): two threads cancel one asynchronous wait at once (a stop
// request racing the waiter's own cancel; the second may come while the start is still setting
// the node up) while its writeback ends, with a blocking waiter sharing the bucket queue. At most one cancel
// may withdraw it; a second withdraw must not unlink it again (that damages the queue: the blocking waiter is
// lost); and the wait is completed exactly once unless a cancel withdrew it.
struct async_double_cancel {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    using C = detail::core<P, R, std::uint32_t>;
    using node = typename C::node;
    names(r);
    install_table<P>(r, 1, 64);
    const obj a = r.new_object("page", WBK, false, 1);
    // The request's frame: shared by the actor and the canceller, outliving both (never freed in
    // an execution; the end-of-execution checks find it if it is still linked).
    struct frame {
      alignas(node) unsigned char buf[sizeof(node)];
      node* n = nullptr;
      model_async_sink* sink = nullptr;
      bool prepared = false;  // prepare_async has run: the node may be cancelled from now on
      int withdrawn = 0;
      model_parker* actor = nullptr;
    };
    auto f = std::make_shared<frame>();
    r.add_thread("A async waiter", [a, f] {
      runtime& q = rt();
      q.set_target(a);
      const auto start = q.begin_wait(a, WBK);
      f->actor = &q.current_parker();
      f->actor->prepare();
      f->n = new (f->buf) node;
      f->sink = &q.new_sink();
      f->sink->actor = q.current();
      model_parker* me = f->actor;
      f->sink->callback = [me](std::uint32_t token) { rt().loop_wake(*me, token); };
      C::prepare_async(*f->n, U::word(a), WBK, f->sink);
      {
        // Publishes the set-up node to the canceller, whose cancel takes this bucket lock (the
        // native waiter publishes it with its state's release store).
        auto& b = P::table().bucket_for(&U::word(a));
        P::lock(b.lock);
        P::unlock(b.lock);
      }
      f->prepared = true;
      if (C::start_wait_clear_async(U::word(a), WBK, *f->n)) {
        q.end_wait(start, true);
        return;
      }
      f->sink->pending = true;
      if (C::cancel_async(*f->n)) {
        f->sink->withdrawn = true;
        if (++f->withdrawn > 1) {
          q.msg_ = "two cancels withdrew one asynchronous wait";
          q.fail();
        }
        q.end_wait(start, false);
        return;
      }
      // A completion, or the canceller's word that it withdrew the wait.
      const std::uint32_t t = f->actor->park(detail::deadline::never(), nullptr);
      q.end_wait(start, t == detail::token_cleared);
    });
    // Cancels once, whenever it runs after A has set its node up: before A's start has queued it
    // (the native waiter's `starting` state keeps its cancel() away then, but the core must not
    // unlink a node no queue holds either), or before, during or after A's own cancel, the
    // release's walk (one hold: chunk 64), or the completion.
    r.add_thread("T2 canceller", [f] {
      runtime& q = rt();
      if (!f->prepared) return;
      if (C::cancel_async(*f->n)) {
        f->sink->withdrawn = true;
        if (++f->withdrawn > 1) {
          q.msg_ = "two cancels withdrew one asynchronous wait";
          q.fail();
        }
        q.loop_wake(*f->actor, detail::token_abandoned);
      }
    });
    r.add_thread("T3 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T1 writeback", [a] { U::end_writeback(a, WBK); });
  }
};

// async-lock-race, async-lock-handoff, async-lock-cancel (issue 11): an asynchronous lock waiter
// among blocking lockers of one bit. A lock waiter woken to race races on the releasing thread,
// as the release delivers to it (core::race_async), and may lose to a barger and queue again; a
// hand-off makes it the owner through its completion. Checked: one owner; what every unlock
// grants (at most one hand-off, only when earned, the first lock waiter decides: the checks of
// the blocking waiters, applied to the asynchronous one as its token is delivered); the race's
// touches of the word are the waiter's, not the releaser's (any other touch of the word by the
// releaser after its atomic step still is one); exactly one completion per pending start, none
// after a withdrawing cancel, and a waiter whose cancel came too late is never queued again.
//   async-lock-race: a lost race earns a hand-off (max_lost_races 1); the completion frees the
//   node.
//   async-lock-handoff: every lock waiter has earned a hand-off from its first queueing; a
//   reader of the lock bit is queued ahead of the lock waiters sometimes.
//   async-lock-cancel: the asynchronous waiter cancels right after a pending start; a lost race
//   earns a hand-off, so a cancel may meet the node claimed for a race or for a hand-off.
template <class F, bool Cancel, bool Reader>
struct async_lock {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = F::value;
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 barger", U::locker(a, LCK, 2));
    r.add_thread("A async locker", [a] { U::lock_async(a, LCK, !Cancel, Cancel); });
    if constexpr (Reader)
      r.add_thread("T2 reader", [a] { U::wait(a, LCK); });
    else
      r.add_thread("T2 locker", U::locker(a, LCK));
  }
};
struct fair_one_race {
  static constexpr fairness_settings value{1, std::chrono::hours(1)};
};
struct fair_always {
  static constexpr fairness_settings value{0, std::chrono::nanoseconds(0)};
};
using async_lock_race = async_lock<fair_one_race, false, false>;
using async_lock_handoff = async_lock<fair_always, false, true>;
using async_lock_cancel = async_lock<fair_one_race, true, false>;

// async-lock-event (issue 11): an asynchronous lock waiter on an event bit. The end of writeback
// clears the bit and wakes every waiter, the lock waiters to race (an event release never hands
// off); the asynchronous one races in its completion, against a blocking lock waiter.
struct async_lock_event {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("A async locker", [a] { U::lock_async(a, WBK, true); });
    r.add_thread("T1 writeback", [a] { U::end_writeback(a, WBK); });
    r.add_thread("T2 locker", U::locker(a, WBK));
  }
};

// The reset rows (issue 12's recovery, its first slice: docs/CHECKER.md, "Resets"). A thread
// resets the objects' bucket (core::reset) `times` times, each at any step of the others, as
// recovery from a process that died inside the bucket will. With every thread alive a reset may
// only delay: every check of the other rows holds, fairness included (no lost wake-up, woken
// means cleared and no second sleep after a clear, one owner, bounded holds, the last touch, the
// hand-off rules). Only for the protocol a domain runs.
template <class P, release_protocol R>
void add_resetter(runtime& r, obj o, int times) {
  using C = detail::core<P, R, std::uint32_t>;
  r.add_thread("R resetter", [o, times] {
    for (int i = 0; i < times; ++i) {
      if constexpr (R == release_protocol::atomic_clear)
        C::reset(C::bucket_of(&rt().template word<std::uint32_t>(o)));
      else
        (void)o, std::abort();  // reset_entry gives the other protocols no cell
    }
  });
}

// reset-walk: chunk of 1, so that the end of writeback walks in several holds over two waiters
// while a third queues or joins it; the bucket is reset at any step: the walk must start again
// (its claimed waiters back at the head, the joiner at the tail) and every waiter still return
// after the clear, without sleeping twice. One preemption (two reached 5 million schedules with
// the first reset): a join needs one, and the reset then runs while the others are parked.
struct reset_walk {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T2 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T3 late waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T4 writeback", [a] { U::end_writeback(a, WBK); });
    add_resetter<P, R>(r, a, 1);
  }
};

// reset-handoff: strict fairness and a chunk of 1, so that unlocks hand off in walks that span
// holds, past a reader of the lock bit that goes back to the queue; the bucket is reset at any
// step: a hand-off decided in a walk that a reset cut short is decided again, never twice, and
// the reader is never woken into a set bit.
struct reset_handoff {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {0, std::chrono::hours(1)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 barger", U::locker(a, LCK, 2));
    r.add_thread("T2 locker", U::locker(a, LCK));
    r.add_thread("T3 reader", [a] { U::wait(a, LCK); });
    add_resetter<P, R>(r, a, 1);
  }
};

// reset-timeout: chunk of 1; a timed waiter and a timed locker (on two bits of one word, so that a
// walk over the one passes the other) whose deadlines may pass while a walk that a reset cuts
// short holds them: such a waiter gets token_abandoned and is never queued again; two resets.
struct reset_timeout {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {1, std::chrono::hours(1)};
    const obj a = r.new_object("page", WBK, false, 1);
    r.add_thread("T1 timed waiter", [a] { U::wait(a, WBK, 10ms); });
    r.add_thread("T2 timed locker", [a] {
      if (U::lock(a, LCK, 10ms)) U::unlock(a, LCK);
    });
    r.add_thread("T3 writeback", [a] {
      U::lock(a, LCK);
      U::end_writeback(a, WBK);
      U::unlock(a, LCK);
    });
    add_resetter<P, R>(r, a, 2);
  }
};

// reset-put-back, a sampled row: two walks of one word across a reset. The unlock's walk claims
// the two readers of the lock bit, one per hold (chunk 1), and is cut short by the reset; the end
// of writeback, which begins after it, walks over its own two waiters and holds its place past the
// head; the unlock's walk then restarts, puts the readers back at the head and claims the first
// again in that hold. The end of writeback, finishing, must keep the waiters bit for the second:
// restart_walk tells it (other_bit_arrived), as an arrival does. Without that it clears the bit
// under a queued waiter [I4] (the second review of the reset found this; mutant
// restart-hides-put-back). Six threads and three preemptions: past any exhaustive bound a table
// can afford, so the row is sampled (pct, depth 6; it finds the mutant's violation after about
// 50 000 to 270 000 schedules, by seed).
// reset-put-back-timed: the second reader waits with a deadline, which may pass while the cut
// walk holds it: put back with the first, it must get token_abandoned and never be queued again
// (mutant restart-requeues-abandoned: re-queued, it waits past its deadline for a later
// release). The first reader, claimed again in the restart's hold, keeps it from being claimed
// before the bucket unlock, where the queue is checked. A row of its own: with the deadline, the
// untimed row's bug is found in few seeds (the timed reader mostly leaves first).
template <bool Timed>
struct reset_put_back {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    using C = detail::core<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    const obj a = r.new_object("page", LCK | WBK, false, 1);
    const int x = r.add_thread("T1 unlocker", [a] { U::unlock(a, LCK); });
    r.hold_at_start(a, LCK, x);
    r.add_thread("T2 reader", [a] { U::wait(a, LCK); });
    if constexpr (Timed)
      r.add_thread("T3 timed reader", [a] { U::wait(a, LCK, 10ms); });
    else
      r.add_thread("T3 reader", [a] { U::wait(a, LCK); });
    r.add_thread("T4 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T5 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("R resetter, writeback", [a] {
      if constexpr (R == release_protocol::atomic_clear)
        C::reset(C::bucket_of(&rt().template word<std::uint32_t>(a)));
      else
        std::abort();  // reset_entry gives the other protocols no cell
      U::end_writeback(a, WBK);
    });
  }
};

// The death rows (issue 12: a process killed while it waits; docs/CHECKER.md, "Deaths"). One
// thread is the victim: the killer kills it at any step of its wait (its node and parker set up
// in its slot, no bucket lock held), and the recoverer then finishes its wait for it
// (core::finish_dead_wait), as a live process does once it finds the victim's process gone:
// again each time it finds a release holding the node, until a token has come. Every check of the
// other rows applies to the living: no lost wake-up (each returns, none waits on what was meant
// for the dead), one owner (a lock released for the dead is held by nobody else), woken means
// cleared, the hand-off rules for every unlock (the recoverer's too), the last touch, an idle
// table at the end (the dead node out of every list). Offsets column only: a waiter dies only in
// a domain.
// The recoverer's finishing of the dead victim's wait, as a live process does it: the token its
// parker holds, core::finish_dead_wait again each time a token comes while a release still held
// the node, then the node destroyed as the domain frees the slot (a later touch of it is caught).
template <class P, release_protocol R>
void finish_victim_wait(int victim) {
  using C = detail::core<P, R, std::uint32_t>;
  using node = detail::waiter_node<P>;
  runtime& q = rt();
  auto& slot = P::domain().slots[std::size_t(victim)];
  node* n = std::launder(reinterpret_cast<node*>(slot.wait));
  if (n->word.get()) {
    if (n->width != sizeof(std::uint32_t)) std::abort();  // the rows' words are 32-bit
    while (!C::finish_dead_wait(*n, q.read_token(slot.parker))) q.await_token(slot.parker);
  }
  n->~node();
  slot.waiting = false;
}

template <class P, release_protocol R>
void add_killer_and_recoverer(runtime& r, int victim) {
  r.victim = victim;
  r.add_thread("X killer", [] { rt().kill_victim(); });
  r.add_thread("Y recoverer", [victim] {
    if constexpr (P::offsets && R == release_protocol::atomic_clear) {
      if (!rt().victim_gone()) return;
      finish_victim_wait<P, R>(victim);
    } else {
      (void)victim, std::abort();  // death_entry gives the other columns no cell
    }
  });
}

// The killer and the recoverer of the dead-holder rows: the victim may die anywhere in its
// operation (kill_anywhere), holding a bucket lock too, or between two holds of its release's
// walk, or while that release delivers. The recoverer takes over a bucket lock the dead holds and
// rebuilds that bucket from the slots (core::rebuild), finishes a release the victim had begun
// (core::finish_dead_release: rebuilt, then made again if it had not decided), and finishes its
// wait as in the other death rows. The one point where the victim cannot die here is between its
// release's decision and its clearing step (runtime::kill_anywhere says why).
template <class P, release_protocol R>
void add_killer_and_takeover(runtime& r, int victim) {
  r.victim = victim;
  r.kill_anywhere = true;
  r.add_thread("X killer", [] { rt().kill_victim(); });
  r.add_thread("Y recoverer", [victim] {
    if constexpr (P::offsets && R == release_protocol::atomic_clear) {
      using C = detail::core<P, R, std::uint32_t>;
      using node = detail::waiter_node<P>;
      using record = detail::release_record<P>;
      runtime& q = rt();
      if (!q.victim_gone()) return;
      for (std::size_t i = 0; i < P::table().size(); ++i) {
        auto& b = P::table().at(i);
        if (b.lock.owner != victim) continue;
        q.take_over(b.lock);
        C::rebuild(b);
      }
      auto& slot = P::domain().slots[std::size_t(victim)];
      if (slot.releasing) {
        record* rec = std::launder(reinterpret_cast<record*>(slot.rec));
        if (rec->word.get() && rec->width != sizeof(std::uint32_t)) std::abort();  // 32-bit words here
        C::finish_dead_release(*rec);  // the model's recoverer waits for the bucket lock
        rec->~record();
        std::launder(reinterpret_cast<node*>(slot.mark))->~node();
        std::launder(reinterpret_cast<node*>(slot.end))->~node();
        slot.releasing = false;
      }
      if (slot.waiting) finish_victim_wait<P, R>(victim);
    } else {
      (void)victim, std::abort();  // death_entry gives the other columns no cell
    }
  });
}

// dead-holder-event: chunk of 1; the victim ends writeback on one page while a waiter waits for
// it, and dies anywhere in that release: holding the bucket lock, between its holds, delivering.
// The waiter of another page in the same bucket, and its writeback, must go on; the waiter of the
// victim's page must be woken (the release is made again, or what it decided is delivered).
struct dead_holder_event {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    const obj a = r.new_object("page", WBK, false, 1);
    const obj b = r.new_object("other", WBK, false, 1);
    const int v = r.add_thread("V writeback", [a] { U::end_writeback(a, WBK); });
    r.add_thread("T1 other writeback", [a, b] {
      U::end_writeback(b, WBK);
      U::wait(a, WBK);
    });
    r.add_thread("T2 other waiter", [b] { U::wait(b, WBK); });
    add_killer_and_takeover<P, R>(r, v);
  }
};

// dead-holder-unlock: chunk of 1, hand-offs always earned; the victim holds the lock from the
// start and unlocks it while a reader of the lock bit and a locker wait, and dies anywhere in that
// unlock (its walk claims the reader, hands off to the locker, then queues the reader again, a hold
// at a time). The locker must get the lock, the reader see it clear, and the other page's waiter
// and writeback go on.
struct dead_holder_unlock {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {0, std::chrono::nanoseconds(0)};
    const obj a = r.new_object("page", LCK, false, 1);
    const obj b = r.new_object("other", WBK, false, 1);
    const int v = r.add_thread("V unlocker", [a] { U::unlock(a, LCK); });
    r.hold_at_start(a, LCK, v);
    r.add_thread("T1 locker", [a, b] {
      U::lock(a, LCK);
      U::unlock(a, LCK);
      U::end_writeback(b, WBK);
    });
    r.add_thread("T2 reader", [a, b] {
      U::wait(a, LCK);
      U::wait(b, WBK);
    });
    add_killer_and_takeover<P, R>(r, v);
  }
};

// dead-holder-retaken: never earned; the victim holds the lock from the start and unlocks it
// while a locker waits: it wakes the locker to race and clears the bit and the waiters bit, and
// may die before its bucket unlock. A barger may take the bit meanwhile: the rebuild then queues
// the locker again (the bit is set), and must set the waiters bit for it, or the barger's unlock
// is a lone CAS that wakes nobody.
struct dead_holder_retaken {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1000, std::chrono::hours(1)};
    const obj a = r.new_object("page", LCK, false, 1);
    const int v = r.add_thread("V unlocker", [a] { U::unlock(a, LCK); });
    r.hold_at_start(a, LCK, v);
    r.add_thread("T1 locker", U::locker(a, LCK));
    r.add_thread("T2 barger", U::locker(a, LCK));
    add_killer_and_takeover<P, R>(r, v);
  }
};

// dead-holder-in-walk: chunk of 1; the victim, a timed waiter, dies anywhere in its wait, holding
// the bucket lock too, while a live writeback walks the page's waiters in several holds: it may
// die as it joins that walk's record, or leaves at its deadline between two holds. The rebuild
// must leave what the live walk holds claimed to that walk, which starts again (the epoch).
struct dead_holder_in_walk {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    const obj a = r.new_object("page", WBK, false, 1);
    const int v = r.add_thread("V timed waiter", [a] { U::wait(a, WBK, 5ms); });
    r.add_thread("T1 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T2 writeback", [a] { U::end_writeback(a, WBK); });
    add_killer_and_takeover<P, R>(r, v);
  }
};

// dead-holder-arrival: the victim, a timed waiter, dies anywhere in its wait: holding the bucket
// lock as it queues or leaves at its deadline, too. The writeback of its page and of another page
// in the same bucket, and that page's waiter, must go on.
struct dead_holder_arrival {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    const obj a = r.new_object("page", WBK, false, 1);
    const obj b = r.new_object("other", WBK, false, 1);
    const int v = r.add_thread("V timed waiter", [a] { U::wait(a, WBK, 5ms); });
    r.add_thread("T1 writeback", [a, b] {
      U::end_writeback(a, WBK);
      U::end_writeback(b, WBK);
    });
    r.add_thread("T2 other waiter", [b] { U::wait(b, WBK); });
    add_killer_and_takeover<P, R>(r, v);
  }
};

// dead-lock-handoff: every lock waiter earns a hand-off at once; the victim locks twice (its
// second wait must not leave its first wait's token for the recoverer), among a holder and a
// locker: a lock handed to the dead is released for it and reaches the living.
struct dead_lock_handoff {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {0, std::chrono::nanoseconds(0)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 holder", U::locker(a, LCK));
    const int v = r.add_thread("V victim", U::locker(a, LCK, 2));
    r.add_thread("T2 locker", U::locker(a, LCK));
    add_killer_and_recoverer<P, R>(r, v);
  }
};

// dead-lock-retry: no lock waiter ever earns a hand-off: unlocks clear and wake the first lock
// waiter to race. Woken so and dead, the victim never races: the recoverer races for it and
// releases what it wins, else the living lock waiter stays queued over a clear bit.
struct dead_lock_retry {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1000, std::chrono::hours(1)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 holder", U::locker(a, LCK));
    const int v = r.add_thread("V victim", U::locker(a, LCK));
    r.add_thread("T2 locker", U::locker(a, LCK));
    add_killer_and_recoverer<P, R>(r, v);
  }
};

// dead-waiter-walk: chunk of 1, so that the end of writeback walks in several holds; the victim
// waits for the bit with another waiter and dies queued, claimed by the walk (the recoverer must
// wait for the token and never free the node under the walk), or joined to it.
struct dead_waiter_walk {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    const obj a = r.new_object("page", WBK, false, 1);
    const int v = r.add_thread("V victim", [a] { U::wait(a, WBK); });
    r.add_thread("T1 waiter", [a] { U::wait(a, WBK); });
    r.add_thread("T2 writeback", [a] { U::end_writeback(a, WBK); });
    add_killer_and_recoverer<P, R>(r, v);
  }
};

// dead-lock-barged: never earned; the holder locks again at once after its unlock (a barger), so
// the victim, woken to race, may lose and die before it queues again: nothing will be delivered
// to it then, and its recoverer must not wait for a token (the node is idle, not claimed).
struct dead_lock_barged {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 64);
    r.fair = {1000, std::chrono::hours(1)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 barger", U::locker(a, LCK, 2));
    const int v = r.add_thread("V victim", U::locker(a, LCK));
    add_killer_and_recoverer<P, R>(r, v);
  }
};

// dead-reader-handoff: chunk of 1, hand-offs always earned; the victim waits for the lock bit to
// clear (a reader) ahead of a lock waiter: an unlock's walk claims it in one hold and hands off
// past it in a later one, then queues it again. Dead meanwhile, it must not be queued again (its
// recoverer waits for a token): it gets token_abandoned.
struct dead_reader_handoff {
  template <class P, release_protocol R>
  static void setup(runtime& r) {
    using U = user<P, R, std::uint32_t>;
    names(r);
    install_table<P>(r, 1, 1);
    r.fair = {0, std::chrono::nanoseconds(0)};
    const obj a = r.new_object("page", 0, false, 1);
    r.add_thread("T1 holder", U::locker(a, LCK));
    const int v = r.add_thread("V reader", [a] { U::wait(a, LCK); });
    r.add_thread("T2 locker", U::locker(a, LCK));
    add_killer_and_recoverer<P, R>(r, v);
  }
};

template <class P, release_protocol R, class W>
void probe_word(obj o) {
  using U = user<P, R, W>;
  constexpr W PROBE = W(1) << 4;
  runtime& r = rt();
  if (!(r.word<W>(o).load() & waiters_bit<W>)) return;
  r.set_target(o);
  r.start_bit(o, PROBE);
  U::end_writeback(o, PROBE);
  r.check_waiters_bit_clear(o);
}

template <class S, class P, release_protocol R>
void setup_with_probe(runtime& r) {
  S::template setup<P, R>(r);
  r.add_thread(
      "probe",
      [] {
        runtime& q = rt();
        if (!q.table_idle()) return;  // reported when the execution ends
        std::array<obj, max_slots> objs;
        const std::size_t n = q.live_objects(objs);
        for (std::size_t i = 0; i < n; ++i) {
          if (q.slot_wide(objs[i].slot))
            probe_word<P, R, std::uint64_t>(objs[i]);
          else
            probe_word<P, R, std::uint32_t>(objs[i]);
        }
      },
      true);
}

// `in_domain`: the scenario also runs under the offset-shaped policy (its waits are blocking).
template <class S, bool in_domain = true>
scenario entry(const char* name, const char* summary, unsigned bound) {
  using rp = release_protocol;
  setup_fn offsets = nullptr;
  if constexpr (in_domain) offsets = &setup_with_probe<S, offset_model_policy, rp::atomic_clear>;
  return {
      name,
      summary,
      bound,
      {&setup_with_probe<S, model_policy, rp::clear_then_wake>,
       &setup_with_probe<S, model_policy, rp::pinned>, &setup_with_probe<S, model_policy, rp::xor_waiters>,
       &setup_with_probe<S, model_policy, rp::atomic_clear>},
      &setup_with_probe<S, broken_walk_policy, rp::atomic_clear>,
      offsets};
}
template <class S>
scenario async_entry(const char* name, const char* summary, unsigned bound) {
  return entry<S, false>(name, summary, bound);
}
// A reset row: atomic-clear and its offsets column only (a bucket is reset only in a domain, and
// a domain runs atomic-clear); the old protocols' cells are n/a.
template <class S>
scenario reset_entry(const char* name, const char* summary, unsigned bound) {
  scenario s = entry<S>(name, summary, bound);
  for (std::size_t i = 0; i < std::size(all_release_protocols); ++i)
    if (all_release_protocols[i] != release_protocol::atomic_clear) s.setup[i] = nullptr;
  s.broken_walk_setup = nullptr;
  return s;
}

// A sampled row (scenario::pct_runs): pct with this depth and this many schedules where the
// others are searched exhaustively.
scenario sampled(scenario s, unsigned depth, std::uint64_t runs) {
  s.pct_depth = depth;
  s.pct_runs = runs;
  return s;
}

// A death row: the offsets column only (a waiter dies only in a wait domain, and the recoverer
// finds its node in the domain's slots).
template <class S>
scenario death_entry(const char* name, const char* summary, unsigned bound) {
  scenario s = reset_entry<S>(name, summary, bound);
  for (setup_fn& f : s.setup) f = nullptr;
  return s;
}

// ------------------------------------------------------------------------------------------
// Search strategies.

// Depth-first search of every schedule with at most `bound` preemptions (CHESS's iterative
// context bounding, one bound). A preemption is a switch away from a thread that could go on
// and is not about to park; switches at blocking points are free and unbounded. The stack
// holds, for each step of the current schedule, the threads still to try there.
class dfs_chooser final : public chooser {
 public:
  explicit dfs_chooser(unsigned bound) : bound_(bound) {}
  int pick(const std::vector<int>& en, int cur, bool preemptible) override {
    if (depth_ == stack_.size()) {
      point p;
      const bool cur_en = std::find(en.begin(), en.end(), cur) != en.end();
      if (cur_en) p.options.push_back(cur);  // no switch first
      for (int t : en)
        if (t != cur && (!preemptible || used_ < bound_)) p.options.push_back(t);
      stack_.push_back(std::move(p));
    }
    const point& p = stack_[depth_++];
    const int t = p.options[p.next];
    if (t != cur && preemptible) ++used_;
    return t;
  }
  // Backtracks to the deepest step with an untried choice; false when none is left.
  bool next() {
    depth_ = 0;
    used_ = 0;
    while (!stack_.empty() && stack_.back().next + 1 >= stack_.back().options.size()) stack_.pop_back();
    if (stack_.empty()) return false;
    ++stack_.back().next;
    return true;
  }

 private:
  struct point {
    std::vector<int> options;
    std::size_t next = 0;
  };
  unsigned bound_;
  unsigned used_ = 0;
  std::size_t depth_ = 0;
  std::vector<point> stack_;
};

class random_chooser final : public chooser {
 public:
  explicit random_chooser(std::uint64_t seed) : rng_(seed) {}
  int pick(const std::vector<int>& en, int, bool) override {
    return en[std::uniform_int_distribution<std::size_t>(0, en.size() - 1)(rng_)];
  }

 private:
  std::mt19937_64 rng_;
};

// PCT (Burckhardt et al., ASPLOS 2010): random distinct thread priorities, always run the
// highest-priority enabled thread, and at d - 1 random steps lower the running thread's
// priority below all others. Finds a bug of depth d with probability >= 1/(n k^(d-1)) per run.
class pct_chooser final : public chooser {
 public:
  pct_chooser(std::uint64_t seed, unsigned depth) : rng_(seed), depth_(depth) {}
  void begin(std::size_t threads, unsigned k) {
    prio_.resize(threads);
    for (std::size_t i = 0; i < threads; ++i) prio_[i] = int(depth_ + i);
    std::shuffle(prio_.begin(), prio_.end(), rng_);
    change_.clear();
    for (unsigned i = 1; i < depth_; ++i)
      change_.push_back(std::uniform_int_distribution<unsigned>(1, k)(rng_));
    step_ = 0;
  }
  int pick(const std::vector<int>& en, int cur, bool) override {
    ++step_;
    for (std::size_t i = 0; i < change_.size(); ++i)
      if (change_[i] == step_ && cur >= 0) prio_[std::size_t(cur)] = int(i);
    int best = en[0];
    for (int t : en)
      if (prio_[std::size_t(t)] > prio_[std::size_t(best)]) best = t;
    return best;
  }

 private:
  std::mt19937_64 rng_;
  unsigned depth_;
  std::vector<int> prio_;
  std::vector<unsigned> change_;
  unsigned step_ = 0;
};

// ------------------------------------------------------------------------------------------
// The counterexample, step by step.

std::string hex(std::uint64_t v, bool wide) {
  char b[24];
  std::snprintf(b, sizeof b, wide ? "0x%016llx" : "0x%08llx", static_cast<unsigned long long>(v));
  return b;
}

std::string format_trace(const runtime& r, const violation& v) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "  %4s  %-18s %s\n", "step", "thread", "operation");
  out += line;
  unsigned i = 0;
  for (const step_record& s : r.trace()) {
    // Appended piecewise: `"literal" + std::string` trips GCC 12's -Wrestrict false positive
    // inside std::string at -O3 (a plain Release build).
    std::string op = s.op;
    if (s.on_word) {
      const bool wide = r.slot_wide(s.slot);
      if (s.arg) op.append(" ").append(hex(s.arg, wide));
      if (s.note) op.append(" (").append(s.note).append(")");
      op.append(" on ")
          .append(r.slot_name(s.slot, s.gen))
          .append(": ")
          .append(r.describe_word(s.before, wide));
      if (s.after != s.before)
        op.append(" -> ").append(r.describe_word(s.after, wide));
      else
        op.append(" (unchanged)");
    } else {
      if (s.slot >= 0) op.append(" on ").append(r.slot_name(s.slot, s.gen));
      if (s.n >= 0)
        op.append(" [").append(s.note ? s.note : "").append(" ").append(std::to_string(s.n)).append("]");
      else if (s.note)
        op.append(" [").append(s.note).append("]");
    }
    std::snprintf(line, sizeof line, "  %4u  %-18s %s\n", ++i, r.thread_name(s.thread).c_str(), op.c_str());
    out += line;
  }
  out += "  VIOLATION";
  if (v.thread >= 0) out.append(" (").append(r.thread_name(v.thread)).append(")");
  out.append(": ").append(v.what).append("\n");
  return out;
}

}  // namespace

const std::vector<scenario>& scenarios() {
  static const std::vector<scenario> all = {
      entry<writeback_free>("writeback-free",
                            "end writeback; the waiter frees the page; the memory is reused", 3),
      entry<lock_handoff>("lock-handoff",
                          "three threads lock/unlock one bit twice each (hand-off after 1 lost race)", 3),
      entry<mixed_bits>("mixed-bits", "waiters on two bits of one 64-bit word, two words in one bucket", 2),
      entry<timeout_race>("timeout-race", "timed waiter and timed locker whose deadlines race the release",
                          2),
      entry<bookmark_walk>("bookmark-walk",
                           "chunk of 2: three waiters, two words, one timed; walk spans holds", 2),
      entry<writeback_restart>("writeback-restart",
                               "writeback restarts while a waiter waits (XFS thread, 2024)", 3),
      entry<arrivals_during_walk>("arrivals-during-walk",
                                  "chunk of 1: a waiter keeps arriving while the release walks", 2),
      entry<handoff_walk>("handoff-walk",
                          "chunk of 1, hand-off always earned: joiners re-queued; another bit too", 2),
      entry<handoff_past_reader>("handoff-past-reader",
                                 "strict hand-off to a locker queued behind a reader of the lock bit", 3),
      entry<event_to_locker>("event-to-locker", "a lock waiter on an event bit", 3),
      entry<event_to_joiner>("event-to-joiner", "chunk of 1: an earned lock waiter joins an event release",
                             2),
      entry<timed_lock_gives_up>("timed-lock-gives-up", "a timed lock that gives up leaves the bit as it was",
                                 3),
      entry<timed_lock_lost_race>("timed-lock-lost-race",
                                  "a timed locker loses its race after its deadline passed: it gives up", 2),
      entry<handoff_by_time>("handoff-by-time", "hand-off earned by time only (max_wait 0)", 3),
      entry<designated_waker>("designated-waker",
                              "never earned: a designated waker, timed or not, and a reader of another bit",
                              2),
      entry<requeue_two_holds>("requeue-two-holds",
                               "a re-queue of two readers over two holds, another bit released between", 2),
      entry<handoff_time_requeue>("handoff-time-requeue",
                                  "the time bound runs from the first queueing, across a re-queue", 2),
      entry<joiner_unearned>("joiner-unearned",
                             "chunk of 1: a locker joins an unlock walking over two readers", 3),
      entry<spin_race>("spin-race", "three lockers once each, 4 preemptions: a spin loses the bit", 4),
      async_entry<async_frame_freed>(
          "async-frame-freed", "writeback-free with an asynchronous waiter whose completion frees its frame",
          3),
      async_entry<async_handoff_cancel>(
          "async-handoff-cancel",
          "an asynchronous reader of a handed-off lock bit, cancelled after its start", 3),
      async_entry<async_double_cancel>("async-double-cancel",
                                       "two threads cancel one asynchronous wait while its bit clears", 2),
      async_entry<async_handoff_reader>(
          "async-handoff-reader", "chunk of 1: an asynchronous reader joins and is re-queued by hand-offs",
          2),
      async_entry<async_lock_race>(
          "async-lock-race",
          "an asynchronous locker races blocking ones in its completion; it frees its node", 4),
      async_entry<async_lock_handoff>(
          "async-lock-handoff", "hand-off always earned: an asynchronous locker, a barger, a reader", 4),
      async_entry<async_lock_cancel>(
          "async-lock-cancel", "an asynchronous locker cancelled after its start, claimed to race or owned",
          4),
      async_entry<async_lock_event>("async-lock-event", "an asynchronous lock waiter on an event bit", 4),
      reset_entry<reset_walk>("reset-walk",
                              "chunk of 1: the bucket is reset while writeback walks over waiters", 1),
      reset_entry<reset_handoff>("reset-handoff",
                                 "chunk of 1, hand-off always earned: a reset cuts hand-off walks short", 2),
      reset_entry<reset_timeout>("reset-timeout",
                                 "a timed waiter and a timed locker, deadlines racing two resets", 2),
      sampled(reset_entry<reset_put_back<false>>(
                  "reset-put-back", "a restarted walk puts back readers past another walk of the word", 0),
              6, 1000000),
      sampled(
          reset_entry<reset_put_back<true>>(
              "reset-put-back-timed", "as reset-put-back, one reader's deadline passing while claimed", 0),
          6, 1000000),
      death_entry<dead_lock_handoff>(
          "dead-lock-handoff", "a lock waiter dies; hand-offs always earned: one may go to the dead", 2),
      death_entry<dead_lock_retry>("dead-lock-retry",
                                   "a lock waiter dies; never earned: the dead may be woken to race", 2),
      death_entry<dead_lock_barged>(
          "dead-lock-barged", "a lock waiter dies after losing a race to a barger, before it queues", 3),
      death_entry<dead_reader_handoff>("dead-reader-handoff",
                                       "chunk of 1: a reader dies claimed by a walk that then hands off", 2),
      death_entry<dead_waiter_walk>("dead-waiter-walk",
                                    "chunk of 1: a waiter dies queued, claimed or joined in a walk", 2),
      death_entry<dead_holder_event>("dead-holder-event",
                                     "chunk of 1: writeback dies anywhere, holding the bucket lock too", 1),
      death_entry<dead_holder_unlock>(
          "dead-holder-unlock", "chunk of 1, always earned: an unlock dies anywhere in its hand-off walk", 1),
      death_entry<dead_holder_retaken>(
          "dead-holder-retaken", "never earned: an unlock dies after its clear; a barger takes the bit", 2),
      death_entry<dead_holder_in_walk>(
          "dead-holder-in-walk", "chunk of 1: a timed waiter dies anywhere while a live walk spans holds", 2),
      death_entry<dead_holder_arrival>(
          "dead-holder-arrival", "a timed waiter dies anywhere, holding the bucket lock as it queues too", 1),
  };
  return all;
}

const scenario* find_scenario(const std::string& name) {
  for (const scenario& s : scenarios())
    if (name == s.name) return &s;
  return nullptr;
}

// The verdicts the default run requires. atomic-clear, the shipped protocol, passes
// everything. clear-then-wake fails writeback-free: the 2020 bug (if it passes, the checker is
// broken). The three old protocols also fail writeback-restart: they clear before they wake,
// so a late wake-up releases a waiter that queued behind a restarted writeback (the Jan 2021
// race, c2407cf7d22d; the kernel papers over it with a `while` loop, whose starvation is the
// 2024 XFS thread). They fail handoff-past-reader and joiner-unearned the same way: a walk
// that runs after the lock was re-taken wakes the reader, which queued after the clear that
// walk belongs to. Cells not listed must pass.
bool expected_to_fail(release_protocol p, const std::string& scenario) {
  if (p == release_protocol::atomic_clear) return false;
  // The same late wake-up, reached through other doors: a lock waiter on an event bit
  // (event-to-locker, event-to-joiner) and readers re-queued after a hand-off while another bit
  // of the word is released (requeue-two-holds). xor-waiters, whose xor reports the waiters bit
  // atomically, needs two waiters before the release to show it, which only event-to-joiner has.
  if (scenario == "writeback-restart" || scenario == "handoff-past-reader" || scenario == "event-to-joiner" ||
      scenario == "joiner-unearned")
    return true;
  // An asynchronous reader is served as a blocking one, so the old protocols fail its scenarios
  // as they fail the blocking ones: a hand-off's late wake-up (as handoff-past-reader), and the
  // 2020 bug (as writeback-free). xor-waiters passes them, as it passes handoff-past-reader's
  // readers only with more waiters than these scenarios have. async-lock-handoff fails the same
  // way through its blocking reader: the asynchronous locker is what hands the bit on.
  if ((scenario == "event-to-locker" || scenario == "requeue-two-holds" ||
       scenario == "async-handoff-cancel" || scenario == "async-handoff-reader" ||
       scenario == "async-lock-handoff") &&
      p != release_protocol::xor_waiters)
    return true;
  return p == release_protocol::clear_then_wake &&
         (scenario == "writeback-free" || scenario == "async-frame-freed");
}

run_options cell_options(const scenario& s, const run_options& o) {
  run_options c = o;
  if (s.pct_runs > 0 && o.how == mode::exhaustive && o.preemptions < 0) {
    c.how = mode::pct;
    c.pct_depth = s.pct_depth;
    c.runs = s.pct_runs;
  }
  return c;
}

cell_result check_cell(const scenario& s, release_protocol p, bool broken_walk, const run_options& ro) {
  const run_options o = cell_options(s, ro);
  std::size_t pi = 0;
  while (all_release_protocols[pi] != p) ++pi;
  const setup_fn setup = broken_walk ? s.broken_walk_setup : o.offsets ? s.offsets_setup : s.setup[pi];
  if (!setup || (o.offsets && p != release_protocol::atomic_clear)) std::abort();  // callers check
  runtime& r = rt();
  cell_result res;
  const auto t0 = std::chrono::steady_clock::now();
  dfs_chooser dfs(o.preemptions >= 0 ? unsigned(o.preemptions) : s.preemption_bound);
  random_chooser rnd(o.seed);
  pct_chooser pct(o.seed, o.pct_depth < 1 ? 1 : o.pct_depth);
  unsigned longest = 64;
  for (;;) {
    r.reset();
    setup(r);
    chooser* c = &dfs;
    if (o.how == mode::random) c = &rnd;
    if (o.how == mode::pct) {
      pct.begin(r.thread_count(), longest);
      c = &pct;
    }
    const violation& v = r.run(*c);
    ++res.schedules;
    longest = std::max(longest, r.steps());
    if (v.found) {
      res.failed = true;
      res.violation = v.what;
      res.trace = format_trace(r, v);
      break;
    }
    if (o.how == mode::exhaustive) {
      if (!dfs.next()) {
        res.complete = true;
        break;
      }
      if (res.schedules >= o.max_schedules) break;
    } else if (res.schedules >= o.runs) {
      res.complete = true;
      break;
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.reset();
  return res;
}

}  // namespace pagewait::check
