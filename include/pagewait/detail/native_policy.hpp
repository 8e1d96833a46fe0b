// pagewait/detail/native_policy.hpp — the runtime the library ships with.
//
// The core (detail/core.hpp) makes every access to shared state through a runtime policy P.
// This is the interface, as the native policy implements it; the model checker's policy
// implements the same names and turns each into a scheduling point.
//
//   word operations   P::load, P::test_and_set, P::fetch_or, P::fetch_and, P::fetch_xor, P::compare_exchange
//                     on the user's std::atomic<W>, with the memory order the core asks for
//   bucket lock       P::bucket_lock (a type), P::lock(l), P::unlock(l)
//   node fields       P::cell<T>: get()/set(); P::retire_node(p, size) when a node dies;
//                     P::visit(node) for each node a release walk (or its re-queue) visits under
//                     the bucket lock
//   the table         P::table() -> wait_table<P>&
//   optional          P::link<T>, P::key (how the table's structures point at each other and
//                     name their word), P::wait_scope, P::release_scope (where a waiter's node
//                     and a release's place holders live), P::table_for(word); the defaults
//                     (wait_table.hpp, core.hpp) are raw pointers, the caller's stack and
//                     P::table(), which is what this policy uses. A wait domain in shared
//                     memory (issue 12) declares them; the checker's offset-shaped policy does.
//   parking           P::parker (a type with prepare/park/unpark), P::current_parker()
//   time              P::now() -> steady_clock::time_point
//   tuning            P::chunk_visits (walk visits per lock hold), P::spin_limit,
//                     P::spin_pause_cap, P::spin_yields, P::cpu_relax(), P::yield_cpu(),
//                     P::fairness()
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>

#include "pagewait/checked.hpp"  // PAGEWAIT_CHECKED
#include "pagewait/detail/async_sink.hpp"
#include "pagewait/detail/futex.hpp"
#include "pagewait/detail/parker.hpp"
#include "pagewait/detail/tsan.hpp"  // PAGEWAIT_TSAN: this translation unit is built with TSan
#include "pagewait/detail/wait_table.hpp"
#include "pagewait/fairness.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pagewait {

namespace detail {

// The bucket lock: a three-state futex lock (0 free, 1 held, 2 held with sleepers) that spins
// briefly first. Held for at most chunk_visits node visits, so it is almost never slept on.
// (A wait domain's bucket lock, which other processes take and which names its holder, is
// shm_bucket_lock, shm_policy.hpp.)
class word_lock {
 public:
  void lock() noexcept {
    std::uint32_t c = 0;
    if (w_.value.compare_exchange_strong(c, 1, std::memory_order_acquire, std::memory_order_relaxed)) return;
    lock_slow();
  }
  bool try_lock() noexcept {
    std::uint32_t c = 0;
    return w_.value.compare_exchange_strong(c, 1, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void unlock() noexcept {
    if (w_.value.exchange(0, std::memory_order_release) == 2) w_.wake_one();
  }
  // In a child after fork(), single-threaded: whether the lock is free, and making it free
  // (a thread of the parent may have held it; it does not exist in the child).
  bool free_after_fork() const noexcept { return w_.value.load(std::memory_order_relaxed) == 0; }
  void reset_after_fork() noexcept { w_.reset_after_fork(); }

 private:
  void lock_slow() noexcept;  // src/wait_table.cpp
  sleep_word w_;
};

struct native_policy {
  template <class W>
  static W load(const std::atomic<W>& w, std::memory_order mo) noexcept {
    return w.load(mo);
  }
  // Sets a one-bit mask and says whether it was already set: one `lock bts` on x86. GCC emits
  // it for `fetch_or(m) & m` when it can see that m = 1 << ctz(bit) has one bit (it cannot for
  // a run-time mask, and falls back to a CAS loop); clang 14 never does, so it gets the
  // instruction spelled out, except under TSan, which must see the access as an atomic.
  template <class W>
  static bool test_and_set(std::atomic<W>& w, W bit, std::memory_order mo) noexcept {
#if defined(__x86_64__) && defined(__clang__) && !PAGEWAIT_TSAN
    (void)mo;  // a locked instruction is a full barrier on x86
    bool was_set;
    if constexpr (sizeof(W) == 4)
      asm volatile("lock btsl %2, %0"
                   : "+m"(w), "=@ccc"(was_set)
                   : "r"(unsigned(__builtin_ctz(bit)))
                   : "memory");
    else
      asm volatile("lock btsq %2, %0" : "+m"(w), "=@ccc"(was_set) : "r"(W(__builtin_ctzll(bit))) : "memory");
    return was_set;
#else
    const W m = W(1) << (sizeof(W) == 4 ? __builtin_ctz(std::uint32_t(bit)) : __builtin_ctzll(bit));
    return (w.fetch_or(m, mo) & m) != 0;
#endif
  }
  template <class W>
  static W fetch_or(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    return w.fetch_or(v, mo);
  }
  template <class W>
  static W fetch_and(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    return w.fetch_and(v, mo);
  }
  template <class W>
  static W fetch_xor(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    return w.fetch_xor(v, mo);
  }
  template <class W>
  static bool compare_exchange(std::atomic<W>& w, W& expected, W desired, std::memory_order success,
                               std::memory_order failure) noexcept {
    return w.compare_exchange_weak(expected, desired, success, failure);
  }

  using bucket_lock = word_lock;
  static void lock(bucket_lock& l) noexcept {
    l.lock();
    if (stats_on()) stat_hold_begin();
  }
  static void unlock(bucket_lock& l) noexcept {
    if (stats_on()) stat_hold_end(&l);
    l.unlock();
  }

  template <class T>
  struct cell {
    T v;
    T get() const noexcept { return v; }
    void set(T x) noexcept { v = x; }
  };
  static void retire_node(const void*, std::size_t) noexcept {}
  static void visit(const void*) noexcept {
    if (stats_on()) stat_visit();
  }

  static wait_table<native_policy>& table() noexcept;

  using parker = native_parker;
  static parker& current_parker() noexcept { return native_parker::current(); }

  // Asynchronous waiters (detail/async_sink.hpp): a release queues each one's completion on the
  // calling thread's list, and runs the list after it has finished with every node.
  using async_sink = detail::async_sink;
  static void complete(async_sink* s, std::uint32_t token) noexcept { async_queue_completion(s, token); }
  // Around what deliver does for an asynchronous node (the model checks the grant there, and
  // counts the lock waiter's race as the waiter's own): nothing here.
  static void async_delivered(async_sink*, std::uint32_t) noexcept {}
  static void async_settled(async_sink*) noexcept {}
  static void run_completions() noexcept { async_run_completions(); }

  static std::chrono::steady_clock::time_point now() noexcept { return std::chrono::steady_clock::now(); }

  static constexpr unsigned chunk_visits = 64;  // the kernel's WAITQUEUE_WALK_BREAK_CNT
  // The spin before queueing (core::spin_before_queueing): 6 rounds of 1, 2, 4, 8, 16, 16
  // pauses (47 pauses, ~1.4 us at ~30 ns a pause here), then 16 yields. A policy that must queue
  // at once sets both spin_limit and spin_yields to 0.
  static constexpr unsigned spin_limit = 6;
  static constexpr unsigned spin_pause_cap = 16;
  static constexpr unsigned spin_yields = 16;
  static void yield_cpu() noexcept { std::this_thread::yield(); }
  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  static fairness_settings fairness() noexcept;

  // Statistics (pagewait/stats.hpp; src/stats.cpp). Slow paths only: the bucket lock, the
  // walk's visits, and the ends of waits and releases.
  static bool stats_on() noexcept { return stats_flag.load(std::memory_order_relaxed); }
  static void stat_wait_done(const void* word, std::uint64_t bit, bool exclusive, bool ok,
                             std::chrono::steady_clock::duration waited) noexcept;
  static void stat_lost_race(const void* word) noexcept;
  static void stat_release_done(const void* word, bool handoff) noexcept;
  static void stat_hold_begin() noexcept;
  static void stat_hold_end(const bucket_lock* l) noexcept;
  static void stat_visit() noexcept;
  static std::atomic<bool> stats_flag;

  // The checked mode (pagewait/checked.hpp; src/checked.cpp), a build option. The core calls
  // these only when `checked` is true (detail/core.hpp, checked_mode): a queued waiter's look at
  // its word (bucket lock held), a slow release's look before its last touch (bucket lock held),
  // and the report of what either found, made by checked_flush after the lock is dropped.
  static constexpr bool checked = PAGEWAIT_CHECKED != 0;
  static std::chrono::steady_clock::duration checked_poll() noexcept;
  template <class W>
  static void checked_queued(const std::atomic<W>* word, bucket<native_policy>& b) noexcept;
  template <class W>
  static void checked_release_final(const std::atomic<W>& word, W bit) noexcept;
  static void checked_flush() noexcept;
  // The designated waker (core.hpp, CONTRACT §3.4): while one of (word, bit) is in flight, the
  // lock waiters of (word, bit) may be queued with the waiters bit clear, which the queue checks
  // must not report. Counted only in checked builds; a call on the slow path otherwise, with no body.
  static void designated_begin(const void* word, std::uint64_t bit, const void*) noexcept {
    if constexpr (checked) checked_designated(word, bit, true);
  }
  static void designated_end(const void* word, std::uint64_t bit, const void*) noexcept {
    if constexpr (checked) checked_designated(word, bit, false);
  }
  static void checked_designated(const void* word, std::uint64_t bit, bool begin) noexcept;
};

}  // namespace detail
}  // namespace pagewait
