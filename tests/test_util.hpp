// tests/test_util.hpp — helpers shared by the concurrency tests: iteration scaling under
// sanitizers, a look into the wait table (how many waiters are queued for a word), and words
// that hash to one bucket.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <pagewait/pagewait.hpp>
#include <random>
#include <thread>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#define PWTEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PWTEST_TSAN 1
#endif
#endif
#ifndef PWTEST_TSAN
#define PWTEST_TSAN 0
#endif

namespace pwtest {

using namespace std::chrono_literals;
using native = pagewait::detail::native_policy;

// TSan runs the contended paths 5-15x slower on this 2-core machine: a third of the
// iterations keeps ctest short. ASan runs them at full count (the lifetime tests are its job).
inline constexpr bool tsan = PWTEST_TSAN != 0;
inline constexpr int scaled(int n) { return tsan ? (n / 3 > 0 ? n / 3 : 1) : n; }

// Counts the waiter nodes queued in `word`'s bucket for `word` (and `bit`, if nonzero). Taken
// under the bucket lock, so the answer is exact at that instant. Nodes that a release has
// claimed are no longer queued and are not counted.
template <class W>
std::size_t queued_on(const std::atomic<W>& word, W bit = 0) {
  auto& b = native::table().bucket_for(&word);
  native::lock(b.lock);
  std::size_t c = 0;
  for (auto* n = b.head.get(); n; n = n->next.get())
    if (n->kind != pagewait::detail::node_kind::bookmark && n->word.get() == &word &&
        (bit == 0 || n->bit == bit))
      ++c;
  native::unlock(b.lock);
  return c;
}

// All waiter nodes queued in bucket `index`, whatever their word.
inline std::size_t queued_in_bucket(std::size_t index) {
  auto& b = native::table().at(index);
  native::lock(b.lock);
  std::size_t c = 0;
  for (auto* n = b.head.get(); n; n = n->next.get())
    if (n->kind != pagewait::detail::node_kind::bookmark) ++c;
  native::unlock(b.lock);
  return c;
}

// Polls `pred` until it holds or `limit` passes (a watchdog, so that a lost wake-up or a
// missing waiter fails the test instead of hanging it). Returns the final value of pred().
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 30s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return pred();
    std::this_thread::sleep_for(100us);
  }
  return true;
}

template <class W>
bool wait_queued(const std::atomic<W>& word, std::size_t n, W bit = 0) {
  return eventually([&] { return queued_on(word, bit) >= n; });
}

// Words that hash to one bucket of the native wait table: a large array of words, of which
// those whose bucket index equals that of the first are picked. `all` owns the storage.
template <class W>
struct same_bucket_words {
  std::unique_ptr<std::atomic<W>[]> all;
  std::vector<std::atomic<W>*> words;
  std::size_t index = 0;

  explicit same_bucket_words(std::size_t want) {
    const std::size_t buckets = native::table().size();
    const std::size_t n = want * buckets * 2;  // about twice `want` per bucket
    all = std::make_unique<std::atomic<W>[]>(n);
    for (std::size_t i = 0; i < n; ++i) all[i].store(0, std::memory_order_relaxed);
    index = native::table().index_of(&all[0]);
    for (std::size_t i = 0; i < n && words.size() < want; ++i)
      if (native::table().index_of(&all[i]) == index) words.push_back(&all[i]);
  }
};

// Mutual-exclusion witness for a critical section: a plain counter (a lost update or a TSan
// report if two threads are inside) and an atomic occupancy count that catches overlap
// directly.
struct exclusion {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  long counter = 0;  // protected by the lock under test, deliberately not atomic

  void critical_section() {
    if (inside.fetch_add(1, std::memory_order_acq_rel) != 0) overlaps.fetch_add(1, std::memory_order_relaxed);
    const long c = counter;
    for (int i = 0; i < 8; ++i) native::cpu_relax();  // widen the read-modify-write window
    counter = c + 1;
    inside.fetch_sub(1, std::memory_order_acq_rel);
  }
};

inline std::mt19937& rng() {
  thread_local std::mt19937 g{std::random_device{}()};
  return g;
}
inline int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng()); }

// Holds threads until all are created, so that they really run concurrently.
struct start_gate {
  std::atomic<bool> open{false};
  void wait() const {
    while (!open.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  void release() { open.store(true, std::memory_order_release); }
};

// Restores the process-wide fairness settings when a test ends.
struct fairness_guard {
  pagewait::fairness_settings old = pagewait::get_fairness();
  explicit fairness_guard(const pagewait::fairness_settings& s) { pagewait::set_fairness(s); }
  ~fairness_guard() { pagewait::set_fairness(old); }
};

// A coroutine that starts at once and frees itself at its end (the async tests' tasks: pagewait
// ships awaitables, not a task type).
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

}  // namespace pwtest
