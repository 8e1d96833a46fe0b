// pagewait/detail/core.hpp — the protocol. The only place that decides how a bit is locked,
// waited on and released. Everything else (the public API, the checker, the demo, the
// benchmarks) instantiates this template; nothing copies it.
//
//   core<P, R, W>   P: the runtime policy (native_policy.hpp lists its interface; the model
//                   checker supplies another), R: the release protocol (protocol.hpp), W: the
//                   word type. Every access to shared state goes through P.
//
// The invariants of CONTRACT §3 are marked where they are kept: [I1] release is the last touch,
// [I2] no lost wake-up, [I3] woken means cleared, [I4] the waiters bit is conservative,
// [I5] one owner, [I6] bounded unfairness, [I7] bounded hold and walk, [I8] no work when
// uncontended, [I9] the releaser knows.
//
// Waiter kinds and what a release does with them (cf. the comment above the kernel's
// wake_page_function):
//   shared     (wait_bit_clear)  dequeued and unparked with token_cleared, after the clear.
//   exclusive  (lock_bit)        unlock: the first *exclusive* waiter queued for (word, bit)
//                                decides, whatever shared waiters are queued ahead of it. If it
//                                has earned a hand-off [I6], the lock is handed to it: the bit
//                                stays set, so no shared waiter is woken (shared waiters the walk
//                                had already dequeued go back to the queue) [I3]. Else the bit
//                                is cleared, every shared waiter is woken and that exclusive
//                                waiter is woken with token_retry to race for the bit.
//                                clear_bit_and_wake: every waiter is woken, exclusive ones with
//                                token_retry.
// A release that spans lock holds registers a release_record; waiters arriving for its
// (word, bit) join it and are served with it (woken after the clear, or re-queued if the lock
// was handed off), so the walk never grows [I7]. An unlock whose walk found no exclusive waiter
// queued may hand the lock to a lock waiter that joined it, if that one has earned it [I6].
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stop_token>

#include "pagewait/bits.hpp"
#include "pagewait/detail/deadline.hpp"
#include "pagewait/detail/parker.hpp"
#include "pagewait/detail/wait_table.hpp"
#include "pagewait/fairness.hpp"
#include "pagewait/protocol.hpp"

namespace pagewait::detail {

// The model checker's self-test (checker/, docs/CHECKER.md) must show that the checker catches
// a walk broken in the way CONTRACT §4 warns about: one that clears the bit in a later lock hold
// than the one in which it reached the queue's end. A policy that declares
// `static constexpr bool selftest_clear_in_later_hold = true` gets that broken walk from this
// very source. Only the checker's broken_walk_policy declares it; for every other policy this
// is false and the branch it guards compiles away.
template <class P>
inline constexpr bool selftest_clear_in_later_hold = requires {
  requires P::selftest_clear_in_later_hold;
};

// The checked mode (pagewait/checked.hpp) is a build of the native policy that declares
// `static constexpr bool checked = true`. It adds two things here, both on slow paths and both
// compiled only there: a queued waiter wakes every P::checked_poll() to look at its own word,
// and a slow release reports, before its last touch, whether its bit was still set. Neither
// changes what the protocol decides; the model's policy has neither. A policy derived from a
// checked native one but with a table of its own (the demo's, some tests') is not checked: the
// hooks take only the native table's buckets.
template <class P>
inline constexpr bool checked_mode = requires(bucket<P>& b, const std::atomic<std::uint32_t>* w) {
  requires P::checked;
  P::checked_queued(w, b);
};

enum class release_kind {
  unlock,  // unlock_bit: may hand off
  event,   // clear_bit_and_wake: always clears, wakes all
};

template <class P, release_protocol R, word_type W>
struct core {
  using node = waiter_node<P>;
  using bucket_t = bucket<P>;
  using wait_scope = typename scopes_of<P>::wait;
  using release_scope = typename scopes_of<P>::release;
  static constexpr W WB = waiters_bit<W>;
  static constexpr std::memory_order mo_relaxed = std::memory_order_relaxed;
  static constexpr std::memory_order mo_acquire = std::memory_order_acquire;
  static constexpr std::memory_order mo_release = std::memory_order_release;

  // ------------------------------------------------------------------------------------------
  // Fast paths [I8]. Inlined into the caller; each is one atomic RMW on the word and nothing
  // else: no table, no syscall, no fence beyond the RMW's own. How that is verified: ctest's
  // fastpath_test compiles tests/fastpath_probe.cpp (the public functions, as users compile them)
  // and tests/check_fastpath.py disassembles it, requiring on every call-free route from entry to
  // `ret` exactly one lock-prefixed instruction, no fence, and for locking no loop.

  // Lock: one `lock bts` on x86 (P::test_and_set). Acquire: the new owner sees everything the
  // previous owner wrote before its release (pairs with the release CAS / fetch_and below).
  static bool try_lock(std::atomic<W>& word, W bit) noexcept {
    return !P::test_and_set(word, bit, mo_acquire);
  }

  static void lock(std::atomic<W>& word, W bit) {
    if (try_lock(word, bit)) [[likely]]
      return;
    lock_slow(word, bit, deadline::never(), nullptr);
  }

  // Release of a lock bit or an event bit. The pin is the caller's extra reference; only the
  // `pinned` and `xor_waiters` protocols take it.
  template <class Pin = no_pin>
  static void release(std::atomic<W>& word, W bit, release_kind kind, Pin&& pin = Pin{}) {
    if constexpr (R == release_protocol::atomic_clear) {
      // Clear the bit with a CAS while the waiters bit is clear: the CAS is then the one RMW of
      // the release and its last touch of the word [I1]. If the waiters bit is set, the bit is
      // cleared (or handed off) under the bucket lock by release_slow instead. The plain load
      // costs nothing extra here: the line is already in this core's cache (we hold the bit).
      // Release order: the holder's writes happen-before whoever sees the bit clear.
      W old = P::load(word, mo_relaxed);
      do {
        if (!(old & bit)) [[unlikely]]
          throw_not_set(bit);  // word unchanged
        if (old & WB) return release_slow(word, bit, kind);
      } while (!P::compare_exchange(word, old, W(old & ~bit), mo_release, mo_relaxed));
      // The word may be gone now. Nothing below this line.
    } else {
      W old = P::load(word, mo_relaxed);
      if (!(old & bit)) [[unlikely]]
        throw_not_set(bit);
      if constexpr (protocol_pins(R)) pin.get();
      if constexpr (R == release_protocol::xor_waiters) {
        // Mainline today: the xor clears the bit and its result reports the waiters bit.
        old = P::fetch_xor(word, bit, mo_release);
      } else {
        // v5.9: clear, then look at the waiters bit. This load is the touch after the clear
        // that the seed removes: without the pin the object may be freed and reused here.
        P::fetch_and(word, W(~bit), mo_release);
        old = P::load(word, mo_relaxed);
      }
      if (old & WB) release_slow(word, bit, kind);
      if constexpr (protocol_pins(R)) pin.put();
    }
  }

  // Shared wait: a load, and nothing else if the bit is clear. Acquire pairs with the release
  // of the clear, so the caller sees what the releaser wrote.
  static bool wait_clear(std::atomic<W>& word, W bit, const deadline& dl, const std::stop_token* stop) {
    if (!(P::load(word, mo_acquire) & bit)) return true;
    return wait_clear_slow(word, bit, dl, stop);
  }

  // The bucket of a word's waiters, in the table of the word's domain (the only table, unless
  // the policy has one per domain).
  [[gnu::always_inline]] static bucket_t& bucket_of(const void* word) {
    if constexpr (requires { P::table_for(word); })
      return P::table_for(word).bucket_for(word);
    else
      return P::table().bucket_for(word);
  }

  // ------------------------------------------------------------------------------------------
  // Waiters.

  // Sleeps until the node's token arrives; on deadline or stop, leaves the queue if it still
  // can. Returns the token, or token_none if the wait was abandoned with nothing granted.
  static std::uint32_t sleep(bucket_t& b, node& n, const deadline& dl, const std::stop_token* stop) {
    typename P::parker& pk = *n.parker.get();
    std::uint32_t t = park_queued(b, n, dl, stop);
    if (t != token_none) return t;
    if (withdraw(b, n)) return token_none;
    // A release has claimed us: it decided our fate under the bucket lock and will unpark us. We
    // must wait for that (the node must stay alive until then) and report what it granted. If
    // it would have re-queued us, it unparks us with token_abandoned instead.
    t = pk.park(deadline::never(), nullptr);
    return t == token_abandoned ? token_none : t;
  }

  // A waiter leaves at its deadline or stop. Returns true if it was still queued and has left
  // (no release has taken it, and none can now); false if a release had already claimed it,
  // which is then told (`abandoned`) not to queue it again but to unpark it with what it
  // decided or with token_abandoned.
  static bool withdraw(bucket_t& b, node& n) {
    P::lock(b.lock);
    if (n.state.get() == node_state::queued) {
      // The waiters bit stays set although we may have been the last waiter: the next release
      // clears it [I4].
      b.unlink(&n);
      // Out of the queue for good, and nobody will deliver to it. An asynchronous waiter may be
      // cancelled from two threads at once (a stop request racing its own cancel): the second
      // withdraw must find it not queued, or it would unlink it again from a queue it is no
      // longer in.
      n.state.set(node_state::idle);
      P::unlock(b.lock);
      return true;
    }
    n.abandoned.set(true);
    P::unlock(b.lock);
    return false;
  }

  // The first park of a queued waiter. In a checked build it wakes every P::checked_poll() and,
  // while still queued, has the policy look at the word under the bucket lock: a queued node for
  // (word, bit) means the bit and the waiters bit are set ([I4], and no release has claimed the
  // node). This is the only read of the word by a queued waiter [I3 DROP]: it happens under the
  // bucket lock and only while the node is queued, so the bit is set and the object alive, unless
  // the program freed or overwrote it — which is what the check is there to report. The report
  // is made after the bucket lock is dropped.
  static std::uint32_t park_queued(bucket_t& b, node& n, const deadline& dl, const std::stop_token* stop) {
    if constexpr (checked_mode<P> && R == release_protocol::atomic_clear) {
      for (;;) {
        const deadline poll{P::now() + P::checked_poll()};
        const std::uint32_t t = n.parker.get()->park(poll.at < dl.at ? poll : dl, stop);
        if (t != token_none || abandon(dl, stop)) return t;
        P::lock(b.lock);
        if (n.state.get() == node_state::queued)
          P::checked_queued(static_cast<const std::atomic<W>*>(n.word.get()), b);
        P::unlock(b.lock);
        P::checked_flush();
      }
    } else {
      return n.parker.get()->park(dl, stop);
    }
  }

  // Statistics (opt-in, pagewait/stats.hpp) wrap the slow paths: while they are off, counting()
  // is one relaxed load here and nothing else changes; the model's is constexpr false. Nothing
  // of the fast paths. The counting itself is the policy's (P::stat_*), outside the protocol.
  // A policy whose switch depends on the word (a wait domain's is in the domain that holds it)
  // declares stats_on_for(word); it is asked only about the word being operated on, whose memory
  // the caller keeps alive.
  static bool counting(const void* word) noexcept {
    if constexpr (requires { P::stats_on_for(word); })
      return P::stats_on_for(word);
    else
      return P::stats_on();
  }

  [[gnu::noinline]] static bool lock_slow(std::atomic<W>& word, W bit, const deadline& dl,
                                          const std::stop_token* stop) {
    if (!counting(&word)) [[likely]]
      return lock_contended(word, bit, dl, stop);
    const auto t0 = P::now();
    const bool ok = lock_contended(word, bit, dl, stop);
    P::stat_wait_done(&word, std::uint64_t(bit), true, ok, P::now() - t0);
    return ok;
  }

  [[gnu::noinline]] static bool wait_clear_slow(std::atomic<W>& word, W bit, const deadline& dl,
                                                const std::stop_token* stop) {
    if (!counting(&word)) [[likely]]
      return wait_clear_contended(word, bit, dl, stop);
    const auto t0 = P::now();
    const bool ok = wait_clear_contended(word, bit, dl, stop);
    P::stat_wait_done(&word, std::uint64_t(bit), false, ok, P::now() - t0);
    return ok;
  }

  static bool lock_contended(std::atomic<W>& word, W bit, const deadline& dl, const std::stop_token* stop) {
    if (spin_before_queueing(word, bit, dl, stop)) return true;
    bucket_t& b = bucket_of(&word);
    // A deadline that passed (or a stop that came) before the first queueing, during the spin,
    // and after each lost race: one more try, and no queueing. The first check comes before the
    // node is taken, so a lock that will not sleep needs none (in a domain: no slot, which may
    // have run out).
    if (abandon(dl, stop)) return try_lock(word, bit);
    wait_scope scope(&word);  // the node: on this stack, or in this thread's slot of a domain
    node& n = scope.node();
    n.word.set(&word);
    n.bit = bit;
    n.width = sizeof(W);
    n.kind = node_kind::exclusive;
    n.parker.set(&scope.parker());
    const fairness_settings f = P::fairness();
    do {
      n.parker.get()->prepare();
      before_queueing(n, f);
      if (enqueue_exclusive(b, word, bit, n)) return true;
      switch (sleep(b, n, dl, stop)) {
        case token_handoff:
          return true;  // [I5] owned without the bit ever being clear
        case token_retry:
          if (race_after_retry(word, bit, n)) return true;
          // The release is done with the node (it read nothing of it after the token), which is
          // in no list until it queues again: idle, so that a recoverer finding this waiter dead
          // before then does not wait for a delivery that will never come (finish_dead_wait).
          n.state.set(node_state::idle);
          break;
        default:
          return false;  // deadline or stop, nothing granted
      }
    } while (!abandon(dl, stop));
    return try_lock(word, bit);  // gave up after a lost race
  }

  // The pieces of a lock wait. Each has one caller today; they are apart so that the
  // asynchronous waiters of docs/proposals/async-waits.md can share them.

  // Before the first queueing, while the waiters bit is clear: look at the word now and then, and
  // take the bit if it is seen clear. Returns true if the bit was taken. Nothing here is part of
  // the protocol: a look is a relaxed load (a hint), and the bit is taken only by try_lock's
  // acquire RMW, as by any caller of try_lock. A set waiters bit sends this waiter to the queue.
  // A clear one does not mean that nobody is queued: while a designated waker has not raced
  // (release_walk), its fellow lock waiters stay queued with the bit clear, and a spinner may
  // take the bit ahead of them, as any arrival may then. Bounded as every barging is [I6]: each
  // such take is a race the designated waker loses, and a waiter that has earned its hand-off
  // is never designated past, so the bit it is owed is never seen clear.
  // The looks come after P::spin_limit rounds of pauses that double (1, 2, 4, ... up to
  // P::spin_pause_cap), then after each of P::spin_yields yields of the CPU. A waiter that looks
  // at every pause keeps the line away from the holder, whose unlock and next lock then miss in
  // its cache; one that backs off leaves the holder its run (a lock's throughput is the
  // holder's). The yields are for a holder that is not running: on a machine with more threads
  // than cores, a yield may hand it this core, where a pause cannot; and a waiter that yields
  // costs the holder nothing, where a sleeper costs its unlock a wake system call. Measured on
  // 1-16 threads (docs/benchmarks.md, figure 3). A timed wait or a stoppable one yields only
  // while its deadline has not passed and no stop came. A yield takes about a microsecond on an
  // idle machine, but up to a scheduler time slice when other threads are ready to run on this
  // core: a short timed lock may overrun its deadline by that much, as a sleeper woken at its
  // deadline waits that long for a core on such a machine.
  static bool spin_before_queueing(std::atomic<W>& word, W bit, const deadline& dl,
                                   const std::stop_token* stop) {
    unsigned pauses = 1;
    for (unsigned i = 0; i < P::spin_limit + P::spin_yields; ++i) {
      if (i < P::spin_limit) {
        for (unsigned k = 0; k < pauses; ++k) P::cpu_relax();
        pauses = 2 * pauses < P::spin_pause_cap ? 2 * pauses : P::spin_pause_cap;
      } else {
        if (abandon(dl, stop)) return false;
        P::yield_cpu();
      }
      const W v = P::load(word, mo_relaxed);
      if (v & WB) return false;
      if (!(v & bit) && try_lock(word, bit)) return true;
    }
    return false;
  }

  // Before each queueing: the fairness state the releaser reads [I6]. The time bound runs from
  // the first queueing, across re-queues.
  static void before_queueing(node& n, const fairness_settings& f) {
    n.wants_handoff = n.lost.get() >= f.max_lost_races;
    if (!n.queued_once.get()) {
      n.handoff_at = saturating_add(P::now(), f.max_wait);
      n.queued_once.set(true);
    }
  }

  // Takes the bit, or makes the node visible (queued, or joined to a release in progress).
  // Returns true if the bit was taken.
  static bool enqueue_exclusive(bucket_t& b, std::atomic<W>& word, W bit, node& n) {
    P::lock(b.lock);
    const bool taken = take_or_arrive(b, word, bit, n);
    P::unlock(b.lock);
    return taken;
  }

  // enqueue_exclusive's step under the bucket lock (the caller holds it and drops it after).
  static bool take_or_arrive(bucket_t& b, std::atomic<W>& word, W bit, node& n) {
    // Set the waiters bit and try the bit in one RMW, under the bucket lock [I2]. In the word's
    // modification order a fast release either precedes this RMW (then we see the bit clear and
    // own it now) or follows it (then its CAS fails on the waiters bit and it takes this bucket
    // lock, after us, and finds us queued). If we take the bit here, the waiters bit may be left
    // set for nobody: allowed [I4], the next release clears it.
    const W old = P::fetch_or(word, W(bit | WB), mo_acquire);
    if (!(old & bit)) return true;
    b.arrive(&n);
    return false;
  }

  // The RMW of a race after token_retry; true if it took the bit. A designated waker [I4] sets
  // the waiters bit in the same RMW, won or lost: the unlock that woke it cleared the waiters bit
  // though lock waiters stayed queued behind it, and only this makes a release serve them [I2]
  // (a winner's own unlock; after a loss, the holder's). A loss queues this waiter again, which
  // sets it anyway. Acquire as in try_lock.
  // The duty is cleared after the RMW, so that a recoverer finishing the wait of a waiter that
  // died in between makes the RMW again (harmless: the waiters bit may be stale [I4]).
  static bool retry_rmw(std::atomic<W>& word, W bit, node& n) {
    if (!n.designated.get()) return try_lock(word, bit);
    const bool won = !(P::fetch_or(word, W(bit | WB), mo_acquire) & bit);
    if constexpr (requires { P::designated_end(&word, std::uint64_t(bit), &n); })
      P::designated_end(&word, std::uint64_t(bit), &n);
    n.designated.set(false);
    return won;
  }

  // After token_retry: the bit was cleared and we were woken to race for it. Returns true if we
  // took it. Losing to a thread that never queued is the bounded unfairness [I6]: count it.
  static bool race_after_retry(std::atomic<W>& word, W bit, node& n) {
    if (retry_rmw(word, bit, n)) return true;
    n.lost.set(n.lost.get() + 1);
    if (counting(&word)) P::stat_lost_race(&word);
    return false;
  }

  static bool wait_clear_contended(std::atomic<W>& word, W bit, const deadline& dl,
                                   const std::stop_token* stop) {
    // Acquire pairs with the release of the clear (CAS or fetch_and in release / release_slow).
    if (abandon(dl, stop)) return !(P::load(word, mo_acquire) & bit);
    bucket_t& b = bucket_of(&word);
    wait_scope scope(&word);
    node& n = scope.node();
    n.word.set(&word);
    n.bit = bit;
    n.width = sizeof(W);
    n.kind = node_kind::shared;
    n.parker.set(&scope.parker());
    n.parker.get()->prepare();
    if (enqueue_shared(b, word, bit, n)) return true;
    // [I3], [I4] DROP wait: from here on this thread never reads the word. The token alone
    // says that the bit was cleared after we queued, and its acquire makes the clear visible.
    return sleep(b, n, dl, stop) != token_none;
  }

  // Sees the bit clear, or makes the node visible. Returns true if the bit was clear.
  static bool enqueue_shared(bucket_t& b, std::atomic<W>& word, W bit, node& n) {
    P::lock(b.lock);
    // Under the lock, as for a lock waiter: either we see the bit clear, or a release will find
    // us. The plain load first avoids leaving a stale waiters bit when the bit just cleared.
    if (!(P::load(word, mo_acquire) & bit) || !(P::fetch_or(word, WB, mo_acquire) & bit)) {
      P::unlock(b.lock);
      return true;
    }
    b.arrive(&n);
    P::unlock(b.lock);
    return false;
  }

  // ------------------------------------------------------------------------------------------
  // Asynchronous waits (pagewait/async.hpp): a node with a sink and no thread. The protocol is
  // the shared waiter's, step for step: the same enqueue, the same walk, the same re-queue after a
  // hand-off, the same withdraw. Only the delivery differs: the token goes to the sink, and the
  // sink's completion runs on the releasing thread once that release has finished with every node
  // (deliver; P::complete, P::run_completions) [C1]. The node belongs to the caller: it must stay
  // alive from a pending start until its completion has begun, or until cancel_async withdrew it.

  // Sets the node up for an asynchronous wait on (word, bit), before the caller lets anyone else
  // (a cancel on another thread) see that a start is under way: its key, its sink, and a state
  // that is not `queued`, so that a cancel arriving before the node is queued finds it claimed
  // (too late, or too early: nothing to unlink) instead of unlinking a node no queue holds. The
  // node is not visible; nobody else reads it yet.
  // `exclusive`: a lock wait (start_lock_async), else a wait for the bit to clear.
  static void prepare_async(node& n, std::atomic<W>& word, W bit, typename P::async_sink* sink,
                            bool exclusive = false) {
    n.word.set(&word);
    n.bit = bit;
    n.width = sizeof(W);
    n.kind = exclusive ? node_kind::exclusive : node_kind::shared;
    n.parker.set(nullptr);
    n.async = sink;
    n.state.set(node_state::claimed);
    n.abandoned.set(false);  // a previous wait's mark
    n.lost.set(0);           // and its fairness state [I6]: a new wait starts unearned
    n.queued_once.set(false);
  }

  // Starts an asynchronous wait for `bit` to clear, on a node prepare_async set up. Returns true
  // if the bit was clear: nothing was queued and no completion will come. Returns false if the
  // node is queued (or joined a release in progress): exactly one completion follows, with
  // token_cleared after a clear that happened after this call began [I3], or with
  // token_abandoned if cancel_async came too late to withdraw it but early enough to keep it from
  // being queued again after a hand-off. Never blocks. Once the node is visible this does not
  // touch it again: its completion may run, and free it, on another thread at once.
  static bool start_wait_clear_async(std::atomic<W>& word, W bit, node& n) {
    // Acquire: as wait_clear's, pairs with the release of the clear.
    const W seen = P::load(word, mo_acquire);
    if (!(seen & bit)) return true;
    // [I2][I3][I4] DROP wait, as a blocking shared waiter: from here on the word is not read on
    // this node's behalf; only a release's token says that the bit was cleared after we queued.
    return enqueue_shared(bucket_of(&word), word, bit, n);
  }

  // Starts an asynchronous lock of `bit`, on a node prepare_async set up as exclusive. Returns true
  // if the bit was taken here, by the caller's own RMW: it owns the bit, no completion will come.
  // Returns false if the node is queued (or joined a release in progress): exactly one completion
  // follows, after race_async has turned the release's token into the result: token_handoff
  // (the waiter owns the bit: handed off [I5], or won in the race a token_retry asked for), or
  // token_abandoned (cancel_async came too late to withdraw it, and the waiter did not get the
  // lock). Never blocks, never spins: a thread that could spin would not wait asynchronously.
  // Once the node is visible this does not touch it again.
  static bool start_lock_async(std::atomic<W>& word, W bit, node& n) {
    if (try_lock(word, bit)) return true;  // [I8] one RMW when the bit is free
    before_queueing(n, P::fairness());
    return enqueue_exclusive(bucket_of(&word), word, bit, n);
  }

  // An asynchronous lock waiter woken with token_retry races for the bit here: lock_contended's
  // race, which the waiter has no thread to run. deliver runs it on the releasing thread, after
  // the release's final bucket unlock, as it reaches the node: not later, through the completion
  // list, where a callback of the same thread that unlocks and locks again would win every
  // time and the waiter, not queued, could never earn its hand-off [I6]. It is not the release
  // trying the bit for the waiter, which would be a touch after the clear [I1]: the race is the
  // waiter's, made after the release is over, and as with lock_bit the word must stay alive
  // while a lock wait on it is pending. Returns token_handoff if the waiter now owns the bit,
  // token_abandoned if it lost and a cancel had marked it (not queued again), or token_none if it
  // lost and is queued again: then its completion is still to come, and the caller must not touch
  // the node (another release may already be completing it).
  static std::uint32_t race_async(node& n) {
    std::atomic<W>& word = *static_cast<std::atomic<W>*>(const_cast<void*>(n.word.get()));
    const W bit = W(n.bit);
    // [I6] A loss counts, as for a blocking waiter, and so earns the hand-off sooner: the
    // fairness state is the node's and carries across re-queues, whoever runs the race.
    if (race_after_retry(word, bit, n)) return token_handoff;
    before_queueing(n, P::fairness());
    bucket_t& b = bucket_of(&word);
    P::lock(b.lock);
    // A cancel that found the node claimed (too late to withdraw it) marked it under this lock:
    // a cancelled waiter is not queued again, and takes no lock it has not won already.
    if (n.abandoned.get()) {
      P::unlock(b.lock);
      return token_abandoned;
    }
    const bool taken = take_or_arrive(b, word, bit, n);
    // The race's last access to the word was take_or_arrive's RMW. Once the bucket lock is
    // dropped, a node queued again may be completed by another release at once, and the object
    // freed: from here on nothing of the word, as for any release [I1] (the model checks it from
    // this call on; before it, the accesses were the waiter's).
    P::async_settled(n.async);
    P::unlock(b.lock);
    return taken ? token_handoff : token_none;
  }

  // Withdraws a pending asynchronous wait. True: it was queued and has left; no completion will
  // come. False: a release has claimed it and will complete it (with what it granted, or with
  // token_abandoned if it would have queued it again). The caller must not run this concurrently
  // with the end of the node's life.
  static bool cancel_async(node& n) { return withdraw(bucket_of(n.word.get()), n); }

  // ------------------------------------------------------------------------------------------
  // The release walk.

  // A list of claimed nodes, linked through their queue links (they are out of the queue).
  struct node_list {
    node* head = nullptr;
    node* tail = nullptr;
    void append(node* first, node* last) {
      first->prev.set(nullptr);
      if (tail)
        tail->next.set(first);
      else
        head = first;
      tail = last;
      last->next.set(nullptr);
    }
  };

  struct walk_state {
    bool decided = false;          // unlock: the first exclusive waiter for (word, bit) has been seen
    bool handoff = false;          // unlock: the lock goes to one waiter; the bit stays set
    bool exclusive_woken = false;  // an exclusive waiter was woken to race for the bit
    bool keep_waiters = false;     // a waiter for this word stays queued: keep the waiters bit
    node_list wake;                // claimed nodes, unparked in this order after the unlock
    node_list requeue;             // claimed nodes that go back to the queue (after a hand-off)
    // unlock, atomic-clear: lock waiters of (word, bit) stay queued behind the one woken to race
    // (`raced`). If nothing else keeps the waiters bit, `raced` becomes their designated waker.
    bool more_exclusive = false;
    node* raced = nullptr;
    // This release's record (resettable policies): the claimer its claimed nodes name.
    release_record<P>* by = nullptr;

    void claim(bucket_t& b, node* n, std::uint32_t token) {
      if constexpr (resettable<P>) {
        n->claimer.set(by);  // before `state`: a holder that dies between them leaves it queued
        n->joined.set(false);
        n->claim_tag.set(by->tag);
        // These plain stores must reach memory before `state`'s: a holder killed in between
        // then leaves the node queued (a rebuild queues it again), never claimed with no
        // claimer (a rebuild would leave it claimed, and its waiter would hang). x86 keeps the
        // order of stores; this fence, which emits no instruction, makes it the compiler's too.
        std::atomic_signal_fence(std::memory_order_release);
      }
      b.unlink(n);
      n->state.set(node_state::claimed);
      n->token.set(token);
      wake.append(n, n);
    }
  };

  static bool earned_handoff(const node* n) { return n->wants_handoff || P::now() >= n->handoff_at; }

  // A walk that a reset cut short gives up what it had decided (nothing of it was done: the
  // decisions take effect only in the final hold and after it). Bucket lock held. What it had
  // claimed goes back to the head of the new queue, in queue order — the nodes it had set aside
  // for a re-queue after a hand-off (they were ahead), then those it meant to wake — as `queued`,
  // so that the walk, starting again from the head, meets them first and decides again; none
  // loses its place or a clear [I3]. While they were claimed a release of another bit of the word
  // may have cleared the waiters bit, so it is set again, in this hold [I4] (the word is alive:
  // this release holds its bit). A node whose waiter gave up meanwhile (`abandoned`) is not
  // queued again: it gets token_abandoned, delivered with this release's tokens.
  static void restart_walk(std::atomic<W>& word, bucket_t& b, walk_state& w, node_list& given_up) {
    node* const first = b.head.get();
    bool queued = false;
    for (node_list* l : {&w.requeue, &w.wake})
      for (node* n = l->head; n;) {
        node* next = n->next.get();  // before insert_before or append relinks it
        if (n->abandoned.get()) {
          n->token.set(token_abandoned);
          given_up.append(n, n);
        } else {
          b.insert_before(first, n);
          n->state.set(node_state::queued);
          queued = true;
        }
        n = next;
      }
    if (queued) {
      P::fetch_or(word, WB, mo_relaxed);  // relaxed: as in the re-queue after a hand-off
      // A release of another bit of this word that began after the reset may be between chunks
      // with its bookmark past the head: it will not meet these nodes, so, as arrive() does for
      // an arrival, it is told to keep the waiters bit [I4]. Without this its final step cleared
      // it under them, and a later fast release skipped them (a lost wake-up; the second review).
      for (release_record<P>* r = b.releases.get(); r; r = r->next.get())
        if (r->word.get() == &word) r->other_bit_arrived = true;
    }
    release_record<P>* const by = w.by;
    w = walk_state{};
    w.by = by;
  }

  // ------------------------------------------------------------------------------------------
  // Reset (resettable policies; CONTRACT §3.11): rebuilds a bucket so that nothing in it depends
  // on a release in progress. The bucket's epoch changes, so every release that dropped the lock
  // between chunks starts its walk again when it takes it back (release_walk); their bookmarks
  // and end markers leave the queue and their records the bucket, and the waiters that had joined
  // a record go to the tail of the queue, in arrival order, as `queued` (a joiner whose waiter
  // gave up, `abandoned`, gets token_abandoned instead, as a re-queue after a hand-off gives it).
  // The waiters bit of each record's word is set again, since a release of another bit may have
  // cleared it while those waiters were out of the queue [I4]; the word is alive: a record belongs
  // to a release that still holds its bit (atomic-clear clears it only in the hold that removes
  // the record). Queued waiters keep their places; no waiter is woken, none reads its word again,
  // none loses a clear. With every thread alive a reset changes no outcome; it only delays (walks
  // start again). It is what recovery from a process that died holding the bucket lock will do
  // (docs/proposals/process-shared.md), from the slots rather than from the links it follows here,
  // which are those of a bucket in a consistent state. Its hold is not bounded by chunk_visits: it
  // visits every node of the bucket once (a recovery, not a release). Returns how many waiters the
  // bucket held (queued or joined).
  static std::size_t reset(bucket_t& b) requires resettable<P> &&(R == release_protocol::atomic_clear) {
    node_list given_up;
    std::size_t waiters = 0;
    P::lock(b.lock);
    b.epoch.set(b.epoch.get() + 1);
    for (node* n = b.head.get(); n;) {
      node* next = n->next.get();
      if (n->kind == node_kind::bookmark)
        b.unlink(n);
      else
        ++waiters;
      n = next;
    }
    for (release_record<P>* r = b.releases.get(); r; r = r->next.get()) {
      bool queued = false;
      for (node* n = r->joined_head.get(); n;) {
        node* next = n->next.get();  // before push_back or append relinks it
        ++waiters;
        if (n->abandoned.get()) {
          n->token.set(token_abandoned);
          given_up.append(n, n);
        } else {
          b.push_back(n);
          n->state.set(node_state::queued);
          queued = true;
        }
        n = next;
      }
      if (queued) set_waiters_bit(r->word.get(), r->width);
    }
    b.releases.set(nullptr);
    P::unlock(b.lock);
    deliver(given_up.head);
    return waiters;
  }
  // The waiters bit of a word of either width (a bucket holds both), relaxed: it carries no data.
  static void set_waiters_bit(const void* w, std::uint8_t width) {
    void* p = const_cast<void*>(w);
    if (width == sizeof(std::uint64_t))
      P::fetch_or(*static_cast<std::atomic<std::uint64_t>*>(p), waiters_bit<std::uint64_t>, mo_relaxed);
    else
      P::fetch_or(*static_cast<std::atomic<std::uint32_t>*>(p), waiters_bit<std::uint32_t>, mo_relaxed);
  }

  // ------------------------------------------------------------------------------------------
  // A dead waiter (resettable policies; CONTRACT §3.12). A wait domain's waiters are threads of
  // processes that may be killed while they wait. The node of a dead waiter stays where it was,
  // in its slot; its recoverer, a live thread that found the slot's process gone, calls this with
  // the token its parker holds (`delivered`, token_none if none), then frees the slot if it
  // returns true. What the dead waiter would have done with what it was granted is done for it,
  // so that nothing meant for the living is lost with it:
  //   - handed the lock (token_handoff): it never ran the caller's code under it (the slot is
  //     given back before the lock call returns), so the lock is released for it, as at once by
  //     a thread that took it and did not use it; otherwise every waiter of the word waits for
  //     good [I2];
  //   - woken to race (token_retry): the race is run for it, and a lock it wins is released at
  //     once; a retry is the only wake-up the other lock waiters get for that clear [I2];
  //   - cleared, abandoned: nothing is owed;
  //   - nothing delivered: a queued node leaves the queue (the waiters bit stays: [I4] allows a
  //     stale one); an idle node is in no list; a claimed node belongs to a release that will
  //     deliver to it: it is marked `abandoned` (never queued again) and left for a later call.
  // A lock the dead waiter had taken and returned with stays held: it may have run the caller's
  // code, and only the caller knows what that left (SHARED.md). The word is alive: a lock wait
  // keeps it so (as for race_async), and a domain's memory stays mapped. The bucket lock is
  // taken as the policy lets a recoverer take it (try_lock_for_recovery: a bucket whose lock a
  // dead process holds is not waited for; before a release for the dead waiter, only as a probe,
  // since the release takes it itself), else as any operation takes it; returns false, to be
  // called again, if it could not be taken.
  static bool finish_dead_wait(node& n, std::uint32_t delivered) requires resettable<P> &&
      (R == release_protocol::atomic_clear) {
    const bool passes_on =
        delivered == token_handoff || (delivered == token_retry && n.kind == node_kind::exclusive);
    if (delivered != token_none && !passes_on) return true;  // cleared, abandoned: nothing owed
    std::atomic<W>& word = *static_cast<std::atomic<W>*>(const_cast<void*>(n.word.get()));
    const W bit = W(n.bit);
    bucket_t& b = bucket_of(&word);
    if (!lock_for_recovery(b)) return false;
    if (passes_on) {
      // The hold was a probe: the release below takes the lock as every release does, and would
      // wait for ever on a bucket whose lock a dead process holds.
      P::unlock(b.lock);
      // A retry the dead waiter raced for already (won: it holds the lock, and this fails; lost:
      // the winner's unlock serves the queue, or this takes the lock the winner has released).
      // A designated dead waiter that had not raced yet: the race sets the waiters bit [I4].
      if (delivered == token_retry && !retry_rmw(word, bit, n)) return true;
      if constexpr (requires { P::dead_release_begin(&word, std::uint64_t(bit)); })
        P::dead_release_begin(&word, std::uint64_t(bit));
      release(word, bit, release_kind::unlock);
      if constexpr (requires { P::dead_release_end(); }) P::dead_release_end();
      return true;
    }
    const node_state st = n.state.get();
    if (st == node_state::claimed) {
      // A release holds it (dequeued, or joined to its record): it will deliver the token, which
      // a later call acts on. Not queued again meanwhile: a re-queue after a hand-off gives it
      // token_abandoned instead, as for a waiter whose deadline passed.
      n.abandoned.set(true);
      P::unlock(b.lock);
      return false;
    }
    if (st == node_state::queued) {
      b.unlink(&n);
      n.state.set(node_state::idle);
    }
    P::unlock(b.lock);
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // Rebuild (resettable policies; CONTRACT §3.12): a reset made from the slots rather than from
  // the links, by a thread that took the bucket lock over from a holder that died, or took it as
  // any operation does to finish a release that died between two holds. The dead may have left
  // any link of the bucket half-changed, so none is followed: the queue and the list of releases
  // are emptied and the epoch changes (every live release between two holds starts its walk
  // again, as after a reset), and every waiter the policy finds for this bucket (P::each_waiter:
  // each node in a slot, with the token its parker holds, read with acquire, and its state, read
  // consistently with it) is put back by its own fields:
  //   - its parker holds a token: delivered, its waiter acts on it; left as it is;
  //   - idle: in no list; left;
  //   - queued: queued again;
  //   - claimed by a release that has ended since (P::release_owner: its scope holds another
  //     release, or none): it delivered; left;
  //   - claimed by a live release: queued again if it had joined that release's record and the
  //     release has not decided (the record is gone with the reset; the walk starts again);
  //     otherwise left to that release (its walk, started again, puts the node back at the head;
  //     or, decided, it delivers the node or queues it again);
  //   - claimed by a dead release that had not decided (`decided`, set just before its clearing
  //     step): queued again. That release cleared nothing; its bit is still set, and whoever
  //     recovers its slot makes it again (finish_dead_release);
  //   - claimed by a dead release that had begun to deliver (`delivering`, set after its last
  //     bucket unlock): the token it decided is delivered. A token 0 read consistently with a
  //     claimed state means not delivered yet: a waiter that took its token sets its node idle
  //     before it prepares its parker again, and a slot given back and taken again is skipped;
  //   - claimed by a dead release that had decided and had not begun to deliver (it died in its
  //     final hold, or between the holds that re-queue after a hand-off): a hand-off is delivered;
  //     the other nodes of a release that handed off are queued again (the bit stays set for the
  //     new owner). A release that clears records its clearing step (`cleared`) right after it:
  //     then its tokens are delivered, without a look at the word (the object may be gone).
  //     Between its decision and that record, the bit is read: clear, the tokens are delivered;
  //     set, the nodes are queued again — either the release died before its clearing step (the
  //     bit stays set, held by the dead, as a lock whose holder died: a recoverer cannot tell
  //     this from the next case, so it never clears it), or the step was made and somebody has
  //     taken the bit since (that owner's release serves them).
  // A dead waiter's node (`waiter_gone`, the policy says) is never queued again: it is left idle,
  // for its own recoverer (finish_dead_wait), but gets what a dead release owed it.
  // A node queued again whose waiter gave up while it was claimed (`abandoned`) gets
  // token_abandoned instead, delivered with the others. A designated waker
  // queued again loses the duty: it will not race before a release wakes it again. The waiters
  // bit of the word of every queued waiter is set in this hold [I4]: the dead may have cleared it
  // under waiters it designated, or have died between an arrival's RMW and its link. Those words
  // are alive: a queued waiter's bit has not been cleared since it queued. Not bounded by
  // chunk_visits (a recovery, as reset). Delivers what is owed, then drops the bucket lock. Returns
  // how many waiters it queued.
  static std::size_t rebuild(bucket_t& b) requires resettable<P> &&(R == release_protocol::atomic_clear) {
    node_list owed;
    std::size_t queued = 0;
    b.epoch.set(std::uint32_t(b.epoch.get() + 1));
    b.head.set(nullptr);
    b.tail.set(nullptr);
    b.releases.set(nullptr);
    // (In `if constexpr`: a compiler that instantiates this member for every policy, as clang 14
    // does for an explicit instantiation of the class whatever the constraint, then skips it.)
    if constexpr (resettable<P>)
      P::each_waiter(b, [&](node& n, std::uint32_t token_seen, node_state st, bool waiter_gone) {
        if (token_seen != token_none || st == node_state::idle) return;
        if (st == node_state::claimed) {
          release_record<P>* const r = n.claimer.get();
          if (!r) return;  // claimed by a release that has delivered since (the node is another wait's)
          const std::uint32_t tag = n.claim_tag.get();
          const claimer_state who = P::release_owner(r, tag);
          if (who == claimer_state::stale) return;  // that release has ended: it delivered
          if (who == claimer_state::alive) {
            // Joined to a live release that has not decided: its record goes with the reset. Its
            // scope may be holding a new release by the time `decided` is read (the old one
            // delivered to this node meanwhile): the owner is looked at again after (a seqlock).
            if (!n.joined.get() || r->decided.get() || P::release_owner(r, tag) != claimer_state::alive)
              return;
          } else if (r->decided.get()) {
            // A dead release's record stays as its thread left it: its slot is freed only by the
            // recoverer that finishes it, which needs this bucket's lock.
            const bool clear = r->delivering.get() || r->cleared.get() ||
                               (!r->handed_off && !bit_is_set(r->word.get(), r->width, r->bit));
            if (n.token.get() == token_handoff || clear) {
              owed.append(&n, &n);  // the token it decided, as its delivery would have
              return;
            }
          }
        }
        if (waiter_gone) {
          // A dead waiter whose node would be queued again: out of every list instead, as its
          // recoverer would take it (finish_dead_wait), which then finds it idle. Never queued,
          // it can take no hand-off that nobody would pass on.
          n.state.set(node_state::idle);
          return;
        }
        if (const bool gave_up = n.abandoned.get(); gave_up) {
          n.token.set(token_abandoned);
          owed.append(&n, &n);
          return;
        }
        if (n.designated.get()) {
          n.designated.set(false);
          if constexpr (requires { P::designated_end(n.word.get(), n.bit, &n); })
            P::designated_end(n.word.get(), n.bit, &n);
        }
        b.push_back(&n);
        n.state.set(node_state::queued);
        set_waiters_bit(n.word.get(), n.width);
        ++queued;
      });
    // Delivered before the unlock: a rebuild that takes the lock next sees these tokens, and never
    // takes these nodes as owed a second time. (A recovery: the hold is not bounded, as reset's.)
    deliver(owed.head);
    P::unlock(b.lock);
    return queued;
  }
  // How a recoverer takes a bucket lock: as the policy lets it (try_lock_for_recovery: a bucket
  // whose lock a dead thread holds, not taken over yet, is not waited for), else as any operation.
  static bool lock_for_recovery(bucket_t& b) {
    if constexpr (requires { P::try_lock_for_recovery(b.lock); }) {
      return P::try_lock_for_recovery(b.lock);
    } else {
      P::lock(b.lock);
      return true;
    }
  }
  static bool bit_is_set(const void* w, std::uint8_t width, std::uint64_t bit) {
    void* p = const_cast<void*>(w);
    if (width == sizeof(std::uint64_t))
      return (P::load(*static_cast<std::atomic<std::uint64_t>*>(p), mo_relaxed) & bit) != 0;
    return (P::load(*static_cast<std::atomic<std::uint32_t>*>(p), mo_relaxed) & bit) != 0;
  }

  // A release whose thread died (resettable policies; CONTRACT §3.12), found in its slot by a
  // live thread. Its bucket is rebuilt, so that its claims, place holders and record are gone and
  // what it had decided is delivered or queued again (rebuild). If it had not decided, nothing of
  // it took effect but claims: its bit is still set, and no other release of that bit can run
  // (atomic-clear clears in the final hold), so it is then made again, as its thread would have
  // made it (the word is alive: the dead release holds its bit). Returns false, to be called
  // again, if the bucket lock could not be taken now (its holder died and nobody has taken it over
  // yet). The caller makes sure that one thread finishes a given release (a domain's slot is
  // taken over by one recoverer).
  static bool finish_dead_release(release_record<P>& rec) requires resettable<P> &&
      (R == release_protocol::atomic_clear) {
    if (!rec.word.get()) return true;  // its walk had not begun
    std::atomic<W>& word = *static_cast<std::atomic<W>*>(const_cast<void*>(rec.word.get()));
    const W bit = W(rec.bit);
    bucket_t& b = bucket_of(&word);
    if (!lock_for_recovery(b)) return false;
    if constexpr (resettable<P> && R == release_protocol::atomic_clear) rebuild(b);  // (as in rebuild)
    if (rec.decided.get()) return true;
    const release_kind kind = rec.event ? release_kind::event : release_kind::unlock;
    if constexpr (requires { P::dead_release_begin(&word, std::uint64_t(bit), true); })
      P::dead_release_begin(&word, std::uint64_t(bit), kind == release_kind::unlock);
    release(word, bit, kind);
    if constexpr (requires { P::dead_release_end(); }) P::dead_release_end();
    return true;
  }

  // One node of the walk whose key is (word, bit). `cleared_first`: the old protocols, which
  // cleared the bit before walking.
  static void visit_match(std::atomic<W>& word, bucket_t& b, node* n, release_kind kind, walk_state& w) {
    constexpr bool cleared_first = R != release_protocol::atomic_clear;
    if (kind == release_kind::event) {
      w.claim(b, n, n->kind == node_kind::shared ? token_cleared : token_retry);
      return;
    }
    if (w.handoff) {
      w.keep_waiters = true;  // everybody else stays queued behind the new owner
      return;
    }
    if (n->kind == node_kind::shared) {
      // Woken after the clear. Until an exclusive waiter has decided, only provisionally: for an
      // unlock the wake list holds nothing but shared waiters before the decision.
      w.claim(b, n, token_cleared);
      return;
    }
    if (!w.decided) {
      // [I6] The first exclusive waiter decides, past any shared waiters ahead of it: a shared
      // waiter first in the queue must not cost an earned hand-off (the lock would be cleared
      // and re-taken by a barger before the woken exclusive waiter runs).
      w.decided = true;
      if (earned_handoff(n)) {
        if constexpr (cleared_first) {
          // v5.9's hand-off: the waker takes the bit for the waiter after the clear, and fails
          // if somebody took it meanwhile. Another touch of the word after the clear. Acquire
          // on behalf of the new owner: pairs with the release of the clear before this walk.
          // The shared waiters before it stay claimed: the bit really was cleared.
          if (P::fetch_or(word, W(n->bit), mo_acquire) & n->bit) {
            w.keep_waiters = true;
            w.exclusive_woken = true;  // blocked: the new holder's release will serve it
            return;
          }
        } else if (w.wake.head) {
          // [I3] The bit will not clear, so the shared waiters claimed before this node must
          // not be woken: they go back to the queue with the joined arrivals (release_slow's
          // re-queue, which also keeps [I4] and [I7] for them), and stay waiting for a clear.
          w.requeue = w.wake;
          w.wake = {};
          w.keep_waiters = true;
        }
        // [I9] The hand-off is decided here, by the releaser, under the bucket lock.
        w.claim(b, n, token_handoff);
        w.handoff = true;
        return;
      }
    }
    if (!w.exclusive_woken) {
      w.claim(b, n, token_retry);
      w.exclusive_woken = true;
      w.raced = n;
    } else if constexpr (!cleared_first) {
      // Decided in the final hold: a designated waker, or keep_waiters. [I6] Not past a waiter
      // that has earned its hand-off: this one is first in the queue once `raced` is out, and
      // the next unlock must reach it, which only a set waiters bit makes sure of.
      if (!w.more_exclusive && earned_handoff(n)) w.keep_waiters = true;
      w.more_exclusive = true;
    } else {
      w.keep_waiters = true;
    }
  }

  // The slow release. atomic_clear: the bit is still set and is cleared (or handed off) here,
  // in the final lock hold. The old protocols: the bit is already clear; this is the kernel's
  // wake-up walk, and it touches the word again.
  [[gnu::noinline]] static void release_slow(std::atomic<W>& word, W bit, release_kind kind) {
    // [C1] Last, the asynchronous waiters' completions: user code, which may release other bits
    // (their completions join this list), so nothing of this release may still be pending, its
    // scope included (in a domain, a slot held through user code could leave a nested release
    // none). Only when this release queued some: a release that woke threads only pays nothing
    // for it (one queued by a release inside a callback is run by the outer run, which is in
    // progress).
    if (release_walk(word, bit, kind)) P::run_completions();
  }

  // The walk, the clearing step and the delivery; returns whether completions were queued.
  [[gnu::always_inline]] static bool release_walk(std::atomic<W>& word, W bit, release_kind kind) {
    constexpr bool atomic_clear = R == release_protocol::atomic_clear;
    bucket_t& b = bucket_of(&word);
    walk_state w;
    // Place holders, linked only if the walk outgrows one lock hold: `end` marks the tail as
    // it stood when the release began [I7], `mark` holds the walk's place while the lock is
    // dropped. `rec` makes arrivals for (word, bit) join this release instead of the queue.
    // The old protocols register too, but with bit 0, which no waiter has: arrivals only tell
    // them to keep the waiters bit. They live in the release's scope: on this stack, or in this
    // thread's slot of a domain, where other processes' walks and arrivals can reach them.
    release_scope scope(&word);
    node& end = scope.end();
    node& mark = scope.mark();
    release_record<P>& rec = scope.rec();
    end.kind = mark.kind = node_kind::bookmark;
    rec.word.set(&word);
    rec.bit = atomic_clear ? bit : 0;
    rec.event = kind == release_kind::event;
    w.by = &rec;
    bool spans = false;

    rec.width = sizeof(W);
    // A domain's scope says that its slot holds a release only now, with the record complete: a
    // recoverer never reads a half-written one (it then finds nothing begun).
    if constexpr (requires { scope.ready(); }) scope.ready();
    // Resettable policies: the bucket's epoch when this walk (re)started, and the nodes whose
    // waiters gave up while a walk that a reset cut short held them (token_abandoned).
    std::uint32_t epoch = 0;
    node_list given_up;

    P::lock(b.lock);
    if constexpr (resettable<P> && atomic_clear) epoch = b.epoch.get();
    node* cur = b.head.get();
    unsigned visits = 0;
    while (cur != (spans ? &end : nullptr)) {
      if (w.handoff && w.keep_waiters) break;  // nothing more to learn
      if (visits == P::chunk_visits) {
        // [I7] Bounded hold: leave a bookmark before the next node and let others in.
        if (!spans) {
          b.push_back(&end);
          b.add_release(&rec);
          spans = true;
        }
        b.insert_before(cur, &mark);
        P::unlock(b.lock);
        P::lock(b.lock);
        if constexpr (resettable<P> && atomic_clear) {
          if (b.epoch.get() != epoch) {
            // The bucket was reset while the lock was free (core::reset): `mark` and `end` are out
            // of the queue, `rec` out of the bucket, and the waiters that had joined it are at the
            // queue's tail. Nothing of this release has been done yet (the bit is set, no token
            // has been delivered), so it starts again from the head, as a release that begins
            // now, after putting back there what it had claimed (restart_walk). Its place
            // holders' links are stale and are never followed: push_back and insert_before set
            // both, and `rec` is cleared before it is registered again.
            restart_walk(word, b, w, given_up);
            rec.clear();
            spans = false;
            epoch = b.epoch.get();
            cur = b.head.get();
            visits = 0;
            if constexpr (requires { P::walk_restarted(); }) P::walk_restarted();
            continue;
          }
        }
        // Nodes before the bookmark may have left (timeouts); the bookmark itself stayed, and
        // the node after it is the first one not yet visited. Nothing for (word, bit) was
        // queued meanwhile: such arrivals joined `rec`.
        cur = mark.next.get();
        b.unlink(&mark);
        visits = 0;
        continue;
      }
      ++visits;
      P::visit(cur);
      node* n = cur;
      cur = n->next.get();
      if (n->kind == node_kind::bookmark || n->word.get() != &word) continue;
      if (n->bit != bit) {
        w.keep_waiters = true;  // another bit of this word has a waiter [I4]
        continue;
      }
      visit_match(word, b, n, kind, w);
    }

    // The final step, in the same hold in which the walk reached its end: no waiter that
    // queued for (word, bit) while the bit was set is left behind [I2].
    if (spans) {
      b.remove_release(&rec);
      b.unlink(&end);
      if (rec.other_bit_arrived) w.keep_waiters = true;
      if constexpr (atomic_clear) {
        if (kind == release_kind::unlock && !w.decided) {
          // [I6] The walk found no exclusive waiter queued, but lock waiters joined while it ran:
          // the first that asked for a hand-off (else the first, if its time has come) gets the
          // lock if it has earned it, as it would have found queued. Without this, a waiter that
          // kept re-queueing during long walks was woken to race, and lose, every time. The
          // shared waiters claimed so far, and the other joiners, go back to the queue below.
          node* j = rec.first_wants_handoff.get() ? rec.first_wants_handoff.get() : rec.first_exclusive.get();
          if (j && earned_handoff(j)) {
            rec.unjoin(j);
            w.requeue = w.wake;
            w.wake = {};
            if (w.requeue.head) w.keep_waiters = true;
            j->token.set(token_handoff);  // [I9] decided by the releaser, under the bucket lock
            w.wake.append(j, j);
            w.decided = w.handoff = true;
          }
        }
      }
      if (rec.joined_head.get()) {
        if (w.handoff) {
          w.requeue.append(rec.joined_head.get(), rec.joined_tail.get());  // still waiting: never cleared
          w.keep_waiters = true;
        } else {
          w.wake.append(rec.joined_head.get(), rec.joined_tail.get());  // tokens were set as they joined
        }
      }
    }
    // Checked builds: the release ends in this hold; its bit must still be set (else another
    // release of the same set bit ran meanwhile), and it leaves the list of releases in
    // progress here, before its last touch, so that the word's next life starts clean.
    if constexpr (checked_mode<P> && atomic_clear) P::checked_release_final(word, bit);
    node* requeue = w.requeue.head;
    if constexpr (resettable<P> && atomic_clear) {
      // Decided: from here on the release's claimed nodes are its own to deliver or re-queue, and
      // the clearing step follows in this hold. A holder that dies before this line has cleared
      // nothing and handed nothing off: its recoverer makes the release again (finish_dead_release).
      // One that dies between this line and the clearing step leaves a recoverer unable to tell
      // whether the bit was cleared (rebuild: the bit is then read).
      rec.handed_off = w.handoff;
      rec.decided.set(true);
      if constexpr (requires { P::release_decided(!w.handoff); }) P::release_decided(!w.handoff);
    }
    if constexpr (atomic_clear) {
      if (w.more_exclusive) {
        // [I4] The designated waker. Lock waiters of (word, bit) stay queued behind the one woken
        // to race, and nothing else waits on the word: the clearing step below clears the waiters
        // bit anyway, so that the releases made before that waiter has run are single CASes that
        // wake nobody (otherwise each of them walks and wakes one more waiter, which mostly loses
        // to the running holder and sleeps again: a wake-up system call per lock transfer). The
        // waiter's race sets the waiters bit again with the same RMW, won or lost (retry_rmw), and
        // from then on the next release serves the queue [I2]. Only for a walk that ended in its
        // first hold (no arrival joined it, no re-queue) and cleared: otherwise the waiters bit stays.
        if (!w.keep_waiters && !spans && !w.handoff) {
          w.raced->designated.set(true);
          if constexpr (requires { P::designated_begin(&word, std::uint64_t(bit), w.raced); })
            P::designated_begin(&word, std::uint64_t(bit), w.raced);
        } else {
          w.keep_waiters = true;
        }
      }
      if (!w.handoff) {
        if constexpr (selftest_clear_in_later_hold<P>) {
          // Deliberately broken, checker self-test only: a waiter that queues in this gap (the
          // release is unregistered, so it queues instead of joining) is left behind.
          P::unlock(b.lock);
          P::lock(b.lock);
        }
        // [I1][I2][I3] The clearing step: clear the bit, and the waiters bit if no waiter for
        // the word remains, in one RMW, under the bucket lock, after every waiter to wake has
        // been dequeued and before any is unparked. Release order pairs with the acquire of the
        // next owner's RMW and, through the unlock and the unparks, with the woken waiters.
        // This is the release's last access to the word.
        P::fetch_and(word, W(~(bit | (w.keep_waiters ? W(0) : WB))), mo_release);
        if constexpr (resettable<P>) rec.cleared.set(true);  // the record is this release's own
      } else if (!w.keep_waiters) {
        // [I5] Hand-off: the bit stays set. Only the waiters bit goes, if nobody else waits. The
        // new owner cannot run before its unpark below, so this is still before the last touch.
        // Relaxed: the waiters bit publishes no data; who sees it is ordered by the bucket lock,
        // and the new owner is ordered by its unpark (release) and park (acquire).
        P::fetch_and(word, W(~WB), mo_relaxed);
      }
      if constexpr (requires { P::release_cleared(); }) P::release_cleared();
    } else {
      // The kernel's "no more waiters for this page: clear PG_waiters". The bit is long clear:
      // without a pin the object may already be another object.
      // Relaxed: the waiters bit publishes no data (ordered by the bucket lock).
      if (!w.keep_waiters) P::fetch_and(word, W(~WB), mo_relaxed);
    }
    // After a hand-off, the shared waiters the walk dequeued before the decision and the
    // waiters that joined the release go back to the queue, a chunk per hold. The new owner is
    // not yet unparked, so nobody can release the bit meanwhile and none of them can be missed
    // by a release of it. But while they sat out of the queue (claimed by this walk, or in
    // `rec`), a release of *another* bit of this word could not see them and may have cleared
    // the waiters bit; so it is set again in every hold that queues some of
    // them, before that hold ends [I4]: whenever the lock is free, every queued waiter of the
    // word has the waiters bit behind it (a release of another bit that clears it in between
    // must have found none of them queued: they had all timed out and left). The word is
    // alive: its bit is held by the new owner, who cannot run yet.
    if (requeue) {
      for (;;) {
        // [I7] The hold that ended the walk has already made `visits` visits: the re-queueing
        // continues its budget rather than starting a fresh one (which let one hold make up to
        // twice chunk_visits visits; found by the model checker's handoff-walk scenario).
        for (; requeue && visits < P::chunk_visits; ++visits) {
          P::visit(requeue);
          node* n = requeue;
          requeue = n->next.get();
          if (n->abandoned.get()) {
            n->token.set(token_abandoned);  // its deadline passed while we held it
            w.wake.append(n, n);
          } else {
            b.arrive(n);
          }
        }
        P::fetch_or(word, WB, mo_relaxed);  // relaxed: as above, the waiters bit carries no data
        if (!requeue) break;
        P::unlock(b.lock);
        P::lock(b.lock);
        visits = 0;
      }
    }
    // Only the word's address, never the word: a key for the statistics' bucket.
    if (counting(&word)) P::stat_release_done(&word, w.handoff);
    if (given_up.head) {
      // Waiters that gave up while a walk a reset cut short held them: claimed before anything
      // still in `wake`.
      if (w.wake.head) given_up.append(w.wake.head, w.wake.tail);
      w.wake = given_up;
    }
    P::unlock(b.lock);
    if constexpr (resettable<P> && atomic_clear) {
      // The release's own record (its scope's): a recoverer that finds its thread dead from here
      // on delivers what it had not delivered yet (rebuild).
      rec.delivering.set(true);
    }

    // [I1] From here on, the word is not touched: the object may already be gone.
    const bool queued_completions = deliver(w.wake.head);
    if constexpr (checked_mode<P> && atomic_clear) P::checked_flush();  // the address only
    return queued_completions;
  }

  // Unparks the claimed waiters of a release, after its final bucket unlock, with the tokens it
  // decided. Each node's link is read before its unpark: the node lives on its waiter's stack and
  // may vanish the instant the token lands. An asynchronous waiter's token goes to its sink, whose
  // completion may likewise free the node; the completions are only queued here, and run at the
  // end of release_slow [C1], so that no user code runs while this release still reads nodes.
  // Returns whether it queued any.
  static bool deliver(node* head) {
    bool queued = false;
    for (node* n = head; n;) {
      node* next = n->next.get();
      std::uint32_t token = n->token.get();
      if (typename P::async_sink* s = n->async) {
        // The release's grant, as for a thread it unparks; a lock waiter woken to race races now
        // (race_async), and only what it ends with is completed.
        P::async_delivered(s, token);
        if (token == token_retry && n->kind == node_kind::exclusive) token = race_async(*n);
        P::async_settled(s);
        if (token != token_none) {
          P::complete(s, token);
          queued = true;
        }
      } else {
        typename P::parker* pk = n->parker.get();
        pk->unpark(token);
      }
      n = next;
    }
    return queued;
  }

  static bool abandon(const deadline& dl, const std::stop_token* stop) {
    if (stop && stop->stop_requested()) return true;
    return !dl.is_never() && P::now() >= dl.at;
  }

  static std::chrono::steady_clock::time_point saturating_add(std::chrono::steady_clock::time_point t,
                                                              std::chrono::nanoseconds d) {
    const auto max = std::chrono::steady_clock::time_point::max();
    const auto dd = std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
    return (max - t) <= dd ? max : t + dd;
  }
};

}  // namespace pagewait::detail
