// Deadlines and stop requests racing releases. A bounded wait that returns true must have seen
// a clear that happened after it began (or the bit clear at the start); one that returns false
// has been given nothing. A timed lock that returns true owns the lock; one that returns false
// owns nothing, and no lock is ever lost, even when the deadline fires while a release (which
// may span several lock holds and re-queue joined waiters) is handing the lock over.
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
class Timeout : public ::testing::Test {};
using WordTypes = ::testing::Types<std::uint32_t, std::uint64_t>;
TYPED_TEST_SUITE(Timeout, WordTypes);

// `epoch` is odd while the event is in progress: it becomes odd after the bit is set and even
// before the bit is cleared. So a waiter that starts while the epoch is odd started with the
// bit set; if it then returns true, it saw a clear, which comes after an epoch increment.
template <class W>
void timed_event_waiters(std::atomic<W>& w, W E, int rounds) {
  std::atomic<long> epoch{0};
  std::atomic<bool> done{false};
  std::atomic<long> trues{0}, falses{0}, stopped{0}, violations{0};
  std::mutex stop_m;
  std::stop_source stop_slot;
  pwtest::start_gate gate;

  auto check = [&](long e0, bool r) {
    const long e1 = epoch.load();
    if (r && (e0 & 1) && e1 == e0) violations.fetch_add(1);  // woken into a bit still set
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)  // timed waiters, deadlines of 0..80 us
    ts.emplace_back([&, t] {
      gate.wait();
      while (!done.load()) {
        // Wait while the event is in progress; on a clear bit the wait is a single load and
        // would only starve the releaser.
        if (!(w.load() & E)) {
          std::this_thread::yield();
          continue;
        }
        const auto d = std::chrono::microseconds(pwtest::rand_int(0, 80));
        const long e0 = epoch.load();
        const bool r = t == 0 ? pagewait::wait_bit_clear_until(w, E, std::chrono::steady_clock::now() + d)
                              : pagewait::wait_bit_clear_for(w, E, d);
        check(e0, r);
        (r ? trues : falses).fetch_add(1);
      }
    });
  ts.emplace_back([&] {  // stop-token waiter, stopped at random by the stopper
    gate.wait();
    while (!done.load()) {
      if (!(w.load() & E)) {
        std::this_thread::yield();
        continue;
      }
      std::stop_source src;
      {
        std::lock_guard<std::mutex> g(stop_m);
        stop_slot = src;
      }
      const long e0 = epoch.load();
      const bool r = pagewait::wait_bit_clear(w, E, src.get_token());
      check(e0, r);
      (r ? trues : stopped).fetch_add(1);
    }
  });
  std::thread stopper([&] {
    gate.wait();
    while (!done.load()) {
      std::stop_source s;
      {
        std::lock_guard<std::mutex> g(stop_m);
        s = stop_slot;
      }
      s.request_stop();
      std::this_thread::sleep_for(std::chrono::microseconds(pwtest::rand_int(0, 60)));
    }
  });
  gate.release();
  for (int r = 0; r < rounds; ++r) {
    w.fetch_or(E);
    epoch.fetch_add(1);  // odd: in progress
    if (r % 2)
      std::this_thread::sleep_for(std::chrono::microseconds(pwtest::rand_int(0, 30)));
    else
      for (int k = pwtest::rand_int(0, 3); k > 0; --k) std::this_thread::yield();
    epoch.fetch_add(1);  // even: about to clear
    pagewait::clear_bit_and_wake(w, E);
    std::this_thread::yield();
  }
  done.store(true);
  for (auto& t : ts) t.join();
  stopper.join();
  EXPECT_EQ(violations.load(), 0) << "a bounded wait returned true with the bit set all along";
  std::printf("waits: %ld saw the clear, %ld timed out, %ld stopped\n", trues.load(), falses.load(),
              stopped.load());
  EXPECT_GT(trues.load(), 0);
}

TYPED_TEST(Timeout, BoundedEventWaitsRacingReleases) {
  using W = TypeParam;
  constexpr W E = W(1) << 3;
  std::atomic<W> w{0};
  timed_event_waiters(w, E, scaled(15000));
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0));
  w.fetch_or(E);
  pagewait::clear_bit_and_wake(w, E);
  EXPECT_EQ(w.load(), W(0)) << "a waiters bit survived a release with nobody queued";
}

// A bounded wait that times out while the bit stays set returns false, and leaves only the
// (allowed) stale waiters bit; a release right at the deadline gives true or false, never a
// hang; this is the single-waiter version of the race, repeated.
TYPED_TEST(Timeout, DeadlineAtTheReleaseInstant) {
  using W = TypeParam;
  constexpr W E = W(1) << 11;
  std::atomic<W> w{0};
  long trues = 0, falses = 0;
  for (int i = 0; i < scaled(1000); ++i) {
    w.fetch_or(E);
    const auto d = std::chrono::microseconds(pwtest::rand_int(0, 100));
    std::atomic<bool> cleared{false};
    bool r = false;
    std::thread t([&] {
      r = pagewait::wait_bit_clear_for(w, E, d);
      // True only if the clear happened (`cleared` is set before the release).
      if (r) {
        EXPECT_TRUE(cleared.load());
      }
    });
    std::this_thread::sleep_for(std::chrono::microseconds(pwtest::rand_int(0, 100)));
    cleared.store(true);
    pagewait::clear_bit_and_wake(w, E);
    t.join();
    (r ? trues : falses)++;
  }
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0));
  std::printf("%ld saw the clear, %ld timed out\n", trues, falses);
}

// Timed lockers with short deadlines, under strict hand-off (so that deadlines fire while
// unlocks are handing the lock to them), plus blocking lockers whose watchdog detects a lost
// lock. `spanning` adds 70 event waiters on other words of the same bucket, queued ahead: every
// release walk then needs two lock holds, waiters arriving meanwhile join the release, and a
// hand-off re-queues them, some with their deadline already passed (the abandoned path).
template <class W>
void timed_lockers_under_handoff(bool spanning) {
  constexpr W L = W(1) << 1;
  constexpr W E = W(1) << 2;
  constexpr int kBlockers = 70;  // more than one walk chunk (64 visits)
  pwtest::same_bucket_words<W> sb(kBlockers + 1);
  ASSERT_EQ(sb.words.size(), std::size_t(kBlockers + 1));
  std::atomic<W>& w = *sb.words[0];

  std::vector<std::thread> blockers;
  std::atomic<int> blocker_failures{0};
  if (spanning) {
    for (int i = 1; i <= kBlockers; ++i) {
      sb.words[i]->store(E);
      blockers.emplace_back([&, i] {
        if (!pagewait::wait_bit_clear_for(*sb.words[i], E, 120s)) blocker_failures.fetch_add(1);
      });
    }
    ASSERT_TRUE(
        pwtest::eventually([&] { return pwtest::queued_in_bucket(sb.index) >= std::size_t(kBlockers); }));
  }

  pwtest::fairness_guard fair({0, 0ns});
  exclusion ex;
  std::atomic<long> successes{0}, failures{0};
  const int iters = scaled(spanning ? 4000 : 10000);
  pwtest::start_gate gate;
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&] {
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        if (!pagewait::try_lock_bit_for(w, L, 60s)) {
          ADD_FAILURE() << "lost lock: a blocking locker waited 60 s";
          return;
        }
        ex.critical_section();
        successes.fetch_add(1);
        pagewait::unlock_bit(w, L);
      }
    });
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      gate.wait();
      for (int i = 0; i < iters; ++i) {
        if (!pagewait::try_lock_bit_for(w, L, std::chrono::microseconds(pwtest::rand_int(0, 100)))) {
          failures.fetch_add(1);
          continue;
        }
        ex.critical_section();
        successes.fetch_add(1);
        for (int k = pwtest::rand_int(0, 50); k > 0; --k) pwtest::native::cpu_relax();
        pagewait::unlock_bit(w, L);
      }
    });
  gate.release();
  for (auto& t : ts) t.join();
  std::printf("%s: %ld acquisitions, %ld timeouts\n", spanning ? "spanning walks" : "short walks",
              successes.load(), failures.load());
  EXPECT_EQ(ex.overlaps.load(), 0);
  EXPECT_EQ(ex.counter, successes.load());
  EXPECT_EQ(successes.load() + failures.load(), 6L * iters);
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0)) << "lost lock: the bit is still set";
  EXPECT_EQ(pwtest::queued_on(w), 0u) << "a waiter is still queued after every thread returned";
  // At most a stale waiters bit is left (CONTRACT §3.4): the next release finds nobody for the
  // word (the blockers wait on other words) and clears it.
  pagewait::lock_bit(w, L);
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(w.load(), W(0));

  for (int i = 1; spanning && i <= kBlockers; ++i) pagewait::clear_bit_and_wake(*sb.words[i], E);
  for (auto& t : blockers) t.join();
  EXPECT_EQ(blocker_failures.load(), 0);
  for (int i = 1; spanning && i <= kBlockers; ++i) EXPECT_EQ(sb.words[i]->load(), W(0));
}

TYPED_TEST(Timeout, TimedLockersUnderHandoff) { timed_lockers_under_handoff<TypeParam>(false); }
TYPED_TEST(Timeout, TimedLockersUnderHandoffWithSpanningWalks) {
  timed_lockers_under_handoff<TypeParam>(true);
}

}  // namespace
