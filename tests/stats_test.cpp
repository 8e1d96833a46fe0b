// tests/stats_test.cpp — the opt-in contention statistics (pagewait/stats.hpp, issue 13).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <pagewait/pagewait.hpp>
#include <pagewait/stats.hpp>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using pagewait::contention_stats;

constexpr std::uint32_t LOCK = 1u << 0;
constexpr std::uint32_t EVENT = 1u << 1;

contention_stats of_bucket(const pagewait::stats_snapshot& s, const void* word) {
  for (const auto& [i, c] : s.buckets)
    if (i == pagewait::bucket_of(word)) return c;
  return {};
}

// Each test starts from zero counts with counting on, and leaves it off.
class Stats : public ::testing::Test {
 protected:
  void SetUp() override {
    pagewait::enable_stats(true);
    pagewait::reset_stats();
  }
  void TearDown() override {
    pagewait::enable_stats(false);
    pagewait::set_contention_hook(nullptr);
    pagewait::set_fairness({});
  }
};

TEST_F(Stats, TimedWaitsAndLocksThatGiveUpAreCountedInTheirWordsBucket) {
  std::atomic<std::uint32_t> w{LOCK | EVENT};
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(pagewait::wait_bit_clear_for(w, EVENT, 1ms));
  for (int i = 0; i < 2; ++i) EXPECT_FALSE(pagewait::try_lock_bit_for(w, LOCK, 1ms));
  const auto s = pagewait::get_stats();
  const contention_stats c = of_bucket(s, &w);
  EXPECT_EQ(c.shared_waits, 3u);
  EXPECT_EQ(c.lock_waits, 2u);
  EXPECT_EQ(c.gave_up, 5u);
  EXPECT_GE(c.longest_wait, 1ms);
  EXPECT_GT(c.longest_hold.count(), 0);  // each of those waits queued under the bucket lock
  EXPECT_EQ(s.total.shared_waits, 3u);
  EXPECT_EQ(s.total.gave_up, 5u);
}

TEST_F(Stats, HandOffsAndTheLongestWait) {
  pagewait::set_fairness({0, 0ns});  // every lock waiter is handed the lock
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, LOCK);
  std::thread t([&] {
    pagewait::lock_bit(w, LOCK);
    pagewait::unlock_bit(w, LOCK);
  });
  while (pwtest::queued_on(w, LOCK) == 0) std::this_thread::yield();
  std::this_thread::sleep_for(5ms);
  pagewait::unlock_bit(w, LOCK);  // hands off
  t.join();
  const contention_stats c = of_bucket(pagewait::get_stats(), &w);
  EXPECT_EQ(c.lock_waits, 1u);
  EXPECT_EQ(c.gave_up, 0u);
  EXPECT_EQ(c.handoffs, 1u);
  EXPECT_GE(c.releases, 1u);
  EXPECT_GE(c.longest_wait, 5ms);
}

// Runs the calling thread on one CPU until destroyed (the one it is on now), then restores its
// old set. Does nothing where the set cannot be changed.
class pin_to_this_cpu {
 public:
  pin_to_this_cpu() {
    pinned_ = pthread_getaffinity_np(pthread_self(), sizeof old_, &old_) == 0 && sched_getcpu() >= 0;
    if (!pinned_) return;
    CPU_ZERO(&one_);
    CPU_SET(sched_getcpu(), &one_);
    pinned_ = pthread_setaffinity_np(pthread_self(), sizeof one_, &one_) == 0;
  }
  ~pin_to_this_cpu() {
    if (pinned_) pthread_setaffinity_np(pthread_self(), sizeof old_, &old_);
  }
  pin_to_this_cpu(const pin_to_this_cpu&) = delete;
  pin_to_this_cpu& operator=(const pin_to_this_cpu&) = delete;
  bool pinned() const { return pinned_; }
  const cpu_set_t& cpu() const { return one_; }

 private:
  cpu_set_t old_{}, one_{};
  bool pinned_ = false;
};

TEST_F(Stats, LostRacesAreCounted) {
  pagewait::set_fairness({1000, std::chrono::hours(1)});  // never hand off: woken waiters race
  std::atomic<std::uint32_t> w{0};
  // The owner releases with a waiter asleep and takes the bit straight back, before the woken
  // waiter can run: the waiter loses. A woken thread is often run at once, on the other CPU or
  // on this one ahead of the owner (the scheduler favours a thread that slept), and then may win
  // while the owner's unlock is still finishing its walk; under load it did so 100 times in a
  // row in CI. So the waiter runs on the owner's CPU at the lowest priority (SCHED_IDLE, which
  // any thread may ask for): woken, it cannot run until the owner blocks in its sleep, after the
  // re-lock. Where neither can be set, the attempts are left to chance, repeated until one lost.
  // The waiter must be asleep, not merely queued: one still on its way to the futex wait finds
  // the token at once, on its own CPU. Queued first, for the parker's flag to be this wait's
  // (AWakeSystemCallIsMadeOnlyForAWaiterThatSlept).
  pin_to_this_cpu pin;
  for (int attempt = 0; attempt < 100 && of_bucket(pagewait::get_stats(), &w).lost_races == 0; ++attempt) {
    pagewait::lock_bit(w, LOCK);
    std::atomic<pagewait::detail::native_parker*> parker{nullptr};
    std::thread t([&] {
      if (pin.pinned()) pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), &pin.cpu());
      sched_param idle{};
      pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
      parker = &pagewait::detail::native_parker::current();
      pagewait::lock_bit(w, LOCK);
      pagewait::unlock_bit(w, LOCK);
    });
    while (pwtest::queued_on(w, LOCK) == 0) std::this_thread::yield();
    // Asleep: the flag is set by the parker's CAS just before its futex wait.
    while (!(parker.load()->word.value.load() & pagewait::detail::sleeping_flag)) std::this_thread::yield();
    pagewait::unlock_bit(w, LOCK);
    pagewait::lock_bit(w, LOCK);
    std::this_thread::sleep_for(1ms);
    pagewait::unlock_bit(w, LOCK);
    t.join();
  }
  EXPECT_GE(of_bucket(pagewait::get_stats(), &w).lost_races, 1u);
}

TEST_F(Stats, TheLongestWalk) {
  std::atomic<std::uint32_t> w{EVENT};
  constexpr int n = 70;  // more than one bucket-lock hold's worth (64 visits)
  std::vector<std::thread> ts;
  for (int i = 0; i < n; ++i) ts.emplace_back([&] { pagewait::wait_bit_clear(w, EVENT); });
  while (pwtest::queued_on(w, EVENT) < std::size_t(n)) std::this_thread::yield();
  pagewait::clear_bit_and_wake(w, EVENT);
  for (auto& t : ts) t.join();
  const contention_stats c = of_bucket(pagewait::get_stats(), &w);
  EXPECT_EQ(c.shared_waits, std::uint64_t(n));
  EXPECT_GE(c.longest_walk, std::uint64_t(n));
  EXPECT_EQ(c.releases, 1u);
}

// A wake system call is made for a waiter that went to sleep, and only for one: an unpark that
// lands before the waiter sleeps leaves the token for it to find (parker.hpp, sleeping_flag).
TEST_F(Stats, AWakeSystemCallIsMadeOnlyForAWaiterThatSlept) {
  std::atomic<std::uint32_t> w{EVENT};
  std::atomic<pagewait::detail::native_parker*> parker{nullptr};
  std::thread t([&] {
    parker = &pagewait::detail::native_parker::current();
    pagewait::wait_bit_clear(w, EVENT);
  });
  while (!parker.load()) std::this_thread::yield();
  // Queued first: parkers are pooled, and until the waiter prepare()s its parker, which it does
  // before it queues, the word may still hold the flag of the parker's last owner's last sleep.
  while (pwtest::queued_on(w, EVENT) == 0) std::this_thread::yield();
  // Asleep: its parker says so (the flag is set by its CAS just before the futex wait).
  while (!(parker.load()->word.value.load() & pagewait::detail::sleeping_flag)) std::this_thread::yield();
  pagewait::clear_bit_and_wake(w, EVENT);
  t.join();
  auto s = pagewait::get_stats();
  EXPECT_EQ(s.wake_syscalls, 1u);
  EXPECT_GE(s.sleeps, 1u);

  // The parker alone: unparked before it parks, it returns the token without sleeping, and the
  // unpark makes no system call.
  pagewait::reset_stats();
  pagewait::detail::native_parker& me = pagewait::detail::native_parker::current();
  me.prepare();
  bool woke = true;
  std::thread u([&] { woke = me.unpark(pagewait::detail::token_cleared); });
  u.join();
  EXPECT_FALSE(woke);
  EXPECT_EQ(me.park(pagewait::detail::deadline::never(), nullptr), pagewait::detail::token_cleared);
  s = pagewait::get_stats();
  EXPECT_EQ(s.wake_syscalls, 0u);
  EXPECT_EQ(s.sleeps, 0u);
}

TEST_F(Stats, ResetZeroesAndOffStopsCounting) {
  std::atomic<std::uint32_t> w{EVENT};
  EXPECT_FALSE(pagewait::wait_bit_clear_for(w, EVENT, 1ms));
  EXPECT_EQ(pagewait::get_stats().total.shared_waits, 1u);
  pagewait::reset_stats();
  EXPECT_TRUE(pagewait::get_stats().buckets.empty());
  EXPECT_EQ(pagewait::get_stats().total.shared_waits, 0u);
  pagewait::enable_stats(false);
  EXPECT_FALSE(pagewait::stats_enabled());
  EXPECT_FALSE(pagewait::wait_bit_clear_for(w, EVENT, 1ms));
  EXPECT_EQ(pagewait::get_stats().total.shared_waits, 0u);
  EXPECT_EQ(pagewait::get_stats().total.gave_up, 0u);
}

struct seen {
  std::atomic<int> calls{0};
  const void* word = nullptr;
  std::uint64_t bit = 0;
  pagewait::wait_kind kind = pagewait::wait_kind::lock;
  bool got_it = true;
  std::chrono::nanoseconds waited{0};
};

TEST_F(Stats, TheHookSeesEachSlowWaitWithItsWordBitKindAndOutcome) {
  seen s;
  pagewait::set_contention_hook(
      [](void* arg, const void* word, std::uint64_t bit, pagewait::wait_kind kind,
         std::chrono::nanoseconds waited, bool got_it) {
        auto* p = static_cast<seen*>(arg);
        p->word = word;
        p->bit = bit;
        p->kind = kind;
        p->waited = waited;
        p->got_it = got_it;
        p->calls.fetch_add(1);
      },
      &s);
  std::atomic<std::uint64_t> w{std::uint64_t(1) << 40};
  EXPECT_FALSE(pagewait::wait_bit_clear_for(w, std::uint64_t(1) << 40, 2ms));
  EXPECT_EQ(s.calls.load(), 1);
  EXPECT_EQ(s.word, static_cast<const void*>(&w));
  EXPECT_EQ(s.bit, std::uint64_t(1) << 40);
  EXPECT_EQ(s.kind, pagewait::wait_kind::shared);
  EXPECT_FALSE(s.got_it);
  EXPECT_GE(s.waited, 2ms);
  // The fast paths never call it.
  std::atomic<std::uint32_t> v{0};
  pagewait::lock_bit(v, LOCK);
  pagewait::unlock_bit(v, LOCK);
  EXPECT_EQ(s.calls.load(), 1);
  // Off: no calls.
  pagewait::enable_stats(false);
  EXPECT_FALSE(pagewait::wait_bit_clear_for(w, std::uint64_t(1) << 40, 1ms));
  EXPECT_EQ(s.calls.load(), 1);
}

}  // namespace
