// tests/checked_test.cpp — the checked mode (pagewait/checked.hpp): each kind of misuse is
// reported with the word and the bit, by the operation that meets it or by the stranded waiter
// itself; a correct program gets no report. Built against a checked copy of the library
// (pagewait_checked, tests/CMakeLists.txt), the only place PAGEWAIT_CHECKED is defined in CI.
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <pagewait/checked.hpp>
#include <pagewait/mutex.hpp>
#include <pagewait/pagewait.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test_util.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define PWTEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PWTEST_ASAN 1
#endif
#endif
#ifndef PWTEST_ASAN
#define PWTEST_ASAN 0
#endif

static_assert(pagewait::checked_build, "checked_test must be compiled with PAGEWAIT_CHECKED=1");

namespace {

using namespace std::chrono_literals;
using pagewait::violation_kind;
using u32 = std::uint32_t;

struct seen {
  violation_kind kind;
  const void* word;
  std::uint64_t bit;
  std::uint64_t thread;
  std::uint64_t other;
  std::size_t waiters;
  std::string message;
};

std::mutex seen_mutex;
std::vector<seen> reports;

void record(const pagewait::violation& v) noexcept {
  std::lock_guard<std::mutex> g(seen_mutex);
  reports.push_back({v.kind, v.word, v.bit, v.thread, v.other, v.waiters, v.message});
}

std::vector<seen> taken() {
  std::lock_guard<std::mutex> g(seen_mutex);
  std::vector<seen> r;
  r.swap(reports);
  return r;
}

// Waits (up to 10 s) until a report of kind k has been recorded; returns it.
seen await_report(violation_kind k) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    {
      std::lock_guard<std::mutex> g(seen_mutex);
      for (const seen& s : reports)
        if (s.kind == k) return s;
    }
    std::this_thread::sleep_for(1ms);
  }
  ADD_FAILURE() << "no report of kind " << pagewait::to_string(k) << " within 10 s";
  return {};
}

template <class W>
void await_queued(const std::atomic<W>& word, W bit, std::size_t n = 1) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (pwtest::queued_on(word, bit) < n) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "waiter never queued";
    std::this_thread::sleep_for(1ms);
  }
}

class Checked : public ::testing::Test {
 protected:
  void SetUp() override {
    taken();
    previous_ = pagewait::set_violation_handler(record);
    pagewait::set_checked_poll(5ms);
  }
  void TearDown() override {
    pagewait::set_violation_handler(previous_);
    pagewait::set_checked_poll(100ms);
  }
  pagewait::violation_handler previous_ = nullptr;
};

TEST_F(Checked, TryLockOfABitThisThreadHoldsIsARelock) {
  std::atomic<u32> w{0};
  pagewait::lock_bit(w, 1u);
  EXPECT_TRUE(taken().empty());
  EXPECT_FALSE(pagewait::try_lock_bit(w, 1u));
  auto r = taken();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::relock);
  EXPECT_EQ(r[0].word, &w);
  EXPECT_EQ(r[0].bit, 1u);
  EXPECT_EQ(r[0].thread, pagewait::checked_thread_id());
  EXPECT_NE(r[0].message.find("relock"), std::string::npos) << r[0].message;
  // Another bit of the same word is another lock.
  EXPECT_TRUE(pagewait::try_lock_bit(w, 2u));
  pagewait::unlock_bit(w, 2u);
  pagewait::unlock_bit(w, 1u);
  EXPECT_TRUE(taken().empty());
  EXPECT_EQ(w.load(), 0u);
}

TEST_F(Checked, ABoundedWaitForABitThisThreadHoldsIsNotReported) {
  // It returns false at its deadline: defined behaviour, not a hang.
  std::atomic<std::uint64_t> w{0};
  pagewait::lock_bit(w, std::uint64_t(1) << 40);
  EXPECT_FALSE(pagewait::wait_bit_clear_for(w, std::uint64_t(1) << 40, 1ms));
  EXPECT_TRUE(taken().empty());
  pagewait::unlock_bit(w, std::uint64_t(1) << 40);
}

TEST(CheckedDeath, AnUnboundedWaitForABitThisThreadHoldsIsARelock) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::atomic<std::uint64_t> w{0};
        pagewait::lock_bit(w, std::uint64_t(1) << 40);
        pagewait::wait_bit_clear(w, std::uint64_t(1) << 40);
      },
      "pagewait checked: relock: thread [0-9]+ waits for the clear of bit 0x10000000000 of the word at "
      "0x[0-9a-f]+, which it holds itself");
}

TEST_F(Checked, MutexRelockIsReported) {
  pagewait::mutex m;
  m.lock();
  EXPECT_FALSE(m.try_lock());
  auto r = taken();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::relock);
  m.unlock();
}

TEST(CheckedDeath, BlockingRelockAbortsWithTheWordAndTheBit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::atomic<u32> w{0};
        pagewait::lock_bit(w, 4u);
        pagewait::lock_bit(w, 4u);
      },
      "pagewait checked: relock: thread [0-9]+ locks bit 0x4 of the word at 0x[0-9a-f]+, which it holds "
      "itself");
}

TEST_F(Checked, UnlockByAnotherThreadIsReportedAndStillUnlocks) {
  std::atomic<u32> w{0};
  pagewait::lock_bit(w, 1u);
  const std::uint64_t me = pagewait::checked_thread_id();
  std::uint64_t them = 0;
  std::thread t([&] {
    them = pagewait::checked_thread_id();
    pagewait::unlock_bit(w, 1u);
  });
  t.join();
  auto r = taken();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::unlock_not_owner);
  EXPECT_EQ(r[0].word, &w);
  EXPECT_EQ(r[0].bit, 1u);
  EXPECT_EQ(r[0].thread, them);
  EXPECT_EQ(r[0].other, me);
  EXPECT_EQ(w.load(), 0u);  // the handler returned: the unlock went on, as unchecked
}

TEST_F(Checked, ClearBitAndWakeOfAnotherThreadsLockIsReported) {
  std::atomic<u32> w{0};
  pagewait::bit_lock<u32> l(w, 8u);
  l.lock();
  std::thread t([&] { pagewait::clear_bit_and_wake(w, 8u); });
  t.join();
  auto r = taken();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::unlock_not_owner);
  EXPECT_EQ(w.load(), 0u);
}

TEST_F(Checked, UnlockOfABitSetByHandIsReportedButAnEventIsNot) {
  std::atomic<u32> w{0};
  w.fetch_or(4u);
  pagewait::unlock_bit(w, 4u);
  auto r = taken();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::unlock_not_owner);
  EXPECT_EQ(r[0].other, 0u);
  EXPECT_NE(r[0].message.find("no thread locked"), std::string::npos) << r[0].message;
  // An event: set by hand, cleared by any thread.
  w.fetch_or(4u);
  std::thread t([&] { pagewait::clear_bit_and_wake(w, 4u); });
  t.join();
  EXPECT_TRUE(taken().empty());
  // Releasing a bit that is not set is still usage_error, and the word is left as it was.
  EXPECT_THROW(pagewait::unlock_bit(w, 4u), pagewait::usage_error);
  EXPECT_THROW(pagewait::clear_bit_and_wake(w, 4u), pagewait::usage_error);
  EXPECT_EQ(w.load(), 0u);
  EXPECT_TRUE(taken().empty());
}

TEST_F(Checked, DisownHandsALockToAnotherThread) {
  std::atomic<u32> w{0};
  pagewait::lock_bit(w, 1u);
  pagewait::disown_bit(w, 1u);
  std::thread t([&] { pagewait::unlock_bit(w, 1u); });  // an I/O completion, say
  t.join();
  EXPECT_TRUE(taken().empty());
  EXPECT_EQ(w.load(), 0u);
  // Disowning what this thread does not hold is reported; a bad bit throws first.
  pagewait::disown_bit(w, 1u);
  auto r = taken();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::unlock_not_owner);
  EXPECT_THROW(pagewait::disown_bit(w, 3u), std::invalid_argument);
  EXPECT_EQ(w.load(), 0u);
}

TEST_F(Checked, HandOffMakesTheWaiterTheOwner) {
  // Strict FIFO: every contended unlock hands off. The new owner is recorded, so its unlock is
  // clean, and the old owner's second unlock would be reported.
  const auto f = pagewait::get_fairness();
  pagewait::set_fairness({0, f.max_wait});
  std::atomic<u32> w{0};
  pagewait::lock_bit(w, 1u);
  std::atomic<bool> locked{false};
  std::thread t([&] {
    pagewait::lock_bit(w, 1u);
    locked = true;
    pagewait::unlock_bit(w, 1u);
  });
  await_queued(w, 1u);
  pagewait::unlock_bit(w, 1u);
  t.join();
  pagewait::set_fairness(f);
  EXPECT_TRUE(locked);
  EXPECT_TRUE(taken().empty());
}

TEST_F(Checked, TwoReleasesOfOneSetBitAtOnceAreReported) {
  // Both releases are held up in the word's bucket lock (taken here), so that they overlap for
  // certain; whichever registers second is reported at once.
  std::atomic<u32> w{0};
  w.fetch_or(2u);
  auto& b = pwtest::native::table().bucket_for(&w);
  pwtest::native::lock(b.lock);
  std::atomic<int> usage_errors{0};
  auto releaser = [&] {
    try {
      pagewait::clear_bit_and_wake(w, 2u);
    } catch (const pagewait::usage_error&) {
      ++usage_errors;
    }
  };
  std::thread a(releaser), c(releaser);
  const seen s = await_report(violation_kind::concurrent_release);
  pwtest::native::unlock(b.lock);
  a.join();
  c.join();
  EXPECT_EQ(s.word, &w);
  EXPECT_EQ(s.bit, 2u);
  EXPECT_NE(s.other, 0u);  // the other releaser, by id
  EXPECT_NE(s.other, s.thread);
  EXPECT_NE(s.message.find("while thread"), std::string::npos) << s.message;
  // The later of the two either found the bit clear (usage_error) or ended its release after
  // the first had cleared it (a second report); never neither.
  std::size_t late = 0;
  for (const seen& r : taken())
    if (r.kind == violation_kind::concurrent_release && r.other == 0) ++late;
  EXPECT_EQ(usage_errors.load() + late, 1u);
  EXPECT_EQ(w.load() & 2u, 0u);
}

TEST_F(Checked, ABitClearedByHandIsFoundByItsWaiterAndByTheNextCall) {
  std::atomic<u32> w{0};
  w.fetch_or(1u);
  std::thread t([&] { pagewait::wait_bit_clear(w, 1u); });
  await_queued(w, 1u);
  w.fetch_and(~1u);  // the misuse: nobody will wake the waiter
  const seen s = await_report(violation_kind::bit_cleared_by_hand);
  EXPECT_EQ(s.word, &w);
  EXPECT_EQ(s.bit, 1u);
  EXPECT_EQ(s.waiters, 1u);
  EXPECT_NE(s.message.find("while waiting"), std::string::npos) << s.message;
  // Any call on the word finds it too, at once, before it acts.
  pagewait::set_checked_poll(std::chrono::hours(1));
  taken();
  EXPECT_TRUE(pagewait::try_lock_bit(w, 2u));
  auto r = taken();
  ASSERT_GE(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::bit_cleared_by_hand);
  EXPECT_NE(r[0].message.find("try-locks"), std::string::npos) << r[0].message;
  pagewait::unlock_bit(w, 2u);
  // Repair: set the bit again and release it properly; the waiter returns.
  w.fetch_or(1u);
  taken();
  pagewait::clear_bit_and_wake(w, 1u);
  t.join();
  EXPECT_TRUE(taken().empty());
}

TEST_F(Checked, AWordOverwrittenUnderItsWaitersIsFoundOnReuse) {
  auto* obj = new std::atomic<u32>(1u);
  std::atomic<bool> woke{false};
  std::thread t([&] {
    pagewait::wait_bit_clear(*obj, 1u);
    woke = true;
  });
  await_queued(*obj, 1u);
  pagewait::set_checked_poll(std::chrono::hours(1));  // so that the reuse below finds it first
  taken();
  obj->store(0);  // "freed and reused": a new object's word, fresh, at the same address
  pagewait::lock_bit(*obj, 1u);
  auto r = taken();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, violation_kind::word_overwritten);
  EXPECT_EQ(r[0].word, obj);
  EXPECT_EQ(r[0].bit, 1u);
  EXPECT_EQ(r[0].waiters, 1u);
  EXPECT_NE(r[0].message.find("freed"), std::string::npos) << r[0].message;
  // A checked unlock takes the slow path, so the stranded waiter is found and woken.
  pagewait::unlock_bit(*obj, 1u);
  t.join();
  EXPECT_TRUE(woke);
  delete obj;
}

TEST_F(Checked, AWordUnmappedUnderItsWaiterIsFoundByTheWaiter) {
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  auto* w = new (page) std::atomic<u32>(1u);
  std::atomic<int> result{-1};
  std::thread t([&] { result = pagewait::wait_bit_clear_for(*w, 1u, 2s) ? 1 : 0; });
  await_queued(*w, 1u);
  ASSERT_EQ(::munmap(page, 4096), 0);
  const seen s = await_report(violation_kind::word_freed);
  EXPECT_EQ(s.word, page);
  EXPECT_EQ(s.bit, 1u);
  EXPECT_EQ(s.waiters, 1u);
  EXPECT_NE(s.message.find("unmapped"), std::string::npos) << s.message;
  t.join();  // its deadline passes; it leaves the queue without touching the word
  EXPECT_EQ(result.load(), 0);
}

#if PWTEST_ASAN
TEST_F(Checked, AWordFreedUnderItsWaiterIsFoundByTheWaiter) {
  auto* w = new std::atomic<u32>(1u);
  std::atomic<int> result{-1};
  std::thread t([&] { result = pagewait::wait_bit_clear_for(*w, 1u, 2s) ? 1 : 0; });
  await_queued(*w, 1u);
  delete w;
  const seen s = await_report(violation_kind::word_freed);
  EXPECT_EQ(s.word, w);
  EXPECT_NE(s.message.find("is freed"), std::string::npos) << s.message;
  t.join();
  EXPECT_EQ(result.load(), 0);
}
#endif

TEST_F(Checked, TheDefaultHandlerIsRestoredByNull) {
  EXPECT_EQ(pagewait::set_violation_handler(nullptr), &record);
  EXPECT_EQ(pagewait::set_violation_handler(record), nullptr);
  EXPECT_THROW(pagewait::set_checked_poll(0ms), std::invalid_argument);
  EXPECT_THROW(pagewait::set_checked_poll(std::chrono::hours(2)), std::invalid_argument);
  EXPECT_EQ(pagewait::get_checked_poll(), 5ms);
}

// A correct program raises nothing: locks with hand-offs and races, try and timed locks,
// events with shared and timed waiters, and objects freed and their memory reused the moment
// their bit clears (the release's in-progress entry is gone before its last touch).
TEST_F(Checked, ACorrectProgramRaisesNoReport) {
  const auto f = pagewait::get_fairness();
  pagewait::set_fairness({2, 200us});
  constexpr int threads = 4;
  const int rounds = pwtest::scaled(3000);
  std::atomic<u32> lock_word{0};
  std::atomic<std::uint64_t> event_word{0};
  long counter = 0;               // under the lock bit
  std::atomic<long> acquired{0};  // every successful lock
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i)
    ts.emplace_back([&, i] {
      for (int k = 0; k < rounds; ++k) {
        switch ((k + i) % 4) {
          case 0: {
            pagewait::lock_bit(lock_word, 1u);
            ++counter;
            acquired.fetch_add(1, std::memory_order_relaxed);
            pagewait::unlock_bit(lock_word, 1u);
            break;
          }
          case 1:
            if (pagewait::try_lock_bit_for(lock_word, 1u, 50us)) {
              ++counter;
              acquired.fetch_add(1, std::memory_order_relaxed);
              pagewait::unlock_bit(lock_word, 1u);
            }
            break;
          case 2:
            if (!(event_word.fetch_or(std::uint64_t(1) << 33) & (std::uint64_t(1) << 33)))
              pagewait::clear_bit_and_wake(event_word, std::uint64_t(1) << 33);
            break;
          default:
            (void)pagewait::wait_bit_clear_for(event_word, std::uint64_t(1) << 33, 20us);
            break;
        }
      }
    });
  // Reuse: an object is deleted by the waiter that sees its bit clear, and the next one is
  // very likely allocated at the same address at once.
  for (int k = 0; k < pwtest::scaled(2000); ++k) {
    auto* obj = new std::atomic<u32>(1u);
    std::thread waiter([obj] {
      pagewait::wait_bit_clear(*obj, 1u);
      delete obj;
    });
    if (k % 2) std::this_thread::yield();
    pagewait::clear_bit_and_wake(*obj, 1u);
    waiter.join();
  }
  for (auto& t : ts) t.join();
  pagewait::set_fairness(f);
  EXPECT_EQ(counter, acquired.load());
  auto r = taken();
  EXPECT_TRUE(r.empty()) << r.size() << " reports; first: " << r.front().message;
  EXPECT_EQ(lock_word.load() & 1u, 0u);
}

}  // namespace
