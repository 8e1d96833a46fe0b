// tests/shm_test.cpp — wait domains in shared memory (pagewait/shm.hpp): errors, waits and
// locks through two mappings of one memfd at different addresses (what a second process sees),
// slots running out, and processes (fork) waiting on and handing over bits of one domain.
#include "pagewait/shm.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "pagewait/pagewait.hpp"
#include "pagewait/stats.hpp"
#include "shm_test_util.hpp"

using namespace std::chrono_literals;
namespace shm = pagewait::shm;
using W = std::uint32_t;
constexpr W LOCK = 1u << 0, IO = 1u << 1;
constexpr W WB = pagewait::waiters_bit<W>;

namespace {

using pwtest::at;
using pwtest::shared_file;

shm::errc code_of(auto&& f) {
  try {
    f();
  } catch (const shm::domain_error& e) {
    return e.code();
  }
  return shm::errc{};
}

// Polls until the waiters bit of `w` is set (a waiter, in this process or another, has queued).
bool waiters_queued(const std::atomic<W>& w) {
  for (int i = 0; i < 20000; ++i) {
    if (w.load() & WB) return true;
    std::this_thread::sleep_for(100us);
  }
  return false;
}

constexpr std::size_t kSize = 1 << 20;

// ThreadSanitizer knows memory by its address in this process, so two mappings of one file are
// two unrelated objects to it: a release store through one and an acquire load through the other
// order nothing it can see, and every later access is reported as a race. Under TSan the tests
// that hand work between two mappings in one process use the first mapping on both sides (the
// other builds run them as written; processes, which TSan does not follow, are unaffected).
shm::domain& second_mapping(shm::domain& first, shm::domain& second) {
  return PAGEWAIT_TSAN ? first : second;
}

}  // namespace

TEST(ShmDomain, CreateAndAttachCheckTheirMemory) {
  shared_file f(kSize);
  char* a = static_cast<char*>(f.map());
  EXPECT_THROW(shm::domain::create(nullptr, kSize), std::invalid_argument);
  EXPECT_THROW(shm::domain::attach(nullptr, kSize), std::invalid_argument);
  EXPECT_EQ(code_of([&] { shm::domain::create(a + 8, kSize - 64); }), shm::errc::misaligned);
  EXPECT_EQ(code_of([&] { shm::domain::create(a, 4096); }), shm::errc::too_small);
  EXPECT_EQ(code_of([&] { shm::domain::create(a, kSize, {0, 256, 8}); }), shm::errc::bad_options);
  EXPECT_EQ(code_of([&] { shm::domain::create(a, kSize, {256, 1, 1}); }), shm::errc::bad_options);
  EXPECT_EQ(code_of([&] { shm::domain::create(a, kSize, {256, 16, 0}); }), shm::errc::bad_options);
  EXPECT_EQ(code_of([&] { shm::domain::create(a, kSize, {256, 16, 16}); }), shm::errc::bad_options);
  // bytes_needed refuses what create refuses, and a total that does not fit in a size_t.
  EXPECT_EQ(code_of([&] { shm::domain::bytes_needed(64, {256, 16, 16}); }), shm::errc::bad_options);
  EXPECT_EQ(code_of([&] { shm::domain::bytes_needed(64, {70000, 16, 1}); }), shm::errc::bad_options);
  EXPECT_THROW(shm::domain::bytes_needed(SIZE_MAX), std::invalid_argument);
  EXPECT_THROW(shm::domain::bytes_needed(SIZE_MAX - shm::domain::bytes_needed(0) + 1), std::invalid_argument);
  EXPECT_EQ(shm::domain::bytes_needed(SIZE_MAX - shm::domain::bytes_needed(0)), SIZE_MAX);
  // None of these wrote anything: the memory is still all zero, and attach finds no domain.
  for (std::size_t i = 0; i < 8192; ++i) ASSERT_EQ(a[i], 0) << i;
  EXPECT_EQ(code_of([&] { shm::domain::attach(a, kSize); }), shm::errc::bad_magic);

  shm::domain d = shm::domain::create(a, kSize);
  EXPECT_GE(static_cast<char*>(d.user_area()), a + 4096);
  EXPECT_EQ(static_cast<char*>(d.user_area()) + d.user_size(), a + kSize);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(d.user_area()) % 64, 0u);
  EXPECT_EQ(std::size_t(static_cast<char*>(d.user_area()) - a), shm::domain::bytes_needed(0));
  // The same memory, at the same address, cannot be attached twice by one process.
  EXPECT_EQ(code_of([&] { shm::domain::attach(a, kSize); }), shm::errc::overlaps);
  EXPECT_EQ(code_of([&] { shm::domain::create(a, kSize); }), shm::errc::overlaps);

  // Another mapping of it, elsewhere in this process, attaches (as another process would).
  char* b = static_cast<char*>(f.map());
  ASSERT_NE(a, b);
  EXPECT_EQ(code_of([&] { shm::domain::attach(b, 4096 + 64); }), shm::errc::too_small);
  shm::domain e = shm::domain::attach(b, kSize);
  EXPECT_EQ(static_cast<char*>(e.user_area()) - b, static_cast<char*>(d.user_area()) - a);
  EXPECT_EQ(e.settings().slots, d.settings().slots);
}

TEST(ShmDomain, AttachRefusesAnotherLayoutOrABuildInProgress) {
  shared_file f(kSize);
  char* a = static_cast<char*>(f.map());
  { shm::domain d = shm::domain::create(a, kSize); }  // formatted, then this handle detached
  char* b = static_cast<char*>(f.map());
  // The header: magic (8 bytes), layout version (4), ABI fingerprint (4), state (4).
  std::uint32_t saved;
  std::memcpy(&saved, b + 8, 4);
  const std::uint32_t other = saved + 1;
  std::memcpy(b + 8, &other, 4);
  EXPECT_EQ(code_of([&] { shm::domain::attach(b, kSize); }), shm::errc::layout_version);
  std::memcpy(b + 8, &saved, 4);
  std::memcpy(&saved, b + 12, 4);
  std::memcpy(b + 12, &other, 4);  // any other value
  EXPECT_EQ(code_of([&] { shm::domain::attach(b, kSize); }), shm::errc::abi_mismatch);
  std::memcpy(b + 12, &saved, 4);
  std::memcpy(&saved, b + 16, 4);
  const std::uint32_t formatting = 1;
  std::memcpy(b + 16, &formatting, 4);
  EXPECT_EQ(code_of([&] { shm::domain::attach(b, kSize); }), shm::errc::not_ready);
  std::memcpy(b + 16, &saved, 4);
  shm::domain d = shm::domain::attach(b, kSize);  // and as it was, it attaches
  EXPECT_EQ(d.settings().buckets, 256u);
}

TEST(ShmDomain, BadArgumentsLeaveTheWordAsItWas) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize / 2);  // the mapping goes on past the domain
  auto& w = at<std::atomic<W>>(d, 0);
  std::atomic<W> outside{LOCK};
  EXPECT_EQ(code_of([&] { d.lock_bit(outside, IO); }), shm::errc::word_outside);
  EXPECT_EQ(code_of([&] { d.unlock_bit(outside, LOCK); }), shm::errc::word_outside);
  EXPECT_EQ(code_of([&] { d.wait_bit_clear(outside, LOCK); }), shm::errc::word_outside);
  EXPECT_EQ(outside.load(), LOCK);
  // A word in the domain's own structures, and one just past its end (still mapped). (A
  // misaligned or straddling word cannot be named without undefined behaviour; the check refuses
  // those too.)
  auto* header_word = reinterpret_cast<std::atomic<W>*>(static_cast<char*>(d.user_area()) - 64);
  EXPECT_EQ(code_of([&] { d.try_lock_bit(*header_word, LOCK); }), shm::errc::word_outside);
  auto& past = at<std::atomic<W>>(d, d.user_size());
  past.store(LOCK);
  EXPECT_EQ(code_of([&] { d.clear_bit_and_wake(past, LOCK); }), shm::errc::word_outside);
  EXPECT_EQ(past.load(), LOCK);
  auto& last = at<std::atomic<W>>(d, d.user_size() - sizeof(W));  // the last word is in
  EXPECT_TRUE(d.try_lock_bit(last, LOCK));
  d.unlock_bit(last, LOCK);
  EXPECT_EQ(w.load(), 0u);
  // The bit and the release rules of pagewait.hpp.
  EXPECT_THROW(d.lock_bit(w, 3u), std::invalid_argument);
  EXPECT_THROW(d.lock_bit(w, WB), std::invalid_argument);
  EXPECT_THROW(d.unlock_bit(w, LOCK), pagewait::usage_error);
  EXPECT_THROW(d.try_lock_bit_for(w, LOCK, std::chrono::duration<double>(std::nan(""))),
               std::invalid_argument);
  EXPECT_EQ(w.load(), 0u);
  // A moved-from handle holds no word.
  shm::domain moved = std::move(d);
  EXPECT_EQ(code_of([&] { d.try_lock_bit(w, LOCK); }), shm::errc::word_outside);
  EXPECT_TRUE(moved.try_lock_bit(w, LOCK));
  moved.unlock_bit(w, LOCK);
}

TEST(ShmDomain, ContainsIsExactAtBothEnds) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize / 2);
  char* u = static_cast<char*>(d.user_area());
  EXPECT_TRUE(d.contains(u, d.user_size()));
  EXPECT_FALSE(d.contains(u, d.user_size() + 1));
  EXPECT_FALSE(d.contains(u - 1, 1));
  EXPECT_TRUE(d.contains(u + d.user_size() - 4, 4));
  EXPECT_FALSE(d.contains(u + d.user_size(), 1));
  EXPECT_FALSE(d.contains(u + d.user_size() + 100, 1));  // past the end: no wrap-around
}

// A refusal of create after the memory was checked (here: too many domains in this process)
// must leave the memory as it was: the domain formatted there before still attaches.
TEST(ShmDomain, CreateRefusedLeavesTheMemoryAsItWas) {
  shared_file f(kSize);
  char* a = static_cast<char*>(f.map());
  { shm::domain first = shm::domain::create(a, kSize); }  // formatted, detached
  std::vector<std::unique_ptr<shared_file>> files;
  std::vector<shm::domain> others;
  const shm::options small{16, 4, 1};
  const std::size_t small_size = shm::domain::bytes_needed(4096, small);
  shm::errc last{};
  while (last == shm::errc{} && files.size() < 100) {
    files.push_back(std::make_unique<shared_file>(small_size));
    last = code_of([&] { others.push_back(shm::domain::create(files.back()->map(), small_size, small)); });
  }
  EXPECT_EQ(last, shm::errc::too_many);
  EXPECT_EQ(code_of([&] { shm::domain::create(a, kSize); }), shm::errc::too_many);
  others.clear();
  shm::domain again = shm::domain::attach(a, kSize);  // still the first domain, intact
  auto& w = at<std::atomic<W>>(again, 0);
  EXPECT_TRUE(again.try_lock_bit(w, LOCK));
  again.unlock_bit(w, LOCK);
}

// A corrupt header that claims a user area beyond the domain's end is refused.
TEST(ShmDomain, AttachRefusesAHeaderWhoseUserAreaIsPastItsEnd) {
  shared_file f(kSize);
  char* a = static_cast<char*>(f.map());
  { shm::domain d = shm::domain::create(a, kSize); }
  std::uint64_t user_off;
  // magic 8, version 4, abi 4, state 4, buckets 4, slots 4, reserve 4: then the offsets of the
  // buckets, the slots, the statistics and the user area, and the size.
  std::memcpy(&user_off, a + 56, 8);
  const std::uint64_t size = kSize;
  std::memcpy(a + 64, &user_off, 8);  // size == user_off: no user area
  EXPECT_EQ(code_of([&] { shm::domain::attach(a, kSize); }), shm::errc::abi_mismatch);
  std::memcpy(a + 64, &size, 8);
  shm::domain d = shm::domain::attach(a, kSize);
}

// A lock that would not sleep (deadline passed, stop requested) needs no slot, so it returns
// false rather than throwing slots_exhausted while every wait slot is taken.
TEST(ShmDomain, ExpiredLocksNeedNoSlot) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize, {16, 2, 1});  // one slot for waits
  auto& w = at<std::atomic<W>>(d, 0);
  d.lock_bit(w, LOCK);
  std::thread sleeper([&] { d.wait_bit_clear(w, LOCK); });
  ASSERT_TRUE(waiters_queued(w));
  // Until the sleeper holds the only wait slot, a 1 ms wait may still get it and time out.
  auto& v = at<std::atomic<W>>(d, 64);
  v.store(LOCK);
  bool exhausted = false;
  for (int i = 0; i < 5000 && !exhausted; ++i) {
    exhausted = code_of([&] { d.wait_bit_clear_for(v, LOCK, 1ms); }) == shm::errc::slots_exhausted;
    if (!exhausted) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(exhausted);
  EXPECT_EQ(code_of([&] { EXPECT_FALSE(d.try_lock_bit_for(v, LOCK, 0ms)); }), shm::errc{});
  EXPECT_EQ(code_of([&] { EXPECT_FALSE(d.try_lock_bit_until(v, LOCK, std::chrono::steady_clock::now())); }),
            shm::errc{});
  std::stop_source stopped;
  stopped.request_stop();
  EXPECT_EQ(code_of([&] { EXPECT_FALSE(d.lock_bit(v, LOCK, stopped.get_token())); }), shm::errc{});
  EXPECT_EQ(code_of([&] { EXPECT_FALSE(d.wait_bit_clear_for(v, LOCK, 0ms)); }), shm::errc{});
  // A deadline that passes during the lock's short spin: still no slot (the second review's case).
  int thrown = 0;
  for (int ns : {20, 50, 100, 200, 400})
    for (int i = 0; i < 100; ++i)
      thrown += code_of([&] { (void)d.try_lock_bit_for(v, LOCK, std::chrono::nanoseconds(ns)); }) ==
                shm::errc::slots_exhausted;
  EXPECT_EQ(thrown, 0);
  EXPECT_EQ(v.load(), LOCK);
  d.unlock_bit(w, LOCK);
  sleeper.join();
}

// Detaching one domain while another is in use: the other's slow paths read the registry, which
// must never hand them freed memory (ASan watches).
TEST(ShmDomain, DetachingOneDomainWhileAnotherIsBusy) {
  shared_file fx(kSize), fy(kSize);
  std::optional<shm::domain> y = shm::domain::create(fy.map(), kSize);  // registered first
  shm::domain x = shm::domain::create(fx.map(), kSize);
  void* ymap = fy.map();
  auto& w = at<std::atomic<W>>(x, 0);
  x.lock_bit(w, LOCK);
  std::atomic<bool> stop{false};
  std::thread user([&] {
    while (!stop.load()) (void)x.try_lock_bit_for(w, LOCK, 0ns + std::chrono::nanoseconds(1000));
  });
  for (int i = 0; i < 300; ++i) {
    y.reset();
    y.emplace(shm::domain::attach(ymap, kSize));
  }
  stop = true;
  user.join();
  x.unlock_bit(w, LOCK);
}

// The statistics switch a slow path looks at is its own domain's, never another's: here one
// thread's slow paths on X (not counting) run while another thread creates, counts on, detaches
// and unmaps domain after domain, for a second. (A switch found by scanning every attached
// domain read a mapping being unmapped: this crashed within a second.)
TEST(ShmDomain, StatisticsNeverReadAnotherDomainsMemory) {
  shared_file fx(kSize);
  shm::domain x = shm::domain::create(fx.map(), kSize);
  auto& w = at<std::atomic<W>>(x, 0);
  w.store(IO);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> waits{0};
  std::thread user([&] {
    while (!stop.load()) {
      (void)x.wait_bit_clear_for(w, IO, 0ns);  // the slow path's switch, each time (bit set)
      waits.fetch_add(1);
    }
  });
  const std::size_t ysize = shm::domain::bytes_needed(64, {16, 4, 1});
  const auto until = std::chrono::steady_clock::now() + 1s;
  int rounds = 0;
  for (; std::chrono::steady_clock::now() < until; ++rounds) {
    void* m = mmap(nullptr, ysize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    {
      shm::domain y = shm::domain::create(m, ysize, {16, 4, 1});
      y.enable_stats();
    }
    munmap(m, ysize);
  }
  stop = true;
  user.join();
  EXPECT_GT(rounds, 100);
  EXPECT_GT(waits.load(), 100u);
  EXPECT_TRUE(x.get_stats().buckets.empty());  // X never counted
}

// Two mappings of one memfd at different addresses: a waiter through one, a releaser through
// the other, so every link, key and bucket index must be the same seen from either address.
TEST(ShmDomain, WaitThroughOneMappingReleaseThroughAnother) {
  shared_file f(kSize);
  shm::domain d1 = shm::domain::create(f.map(), kSize);
  shm::domain attached = shm::domain::attach(f.map(), kSize);
  shm::domain& d2 = second_mapping(d1, attached);
  for (std::size_t k = 0; k < 64; ++k) {
    const std::size_t off = k * 64 * 7 % (d1.user_size() - 8);
    const std::size_t aligned = off & ~std::size_t(7);
    auto& w1 = at<std::atomic<W>>(d1, aligned);
    auto& w2 = at<std::atomic<W>>(d2, aligned);
    if (!PAGEWAIT_TSAN) {
      ASSERT_NE(&w1, &w2);
    }
    w1.fetch_or(IO);
    std::atomic<int> done{0};
    std::thread reader([&] {
      // Bounded, so that a release that misses it (another bucket, say) fails the test, not hangs it.
      done = d2.wait_bit_clear_for(w2, IO, 20s) ? 1 : 2;
    });
    ASSERT_TRUE(waiters_queued(w1));
    EXPECT_EQ(done.load(), 0);
    d1.clear_bit_and_wake(w1, IO);
    reader.join();
    EXPECT_EQ(done.load(), 1);
    EXPECT_EQ(w1.load(), 0u);  // the waiters bit went with the last waiter

    // A lock held through one mapping, waited for through the other, handed over.
    d1.lock_bit(w1, LOCK);
    std::atomic<bool> got{false};
    std::thread locker([&] {
      if (!d2.try_lock_bit_for(w2, LOCK, 20s)) return;
      got = true;
      d2.unlock_bit(w2, LOCK);
    });
    ASSERT_TRUE(waiters_queued(w1));
    EXPECT_FALSE(got.load());
    d1.unlock_bit(w1, LOCK);
    locker.join();
    EXPECT_TRUE(got.load());
    EXPECT_EQ(w1.load(), 0u);
  }
}

TEST(ShmDomain, MutualExclusionAcrossMappings) {
  shared_file f(kSize);
  shm::domain d1 = shm::domain::create(f.map(), kSize, {4, 64, 4});  // few buckets: words collide
  shm::domain attached = shm::domain::attach(f.map(), kSize);
  shm::domain& d2 = second_mapping(d1, attached);
  constexpr int kThreads = 6, kRounds = 20000, kMaxRounds = 5000000, kWords = 3;
  std::atomic<int> ready{0};
  std::atomic<std::uint64_t> contended{0}, rounds{0};
  std::vector<std::thread> ts;
  // Each thread goes on past kRounds until 100 lock calls (any thread's) found the bit held: on a
  // loaded machine the threads may otherwise run one after another and never meet (seen in CI).
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      shm::domain& d = t % 2 ? d1 : d2;
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      int i = 0;
      for (; i < kMaxRounds && (i < kRounds || contended.load(std::memory_order_relaxed) < 100); ++i) {
        const std::size_t k = std::size_t(i + t) % kWords;
        auto& w = at<std::atomic<W>>(d, k * 128);
        auto& counter = at<std::uint64_t>(d, k * 128 + 8);
        if (!d.try_lock_bit(w, LOCK)) {
          contended.fetch_add(1, std::memory_order_relaxed);
          if (i % 3 == 0) {
            while (!d.try_lock_bit_for(w, LOCK, 1ms)) {
            }
          } else {
            d.lock_bit(w, LOCK);
          }
        }
        counter = counter + 1;  // plain: the lock orders it
        d.unlock_bit(w, LOCK);
      }
      rounds.fetch_add(std::uint64_t(i));
    });
  for (auto& t : ts) t.join();
  std::uint64_t total = 0;
  for (int k = 0; k < kWords; ++k) {
    total += at<std::uint64_t>(d1, std::size_t(k) * 128 + 8);
    EXPECT_EQ(at<std::atomic<W>>(d1, std::size_t(k) * 128).load(), 0u);
  }
  EXPECT_EQ(total, rounds.load());
  EXPECT_GE(rounds.load(), std::uint64_t(kThreads) * kRounds);
  // The slow paths ran. (On one core, 5 million rounds a thread met about 60 times: threads meet
  // only when one is preempted holding the lock.)
  EXPECT_GT(contended.load(), 0u);
}

TEST(ShmDomain, TimeoutsAndStopGiveUpAndLeaveTheBit) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize, {16, 8, 2});
  auto& w = at<std::atomic<W>>(d, 64);
  d.lock_bit(w, LOCK);
  EXPECT_FALSE(d.try_lock_bit(w, LOCK));
  EXPECT_FALSE(d.try_lock_bit_for(w, LOCK, 20ms));
  EXPECT_FALSE(d.try_lock_bit_until(w, LOCK, std::chrono::steady_clock::now() + 20ms));
  EXPECT_FALSE(d.wait_bit_clear_for(w, LOCK, 20ms));
  EXPECT_FALSE(d.wait_bit_clear_until(w, LOCK, std::chrono::system_clock::now() + 20ms));
  std::stop_source stop;
  std::thread t([&] {
    EXPECT_FALSE(d.lock_bit(w, LOCK, stop.get_token()));
    EXPECT_FALSE(d.wait_bit_clear(w, LOCK, stop.get_token()));
  });
  ASSERT_TRUE(waiters_queued(w));
  std::this_thread::sleep_for(10ms);
  stop.request_stop();
  t.join();
  EXPECT_EQ(w.load() & ~WB, LOCK);  // still held; a waiters bit for nobody is allowed
  d.unlock_bit(w, LOCK);
  EXPECT_EQ(w.load(), 0u);
  // Every slot is free again: as many waiters as there are wait slots can queue at once.
  const std::uint32_t waits = d.settings().slots - d.settings().release_reserve;
  d.lock_bit(w, LOCK);
  std::vector<std::thread> many;
  std::atomic<std::uint32_t> returned{0};
  for (std::uint32_t i = 0; i < waits; ++i)
    many.emplace_back([&] {
      d.wait_bit_clear(w, LOCK);
      returned.fetch_add(1);
    });
  std::this_thread::sleep_for(50ms);
  d.unlock_bit(w, LOCK);
  for (auto& t2 : many) t2.join();
  EXPECT_EQ(returned.load(), waits);
}

TEST(ShmDomain, SlotsRunOutForWaitsButNeverForReleases) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize, {16, 3, 1});  // two slots for waits
  auto& w = at<std::atomic<W>>(d, 0);
  auto& v = at<std::atomic<W>>(d, 64);
  d.lock_bit(w, LOCK);
  std::vector<std::thread> ts;
  // Each retries while the probe below holds a slot for its short wait.
  for (int i = 0; i < 2; ++i)
    ts.emplace_back([&] {
      while (code_of([&] { d.wait_bit_clear(w, LOCK); }) == shm::errc::slots_exhausted)
        std::this_thread::sleep_for(1ms);
    });
  // Both wait slots are held by the two sleepers (their waiters bit shows they queued).
  ASSERT_TRUE(waiters_queued(w));
  // Until both hold their slots, a short wait on another held bit finds one free and times out.
  v.store(LOCK);
  bool exhausted = false;
  for (int i = 0; i < 5000 && !exhausted; ++i) {
    exhausted = code_of([&] { d.wait_bit_clear_for(v, LOCK, 1ms); }) == shm::errc::slots_exhausted;
    if (!exhausted) std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(exhausted);
  // A wait or lock that would sleep now throws before touching the word: v keeps its bits.
  v.store(LOCK);
  EXPECT_EQ(code_of([&] { d.lock_bit(v, LOCK); }), shm::errc::slots_exhausted);
  EXPECT_EQ(code_of([&] { d.wait_bit_clear(v, LOCK); }), shm::errc::slots_exhausted);
  EXPECT_EQ(v.load(), LOCK);
  v.store(0);
  // A bit that is free needs no slot.
  EXPECT_TRUE(d.try_lock_bit_for(v, LOCK, 1s));
  // The release takes the reserve slot and wakes both.
  d.unlock_bit(w, LOCK);
  for (auto& t : ts) t.join();
  d.unlock_bit(v, LOCK);
  EXPECT_EQ(w.load(), 0u);
}

// ---- processes ----

// Runs `child` in a forked process; returns its exit status (0: its checks passed).
int in_child(auto&& child) {
  const pid_t pid = fork();
  if (pid == 0) _exit(child());
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

TEST(ShmProcesses, ChildWaitsParentReleases) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = at<std::atomic<W>>(d, 128);
  w.store(IO);
  std::thread releaser([&] {
    if (waiters_queued(w)) d.clear_bit_and_wake(w, IO);
  });
  // The child maps the file again, at another address, and attaches there (a process that did
  // not inherit the mapping would do the same).
  const int st = in_child([&] {
    shm::domain c = shm::domain::attach(f.map(), kSize);
    auto& cw = at<std::atomic<W>>(c, 128);
    if (&cw == &w) return 2;
    return c.wait_bit_clear_for(cw, IO, 20s) ? 0 : 1;
  });
  releaser.join();
  EXPECT_EQ(st, 0);
  EXPECT_EQ(w.load(), 0u);
}

TEST(ShmProcesses, LockHandedBackAndForthBetweenProcesses) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = at<std::atomic<W>>(d, 256);
  auto& turns = at<std::uint64_t>(d, 264);
  auto& contended = at<std::atomic<std::uint64_t>>(d, 272);  // lock calls that found the bit held
  auto& started = at<std::atomic<W>>(d, 280);
  auto* rounds = &at<std::uint64_t>(d, 288);  // per side, written by that side only
  constexpr std::uint64_t kRounds = 5000;
  // Each side holds the lock for a short while, so that the other finds it held and sleeps on
  // it; each goes on until it has done kRounds and 100 of the lock calls (either side's) found
  // the bit held, or for at most 30 s (then the check below fails). The total must come out
  // exact. A bound in time, not in rounds: on a loaded machine the two processes may seldom run
  // at once, and 5 million rounds of one alone (about a second) found the bit held only 40-98
  // times, where a few seconds more find it hundreds of times.
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  const auto side = [&](int me) {
    started.fetch_add(1);
    while (started.load() < 2) std::this_thread::yield();
    std::uint64_t i = 0;
    for (; (i < kRounds || contended.load(std::memory_order_relaxed) < 100) &&
           ((i & 1023) != 0 || std::chrono::steady_clock::now() < give_up);
         ++i) {
      if (!d.try_lock_bit(w, LOCK)) {
        contended.fetch_add(1);
        d.lock_bit(w, LOCK);
      }
      const std::uint64_t t = turns;
      for (int j = 0; j < 200; ++j) asm volatile("" ::: "memory");
      turns = t + 1;  // plain: the lock orders it
      d.unlock_bit(w, LOCK);
    }
    rounds[me] = i;
  };
  const pid_t pid = fork();
  if (pid == 0) {
    side(1);  // the inherited handle works in the child as it does in the parent
    _exit(0);
  }
  side(0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(turns, rounds[0] + rounds[1]);
  EXPECT_GE(contended.load(), 100u);
  EXPECT_EQ(w.load(), 0u);
}

TEST(ShmProcesses, ParentWaitsForChildsLock) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = at<std::atomic<W>>(d, 512);
  auto& data = at<std::uint64_t>(d, 520);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    d.lock_bit(w, LOCK);
    char c = 1;
    if (write(pipefd[1], &c, 1) != 1) _exit(3);
    // Hold the lock until the parent has queued for it.
    if (!waiters_queued(w)) _exit(4);
    data = 42;
    d.unlock_bit(w, LOCK);
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(pipefd[0], &c, 1), 1);
  d.lock_bit(w, LOCK);  // sleeps until the child's unlock
  EXPECT_EQ(data, 42u);
  d.unlock_bit(w, LOCK);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(pipefd[0]);
  close(pipefd[1]);
}

// Processes that neither created nor inherited the domain: fork, then exec shm_peer, which maps
// the memfd (its descriptor survives the exec) at an address of its own and attaches. Two of them
// wait for an event bit this process clears; three others, and this process, contend for a lock
// bit and count under it.
TEST(ShmProcesses, ExecedPeersAttachWaitAndCount) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& event = at<std::atomic<W>>(d, 1024);
  auto& lock = at<std::atomic<W>>(d, 2048);
  auto& counter = at<std::uint64_t>(d, 2048 + 8);
  event.store(IO);
  constexpr int kCount = 3000;
  const auto spawn = [&](std::vector<std::string> args) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::string> all = {SHM_PEER, std::to_string(f.fd), std::to_string(kSize)};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  };
  std::vector<pid_t> waiters, counters;
  for (int i = 0; i < 2; ++i) waiters.push_back(spawn({"wait", "1024", std::to_string(IO)}));
  for (int i = 0; i < 3; ++i)
    counters.push_back(spawn({"count", "2048", std::to_string(LOCK), std::to_string(kCount)}));
  for (int i = 0; i < kCount; ++i) {
    d.lock_bit(lock, LOCK);
    counter = counter + 1;
    d.unlock_bit(lock, LOCK);
  }
  const auto status_of = [](pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  };
  for (pid_t p : counters) EXPECT_EQ(status_of(p), 0);
  EXPECT_EQ(counter, std::uint64_t(4 * kCount));
  EXPECT_EQ(lock.load(), 0u);
  // The waiters have queued (their waiters bit is set) unless one is very late; either way the
  // clear must reach whoever waits, and a late one sees the bit clear at once.
  (void)waiters_queued(event);
  d.clear_bit_and_wake(event, IO);
  for (pid_t p : waiters) EXPECT_EQ(status_of(p), 0);
  EXPECT_EQ(event.load(), 0u);
}

// The statistics are the domain's: one switch for every process (here a child that attached on
// its own turns it on), counted by every process in the shared memory. The parent waits for the
// child's sleeps to show in the counts before it releases, so each count below is certain.
TEST(ShmProcesses, StatisticsAreTheDomainsAndCountEveryProcess) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = at<std::atomic<W>>(d, 512);
  EXPECT_FALSE(d.stats_enabled());
  pagewait::enable_stats();  // the process's own, to show below that domains are not in them
  pagewait::reset_stats();
  // Off: a slow wait and release count nothing.
  w.store(IO);
  std::thread t([&] {
    if (waiters_queued(w)) d.clear_bit_and_wake(w, IO);
  });
  d.wait_bit_clear(w, IO);
  t.join();
  const auto none = [](const pagewait::stats_snapshot& s) {
    return s.buckets.empty() && s.total.shared_waits == 0 && s.total.releases == 0 && s.wake_syscalls == 0 &&
           s.sleeps == 0;
  };
  EXPECT_TRUE(none(d.get_stats()));

  EXPECT_EQ(in_child([&] {
              shm::domain c = shm::domain::attach(f.map(), kSize);
              c.enable_stats();
              return c.stats_enabled() ? 0 : 1;
            }),
            0);
  EXPECT_TRUE(d.stats_enabled());

  // A child waits for IO, then for the lock; the parent releases each once the child sleeps.
  const auto wait_for_sleeps = [&](std::uint64_t n) {
    for (int i = 0; i < 20000 && d.get_stats().sleeps < n; ++i) std::this_thread::sleep_for(1ms);
    return d.get_stats().sleeps >= n;
  };
  w.store(IO | LOCK);
  const pid_t pid = fork();
  if (pid == 0) {
    const bool ok = d.wait_bit_clear_for(w, IO, 20s) && d.try_lock_bit_for(w, LOCK, 20s);
    if (ok) d.unlock_bit(w, LOCK);
    _exit(ok ? 0 : 1);
  }
  EXPECT_TRUE(wait_for_sleeps(1));
  d.clear_bit_and_wake(w, IO);
  EXPECT_TRUE(wait_for_sleeps(2));
  std::this_thread::sleep_for(5ms);
  d.unlock_bit(w, LOCK);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);

  const pagewait::stats_snapshot s = d.get_stats();
  EXPECT_EQ(s.total.shared_waits, 1u);
  EXPECT_EQ(s.total.lock_waits, 1u);
  EXPECT_EQ(s.total.gave_up, 0u);
  EXPECT_GE(s.total.releases, 2u);  // the parent's two; the child's unlock too if a waiter bit was left
  EXPECT_GE(s.total.longest_wait, 5ms);
  EXPECT_GE(s.total.longest_walk, 1u);
  EXPECT_GE(s.sleeps, 2u);
  EXPECT_GE(s.wake_syscalls, 2u);  // each release found the child asleep
  ASSERT_EQ(s.buckets.size(), 1u);
  EXPECT_EQ(s.buckets[0].first, d.bucket_of(&w));

  d.reset_stats();
  EXPECT_TRUE(none(d.get_stats()));
  d.enable_stats(false);
  EXPECT_FALSE(d.stats_enabled());
  W outside = 0;
  EXPECT_EQ(code_of([&] { (void)d.bucket_of(&outside); }), shm::errc::word_outside);
  // The process's statistics (pagewait/stats.hpp) are pagewait.hpp's words': this process's
  // domain waits and sleeps (the first wait above slept, or at least queued) are not in them.
  const pagewait::stats_snapshot p = pagewait::get_stats();
  pagewait::enable_stats(false);
  EXPECT_EQ(p.total.shared_waits, 0u);
  EXPECT_EQ(p.total.releases, 0u);
  EXPECT_EQ(p.sleeps, 0u);
}

// ---- resets (issue 12's recovery, its first slice) ----

// A reset of a bucket (detail::shm_reset_bucket: what recovery from a process that died inside
// the bucket does) may only delay. Two resetters, a forked process attached through its own
// mapping and a thread here, reset the domain's only bucket over and over while threads lock
// three words and wait for 72 words' event bits, with and without deadlines, and a writer sets
// and ends those events: mutual exclusion, woken-means-cleared and every wait's return must come
// out as without resets. 72 sleepers are more than a walk's 64 visits per hold, so a release may
// walk in several holds; whether a reset lands between two of them is up to the scheduler here
// (rarely), which is why the model's reset rows make it happen at every step. Under TSan the
// other process sits out: its resets write this process's nodes through memory TSan does not see
// written, so every later reuse of them is reported (the thread here resets under TSan's eyes).
TEST(ShmReset, ResetsFromAnotherProcessOnlyDelay) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize, {1, 160, 16});
  constexpr int kEvents = 72, kLockers = 4, kLockWords = 3;
  constexpr W kSeq = 1u << 8;  // an event word counts its starts above its flag bits
  auto& stop = at<std::atomic<W>>(d, 0);
  auto& go = at<std::atomic<W>>(d, 4);
  auto& child_held = at<std::atomic<std::uint64_t>>(d, 8);
  auto event = [&](int i) -> std::atomic<W>& { return at<std::atomic<W>>(d, 1024 + std::size_t(i) * 64); };
  auto lockw = [&](int k) -> std::atomic<W>& { return at<std::atomic<W>>(d, 8192 + std::size_t(k) * 64); };
  auto counter = [&](int k) -> std::uint64_t& {
    return at<std::uint64_t>(d, 8192 + std::size_t(k) * 64 + 8);
  };

  // The other process first, before this one has threads.
  constexpr bool kOtherProcess = !PAGEWAIT_TSAN;
  const pid_t pid = kOtherProcess ? fork() : -1;
  if (pid == 0) {
    shm::domain c = shm::domain::attach(f.map(), kSize);
    auto& cstop = at<std::atomic<W>>(c, 0);
    while (!at<std::atomic<W>>(c, 4).load()) std::this_thread::yield();
    while (!cstop.load()) {
      at<std::atomic<std::uint64_t>>(c, 8).fetch_add(pagewait::detail::shm_reset_bucket(c, 0));
      std::this_thread::sleep_for(20us);
    }
    _exit(0);
  }

  std::atomic<int> bad_wake{0}, lost{0};
  std::atomic<std::uint64_t> rounds{0}, held_here{0}, waits_ok{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kEvents; ++i)
    ts.emplace_back([&, i] {
      auto& e = event(i);
      while (!stop.load()) {
        const W v = e.load();
        if (!(v & IO)) {
          std::this_thread::sleep_for(50us);
          continue;
        }
        // A long deadline stands for "untimed": running into it is a lost wake-up.
        const bool ok = i % 4 ? d.wait_bit_clear_for(e, IO, 30s) : d.wait_bit_clear_for(e, IO, 300us);
        if (!ok) {
          if (i % 4) lost.fetch_add(1);
          continue;
        }
        waits_ok.fetch_add(1, std::memory_order_relaxed);
        // Woken means cleared: since the wait began the bit was cleared, so it is clear now or
        // was set again by a later start (a higher count).
        const W after = e.load();
        if ((after & IO) && after / kSeq == v / kSeq) bad_wake.fetch_add(1);
      }
    });
  for (int t = 0; t < kLockers; ++t)
    ts.emplace_back([&, t] {
      std::uint64_t n = 0;
      for (int i = 0; !stop.load(); ++i, ++n) {
        const int k = (i + t) % kLockWords;
        auto& w = lockw(k);
        if (i % 3 == 0) {
          while (!d.try_lock_bit_for(w, LOCK, 200us)) {
          }
        } else {
          d.lock_bit(w, LOCK);
        }
        counter(k) = counter(k) + 1;                // plain: the lock orders it
        if (i % 8 == 0) std::this_thread::yield();  // held across a reschedule now and then
        d.unlock_bit(w, LOCK);
      }
      rounds.fetch_add(n);
    });
  std::thread resetter([&] {
    while (!go.load()) std::this_thread::yield();
    while (!stop.load()) {
      held_here.fetch_add(pagewait::detail::shm_reset_bucket(d, 0));
      std::this_thread::sleep_for(30us);
    }
  });
  std::thread writer([&] {
    while (!stop.load()) {
      for (int i = 0; i < kEvents; ++i) event(i).fetch_add(kSeq | IO);  // start (the bit was clear)
      std::this_thread::sleep_for(1ms);                                 // the waiters queue
      for (int i = 0; i < kEvents; ++i) d.clear_bit_and_wake(event(i), IO);
      std::this_thread::sleep_for(100us);
    }
  });
  go.store(1);
  // Until both resetters have found waiters in the bucket many times (bounded: a failure below if
  // not).
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 20s &&
         (std::chrono::steady_clock::now() - t0 < 500ms || (kOtherProcess && child_held.load() < 1000) ||
          held_here.load() < 1000 || waits_ok.load() < 2000))
    std::this_thread::sleep_for(10ms);
  stop.store(1);
  writer.join();
  resetter.join();
  for (auto& t : ts) t.join();
  if (kOtherProcess) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_GE(child_held.load(), 1000u);
  }

  EXPECT_EQ(bad_wake.load(), 0) << "a wait returned into a set bit that no clear had followed";
  EXPECT_EQ(lost.load(), 0) << "a wait ran into its 30 s deadline: a lost wake-up";
  std::uint64_t total = 0;
  for (int k = 0; k < kLockWords; ++k) {
    total += counter(k);
    EXPECT_EQ(lockw(k).load() & LOCK, 0u);
  }
  EXPECT_EQ(total, rounds.load()) << "two owners of a lock at once";
  EXPECT_GE(held_here.load(), 1000u);
  EXPECT_GE(waits_ok.load(), 2000u);
  for (int i = 0; i < kEvents; ++i) EXPECT_EQ(event(i).load() & IO, 0u);
}
