// Wake-ups at scale: hundreds of waiters on one bit woken by one release (the walk spans many
// lock holds), hundreds of words in one bucket released in random order, and two bits of one
// word released separately. Every wait has a watchdog: a lost wake-up fails, never hangs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

template <class W>
class Wake : public ::testing::Test {};
using WordTypes = ::testing::Types<std::uint32_t, std::uint64_t>;
TYPED_TEST_SUITE(Wake, WordTypes);

constexpr auto kWatchdog = 60s;

// 520 waiters (more than 8 chunks of the walk) on one bit, released by one clear_bit_and_wake.
// Each must return, and only after the clear: `released` and `payload` are written before it,
// and the wake must make them visible (the plain `payload` is a TSan-checked happens-before).
TYPED_TEST(Wake, FiveHundredWaitersOnOneBitOneRelease) {
  using W = TypeParam;
  constexpr W E = W(1) << 9;
  constexpr int kThreads = 520;
  std::atomic<W> w{E};
  std::atomic<bool> released{false};
  int payload = 0;
  std::atomic<int> returned{0}, early{0}, timed_out{0}, wrong_payload{0};
  std::vector<std::thread> ts;
  ts.reserve(kThreads);
  for (int i = 0; i < kThreads; ++i)
    ts.emplace_back([&, i] {
      // Half wait untimed (futex wait), half with a deadline (futex wait-bitset).
      if (i % 2)
        pagewait::wait_bit_clear(w, E);
      else if (!pagewait::wait_bit_clear_for(w, E, kWatchdog))
        timed_out.fetch_add(1);
      if (!released.load(std::memory_order_relaxed)) early.fetch_add(1);
      if (payload != 42) wrong_payload.fetch_add(1);
      returned.fetch_add(1);
    });
  ASSERT_TRUE(pwtest::wait_queued(w, std::size_t(kThreads)));
  EXPECT_EQ(returned.load(), 0);
  payload = 42;
  released.store(true, std::memory_order_relaxed);
  pagewait::clear_bit_and_wake(w, E);
  for (auto& t : ts) t.join();
  EXPECT_EQ(returned.load(), kThreads);
  EXPECT_EQ(early.load(), 0) << "a waiter returned before the clear";
  EXPECT_EQ(wrong_payload.load(), 0) << "the releaser's writes before the clear were not visible";
  EXPECT_EQ(timed_out.load(), 0) << "lost wake-up";
  EXPECT_EQ(w.load(), W(0)) << "the last waiter left: the release clears the waiters bit too";
}

// Hundreds of words in one bucket, each with a waiter (shared on some, exclusive on others),
// released in random order. Each release walks a queue of hundreds of other words' nodes in
// chunks; none may lose or mis-deliver a wake-up, and each word ends with no waiters bit.
TYPED_TEST(Wake, HundredsOfWordsInOneBucketRandomOrder) {
  using W = TypeParam;
  constexpr W E = W(1) << 2;  // event bit on even-numbered words
  constexpr W L = W(1) << 7;  // lock bit, held by the releaser, on odd-numbered words
  constexpr std::size_t kWords = 300;
  pwtest::same_bucket_words<W> sb(kWords);
  ASSERT_EQ(sb.words.size(), kWords);
  std::vector<std::atomic<bool>> released(kWords);
  std::atomic<int> early{0}, failed{0};
  for (std::size_t i = 0; i < kWords; ++i) {
    if (i % 2 == 0)
      sb.words[i]->store(E);
    else
      pagewait::lock_bit(*sb.words[i], L);
  }
  std::vector<std::thread> ts;
  for (std::size_t i = 0; i < kWords; ++i)
    ts.emplace_back([&, i] {
      std::atomic<W>& w = *sb.words[i];
      if (i % 2 == 0) {
        if (!pagewait::wait_bit_clear_for(w, E, kWatchdog)) failed.fetch_add(1);
        if (!released[i].load()) early.fetch_add(1);
      } else {
        if (!pagewait::try_lock_bit_for(w, L, kWatchdog)) {
          failed.fetch_add(1);
          return;
        }
        if (!released[i].load()) early.fetch_add(1);
        pagewait::unlock_bit(w, L);
      }
    });
  ASSERT_TRUE(pwtest::eventually([&] { return pwtest::queued_in_bucket(sb.index) >= kWords; }));
  std::vector<std::size_t> order(kWords);
  for (std::size_t i = 0; i < kWords; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), pwtest::rng());
  for (std::size_t i : order) {
    released[i].store(true);
    if (i % 2 == 0)
      pagewait::clear_bit_and_wake(*sb.words[i], E);
    else
      pagewait::unlock_bit(*sb.words[i], L);
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failed.load(), 0) << "lost wake-up";
  EXPECT_EQ(early.load(), 0) << "a waiter returned before its word was released";
  for (std::size_t i = 0; i < kWords; ++i) EXPECT_EQ(sb.words[i]->load(), W(0)) << "word " << i;
  EXPECT_EQ(pwtest::queued_in_bucket(sb.index), 0u);
}

// Same bucket, but the releases race the arrivals: each word is set and released many times
// while its waiter comes and goes. No watchdog may fire.
TYPED_TEST(Wake, WordsOfOneBucketChurnWithoutLostWakeups) {
  using W = TypeParam;
  constexpr W E = W(1) << 1;
  constexpr std::size_t kWords = 8;
  const int rounds = pwtest::scaled(3000);
  pwtest::same_bucket_words<W> sb(kWords);
  ASSERT_EQ(sb.words.size(), kWords);
  std::atomic<int> failed{0};
  std::vector<std::thread> ts;
  for (std::size_t i = 0; i < kWords; ++i) {
    // One releaser and one waiter per word; generation counters say which release a waiter
    // must at least have seen.
    ts.emplace_back([&, i] {
      std::atomic<W>& w = *sb.words[i];
      for (int r = 0; r < rounds; ++r) {
        w.fetch_or(E);
        std::this_thread::yield();
        pagewait::clear_bit_and_wake(w, E);
      }
    });
    ts.emplace_back([&, i] {
      std::atomic<W>& w = *sb.words[i];
      for (int r = 0; r < rounds; ++r)
        if (!pagewait::wait_bit_clear_for(w, E, kWatchdog)) failed.fetch_add(1);
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failed.load(), 0);
  for (auto* w : sb.words) {
    EXPECT_EQ(w->load() & ~pagewait::waiters_bit<W>, W(0));
    // A stale waiters bit is allowed (CONTRACT §3.4); the next release clears it.
    w->fetch_or(E);
    pagewait::clear_bit_and_wake(*w, E);
    EXPECT_EQ(w->load(), W(0));
  }
}

// Waiters on two bits of one word. Releasing one bit wakes exactly its waiters; the others
// stay asleep, and the waiters bit stays set for them.
TYPED_TEST(Wake, TwoBitsOfOneWordReleasedSeparately) {
  using W = TypeParam;
  constexpr W A = W(1) << 0, B = W(1) << 12;
  constexpr W WB = pagewait::waiters_bit<W>;
  constexpr int kEach = 6;
  std::atomic<W> w{A | B};
  std::atomic<int> a_done{0}, b_done{0}, failed{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kEach; ++i) {
    ts.emplace_back([&] {
      if (!pagewait::wait_bit_clear_for(w, A, kWatchdog)) failed.fetch_add(1);
      a_done.fetch_add(1);
    });
    ts.emplace_back([&] {
      if (!pagewait::wait_bit_clear_for(w, B, kWatchdog)) failed.fetch_add(1);
      b_done.fetch_add(1);
    });
  }
  ASSERT_TRUE(pwtest::wait_queued(w, std::size_t(2 * kEach)));
  pagewait::clear_bit_and_wake(w, A);
  ASSERT_TRUE(pwtest::eventually([&] { return a_done.load() == kEach; }));
  std::this_thread::sleep_for(20ms);  // give a wrongly woken B waiter time to show itself
  EXPECT_EQ(b_done.load(), 0) << "releasing A woke a waiter of B";
  EXPECT_EQ(w.load(), B | WB) << "B's waiters are still queued: the waiters bit must stay";
  EXPECT_EQ(pwtest::queued_on(w, B), std::size_t(kEach));
  pagewait::clear_bit_and_wake(w, B);
  for (auto& t : ts) t.join();
  EXPECT_EQ(b_done.load(), kEach);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(w.load(), W(0));
}

// The same with a lock bit and an event bit of one word: an unlock hands off or wakes among
// the lock's waiters only; the event's waiters keep sleeping until the event ends.
TYPED_TEST(Wake, LockBitAndEventBitOfOneWord) {
  using W = TypeParam;
  constexpr W L = W(1) << 3, E = W(1) << 4;
  constexpr W WB = pagewait::waiters_bit<W>;
  std::atomic<W> w{E};
  pagewait::lock_bit(w, L);
  std::atomic<int> lockers{0}, event_done{0}, failed{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] {
      if (!pagewait::try_lock_bit_for(w, L, kWatchdog)) {
        failed.fetch_add(1);
        return;
      }
      lockers.fetch_add(1);
      pagewait::unlock_bit(w, L);
    });
    ts.emplace_back([&] {
      if (!pagewait::wait_bit_clear_for(w, E, kWatchdog)) failed.fetch_add(1);
      event_done.fetch_add(1);
    });
  }
  ASSERT_TRUE(pwtest::wait_queued(w, std::size_t(8)));
  pagewait::unlock_bit(w, L);
  ASSERT_TRUE(pwtest::eventually([&] { return lockers.load() == 4; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(event_done.load(), 0);
  EXPECT_EQ(w.load(), E | WB);
  pagewait::clear_bit_and_wake(w, E);
  for (auto& t : ts) t.join();
  EXPECT_EQ(event_done.load(), 4);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(w.load(), W(0));
}

}  // namespace
