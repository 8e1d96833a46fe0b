// Every public operation, single-threaded or with one helper thread, and every error.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <pagewait/pagewait.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.hpp"

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

  // Stop requested while the waiter is queued (not before it came: that is the case above).
  std::stop_source later;
  std::thread t([&] {
    EXPECT_TRUE(pwtest::wait_queued(w, std::size_t(1), W(0b1)));
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
  // Queued before the unlock, so that the unlock's slow path is what gives it the lock.
  EXPECT_TRUE(pwtest::wait_queued(w, std::size_t(1), W(0b100)));
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
  // Until it is queued: a fixed sleep (20 ms) was once too short for the thread to get there, in
  // the portable parking build under ASan on a loaded machine.
  EXPECT_TRUE(pwtest::wait_queued(w, std::size_t(1), W(0b1000)));
  std::this_thread::sleep_for(5ms);
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
  // All three queued (a wrapped deadline would make one return at once instead), then a while
  // longer for a deadline that wrapped into the near future to fire.
  EXPECT_TRUE(pwtest::eventually([&] {
    return done.load() > 0 || (pwtest::queued_on(w, W(0b1)) >= 1 && pwtest::queued_on(w, W(0b10)) >= 2);
  }));
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
  EXPECT_TRUE(pwtest::eventually([&] {
    return done.load() > 0 || (pwtest::queued_on(w, W(0b1)) >= 1 && pwtest::queued_on(w, W(0b10)) >= 2);
  }));
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

// Non-finite floating-point timeouts (pagewait.hpp, "Timeouts"). NaN is an error, thrown
// before the word is touched: whatever the word holds (bit free or held, waiters bit set or
// not), it is left exactly as it was; a free bit is not taken by the timed lock's fast path.
namespace nonfinite {
using namespace std::chrono;
constexpr double nan_d = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_d = std::numeric_limits<double>::infinity();
template <class Clock, class Rep = double>
time_point<Clock, duration<Rep>> at(Rep s) {
  return time_point<Clock, duration<Rep>>(duration<Rep>(s));
}

// f() must throw std::invalid_argument whose message names NaN.
template <class F>
void expect_nan_error(F&& f, const char* what) {
  try {
    f();
    ADD_FAILURE() << what << ": no exception for a NaN timeout";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << what << ": " << e.what();
  }
}
}  // namespace nonfinite

TYPED_TEST(ApiTest, NaNTimeoutsThrowAndLeaveTheWordAlone) {
  using W = TypeParam;
  using namespace nonfinite;
  constexpr W B = 0b1, WB = pagewait::waiters_bit<W>;
  const duration<double> nan_s(nan_d);
  const duration<float> nan_f(std::numeric_limits<float>::quiet_NaN());
  const duration<long double, std::milli> nan_ld(std::numeric_limits<long double>::quiet_NaN());
  const auto nan_steady = at<steady_clock>(nan_d);
  const auto nan_steady_ld = at<steady_clock, long double>(std::numeric_limits<long double>::quiet_NaN());
  const auto nan_system = at<system_clock>(nan_d);
  const auto nan_system_f = at<system_clock, float>(std::numeric_limits<float>::quiet_NaN());

  // B free / held, with and without the waiters bit (a stale one: nobody is queued).
  for (const W start : {W(0b100), W(0b101), W(0b100 | WB), W(0b101 | WB)}) {
    std::atomic<W> w{start};
    pagewait::bit_lock<W> l(w, B);
    const std::vector<std::pair<const char*, std::function<void()>>> calls = {
        {"try_lock_bit_for(double)", [&] { pagewait::try_lock_bit_for(w, B, nan_s); }},
        {"try_lock_bit_for(float)", [&] { pagewait::try_lock_bit_for(w, B, nan_f); }},
        {"try_lock_bit_for(long double ms)", [&] { pagewait::try_lock_bit_for(w, B, nan_ld); }},
        {"try_lock_bit_until(steady)", [&] { pagewait::try_lock_bit_until(w, B, nan_steady); }},
        {"try_lock_bit_until(steady, long double)",
         [&] { pagewait::try_lock_bit_until(w, B, nan_steady_ld); }},
        {"try_lock_bit_until(system)", [&] { pagewait::try_lock_bit_until(w, B, nan_system); }},
        {"try_lock_bit_until(system, float)", [&] { pagewait::try_lock_bit_until(w, B, nan_system_f); }},
        {"wait_bit_clear_for(double)", [&] { pagewait::wait_bit_clear_for(w, B, nan_s); }},
        {"wait_bit_clear_for(long double ms)", [&] { pagewait::wait_bit_clear_for(w, B, nan_ld); }},
        {"wait_bit_clear_until(steady)", [&] { pagewait::wait_bit_clear_until(w, B, nan_steady); }},
        {"wait_bit_clear_until(steady, long double)",
         [&] { pagewait::wait_bit_clear_until(w, B, nan_steady_ld); }},
        {"wait_bit_clear_until(system)", [&] { pagewait::wait_bit_clear_until(w, B, nan_system); }},
        {"bit_lock::try_lock_for", [&] { l.try_lock_for(nan_s); }},
        {"bit_lock::try_lock_until(steady)", [&] { l.try_lock_until(nan_steady); }},
        {"bit_lock::try_lock_until(system)", [&] { l.try_lock_until(nan_system); }},
    };
    for (const auto& [what, call] : calls) {
      w.store(start);
      expect_nan_error(call, what);
      EXPECT_EQ(w.load(), start) << what << " changed the word";
      EXPECT_EQ(pwtest::queued_on(w), 0u) << what << " left a waiter queued";
    }
  }
}

// +infinity means "never": each waiter below is queued and stays queued until the release,
// then returns true (it would return false at once if +inf became a past deadline).
TYPED_TEST(ApiTest, PlusInfinityTimeoutsWaitUnbounded) {
  using W = TypeParam;
  using namespace nonfinite;
  constexpr W L = 0b1, E = 0b10;
  std::atomic<W> w{L | E};
  pagewait::bit_lock<W> l(w, L);
  const std::vector<std::function<bool()>> lockers = {
      [&] { return pagewait::try_lock_bit_for(w, L, duration<double>(inf_d)); },
      [&] { return pagewait::try_lock_bit_until(w, L, at<steady_clock>(inf_d)); },
      [&] {
        return l.try_lock_for(
            duration<long double, std::milli>(std::numeric_limits<long double>::infinity()));
      },
      [&] { return l.try_lock_until(at<system_clock>(inf_d)); },
  };
  const std::vector<std::function<bool()>> waiters = {
      [&] {
        return pagewait::wait_bit_clear_for(w, E, duration<float>(std::numeric_limits<float>::infinity()));
      },
      [&] { return pagewait::wait_bit_clear_until(w, E, at<steady_clock>(inf_d)); },
      [&] {
        return pagewait::wait_bit_clear_until(
            w, E, at<steady_clock, long double>(std::numeric_limits<long double>::infinity()));
      },
      [&] { return pagewait::wait_bit_clear_until(w, E, at<system_clock>(inf_d)); },
  };
  std::atomic<int> done{0};
  std::vector<std::thread> ts;
  for (const auto& f : lockers)
    ts.emplace_back([&] {
      EXPECT_TRUE(f());
      done.fetch_add(1);
      pagewait::unlock_bit(w, L);
    });
  for (const auto& f : waiters)
    ts.emplace_back([&] {
      EXPECT_TRUE(f());
      done.fetch_add(1);
    });
  EXPECT_TRUE(pwtest::wait_queued(w, 4, L)) << "a +inf lock wait did not stay queued";
  EXPECT_TRUE(pwtest::wait_queued(w, 4, E)) << "a +inf event wait did not stay queued";
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(done.load(), 0);
  pagewait::clear_bit_and_wake(w, E);
  pagewait::unlock_bit(w, L);
  for (auto& t : ts) t.join();
  EXPECT_EQ(done.load(), 8);
  EXPECT_EQ(w.load(), W(0));
}

// -infinity is a deadline long past: one try, at once. A held bit: false; a free bit: taken
// (lock) or seen clear (wait).
TYPED_TEST(ApiTest, MinusInfinityTimeoutsTryOnce) {
  using W = TypeParam;
  using namespace nonfinite;
  constexpr W L = 0b1, F = 0b100;
  const duration<double> minus_inf(-inf_d);
  const auto steady_past = at<steady_clock>(-inf_d);
  const auto steady_past_ld = at<steady_clock, long double>(-std::numeric_limits<long double>::infinity());
  const auto system_past = at<system_clock>(-inf_d);
  std::atomic<W> w{L};
  pagewait::bit_lock<W> held(w, L), free_bit(w, F);
  const auto t0 = steady_clock::now();
  EXPECT_FALSE(pagewait::try_lock_bit_for(w, L, minus_inf));
  EXPECT_FALSE(pagewait::try_lock_bit_until(w, L, steady_past));
  EXPECT_FALSE(pagewait::try_lock_bit_until(w, L, steady_past_ld));
  EXPECT_FALSE(pagewait::try_lock_bit_until(w, L, system_past));
  EXPECT_FALSE(held.try_lock_for(minus_inf));
  EXPECT_FALSE(held.try_lock_until(system_past));
  EXPECT_FALSE(pagewait::wait_bit_clear_for(w, L, minus_inf));
  EXPECT_FALSE(pagewait::wait_bit_clear_until(w, L, steady_past));
  EXPECT_FALSE(pagewait::wait_bit_clear_until(w, L, system_past));
  EXPECT_LT(steady_clock::now() - t0, 5s) << "a -inf timeout waited";
  EXPECT_EQ(w.load() & ~pagewait::waiters_bit<W>, L);

  EXPECT_TRUE(pagewait::wait_bit_clear_for(w, F, minus_inf));
  EXPECT_TRUE(pagewait::wait_bit_clear_until(w, F, steady_past));
  EXPECT_TRUE(pagewait::wait_bit_clear_until(w, F, system_past));
  EXPECT_TRUE(pagewait::try_lock_bit_for(w, F, minus_inf));
  pagewait::unlock_bit(w, F);
  EXPECT_TRUE(pagewait::try_lock_bit_until(w, F, steady_past));
  pagewait::unlock_bit(w, F);
  EXPECT_TRUE(pagewait::try_lock_bit_until(w, F, steady_past_ld));
  pagewait::unlock_bit(w, F);
  EXPECT_TRUE(pagewait::try_lock_bit_until(w, F, system_past));
  pagewait::unlock_bit(w, F);
  EXPECT_TRUE(free_bit.try_lock_for(minus_inf));
  free_bit.unlock();
  EXPECT_TRUE(free_bit.try_lock_until(steady_past));
  free_bit.unlock();
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(w.load(), W(0));
}

// The conversion itself (detail/deadline.hpp): no float-to-integer conversion of a non-finite
// or out-of-range value; NaN throws, +inf and anything beyond the clock's range is never(),
// -inf is now or earlier.
TEST(Deadline, NonFiniteAndOutOfRangeFloatingTimeouts) {
  using namespace nonfinite;
  using pagewait::detail::deadline;
  constexpr long double inf_ld = std::numeric_limits<long double>::infinity();
  EXPECT_TRUE(deadline::after(duration<double>(inf_d)).is_never());
  EXPECT_TRUE(deadline::after(duration<float, std::nano>(std::numeric_limits<float>::infinity())).is_never());
  EXPECT_TRUE(deadline::after(duration<long double>(inf_ld)).is_never());
  EXPECT_TRUE(deadline::after(duration<long double>(std::numeric_limits<long double>::max())).is_never());
  EXPECT_TRUE(deadline::after(duration<double>(1e300)).is_never());
  EXPECT_TRUE(deadline::until(at<steady_clock>(inf_d)).is_never());
  EXPECT_TRUE(deadline::until(at<steady_clock, long double>(inf_ld)).is_never());
  EXPECT_TRUE(deadline::until(at<system_clock>(inf_d)).is_never());
  EXPECT_TRUE(
      deadline::until(at<system_clock, long double>(std::numeric_limits<long double>::max())).is_never());

  const auto now = steady_clock::now();
  for (const deadline d :
       {deadline::after(duration<double>(-inf_d)), deadline::after(duration<long double>(-inf_ld)),
        deadline::after(duration<double>(-1e300)), deadline::until(at<steady_clock>(-inf_d)),
        deadline::until(at<steady_clock, long double>(-inf_ld)), deadline::until(at<system_clock>(-inf_d)),
        deadline::until(at<system_clock, long double>(-std::numeric_limits<long double>::max()))}) {
    EXPECT_FALSE(d.is_never());
    EXPECT_LE(d.at, steady_clock::now());
  }
  // A finite timeout still converts, rounded up to the clock's tick.
  const deadline soon = deadline::after(duration<double>(1.0));
  EXPECT_GE(soon.at, now + 1s);
  EXPECT_LT(soon.at, steady_clock::now() + 2s);

  EXPECT_THROW(deadline::after(duration<double>(nan_d)), std::invalid_argument);
  EXPECT_THROW(deadline::after(duration<long double>(std::numeric_limits<long double>::quiet_NaN())),
               std::invalid_argument);
  EXPECT_THROW(deadline::until(at<steady_clock>(nan_d)), std::invalid_argument);
  EXPECT_THROW(deadline::until(at<system_clock>(nan_d)), std::invalid_argument);
}
