// Hand-off fairness (CONTRACT §3.6). Two properties that hold whatever the scheduler does:
//   * strict hand-off ({0 lost races, 0 ns}) is FIFO: the thread at the head of the queue when
//     the owner unlocks is the next owner. Checked exactly, acquisition by acquisition, from a
//     snapshot of the queue taken inside each critical section. No timing involved.
//   * a waiter is not starved by a thread that re-takes the lock the instant it releases it
//     (barging): each fairness bound on its own (lost races, or waiting time) gets it the lock.
//     Without either bound such a waiter essentially never wins (woken, it finds the lock
//     re-taken), so each acquisition is given a 20 s watchdog, generous enough for any noise
//     on a busy machine.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using pwtest::scaled;

namespace {

template <class W>
class Fairness : public ::testing::Test {};
using WordTypes = ::testing::Types<std::uint32_t, std::uint64_t>;
TYPED_TEST_SUITE(Fairness, WordTypes);

// The first exclusive waiter queued for (word, bit), as seen by the lock's owner: its thread
// index (-1 if none) and whether it has earned a hand-off (CONTRACT §3.6). Both are decided before
// the node became visible (wants_handoff, handoff_at) and read here under the bucket lock.
struct head_info {
  int who = -1;
  bool earned = false;
  // A designated waker of (word, bit) had not raced yet (CONTRACT §3.4): the lock waiters are
  // queued with the waiters bit clear, and the unlock is a CAS that reaches nobody (§3.6).
  bool designated = false;
};

template <class W>
head_info queue_head(const std::atomic<W>& w, W bit, const std::vector<const void*>& parkers) {
  auto& b = pwtest::native::table().bucket_for(&w);
  pwtest::native::lock(b.lock);
  head_info h;
  for (auto* n = b.head.get(); n; n = n->next.get())
    if (n->kind == pagewait::detail::node_kind::exclusive && n->word.get() == &w && n->bit == bit) {
      for (std::size_t i = 0; i < parkers.size(); ++i)
        if (parkers[i] == n->parker.get()) h.who = int(i);
      h.earned = n->wants_handoff || pwtest::native::now() >= n->handoff_at;
      // [I4] with the bucket lock held, a lock waiter queued under a clear waiters bit means a
      // designated waker in flight.
      h.designated = !(w.load(std::memory_order_relaxed) & pagewait::waiters_bit<W>);
      break;
    }
  pwtest::native::unlock(b.lock);
  return h;
}

// Four threads take one lock bit `iters` times each, holding it ~10 us (long enough that the
// others outlast their spin and queue). Inside each critical section the owner snapshots the
// head of the queue. Check: whenever the head had earned a hand-off, the next owner is the
// head's thread: nobody (not even the unlocker re-locking at once) can take a lock that is
// due to a waiter. Except while a designated waker is in flight (CONTRACT §3.4, §3.6): the
// unlock then reaches nobody, and such acquisitions are counted apart. Under strict hand-off every queued
// head has earned it: that is FIFO. Time enters only through handoff_at, which the snapshot reads before the
// unlock: once earned, still earned at the unlock.
struct handoff_tally {
  long acquisitions = 0, queued = 0, earned = 0, violations = 0, designated = 0, earned_designated = 0;
  std::string first_violation;
};

// Readers: threads that wait, in a loop, for the lock bit to clear (wait_bit_clear on it, as a
// reader waits for a page's read to finish), so that shared waiters are queued ahead of the
// lock waiters. A hand-off keeps the bit set, so it must not wake them; they are woken by the
// unlocks that clear. They stop once `stop` is set and the bit has been seen clear.
struct readers {
  std::atomic<bool> stop{false};
  std::atomic<long> returns{0};
  std::vector<std::thread> ts;
  template <class W>
  readers(int n, std::atomic<W>& w, W L) {
    for (int i = 0; i < n; ++i)
      ts.emplace_back([this, &w, L] {
        while (!stop.load(std::memory_order_relaxed)) {
          pagewait::wait_bit_clear(w, L);
          returns.fetch_add(1, std::memory_order_relaxed);
          // Returned at once (the bit was clear): let the lockers run rather than spin on the
          // fast path, on a machine with fewer cores than threads.
          std::this_thread::yield();
        }
      });
  }
  // The lockers must be done: the bit is then clear and every reader returns.
  void join() {
    stop.store(true);
    for (auto& t : ts) t.join();
    ts.clear();
  }
  ~readers() {
    if (!ts.empty()) join();
  }
};

template <class W>
void one_round(std::atomic<W>& w, W L, int iters, handoff_tally& tally, int reader_threads) {
  constexpr int kThreads = 4;
  std::vector<const void*> parkers(kThreads);
  std::atomic<int> ready{0};
  // Written only by the lock's owner: who owned acquisition k, and the queue's head then.
  std::vector<int> owner;
  std::vector<head_info> head;
  owner.reserve(std::size_t(kThreads) * iters);
  head.reserve(std::size_t(kThreads) * iters);
  pwtest::start_gate gate;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      parkers[t] = &pagewait::detail::native_parker::current();
      ready.fetch_add(1);
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        pagewait::lock_bit(w, L);
        owner.push_back(t);
        const auto until = std::chrono::steady_clock::now() + 10us;
        while (std::chrono::steady_clock::now() < until) pwtest::native::cpu_relax();
        head.push_back(queue_head(w, L, parkers));
        pagewait::unlock_bit(w, L);
      }
    });
  while (ready.load() < kThreads) std::this_thread::yield();
  readers rd(reader_threads, w, L);
  gate.release();
  for (auto& t : ts) t.join();
  rd.join();
  ASSERT_EQ(owner.size(), std::size_t(kThreads) * iters);
  tally.acquisitions += long(owner.size());
  for (std::size_t k = 0; k + 1 < owner.size(); ++k) {
    if (head[k].who < 0) continue;
    ++tally.queued;
    if (head[k].designated) {
      // CONTRACT §3.6: an unlock made while a designated waker has not raced is a CAS that
      // reaches nobody; the head that earned its hand-off meanwhile gets it from the first unlock
      // that reaches it after that race (the time bound is max_wait plus that waker's wake-up).
      // Not checked acquisition by acquisition: the round ends only if every thread got the lock.
      ++tally.designated;
      if (head[k].earned) ++tally.earned_designated;
      continue;
    }
    if (!head[k].earned) continue;
    ++tally.earned;
    if (owner[k + 1] != head[k].who && tally.violations++ == 0)
      tally.first_violation = "acquisition " + std::to_string(k + 1) + " went to thread " +
                              std::to_string(owner[k + 1]) + ", not to the queue's head, thread " +
                              std::to_string(head[k].who) + ", which had earned the hand-off";
  }
}

// Rounds are repeated until at least 20 earned hand-offs were checked (the scheduler decides
// how often waiters queue long enough to earn one), for at most 20 rounds.
template <class W>
void earned_handoffs_are_honoured(const pagewait::fairness_settings& s, bool expect_all_earned,
                                  int reader_threads = 0) {
  constexpr W L = W(1) << 6;
  pwtest::fairness_guard fair(s);
  std::atomic<W> w{0};
  handoff_tally tally;
  for (int round = 0; round < 20 && tally.earned < 20; ++round) {
    one_round(w, L, scaled(2500), tally, reader_threads);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::printf(
      "%ld acquisitions: %ld with a queue, %ld with an earned hand-off, %ld not honoured; %ld with a "
      "designated waker in flight (%ld of them with the head earned), not checked\n",
      tally.acquisitions, tally.queued, tally.earned, tally.violations, tally.designated,
      tally.earned_designated);
  EXPECT_GE(tally.earned, 20) << "too few earned hand-offs: the test did not test them";
  if (expect_all_earned) {
    EXPECT_EQ(tally.earned, tally.queued);
    // Every lock waiter has earned its hand-off: no waker is designated past one (§3.4).
    EXPECT_EQ(tally.designated, 0);
  }
  EXPECT_EQ(tally.violations, 0) << tally.first_violation;
  EXPECT_EQ(w.load(), W(0));
}

TYPED_TEST(Fairness, StrictHandoffIsFifo) { earned_handoffs_are_honoured<TypeParam>({0, 0ns}, true); }
TYPED_TEST(Fairness, DefaultBoundsHandOffWhenEarned) { earned_handoffs_are_honoured<TypeParam>({}, false); }
TYPED_TEST(Fairness, LostRaceBoundHandsOff) {
  earned_handoffs_are_honoured<TypeParam>({2, std::chrono::hours(1)}, false);
}
TYPED_TEST(Fairness, WaitTimeBoundHandsOff) {
  earned_handoffs_are_honoured<TypeParam>({1000000000u, 100us}, false);
}
// Issue 8: readers of the lock bit queued ahead of the lock waiters must not cost a lock waiter
// its earned hand-off (the first *exclusive* waiter decides, past shared ones).
TYPED_TEST(Fairness, StrictHandoffIsFifoPastReaders) {
  earned_handoffs_are_honoured<TypeParam>({0, 0ns}, true, 3);
}
TYPED_TEST(Fairness, DefaultBoundsHandOffPastReaders) {
  earned_handoffs_are_honoured<TypeParam>({}, false, 3);
}

// A barger holds the lock for tens of microseconds and re-takes it the instant it releases it;
// a victim wants it `rounds` times. Woken to race for the bit, the victim finds it re-taken
// almost always (the barger's re-lock takes nanoseconds, the victim's wake-up microseconds):
// only a hand-off gets it the lock. Each of its acquisitions must come (watchdog 20 s).
template <class W>
void victim_not_starved(const pagewait::fairness_settings& s, int reader_threads = 0) {
  constexpr W L = W(1) << 0;
  pwtest::fairness_guard fair(s);
  std::atomic<W> w{0};
  std::atomic<bool> stop{false};
  pwtest::exclusion ex;
  readers rd(reader_threads, w, L);
  std::thread barger([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      pagewait::lock_bit(w, L);
      ex.critical_section();
      const auto until = std::chrono::steady_clock::now() + 20us;
      while (std::chrono::steady_clock::now() < until) pwtest::native::cpu_relax();
      pagewait::unlock_bit(w, L);
    }
  });
  std::this_thread::sleep_for(2ms);  // let the barger get going
  const int rounds = scaled(40);
  int got = 0;
  std::chrono::steady_clock::duration longest{};
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!pagewait::try_lock_bit_for(w, L, 20s)) break;
    longest = std::max(longest, std::chrono::steady_clock::now() - t0);
    ex.critical_section();
    ++got;
    pagewait::unlock_bit(w, L);
    std::this_thread::sleep_for(200us);  // leave, so that the next round queues afresh
  }
  stop.store(true);
  barger.join();
  rd.join();
  std::printf(
      "victim: %d of %d acquisitions, longest wait %.2f ms; %ld acquisitions in all; %d readers, %ld "
      "returns\n",
      got, rounds, std::chrono::duration<double, std::milli>(longest).count(), ex.counter, reader_threads,
      rd.returns.load());
  EXPECT_EQ(got, rounds) << "the victim starved for 20 s";
  EXPECT_EQ(ex.overlaps.load(), 0);
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0));
}

TYPED_TEST(Fairness, DefaultBoundsStopBargersStarvingAWaiter) { victim_not_starved<TypeParam>({}); }
// Issue 8's starvation, with readers of the lock bit queued too. The review that found it saw
// the victim handed the lock 3 times in 20 000 of the barger's cycles (longest wait 1.9 s), with
// the barger and the victim pinned to different cores. Here, unpinned, the victim's timing rarely
// lines up that way, so this one guards against starvation in general; the exact check of issue
// 8 is the *PastReaders hand-off tests above (hundreds of earned hand-offs lost before the fix).
TYPED_TEST(Fairness, DefaultBoundsStopBargersPastReaders) { victim_not_starved<TypeParam>({}, 4); }
TYPED_TEST(Fairness, StrictBoundsStopBargersPastReaders) { victim_not_starved<TypeParam>({0, 0ns}, 4); }

// Four threads with equal appetite under the default bounds: nobody is shut out. (Shares are
// not asserted beyond "more than none": on a shared 2-core machine the scheduler alone can
// skew them a lot.)
TYPED_TEST(Fairness, EveryThreadAcquiresUnderContention) {
  using W = TypeParam;
  constexpr W L = W(1) << 30;
  std::atomic<W> w{0};
  std::atomic<bool> stop{false};
  long counts[4] = {};
  pwtest::exclusion ex;
  pwtest::start_gate gate;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      gate.wait();
      while (!stop.load(std::memory_order_relaxed)) {
        if (!pagewait::try_lock_bit_for(w, L, 20s)) {
          ADD_FAILURE() << "thread " << t << " starved for 20 s";
          return;
        }
        ex.critical_section();
        ++counts[t];
        pagewait::unlock_bit(w, L);
      }
    });
  gate.release();
  std::this_thread::sleep_for(300ms);
  stop.store(true);
  for (auto& t : ts) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_GT(counts[t], 0) << "thread " << t;
  EXPECT_EQ(ex.overlaps.load(), 0);
  EXPECT_EQ(ex.counter, counts[0] + counts[1] + counts[2] + counts[3]);
  std::printf("shares: %ld %ld %ld %ld\n", counts[0], counts[1], counts[2], counts[3]);
}

}  // namespace
