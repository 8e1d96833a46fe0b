// demo/pagecache/demo_policy.hpp — the native runtime, plus an observer on the page's word.
//
// The demo runs the real core (detail::core<demo_policy, R, std::uint32_t>) with this policy.
// It is native_policy in every respect but one: each operation on a word first asks whether
// the calling thread is ending writeback on that very word (a release_context is active) and,
// if so,
//   - counts the operation if it is an atomic read-modify-write (the cost column), and
//   - checks the frame's generation: if the frame was freed since the release began, this access
//     is a touch of a freed page, and if it was handed out again, of a reused one: the kernel's
//     BUG_ON(PageWriteback) of Nov 2020.
// The generation is even while the frame holds a page; the free makes it odd and the next
// allocation even again, each by an increment with release before the frame changes hands. It
// is read *before* the access, with acquire: a changed generation therefore proves the free
// (two steps: the reuse) happened before this access. A touch is never reported for an access
// that preceded the free.
//
// `widen`: after the clearing step of a non-atomic protocol (the fetch_and / fetch_xor that
// clears the bit), the thread sleeps, so that the window between clear and wake-up, a few
// nanoseconds on real hardware, shows on a 2-core machine within seconds.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "pagewait/detail/native_policy.hpp"
#include "pagewait/detail/wait_table.hpp"

namespace pagewait::demo {

// One end of writeback in progress on this thread. Set by the writeback thread around
// core::release and nowhere else; nothing in it is shared with other threads.
struct release_context {
  const void* word = nullptr;                              // the page's flags word
  const std::atomic<std::uint64_t>* generation = nullptr;  // the frame's generation
  std::uint64_t generation_at_start = 0;                   // read while the page was live
  std::uint64_t clearing_bit = 0;                          // the bit being released
  std::chrono::nanoseconds widen{0};                       // sleep after the clearing step
  bool widened = false;                                    // that sleep has happened
  bool touched_after_free = false;                         // an access found the frame freed
  bool touched_after_reuse = false;                        // ... and handed out again
  unsigned rmws = 0;                                       // RMWs on the page (word + pin)
  unsigned bucket_locks = 0;                               // wait-table bucket lock holds taken
};

// The calling thread's release in progress, or null.
inline thread_local release_context* current_release = nullptr;

// The pin (pinned, xor_waiters) counts its reference-count RMWs here too.
inline void note_page_rmw() noexcept {
  if (release_context* c = current_release) ++c->rmws;
}

void widen_sleep(std::chrono::nanoseconds d) noexcept;

struct demo_policy : detail::native_policy {
  template <class W>
  static W load(const std::atomic<W>& w, std::memory_order mo) noexcept {
    observe(&w, false);
    return w.load(mo);
  }
  template <class W>
  static bool test_and_set(std::atomic<W>& w, W bit, std::memory_order mo) noexcept {
    observe(&w, true);
    return detail::native_policy::test_and_set(w, bit, mo);
  }
  template <class W>
  static W fetch_or(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    observe(&w, true);
    return w.fetch_or(v, mo);
  }
  template <class W>
  static W fetch_and(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    observe(&w, true);
    const W old = w.fetch_and(v, mo);
    after_clear(&w, std::uint64_t(W(~v)));
    return old;
  }
  template <class W>
  static W fetch_xor(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    observe(&w, true);
    const W old = w.fetch_xor(v, mo);
    after_clear(&w, std::uint64_t(v));
    return old;
  }
  template <class W>
  static bool compare_exchange(std::atomic<W>& w, W& expected, W desired, std::memory_order success,
                               std::memory_order failure) noexcept {
    observe(&w, true);  // a failed CAS is an RMW attempt too: it costs the same cache line
    return w.compare_exchange_weak(expected, desired, success, failure);
  }

  // Bucket lock holds taken by an end of writeback (the slow path of every protocol): reported
  // apart from the page's RMWs, since they touch the wait table, not the page.
  static void lock(bucket_lock& l) noexcept {
    if (release_context* c = current_release) ++c->bucket_locks;
    detail::native_policy::lock(l);
  }

  // The demo's own wait table: its waiter nodes are waiter_node<demo_policy>.
  static detail::wait_table<demo_policy>& table() noexcept;

 private:
  static void observe(const void* w, bool rmw) noexcept {
    release_context* c = current_release;
    if (!c || c->word != w) [[likely]]
      return;
    const std::uint64_t g = c->generation->load(std::memory_order_acquire);
    if (g != c->generation_at_start) c->touched_after_free = true;
    if (g - c->generation_at_start >= 2) c->touched_after_reuse = true;
    if (rmw) ++c->rmws;
  }
  // The clearing step of clear_then_wake / pinned (fetch_and) or xor_waiters (fetch_xor).
  // atomic_clear's contexts carry widen == 0: its clearing step is its last touch (and, on the
  // slow path, happens under the bucket lock, where a sleep would only stall other waiters).
  static void after_clear(const void* w, std::uint64_t cleared) noexcept {
    release_context* c = current_release;
    if (!c || c->word != w || !(cleared & c->clearing_bit) || c->widened || c->widen.count() == 0) [[likely]]
      return;
    c->widened = true;
    widen_sleep(c->widen);
  }
};

}  // namespace pagewait::demo
