// The release walk under real threads, with the walk shrunk so that every release spans many
// bucket-lock holds: a one-bucket table (every word collides) and 2 visits per hold. This drives
// the paths a 64-visit walk reaches only with long queues: bookmarks, the end marker, waiters
// joining a release in progress, re-queueing them after a hand-off, and deadlines that fire
// while a release holds a waiter. The model checker explores these paths exhaustively on small
// scenarios; this test runs them at scale, under ASan and TSan too.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <pagewait/pagewait.hpp>
#include <random>
#include <thread>
#include <vector>

namespace pd = pagewait::detail;
using namespace std::chrono_literals;

template <unsigned MaxLost, long long MaxWaitNs>
struct small_walk_policy : pd::native_policy {
  static constexpr unsigned chunk_visits = 2;
  static constexpr unsigned spin_limit = 0;  // queue at once: more waiters, longer walks
  static constexpr unsigned spin_yields = 0;
  static pd::wait_table<small_walk_policy>& table() noexcept {
    static auto* t = new pd::wait_table<small_walk_policy>(1);
    return *t;
  }
  static pagewait::fairness_settings fairness() noexcept {
    return {MaxLost, std::chrono::nanoseconds(MaxWaitNs)};
  }
};

using strict = small_walk_policy<0, 0>;                 // every clearing decision becomes a hand-off
using unfair = small_walk_policy<1000, 1'000'000'000>;  // hand-off practically never
using W = std::uint32_t;
template <class P>
using core = pd::core<P, pagewait::release_protocol::atomic_clear, W>;

constexpr W LOCK = 1u << 0, EVENT = 1u << 1, OTHER = 1u << 2;

// Lock waiters and event waiters on several words, all in one bucket, with timed lock attempts
// mixed in. Checks mutual exclusion per word, that every event waiter returns after the clear
// it waited for, and that everything ends released (a lost wake-up shows as a hang, caught by
// the bounded waits: they must never time out).
template <class P>
void run_mixed(int threads, int iterations) {
  constexpr int kWords = 3;
  struct alignas(64) obj {
    std::atomic<W> word{0};
    long counter = 0;  // protected by LOCK
    std::atomic<int> owners{0};
  };
  std::vector<obj> objs(kWords);
  std::atomic<int> bad{0}, timeouts{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < iterations; ++i) {
        obj& o = objs[rng() % kWords];
        switch (rng() % 4) {
          case 0:
          case 1: {  // lock, count, unlock
            if (rng() % 3 == 0) {
              if (!core<P>::lock_slow(o.word, LOCK,
                                      pd::deadline::after(std::chrono::microseconds(rng() % 200)), nullptr) &&
                  !core<P>::try_lock(o.word, LOCK)) {
                timeouts.fetch_add(1);
                break;
              }
            } else {
              core<P>::lock(o.word, LOCK);
            }
            if (o.owners.fetch_add(1) != 0) bad.fetch_add(1);
            ++o.counter;
            o.owners.fetch_sub(1);
            core<P>::release(o.word, LOCK, pd::release_kind::unlock);
            break;
          }
          case 2: {  // start an event if none is running, wait a moment, end it
            if (o.word.fetch_or(EVENT) & EVENT) {
              // somebody else's event: wait for its end (bounded: a lost wake-up fails)
              if (!core<P>::wait_clear(o.word, EVENT, pd::deadline::after(20s), nullptr)) bad.fetch_add(1);
            } else {
              std::this_thread::yield();
              core<P>::release(o.word, EVENT, pd::release_kind::event);
            }
            break;
          }
          case 3: {  // a waiter on another bit of the same word, with a short deadline
            if (!(o.word.fetch_or(OTHER) & OTHER)) {
              std::this_thread::yield();
              core<P>::release(o.word, OTHER, pd::release_kind::event);
            } else {
              core<P>::wait_clear(o.word, OTHER, pd::deadline::after(std::chrono::microseconds(rng() % 100)),
                                  nullptr);
            }
            break;
          }
        }
      }
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(bad.load(), 0);
  long total = 0;
  for (auto& o : objs) {
    total += o.counter;
    // Nothing is held. A stale waiters bit may remain; one release-free lock/unlock clears it.
    EXPECT_EQ(o.word.load() & ~pagewait::waiters_bit<W>, 0u);
    core<P>::lock(o.word, LOCK);
    core<P>::release(o.word, LOCK, pd::release_kind::unlock);
    EXPECT_EQ(o.word.load(), 0u);
  }
  EXPECT_GT(total, 0);
  EXPECT_EQ(P::table().at(0).head.get(), nullptr);  // no node left behind
  EXPECT_EQ(P::table().at(0).releases.get(), nullptr);
}

TEST(WalkTest, MixedStrictHandoff) { run_mixed<strict>(12, 3000); }
TEST(WalkTest, MixedUnfair) { run_mixed<unfair>(12, 3000); }

// Many waiters on one event, released once: the walk spans ~N/2 holds while new waiters keep
// arriving for the same bit; all of them, old and new, must return, and only after the clear.
TEST(WalkTest, ArrivalsDuringWalkAreWokenAfterTheClear) {
  using P = strict;
  for (int round = 0; round < 20; ++round) {
    std::atomic<W> word{EVENT};
    std::atomic<bool> cleared{false};
    std::atomic<int> early{0}, done{0};
    constexpr int kWaiters = 24;
    std::vector<std::thread> ts;
    auto start_waiter = [&] {
      ts.emplace_back([&] {
        if (!core<P>::wait_clear(word, EVENT, pd::deadline::after(20s), nullptr)) early.fetch_add(100);
        if (!cleared.load()) early.fetch_add(1);
        done.fetch_add(1);
      });
    };
    // Half of them queued before the release (so that its walk spans holds), the other half
    // started just before it, to arrive while it walks.
    for (int i = 0; i < kWaiters / 2; ++i) start_waiter();
    auto queued = [&] {
      auto& b = P::table().at(0);
      P::lock(b.lock);
      int c = 0;
      for (auto* n = b.head.get(); n; n = n->next.get()) c += n->word.get() == &word;
      P::unlock(b.lock);
      return c;
    };
    const auto limit = std::chrono::steady_clock::now() + 20s;
    while (queued() < kWaiters / 2 && std::chrono::steady_clock::now() < limit) std::this_thread::yield();
    EXPECT_EQ(queued(), kWaiters / 2);
    for (int i = kWaiters / 2; i < kWaiters; ++i) start_waiter();
    cleared.store(true);  // before the release: a waiter may only return after it
    core<P>::release(word, EVENT, pd::release_kind::event);
    for (auto& t : ts) t.join();
    EXPECT_EQ(early.load(), 0);
    EXPECT_EQ(done.load(), kWaiters);
    EXPECT_EQ(word.load(), 0u);
  }
}
