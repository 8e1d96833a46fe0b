// pagewait::mutex as the standard's Mutex and TimedMutex, and the Lockable contract of
// bit_lock: type traits, constant initialization, exclusion through the standard lock types,
// timed forms, and what misuse under a noexcept unlock does (a message, then abort).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <pagewait/bit_lock.hpp>
#include <pagewait/mutex.hpp>
#include <thread>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;

namespace {

// The Mutex requirements' type traits ([thread.mutex.requirements]), plus what issue 9 asked:
// 4 bytes, constexpr noexcept default constructor.
static_assert(std::is_default_constructible_v<pagewait::mutex>);
static_assert(std::is_nothrow_default_constructible_v<pagewait::mutex>);
static_assert(std::is_destructible_v<pagewait::mutex>);
static_assert(!std::is_copy_constructible_v<pagewait::mutex>);
static_assert(!std::is_move_constructible_v<pagewait::mutex>);
static_assert(!std::is_copy_assignable_v<pagewait::mutex>);
static_assert(!std::is_move_assignable_v<pagewait::mutex>);
static_assert(sizeof(pagewait::mutex) == 4);
static_assert(noexcept(std::declval<pagewait::mutex&>().unlock()));
static_assert(noexcept(std::declval<pagewait::mutex&>().try_lock()));
static_assert(noexcept(std::declval<pagewait::bit_lock<std::uint32_t>&>().unlock()));
static_assert(noexcept(std::declval<pagewait::bit_lock<std::uint64_t>&>().unlock()));

// Constant initialization: no static-initialization-order problem for a global mutex.
constinit pagewait::mutex global_mutex;

TEST(MutexType, ExcludesThroughTheStandardLockTypes) {
  pagewait::mutex m;
  pwtest::exclusion ex;
  std::vector<std::thread> ts;
  const int iters = pwtest::scaled(20000);
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < iters; ++i) {
        switch ((t + i) % 3) {
          case 0: {
            std::lock_guard g(m);
            ex.critical_section();
            break;
          }
          case 1: {
            std::unique_lock g(m, std::defer_lock);
            if (!g.try_lock()) g.lock();
            ex.critical_section();
            break;
          }
          default: {
            std::unique_lock g(m, 20s);  // try_lock_for
            ASSERT_TRUE(g.owns_lock());
            ex.critical_section();
          }
        }
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ex.overlaps.load(), 0);
  EXPECT_EQ(ex.counter, 4L * iters);
}

TEST(MutexType, ScopedLockOfTwoAvoidsDeadlock) {
  pagewait::mutex a, b;
  long n = 0;
  std::thread t1([&] {
    for (int i = 0; i < pwtest::scaled(20000); ++i) {
      std::scoped_lock g(a, b);
      ++n;
    }
  });
  std::thread t2([&] {
    for (int i = 0; i < pwtest::scaled(20000); ++i) {
      std::scoped_lock g(b, a);
      ++n;
    }
  });
  t1.join();
  t2.join();
  EXPECT_EQ(n, 2L * pwtest::scaled(20000));
  EXPECT_TRUE(a.try_lock());
  EXPECT_TRUE(b.try_lock());
  a.unlock();
  b.unlock();
}

TEST(MutexType, TimedFormsGiveUpAndSucceed) {
  std::lock_guard held(global_mutex);
  const auto t0 = std::chrono::steady_clock::now();
  std::thread([&] {
    EXPECT_FALSE(global_mutex.try_lock());
    EXPECT_FALSE(global_mutex.try_lock_for(2ms));
    EXPECT_FALSE(global_mutex.try_lock_until(std::chrono::system_clock::now() + 2ms));
    EXPECT_FALSE(global_mutex.try_lock_for(-1s));
  }).join();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 4ms);  // both timed forms waited out their time
  pagewait::mutex free;
  EXPECT_TRUE(free.try_lock_for(0s));  // a free mutex is taken even with no time left
  free.unlock();
  EXPECT_THROW((void)free.try_lock_for(std::chrono::duration<double>(std::nan(""))), std::invalid_argument);
}

TEST(MutexType, WorksWithConditionVariableAny) {
  pagewait::mutex m;
  std::condition_variable_any cv;
  bool ready = false;
  std::thread t([&] {
    std::this_thread::sleep_for(1ms);
    std::lock_guard g(m);
    ready = true;
    cv.notify_one();
  });
  std::unique_lock g(m);
  cv.wait(g, [&] { return ready; });
  EXPECT_TRUE(ready);
  g.unlock();
  t.join();
}

// Misuse under a noexcept unlock: a message naming what was unlocked, then abort. (unlock_bit,
// which is not a Lockable's unlock, throws usage_error instead: api_test.)
TEST(MutexTypeDeathTest, UnlockingAnUnlockedMutexAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        pagewait::mutex m;
        m.unlock();
      },
      "pagewait: fatal: pagewait::mutex::unlock of bit 0x1 of the word at 0x[0-9a-f]+, which is not set");
}

TEST(MutexTypeDeathTest, BitLockUnlockOfAFreeBitAbortsInsideUniqueLock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::atomic<std::uint64_t> w{0};
        pagewait::bit_lock<std::uint64_t> bl(w, std::uint64_t(1) << 40);
        std::unique_lock g(bl);
        w.fetch_and(~(std::uint64_t(1) << 40));  // the bug: the bit released behind the lock's back
      },                                         // ~unique_lock -> bit_lock::unlock
      "pagewait: fatal: bit_lock::unlock of bit 0x10000000000 of the word at 0x[0-9a-f]+, which is not set");
}

}  // namespace
