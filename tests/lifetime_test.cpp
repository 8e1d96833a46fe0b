// The lifetime promise (CONTRACT §3.1, §3.4): the release step that clears a bit or hands a lock
// off is the releaser's last touch of the word, and a woken waiter never reads the word again.
// So the object holding the word may be destroyed by whoever wakes first, while the releaser
// is still waking the others.
//
// Two detectors:
//   * real delete: the object is freed at once; under the asan preset any later touch by the
//     releaser or a woken waiter is a heap-use-after-free report (and under tsan a race with
//     the free).
//   * quarantine: the object is not freed but "killed": its word is overwritten with a
//     sentinel and the object is kept until the end of the test, when every sentinel must be
//     intact. This works in every preset, and it can be shown to fire: with the stalling
//     policy below, the old clear_then_wake protocol is caught writing to a dead word, while
//     atomic_clear, the shipped protocol, never is.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include "stall_policy.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;
using pwtest::scaled;

namespace {

template <class W>
struct object {
  std::atomic<W> word{0};
  int count = 0;  // protected by the lock bit, in the lock tests
  char payload[48] = {};
};

// A sentinel that every write the old protocols make after the clear would change: it has the
// waiters bit (which clear_then_wake's final fetch_and clears) and the user bit (which a late
// clear or the v5.9 hand-off's fetch_or touch) among a pattern of others.
template <class W>
constexpr W sentinel(W bit) {
  return W(W(0x5A5A5A5A5A5A5A5Aull) | pagewait::waiters_bit<W> | bit);
}

// Objects "freed" by writing the sentinel; checked when the test ends.
template <class W>
struct quarantine {
  std::mutex m;
  std::vector<std::unique_ptr<object<W>>> dead;
  W bit;
  explicit quarantine(W b) : bit(b) {}

  void kill(object<W>* o) {
    o->word.store(sentinel(bit), std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(m);
    dead.emplace_back(o);
  }
  // Number of killed objects whose word was written after they were killed.
  int touched() {
    std::lock_guard<std::mutex> g(m);
    int n = 0;
    for (auto& o : dead)
      if (o->word.load(std::memory_order_relaxed) != sentinel(bit)) ++n;
    return n;
  }
};

template <class W>
class Lifetime : public ::testing::Test {};
using WordTypes = ::testing::Types<std::uint32_t, std::uint64_t>;
TYPED_TEST_SUITE(Lifetime, WordTypes);

constexpr int kWaiters = 4;

// N event waiters queued on a bit; the first to wake frees the object while the releaser is
// still waking the rest. `kill` frees (delete or quarantine).
template <class W, class Kill>
void first_waker_frees(int iterations, Kill kill) {
  constexpr W E = W(1) << 3;
  for (int it = 0; it < iterations; ++it) {
    auto* o = new object<W>;
    o->word.store(E);
    std::atomic<bool> freed{false};
    std::vector<std::thread> ts;
    for (int i = 0; i < kWaiters; ++i)
      ts.emplace_back([&, o] {
        pagewait::wait_bit_clear(o->word, E);
        // The first waker frees at once; the others must not touch `o` after their wake.
        if (!freed.exchange(true)) kill(o);
      });
    // A waiter needs the object alive until it is queued (it reads the word before that).
    ASSERT_TRUE(pwtest::wait_queued(o->word, std::size_t(kWaiters)));
    pagewait::clear_bit_and_wake(o->word, E);  // the object may be gone while this runs
    for (auto& t : ts) t.join();
    ASSERT_TRUE(freed.load());
  }
}

TYPED_TEST(Lifetime, FirstEventWaiterToWakeDeletesTheObject) {
  first_waker_frees<TypeParam>(scaled(1000), [](object<TypeParam>* o) { delete o; });
}

TYPED_TEST(Lifetime, FirstEventWaiterToWakeKillsTheObjectQuarantined) {
  using W = TypeParam;
  quarantine<W> q(W(1) << 3);
  first_waker_frees<W>(scaled(1000), [&](object<W>* o) { q.kill(o); });
  EXPECT_EQ(q.touched(), 0) << "a releaser wrote to a word after its waiter freed the object";
}

// A thread that never sleeps frees the object the instant it sees the bit clear (the
// writeback-free scenario of CONTRACT §5), while sleeping waiters keep the waiters bit set, so
// that the release goes through the wait table. Under clear_then_wake the release would still
// be walking the table, and would clear the waiters bit of a dead word, after that instant.
template <class W, class Kill>
void poller_frees(int iterations, Kill kill) {
  constexpr W E = W(1) << 5;
  for (int it = 0; it < iterations; ++it) {
    auto* o = new object<W>;
    o->word.store(E);
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; ++i) ts.emplace_back([o] { pagewait::wait_bit_clear(o->word, E); });
    ASSERT_TRUE(pwtest::wait_queued(o->word, std::size_t(2)));
    std::atomic<bool> go{false};
    std::thread poller([&, o] {
      go.store(true);
      // The object stays alive while the bit is set: the releaser holds its "reference".
      while (o->word.load(std::memory_order_acquire) & E) pwtest::native::cpu_relax();
      kill(o);
    });
    while (!go.load()) std::this_thread::yield();
    pagewait::clear_bit_and_wake(o->word, E);
    poller.join();
    for (auto& t : ts) t.join();
  }
}

TYPED_TEST(Lifetime, PollerDeletesTheObjectTheInstantTheBitClears) {
  poller_frees<TypeParam>(scaled(400), [](object<TypeParam>* o) { delete o; });
}

TYPED_TEST(Lifetime, PollerKillsTheObjectQuarantined) {
  using W = TypeParam;
  quarantine<W> q(W(1) << 5);
  poller_frees<W>(scaled(400), [&](object<W>* o) { q.kill(o); });
  EXPECT_EQ(q.touched(), 0) << "a releaser wrote to a word after the poller freed the object";
}

// Lock hand-off: N lockers queue behind the owner; each takes the lock once; the last to take
// it unlocks and frees the object at once, while the earlier owners may still be inside their
// unlock_bit (waking or handing off).
template <class W>
void last_locker_deletes(int iterations) {
  constexpr W L = W(1) << 1;
  for (int it = 0; it < iterations; ++it) {
    auto* o = new object<W>;
    pagewait::lock_bit(o->word, L);
    std::vector<std::thread> ts;
    for (int i = 0; i < kWaiters; ++i)
      ts.emplace_back([o] {
        pagewait::lock_bit(o->word, L);
        const bool last = ++o->count == kWaiters;
        pagewait::unlock_bit(o->word, L);
        // After our unlock only the last locker may touch the object (the others have all
        // taken and released the lock; they may still be inside unlock_bit).
        if (last) delete o;
      });
    ASSERT_TRUE(pwtest::wait_queued(o->word, std::size_t(kWaiters)));
    pagewait::unlock_bit(o->word, L);
    for (auto& t : ts) t.join();
  }
}

TYPED_TEST(Lifetime, LastLockerDeletesTheObjectDefaultFairness) {
  last_locker_deletes<TypeParam>(scaled(1000));
}

TYPED_TEST(Lifetime, LastLockerDeletesTheObjectStrictHandoff) {
  pwtest::fairness_guard g({0, 0ns});  // every contended unlock is a hand-off
  last_locker_deletes<TypeParam>(scaled(1000));
}

// The new owner by hand-off frees the object while the unlocker may still be in unlock_bit.
TYPED_TEST(Lifetime, HandoffReceiverDeletesTheObject) {
  using W = TypeParam;
  pwtest::fairness_guard g({0, 0ns});
  constexpr W L = W(1) << 2;
  for (int it = 0; it < scaled(1500); ++it) {
    auto* o = new object<W>;
    pagewait::lock_bit(o->word, L);
    std::thread t([o] {
      pagewait::lock_bit(o->word, L);
      delete o;  // owned: nobody else may touch it now, not even the unlocker
    });
    ASSERT_TRUE(pwtest::wait_queued(o->word, std::size_t(1), L));
    pagewait::unlock_bit(o->word, L);
    t.join();
  }
}

// The DROP wait: the waiter holds no reference. The owner clears the event and frees the
// object at once; the waiter may still be inside wait_bit_clear. The object only had to live
// until the waiter's waiters bit was visible. Timed and stop forms too, whose abandonment may
// race the release.
TYPED_TEST(Lifetime, DropWaitOwnerFreesRightAfterTheClear) {
  using W = TypeParam;
  constexpr W E = W(1) << 4;
  for (int it = 0; it < scaled(3000); ++it) {
    auto* o = new object<W>;
    o->word.store(E);
    std::atomic<bool> done{false};
    std::stop_source stop;
    const int form = it % 3;
    const auto timeout = std::chrono::microseconds(pwtest::rand_int(0, 300));
    std::thread t([&, o] {
      if (form == 0)
        pagewait::wait_bit_clear(o->word, E);
      else if (form == 1)
        (void)pagewait::wait_bit_clear_for(o->word, E, timeout);
      else
        (void)pagewait::wait_bit_clear(o->word, E, stop.get_token());
      done.store(true);
    });
    // Until the waiter is queued (its waiters bit visible) or has given up, it may read the word.
    while (!(o->word.load() & pagewait::waiters_bit<W>)&&!done.load()) std::this_thread::yield();
    if (form == 2 && it % 2) stop.request_stop();
    pagewait::clear_bit_and_wake(o->word, E);
    delete o;
    if (form == 2) stop.request_stop();
    t.join();
  }
}

// ---------------------------------------------------------------------------------------------
// The detector can fire. stall_policy (stall_policy.hpp) stalls every release walk until the
// poller has killed the object, or 50 ms have passed, opening the window of the v5.9 bug as
// wide as it goes: clear_then_wake cleared the bit before the walk, so the poller kills the
// object during the stall and the walk's final "no more waiters: clear the waiters bit" writes
// to the dead word. atomic_clear still holds the bit during the walk: the poller cannot kill
// the object before the release's last touch.
using pwtest::stall_policy;

template <class W, pagewait::release_protocol R>
int stalled_release_touches(int iterations) {
  using C = pagewait::detail::core<stall_policy, R, W>;
  constexpr W E = W(1) << 6;
  quarantine<W> q(E);
  for (int it = 0; it < iterations; ++it) {
    auto* o = new object<W>;
    o->word.store(E);
    stall_policy::killed.store(false);
    std::vector<std::thread> ts;
    for (int i = 0; i < 2; ++i)
      ts.emplace_back([o] { C::wait_clear(o->word, E, pagewait::detail::deadline::never(), nullptr); });
    // Both waiters queued (so the release takes the slow path and walks them).
    auto queued = [o] {
      auto& b = stall_policy::table().bucket_for(&o->word);
      stall_policy::lock(b.lock);
      int c = 0;
      for (auto* n = b.head.get(); n; n = n->next.get()) c += n->word.get() == &o->word;
      stall_policy::unlock(b.lock);
      return c == 2;
    };
    EXPECT_TRUE(pwtest::eventually(queued));
    std::thread poller([&, o] {
      while (o->word.load(std::memory_order_acquire) & E) std::this_thread::yield();
      q.kill(o);
      stall_policy::killed.store(true);
    });
    stall_policy::armed.store(true);
    C::release(o->word, E, pagewait::detail::release_kind::event);
    stall_policy::armed.store(false);
    poller.join();
    for (auto& t : ts) t.join();
  }
  return q.touched();
}

TYPED_TEST(Lifetime, DetectorCatchesClearThenWakeTouchingAFreedWord) {
  stall_policy::stalls.store(0);
  // clear_then_wake clears before it walks, so the poller always gets to kill the object while
  // the walk stalls: a long stall makes that certain on a loaded machine (the kill ends it).
  stall_policy::stall_ms.store(5000);
  const int touched = stalled_release_touches<TypeParam, pagewait::release_protocol::clear_then_wake>(4);
  stall_policy::stall_ms.store(50);
  EXPECT_GT(stall_policy::stalls.load(), 0);
  // Each iteration gives the poller up to 5 s per visit to kill the object: all four should be
  // caught; one is enough to show the detector works.
  EXPECT_GE(touched, 1) << "the quarantine detector missed clear_then_wake's write after the clear";
  std::printf("clear_then_wake: %d of 4 released words written after the object was freed\n", touched);
}

TYPED_TEST(Lifetime, DetectorStaysQuietForAtomicClear) {
  stall_policy::stalls.store(0);
  const int touched = stalled_release_touches<TypeParam, pagewait::release_protocol::atomic_clear>(4);
  EXPECT_GT(stall_policy::stalls.load(), 0);  // the walk did run, and stalled
  EXPECT_EQ(touched, 0) << "atomic_clear wrote to a word after the object was freed";
}

}  // namespace

// A thread-local destructor that waits after the thread's parker went back to the pool must not
// park on the pooled parker: a thread started meanwhile would take the same one, and the two
// would steal each other's tokens (a lost wake-up, or two owners of a lock).
namespace {
struct waits_at_thread_exit {
  std::atomic<std::uint32_t>* word = nullptr;
  const void** parker_seen = nullptr;
  std::atomic<bool>* waiting = nullptr;
  ~waits_at_thread_exit() {
    if (!word) return;
    *parker_seen = &pagewait::detail::native_parker::current();
    waiting->store(true);
    EXPECT_TRUE(pagewait::wait_bit_clear_for(*word, 1u, std::chrono::seconds(30)));
  }
};
}  // namespace

TEST(LifetimeParker, ThreadLocalDestructorThatWaitsGetsAParkerOfItsOwn) {
  std::atomic<std::uint32_t> word{1};
  const void* seen_in_destructor = nullptr;
  std::atomic<bool> waiting{false};
  std::thread a([&] {
    thread_local waits_at_thread_exit g;  // built before the parker: destroyed after its return
    g.word = &word;
    g.parker_seen = &seen_in_destructor;
    g.waiting = &waiting;
    (void)pagewait::detail::native_parker::current();  // the thread's first use of its parker
  });
  while (!waiting.load()) std::this_thread::yield();
  // A has returned its parker to the pool and now waits in its destructor. A new thread takes
  // the most recently pooled parker: A's.
  const void* seen_by_b = nullptr;
  std::thread b([&] { seen_by_b = &pagewait::detail::native_parker::current(); });
  b.join();
  EXPECT_NE(seen_by_b, seen_in_destructor);
  pagewait::clear_bit_and_wake(word, 1u);
  a.join();
  EXPECT_EQ(word.load(), 0u);
}
