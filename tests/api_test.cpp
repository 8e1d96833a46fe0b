// Every public operation, single-threaded or with one helper thread, and every error.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <pagewait/pagewait.hpp>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;

template <class W>
class ApiTest : public ::testing::Test {};
using WordTypes = ::testing::Types<std::uint32_t, std::uint64_t>;
TYPED_TEST_SUITE(ApiTest, WordTypes);

TYPED_TEST(ApiTest, WaitersBitIsTheTopBit) {
  using W = TypeParam;
  EXPECT_EQ(pagewait::waiters_bit<W>, W(1) << (sizeof(W) * 8 - 1));
}

TYPED_TEST(ApiTest, TryLockSetsOnlyItsBit) {
  using W = TypeParam;
  std::atomic<W> w{0b1000};
  EXPECT_TRUE(pagewait::try_lock_bit(w, 0b1));
  EXPECT_EQ(w.load(), W(0b1001));
  EXPECT_FALSE(pagewait::try_lock_bit(w, 0b1));
  EXPECT_EQ(w.load(), W(0b1001));
  pagewait::unlock_bit(w, 0b1);
  EXPECT_EQ(w.load(), W(0b1000));
}

TYPED_TEST(ApiTest, LockUnlockUncontendedLeavesNoWaitersBit) {
  using W = TypeParam;
  std::atomic<W> w{0};
  const W top_user_bit = pagewait::waiters_bit<W> >> 1;
  for (int i = 0; i < 1000; ++i) {
    pagewait::lock_bit(w, top_user_bit);
    EXPECT_EQ(w.load(), top_user_bit);
    pagewait::unlock_bit(w, top_user_bit);
  }
  EXPECT_EQ(w.load(), W(0));
}

TYPED_TEST(ApiTest, BadBitsThrowAndLeaveTheWordAlone) {
  using W = TypeParam;
  const W start = 0b0110;
  std::atomic<W> w{start};
  for (W bad : {W(0), W(0b11), pagewait::waiters_bit<W>, W(pagewait::waiters_bit<W> | 1)}) {
    EXPECT_THROW(pagewait::try_lock_bit(w, bad), std::invalid_argument);
    EXPECT_THROW(pagewait::lock_bit(w, bad), std::invalid_argument);
    EXPECT_THROW(pagewait::try_lock_bit_for(w, bad, 1ms), std::invalid_argument);
    EXPECT_THROW(pagewait::try_lock_bit_until(w, bad, std::chrono::steady_clock::now()),
                 std::invalid_argument);
    EXPECT_THROW(pagewait::lock_bit(w, bad, std::stop_token{}), std::invalid_argument);
    EXPECT_THROW(pagewait::unlock_bit(w, bad), std::invalid_argument);
    EXPECT_THROW(pagewait::clear_bit_and_wake(w, bad), std::invalid_argument);
    EXPECT_THROW(pagewait::wait_bit_clear(w, bad), std::invalid_argument);
    EXPECT_THROW(pagewait::wait_bit_clear_for(w, bad, 1ms), std::invalid_argument);
    EXPECT_THROW(pagewait::wait_bit_clear_until(w, bad, std::chrono::system_clock::now()),
                 std::invalid_argument);
    EXPECT_THROW(pagewait::wait_bit_clear(w, bad, std::stop_token{}), std::invalid_argument);
    EXPECT_THROW((pagewait::bit_lock<W>(w, bad)), std::invalid_argument);
    EXPECT_EQ(w.load(), start);
  }
}

TYPED_TEST(ApiTest, ReleasingAClearBitIsAUsageError) {
  using W = TypeParam;
  std::atomic<W> w{0b0100};
  EXPECT_THROW(pagewait::unlock_bit(w, 0b1), pagewait::usage_error);
  EXPECT_THROW(pagewait::clear_bit_and_wake(w, 0b1), pagewait::usage_error);
  EXPECT_EQ(w.load(), W(0b0100));
  // Also with the waiters bit set (the slow release path must check too).
  w.store(W(0b0100) | pagewait::waiters_bit<W>);
  EXPECT_THROW(pagewait::unlock_bit(w, 0b1), pagewait::usage_error);
  EXPECT_EQ(w.load(), W(0b0100) | pagewait::waiters_bit<W>);
  static_assert(std::is_base_of_v<std::logic_error, pagewait::usage_error>);
}

TYPED_TEST(ApiTest, ReleaseWithStaleWaitersBitClearsBoth) {
  using W = TypeParam;
  // A waiters bit with nobody queued (a timed-out waiter left it): the release clears it.
  std::atomic<W> w{W(0b1) | pagewait::waiters_bit<W>};
  pagewait::unlock_bit(w, 0b1);
  EXPECT_EQ(w.load(), W(0));
  w.store(W(0b10) | pagewait::waiters_bit<W>);
  pagewait::clear_bit_and_wake(w, 0b10);
  EXPECT_EQ(w.load(), W(0));
}

TYPED_TEST(ApiTest, WaitOnClearBitReturnsAtOnceWithoutTouchingTheWord) {
  using W = TypeParam;
  std::atomic<W> w{0b10};
  pagewait::wait_bit_clear(w, 0b1);
  EXPECT_TRUE(pagewait::wait_bit_clear_for(w, 0b1, 0ms));
  EXPECT_TRUE(pagewait::wait_bit_clear_until(w, 0b1, std::chrono::steady_clock::now() - 1s));
  EXPECT_TRUE(pagewait::wait_bit_clear(w, 0b1, std::stop_token{}));
  EXPECT_EQ(w.load(), W(0b10));
}

TYPED_TEST(ApiTest, TimedFormsTimeOutOnAHeldBit) {
  using W = TypeParam;
  std::atomic<W> w{0b1};
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(pagewait::try_lock_bit_for(w, 0b1, 20ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  EXPECT_FALSE(pagewait::try_lock_bit_until(w, 0b1, std::chrono::system_clock::now() + 5ms));
  EXPECT_FALSE(pagewait::wait_bit_clear_for(w, 0b1, 5ms));
  EXPECT_FALSE(pagewait::wait_bit_clear_until(w, 0b1, std::chrono::steady_clock::now() + 5ms));
  EXPECT_FALSE(pagewait::try_lock_bit_for(w, 0b1, -1s));  // a past deadline: one try
  // The bit is untouched; the waiters bit may be left set (conservative), and the next release
  // clears both.
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0b1));
  pagewait::unlock_bit(w, 0b1);
  EXPECT_EQ(w.load(), W(0));
}

TYPED_TEST(ApiTest, StopTokenForms) {
  using W = TypeParam;
  std::atomic<W> w{0b1};
  std::stop_source src;
  src.request_stop();
  EXPECT_FALSE(pagewait::lock_bit(w, 0b1, src.get_token()));
  EXPECT_FALSE(pagewait::wait_bit_clear(w, 0b1, src.get_token()));
  // A free bit is taken even after stop was requested.
  EXPECT_TRUE(pagewait::lock_bit(w, 0b10, src.get_token()));
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0b11));

  std::stop_source later;
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    later.request_stop();
  });
  EXPECT_FALSE(pagewait::lock_bit(w, 0b1, later.get_token()));
  t.join();
}

TYPED_TEST(ApiTest, LockWaiterGetsTheLock) {
  using W = TypeParam;
  std::atomic<W> w{0};
  pagewait::lock_bit(w, 0b100);
  std::atomic<bool> got{false};
  std::thread t([&] {
    pagewait::lock_bit(w, 0b100);
    got = true;
    pagewait::unlock_bit(w, 0b100);
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(got.load());
  pagewait::unlock_bit(w, 0b100);
  t.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(w.load(), W(0));
}

TYPED_TEST(ApiTest, EventWaiterWokenOnlyByTheClear) {
  using W = TypeParam;
  std::atomic<W> w{0};
  w.fetch_or(0b1000);  // start the event
  std::atomic<bool> done{false};
  std::thread t([&] {
    pagewait::wait_bit_clear(w, 0b1000);
    done = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(done.load());
  EXPECT_TRUE(w.load() & pagewait::waiters_bit<W>);  // it is queued: the waiters bit says so
  pagewait::clear_bit_and_wake(w, 0b1000);
  t.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(w.load(), W(0));  // last waiter gone: waiters bit cleared with the bit
}

TYPED_TEST(ApiTest, BitLockIsTimedLockable) {
  using W = TypeParam;
  std::atomic<W> w{0};
  pagewait::bit_lock<W> a(w, 0b1), b(w, 0b10);
  {
    std::scoped_lock g(a, b);
    EXPECT_EQ(w.load(), W(0b11));
  }
  EXPECT_EQ(w.load(), W(0));
  {
    std::unique_lock<pagewait::bit_lock<W>> g(a, std::try_to_lock);
    EXPECT_TRUE(g.owns_lock());
    std::unique_lock<pagewait::bit_lock<W>> h(a, std::defer_lock);
    EXPECT_FALSE(h.try_lock_for(5ms));
  }
  EXPECT_EQ(w.load(), W(0));
}

TEST(Api, FairnessSettings) {
  const auto old = pagewait::get_fairness();
  EXPECT_EQ(old.max_lost_races, 5u);
  EXPECT_EQ(old.max_wait, std::chrono::milliseconds(1));
  EXPECT_THROW(pagewait::set_fairness({3, -1ns}), std::invalid_argument);
  pagewait::set_fairness({0, 0ns});
  EXPECT_EQ(pagewait::get_fairness().max_lost_races, 0u);
  pagewait::set_fairness(old);
  EXPECT_GE(pagewait::wait_table_size(), 256u);
  EXPECT_EQ(pagewait::wait_table_size() & (pagewait::wait_table_size() - 1), 0u);
}

// Added with the concurrency suites: the forms api_test did not reach.

TYPED_TEST(ApiTest, TimedAndStopFormsTakeAFreeBitAtOnce) {
  using W = TypeParam;
  std::atomic<W> w{0b100};
  EXPECT_TRUE(pagewait::try_lock_bit_for(w, 0b1, 0ms));
  EXPECT_TRUE(pagewait::try_lock_bit_until(
      w, 0b10, std::chrono::steady_clock::now() - 1s));  // past deadline, free bit
  EXPECT_TRUE(pagewait::try_lock_bit_until(w, 0b1000, std::chrono::system_clock::now() + 1s));
  EXPECT_TRUE(pagewait::lock_bit(w, 0b10000, std::stop_token{}));
  EXPECT_EQ(w.load(), W(0b11111));
  for (W b : {W(0b1), W(0b10), W(0b1000), W(0b10000)}) pagewait::unlock_bit(w, b);
  EXPECT_EQ(w.load(), W(0b100));
}

// A timeout too large for the clock means "never" (no overflow into the past): the waits
// below would return false at once if the deadline wrapped.
TYPED_TEST(ApiTest, HugeTimeoutsMeanNever) {
  using W = TypeParam;
  std::atomic<W> w{0b1 | 0b10};
  std::atomic<int> done{0};
  std::thread t1([&] {
    EXPECT_TRUE(pagewait::try_lock_bit_for(w, 0b1, std::chrono::nanoseconds::max()));
    done.fetch_add(1);
    pagewait::unlock_bit(w, 0b1);
  });
  std::thread t2([&] {
    EXPECT_TRUE(pagewait::wait_bit_clear_for(w, 0b10, std::chrono::hours::max()));
    done.fetch_add(1);
  });
  std::thread t3([&] {
    EXPECT_TRUE(pagewait::wait_bit_clear_until(w, 0b10, std::chrono::steady_clock::time_point::max()));
    done.fetch_add(1);
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(done.load(), 0);
  pagewait::unlock_bit(w, 0b1);
  pagewait::clear_bit_and_wake(w, 0b10);
  t1.join();
  t2.join();
  t3.join();
  EXPECT_EQ(done.load(), 3);
  EXPECT_EQ(w.load(), W(0));
}

// Deadlines as time points in coarse units, far beyond what steady_clock's nanoseconds hold,
// on steady_clock and on another clock: "never", not an overflow into the past. And time
// points long past (down to min()) time out at once instead of wrapping into the future.
TYPED_TEST(ApiTest, FarTimePointsInCoarseUnitsMeanNever) {
  using W = TypeParam;
  using namespace std::chrono;
  std::atomic<W> w{0b1 | 0b10};
  const time_point<steady_clock, seconds> far_steady{seconds(1LL << 40)};
  const time_point<system_clock, hours> far_system{hours(1LL << 40)};
  std::atomic<int> done{0};
  std::thread t1([&] {
    EXPECT_TRUE(pagewait::try_lock_bit_until(w, 0b1, far_steady));
    done.fetch_add(1);
    pagewait::unlock_bit(w, 0b1);
  });
  std::thread t2([&] {
    EXPECT_TRUE(pagewait::wait_bit_clear_until(w, 0b10, far_steady));
    done.fetch_add(1);
  });
  std::thread t3([&] {
    EXPECT_TRUE(pagewait::wait_bit_clear_until(w, 0b10, far_system));
    done.fetch_add(1);
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(done.load(), 0);
  EXPECT_FALSE(pagewait::wait_bit_clear_until(w, 0b10, time_point<steady_clock, seconds>::min()));
  EXPECT_FALSE(pagewait::wait_bit_clear_until(w, 0b10, time_point<system_clock, hours>::min()));
  EXPECT_FALSE(pagewait::wait_bit_clear_until(w, 0b10, steady_clock::time_point::min()));
  pagewait::unlock_bit(w, 0b1);
  pagewait::clear_bit_and_wake(w, 0b10);
  t1.join();
  t2.join();
  t3.join();
  EXPECT_EQ(done.load(), 3);
  EXPECT_EQ(w.load(), W(0));
}

TYPED_TEST(ApiTest, ClearBitAndWakeUsageErrorOnTheSlowPath) {
  using W = TypeParam;
  const W start = W(0b100) | pagewait::waiters_bit<W>;
  std::atomic<W> w{start};
  EXPECT_THROW(pagewait::clear_bit_and_wake(w, 0b1), pagewait::usage_error);
  EXPECT_EQ(w.load(), start);
}

TYPED_TEST(ApiTest, BitLockAccessorsAndDeadlines) {
  using W = TypeParam;
  std::atomic<W> w{0};
  const W top = pagewait::waiters_bit<W> >> 1;
  pagewait::bit_lock<W> a(w, top);
  EXPECT_EQ(&a.word(), &w);
  EXPECT_EQ(a.bit(), top);
  EXPECT_TRUE(a.try_lock_until(std::chrono::steady_clock::now() + 1s));
  EXPECT_FALSE(a.try_lock_until(std::chrono::steady_clock::now() + 2ms));
  EXPECT_FALSE(a.try_lock());
  pagewait::bit_lock<W> copy = a;  // a view: copies name the same bit
  copy.unlock();
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, W(0));
}
