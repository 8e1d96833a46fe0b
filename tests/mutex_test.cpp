// Mutual exclusion. A plain counter protected by one lock bit, incremented by 8 threads while
// other threads churn the other bits of the same word: event bits set and released (with their
// own waiters, so that the waiters bit is set and every release takes the slow path), and
// another lock bit. Then std::scoped_lock over several bits of one word, and the timed and
// stop-token lock forms racing unlocks. Every acquisition is checked for exclusion.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
using pwtest::exclusion;
using pwtest::scaled;

namespace {

template <class W>
class Mutex : public ::testing::Test {};
using WordTypes = ::testing::Types<std::uint32_t, std::uint64_t>;
TYPED_TEST_SUITE(Mutex, WordTypes);

template <class W>
struct churned_word {
  static constexpr W L = W(1) << 0;   // the counted lock
  static constexpr W L2 = W(1) << 1;  // another lock, churned
  static constexpr W E = W(1) << 5;   // an event bit, churned, with waiters
  static constexpr W E2 = W(1) << 6;  // another event bit, churned, no waiters

  std::atomic<W> word{0};
  exclusion ex, ex2;
  std::atomic<bool> stop{false};
  std::atomic<long> events{0};
  std::vector<std::thread> churners;

  void start_churn() {
    churners.emplace_back([this] {  // event bit with waiters: set, yield, release
      while (!stop.load(std::memory_order_relaxed)) {
        word.fetch_or(E);
        std::this_thread::yield();
        pagewait::clear_bit_and_wake(word, E);
        events.fetch_add(1, std::memory_order_relaxed);
      }
    });
    churners.emplace_back([this] {  // event bit without waiters: fast releases on a busy word
      while (!stop.load(std::memory_order_relaxed)) {
        word.fetch_or(E2);
        pagewait::clear_bit_and_wake(word, E2);
      }
    });
    for (int i = 0; i < 2; ++i)
      churners.emplace_back([this] {  // waiters on the event: keep the waiters bit set
        while (!stop.load(std::memory_order_relaxed)) pagewait::wait_bit_clear(word, E);
      });
    churners.emplace_back([this] {  // another lock bit of the same word
      while (!stop.load(std::memory_order_relaxed)) {
        pagewait::lock_bit(word, L2);
        ex2.critical_section();
        pagewait::unlock_bit(word, L2);
      }
    });
  }
  void stop_churn() {
    stop.store(true);
    for (auto& t : churners) t.join();  // the event churner ends with E clear: waiters return
  }
};

TYPED_TEST(Mutex, CountingUnderEightThreadsWhileOtherBitsChurn) {
  using W = TypeParam;
  using CW = churned_word<W>;
  constexpr int kThreads = 8;
  const int iters = scaled(60000);
  CW cw;
  cw.start_churn();
  pwtest::start_gate gate;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      pagewait::bit_lock<W> bl(cw.word, CW::L);
      std::stop_source never;
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        // Every way of taking the lock, each thread its own.
        switch (t % 4) {
          case 0:
            pagewait::lock_bit(cw.word, CW::L);
            break;
          case 1:
            while (!pagewait::try_lock_bit(cw.word, CW::L)) std::this_thread::yield();
            break;
          case 2:
            ASSERT_TRUE(pagewait::try_lock_bit_for(cw.word, CW::L, 60s));
            break;
          case 3:
            ASSERT_TRUE(pagewait::lock_bit(cw.word, CW::L, never.get_token()));
            break;
        }
        cw.ex.critical_section();
        if (t % 2)
          pagewait::unlock_bit(cw.word, CW::L);
        else
          bl.unlock();
      }
    });
  gate.release();
  for (auto& t : ts) t.join();
  cw.stop_churn();
  EXPECT_EQ(cw.ex.overlaps.load(), 0);
  EXPECT_EQ(cw.ex.counter, long(kThreads) * iters);
  EXPECT_EQ(cw.ex2.overlaps.load(), 0);
  EXPECT_GT(cw.events.load(), 0);
  // Every bit released; at most a stale waiters bit, which the next slow release clears.
  EXPECT_EQ(cw.word.load() & ~pagewait::waiters_bit<W>, W(0));
  pagewait::lock_bit(cw.word, CW::L);
  pagewait::unlock_bit(cw.word, CW::L);
  EXPECT_EQ(cw.word.load(), W(0));
}

// Three bits of one word, taken in pairs and all three by std::scoped_lock (std::lock's
// deadlock avoidance over bit_lock::lock/try_lock/unlock). Each bit guards its own counter.
TYPED_TEST(Mutex, ScopedLockOverSeveralBitsOfOneWord) {
  using W = TypeParam;
  std::atomic<W> w{0};
  const W bits[3] = {W(1) << 2, W(1) << 9, W(1) << (sizeof(W) * 8 - 2)};  // up to the highest user bit
  exclusion ex[3];
  const int iters = scaled(30000);
  pwtest::start_gate gate;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      pagewait::bit_lock<W> a(w, bits[t % 3]), b(w, bits[(t + 1) % 3]), c(w, bits[(t + 2) % 3]);
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        if (t == 3) {
          std::scoped_lock g(a, b, c);
          ex[0].critical_section();
          ex[1].critical_section();
          ex[2].critical_section();
        } else {
          std::scoped_lock g(a, b);
          ex[t % 3].critical_section();
          ex[(t + 1) % 3].critical_section();
        }
      }
    });
  gate.release();
  for (auto& t : ts) t.join();
  // Thread t (< 3) counts bits t and t+1; thread 3 counts all: each bit 2 + 1 times iters.
  for (auto& e : ex) {
    EXPECT_EQ(e.overlaps.load(), 0);
    EXPECT_EQ(e.counter, 3L * iters);
  }
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0));
}

// Timed and stop-token acquisitions racing unlocks, under both fairness regimes. A successful
// acquisition must own the bit (exclusion, counter); a failed one must own nothing: if a
// failed waiter had been handed the lock and dropped it, the bit would stay set for ever and
// the blocking lockers' watchdogs would fire, and the final word would not be clear.
template <class W>
void timed_and_stop_racing_unlocks() {
  constexpr W L = W(1) << 4;
  constexpr W E = W(1) << 8;  // an event bit with a waiter: other-bit traffic on the word
  std::atomic<W> w{0};
  exclusion ex;
  std::atomic<long> successes{0}, failures{0}, stops{0};
  std::atomic<bool> done{false};
  const int iters = scaled(15000);
  pwtest::start_gate gate;

  // Stop sources of the stop-token lockers, swapped per attempt; the stopper copies one under
  // the mutex (stop_source copies share the stop state) and requests stop on it.
  std::mutex slots_m;
  std::stop_source slots[2];

  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)  // blocking lockers with a watchdog, holding a little
    ts.emplace_back([&] {
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        if (!pagewait::try_lock_bit_for(w, L, 60s)) {
          ADD_FAILURE() << "a lock was lost: a blocking locker waited 60 s";
          return;
        }
        ex.critical_section();
        successes.fetch_add(1);
        for (int k = pwtest::rand_int(0, 100); k > 0; --k) pwtest::native::cpu_relax();
        pagewait::unlock_bit(w, L);
      }
    });
  for (int t = 0; t < 3; ++t)  // timed lockers with deadlines of 0..200 us
    ts.emplace_back([&, t] {
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        const auto d = std::chrono::microseconds(pwtest::rand_int(0, 200));
        const bool ok = t == 2 ? pagewait::try_lock_bit_until(w, L, std::chrono::system_clock::now() + d)
                               : pagewait::try_lock_bit_for(w, L, d);
        if (!ok) {
          failures.fetch_add(1);
          continue;
        }
        ex.critical_section();
        successes.fetch_add(1);
        pagewait::unlock_bit(w, L);
      }
    });
  for (int t = 0; t < 2; ++t)  // stop-token lockers, stopped at random
    ts.emplace_back([&, t] {
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        std::stop_source src;
        {
          std::lock_guard<std::mutex> g(slots_m);
          slots[t] = src;
        }
        if (!pagewait::lock_bit(w, L, src.get_token())) {
          stops.fetch_add(1);
          continue;
        }
        ex.critical_section();
        successes.fetch_add(1);
        pagewait::unlock_bit(w, L);
      }
    });
  std::thread stopper([&] {
    while (!done.load()) {
      std::stop_source s;
      {
        std::lock_guard<std::mutex> g(slots_m);
        s = slots[pwtest::rand_int(0, 1)];
      }
      s.request_stop();
      std::this_thread::sleep_for(std::chrono::microseconds(pwtest::rand_int(0, 50)));
    }
  });
  std::thread eventer([&] {
    while (!done.load()) {
      w.fetch_or(E);
      std::this_thread::yield();
      pagewait::clear_bit_and_wake(w, E);
    }
  });
  std::thread event_waiter([&] {
    while (!done.load()) (void)pagewait::wait_bit_clear_for(w, E, 1ms);
  });
  gate.release();
  for (auto& t : ts) t.join();
  done.store(true);
  stopper.join();
  eventer.join();
  event_waiter.join();

  EXPECT_EQ(ex.overlaps.load(), 0);
  EXPECT_EQ(ex.counter, successes.load());
  EXPECT_EQ(successes.load() + failures.load() + stops.load(), 7L * iters);
  std::printf("successes %ld, timeouts %ld, stopped %ld\n", successes.load(), failures.load(), stops.load());
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0)) << "a bit was left set: lost lock";
  pagewait::lock_bit(w, L);
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(w.load(), W(0)) << "a waiters bit survived a release with nobody queued";
}

TYPED_TEST(Mutex, TimedAndStopLocksRacingUnlocksDefaultFairness) {
  timed_and_stop_racing_unlocks<TypeParam>();
}

TYPED_TEST(Mutex, TimedAndStopLocksRacingUnlocksStrictHandoff) {
  pwtest::fairness_guard g({0, 0ns});
  timed_and_stop_racing_unlocks<TypeParam>();
}

}  // namespace
