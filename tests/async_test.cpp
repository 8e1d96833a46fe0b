// tests/async_test.cpp — asynchronous waits for a bit to clear (pagewait/async.hpp): the contract
// of async_wait, one clause per test, then the same clauses under concurrency.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <pagewait/async.hpp>
#include <pagewait/pagewait.hpp>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using pagewait::async_result;
using pagewait::async_start;

template <class W>
class AsyncWait : public ::testing::Test {};
using WordTypes = ::testing::Types<std::uint32_t, std::uint64_t>;
TYPED_TEST_SUITE(AsyncWait, WordTypes);

// What a callback saw: how often it ran, the last result, and on which thread.
struct record {
  std::atomic<int> calls{0};
  std::atomic<int> cleared{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> locked{0};
  std::thread::id thread;
};

template <class W>
void count(pagewait::async_wait<W>& w, async_result r) noexcept {
  auto* rec = static_cast<record*>(w.user_data());
  rec->thread = std::this_thread::get_id();
  (r == async_result::cleared  ? rec->cleared
   : r == async_result::locked ? rec->locked
                               : rec->cancelled)
      .fetch_add(1);
  rec->calls.fetch_add(1, std::memory_order_release);
}

TYPED_TEST(AsyncWait, ClearBitIsDoneAtOnceWithoutCallback) {
  using W = TypeParam;
  std::atomic<W> w{W(0b10)};
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  EXPECT_EQ(a.start_wait_clear(w, W(0b1)), async_start::done);
  EXPECT_FALSE(a.pending());
  EXPECT_EQ(w.load(), W(0b10)) << "a start that finds the bit clear must not touch the word";
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  EXPECT_EQ(rec.calls.load(), 0);
  EXPECT_FALSE(a.cancel()) << "nothing pending: nothing to cancel";
}

TYPED_TEST(AsyncWait, ClearCallsBackOnceOnTheReleasingThread) {
  using W = TypeParam;
  constexpr W B = W(0b100);
  std::atomic<W> w{B};
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  ASSERT_EQ(a.start_wait_clear(w, B), async_start::pending);
  EXPECT_TRUE(a.pending());
  EXPECT_EQ(pwtest::queued_on(w, B), 1u);
  EXPECT_EQ(w.load(), W(B | pagewait::waiters_bit<W>)) << "a queued waiter sets the waiters bit";
  EXPECT_EQ(rec.calls.load(), 0) << "called back before the bit cleared";

  std::thread::id releaser;
  std::thread t([&] {
    releaser = std::this_thread::get_id();
    pagewait::clear_bit_and_wake(w, B);
    // The callback has run before the release returns (no executor: it runs on this thread).
    EXPECT_EQ(rec.calls.load(), 1);
  });
  t.join();
  EXPECT_EQ(rec.calls.load(), 1);
  EXPECT_EQ(rec.cleared.load(), 1);
  EXPECT_EQ(rec.thread, releaser);
  EXPECT_FALSE(a.pending());
  EXPECT_EQ(w.load(), W(0)) << "the last waiter gone: the release clears the waiters bit too";
  EXPECT_EQ(pwtest::queued_on(w), 0u);
}

TYPED_TEST(AsyncWait, UnlockOfALockBitCallsBack) {
  using W = TypeParam;
  constexpr W L = W(1);
  std::atomic<W> w{0};
  pagewait::lock_bit(w, L);
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  ASSERT_EQ(a.start_wait_clear(w, L), async_start::pending);
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(rec.cleared.load(), 1);
  EXPECT_EQ(w.load(), W(0));
}

// Woken means cleared: while the lock passes from owner to owner by hand-off, the bit never
// clears and the asynchronous reader is not called; the unlock that clears it calls it.
TEST(AsyncWaitHandoff, NotCalledWhileTheLockIsHandedOff) {
  constexpr std::uint32_t L = 1;
  const pagewait::fairness_settings saved = pagewait::get_fairness();
  pagewait::set_fairness({0, 0ns});  // every lock waiter has earned a hand-off
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, L);
  record rec;
  pagewait::async_wait<std::uint32_t> a(&count<std::uint32_t>, &rec);
  ASSERT_EQ(a.start_wait_clear(w, L), async_start::pending);
  std::atomic<bool> owns{false}, may_unlock{false};
  std::thread locker([&] {
    pagewait::lock_bit(w, L);
    owns = true;
    while (!may_unlock) std::this_thread::yield();
    pagewait::unlock_bit(w, L);
  });
  ASSERT_TRUE(pwtest::wait_queued(w, 2, L));  // the reader and the locker
  pagewait::unlock_bit(w, L);                 // hands off to the locker
  ASSERT_TRUE(pwtest::eventually([&] { return owns.load(); }));
  EXPECT_TRUE(w.load() & L) << "handed off: the bit never cleared";
  EXPECT_EQ(rec.calls.load(), 0) << "an asynchronous reader was called while the lock was handed off";
  EXPECT_TRUE(a.pending());
  EXPECT_EQ(pwtest::queued_on(w, L), 1u) << "the reader must stay queued through the hand-off";
  may_unlock = true;
  locker.join();
  EXPECT_EQ(rec.cleared.load(), 1);
  EXPECT_EQ(rec.calls.load(), 1);
  pagewait::set_fairness(saved);
}

TYPED_TEST(AsyncWait, CancelWithdrawsAQueuedWait) {
  using W = TypeParam;
  constexpr W B = W(0b10);
  std::atomic<W> w{B};
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  ASSERT_EQ(a.start_wait_clear(w, B), async_start::pending);
  EXPECT_TRUE(a.cancel());
  EXPECT_FALSE(a.pending());
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  EXPECT_FALSE(a.cancel()) << "a second cancel has nothing to withdraw";
  pagewait::clear_bit_and_wake(w, B);
  EXPECT_EQ(rec.calls.load(), 0) << "a callback after a cancel that returned true";
  EXPECT_EQ(w.load(), W(0)) << "the waiters bit left by the withdrawn waiter goes with the next release";

  // The waiter can be started again at once, and works as new.
  w.fetch_or(B);
  ASSERT_EQ(a.start_wait_clear(w, B), async_start::pending);
  pagewait::clear_bit_and_wake(w, B);
  EXPECT_EQ(rec.cleared.load(), 1);
  EXPECT_EQ(rec.cancelled.load(), 0);
}

TYPED_TEST(AsyncWait, CancelAfterTheCallbackIsFalse) {
  using W = TypeParam;
  std::atomic<W> w{W(1)};
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  ASSERT_EQ(a.start_wait_clear(w, W(1)), async_start::pending);
  pagewait::clear_bit_and_wake(w, W(1));
  EXPECT_FALSE(a.cancel());
  EXPECT_EQ(rec.calls.load(), 1);
}

TYPED_TEST(AsyncWait, BadInputThrowsAndLeavesTheWord) {
  using W = TypeParam;
  const W before = W(0b1011);
  std::atomic<W> w{before};
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  EXPECT_THROW(a.start_wait_clear(w, W(0)), std::invalid_argument);
  EXPECT_THROW(a.start_wait_clear(w, W(0b11)), std::invalid_argument);
  EXPECT_THROW(a.start_wait_clear(w, pagewait::waiters_bit<W>), std::invalid_argument);
  EXPECT_EQ(w.load(), before);
  EXPECT_FALSE(a.pending());
  EXPECT_EQ(pwtest::queued_on(w), 0u);

  ASSERT_EQ(a.start_wait_clear(w, W(0b1000)), async_start::pending);
  const W queued = w.load();
  try {
    a.start_wait_clear(w, W(0b10));
    ADD_FAILURE() << "starting a pending waiter did not throw";
  } catch (const pagewait::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("pending"), std::string::npos) << e.what();
  }
  EXPECT_EQ(w.load(), queued);
  EXPECT_EQ(pwtest::queued_on(w), 1u) << "the failed start queued a second node";
  EXPECT_TRUE(a.cancel());
  EXPECT_THROW(pagewait::async_wait<W>(nullptr), std::invalid_argument);
}

// The callback may destroy its waiter and free the object whose word it waited on: the release
// touches neither once the callbacks begin (ASan reports it if it does).
struct page {
  std::atomic<std::uint32_t> flags{0};
  std::atomic<int> refs{0};
};

void free_all(pagewait::async_wait<std::uint32_t>& w, async_result r) noexcept {
  auto* p = static_cast<page*>(w.user_data());
  EXPECT_EQ(r, async_result::cleared);
  delete &w;
  if (p->refs.fetch_sub(1) == 1) delete p;
}

TEST(AsyncWaitLifetime, CallbacksFreeTheirWaitersAndThePage) {
  constexpr std::uint32_t WB = 0b10;
  for (int round = 0; round < pwtest::scaled(200); ++round) {
    auto* p = new page;
    p->flags.store(WB);
    const int n = 1 + round % 17;
    p->refs.store(n);
    for (int i = 0; i < n; ++i) {
      auto* a = new pagewait::async_wait<std::uint32_t>(&free_all, p);
      ASSERT_EQ(a->start_wait_clear(p->flags, WB), async_start::pending);
    }
    std::thread t([p] { pagewait::clear_bit_and_wake(p->flags, WB); });
    t.join();
  }
}

// A release made inside a callback does not recurse: its callbacks run after the current one
// returns, on the same thread, before the outermost release returns.
struct chain {
  std::atomic<std::uint32_t> first{1};
  std::atomic<std::uint32_t> second{1};
  std::vector<std::string> log;
  int depth = 0;
};

void chain_first(pagewait::async_wait<std::uint32_t>& w, async_result) noexcept {
  auto* c = static_cast<chain*>(w.user_data());
  c->log.push_back("first begins");
  ++c->depth;
  pagewait::clear_bit_and_wake(c->second, 1u);  // completes the second waiter
  c->log.push_back("first ends");
  --c->depth;
}
void chain_second(pagewait::async_wait<std::uint32_t>& w, async_result) noexcept {
  auto* c = static_cast<chain*>(w.user_data());
  c->log.push_back(c->depth == 0 ? "second at depth 0" : "second nested");
}

TEST(AsyncWaitNesting, ReleasesInCallbacksRunAfterTheCurrentCallback) {
  chain c;
  pagewait::async_wait<std::uint32_t> a(&chain_first, &c), b(&chain_second, &c);
  ASSERT_EQ(a.start_wait_clear(c.first, 1u), async_start::pending);
  ASSERT_EQ(b.start_wait_clear(c.second, 1u), async_start::pending);
  pagewait::clear_bit_and_wake(c.first, 1u);
  EXPECT_EQ(c.log, (std::vector<std::string>{"first begins", "first ends", "second at depth 0"}));
  EXPECT_FALSE(b.pending());
}

// No pagewait lock is held while a callback runs: it may start waits, lock and release bits of
// words in the same bucket as the one just released (a held bucket lock would deadlock here).
struct same_bucket_ctx {
  pwtest::same_bucket_words<std::uint32_t>* words;
  pagewait::async_wait<std::uint32_t>* next;
  record* rec;
};

void uses_the_bucket(pagewait::async_wait<std::uint32_t>& w, async_result) noexcept {
  auto* c = static_cast<same_bucket_ctx*>(w.user_data());
  std::atomic<std::uint32_t>& other = *c->words->words[1];
  pagewait::lock_bit(other, 1u);
  EXPECT_EQ(c->next->start_wait_clear(other, 1u), async_start::pending);
  pagewait::unlock_bit(other, 1u);  // completes `next`, after this callback
  c->rec->calls.fetch_add(1);
}

TEST(AsyncWaitNesting, CallbacksRunWithNoBucketLockHeld) {
  pwtest::same_bucket_words<std::uint32_t> words(2);
  ASSERT_EQ(words.words.size(), 2u);
  record rec, next_rec;
  pagewait::async_wait<std::uint32_t> next(&count<std::uint32_t>, &next_rec);
  same_bucket_ctx ctx{&words, &next, &rec};
  pagewait::async_wait<std::uint32_t> a(&uses_the_bucket, &ctx);
  std::atomic<std::uint32_t>& first = *words.words[0];
  first.store(1);
  ASSERT_EQ(a.start_wait_clear(first, 1u), async_start::pending);
  pagewait::clear_bit_and_wake(first, 1u);
  EXPECT_EQ(rec.calls.load(), 1);
  EXPECT_EQ(next_rec.cleared.load(), 1);
}

// A callback may start its waiter again (a chain of waits on successive bits).
void restart(pagewait::async_wait<std::uint32_t>& w, async_result r) noexcept {
  auto* state = static_cast<std::pair<std::atomic<std::uint32_t>*, int>*>(w.user_data());
  EXPECT_EQ(r, async_result::cleared);
  if (++state->second < 3) {
    EXPECT_EQ(w.start_wait_clear(*state->first, 1u << state->second), async_start::pending);
  }
}

TEST(AsyncWaitNesting, ACallbackMayStartItsWaiterAgain) {
  std::atomic<std::uint32_t> w{0b111};
  std::pair<std::atomic<std::uint32_t>*, int> state{&w, 0};
  pagewait::async_wait<std::uint32_t> a(&restart, &state);
  ASSERT_EQ(a.start_wait_clear(w, 1u), async_start::pending);
  pagewait::clear_bit_and_wake(w, 1u);
  EXPECT_EQ(state.second, 1);
  EXPECT_TRUE(a.pending());
  pagewait::clear_bit_and_wake(w, 2u);
  EXPECT_EQ(state.second, 2);
  pagewait::clear_bit_and_wake(w, 4u);
  EXPECT_EQ(state.second, 3);
  EXPECT_FALSE(a.pending());
  EXPECT_EQ(w.load(), 0u);
}

TEST(AsyncWaitLifetime, DestroyingAPendingWaiterWithdrawsIt) {
  std::atomic<std::uint32_t> w{1};
  record rec;
  {
    pagewait::async_wait<std::uint32_t> a(&count<std::uint32_t>, &rec);
    ASSERT_EQ(a.start_wait_clear(w, 1u), async_start::pending);
  }
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  pagewait::clear_bit_and_wake(w, 1u);
  EXPECT_EQ(rec.calls.load(), 0);
}

// A callback that destroys (or cancels) another waiter whose completion is queued behind it on
// this thread: the release had claimed that waiter, but its callback had not begun, so cancel()
// takes it off this thread's completion list and returns true; its callback never runs.
struct due_ctx {
  pagewait::async_wait<std::uint32_t>* victim;
  record* victim_rec;
  int victim_calls_seen = -1;
};
void destroys_the_next(pagewait::async_wait<std::uint32_t>& w, async_result) noexcept {
  auto* c = static_cast<due_ctx*>(w.user_data());
  EXPECT_TRUE(c->victim->pending());
  delete c->victim;  // its destructor cancels: taken off the list, no abort
  c->victim = nullptr;
  c->victim_calls_seen = c->victim_rec->calls.load();
}

TEST(AsyncWaitLifetime, ACallbackMayDestroyAWaiterQueuedBehindIt) {
  std::atomic<std::uint32_t> w{1};
  record rec;
  due_ctx ctx{new pagewait::async_wait<std::uint32_t>(&count<std::uint32_t>, &rec), &rec};
  pagewait::async_wait<std::uint32_t> first(&destroys_the_next, &ctx);
  ASSERT_EQ(first.start_wait_clear(w, 1u), async_start::pending);
  ASSERT_EQ(ctx.victim->start_wait_clear(w, 1u), async_start::pending);
  pagewait::clear_bit_and_wake(w, 1u);
  EXPECT_EQ(ctx.victim, nullptr);
  EXPECT_EQ(ctx.victim_calls_seen, 0);
  EXPECT_EQ(rec.calls.load(), 0) << "the callback of a destroyed waiter ran";
}

// A pending waiter destroyed on another thread after a release claimed it, while its callback is
// due: the program aborts with a message instead of running the callback on a dead object. (The
// claim is provoked with a callback on the releasing thread that blocks until the other thread
// has tried; the callback of the victim is queued behind it.)
struct due_elsewhere {
  pagewait::async_wait<std::uint32_t>* victim;
};
void destroys_elsewhere(pagewait::async_wait<std::uint32_t>& w, async_result) noexcept {
  auto* c = static_cast<due_elsewhere*>(w.user_data());
  std::thread t([c] { delete c->victim; });
  t.join();
}

TEST(AsyncWaitDeathTest, DestroyingAWaiterWhoseCallbackIsDueElsewhereAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::atomic<std::uint32_t> w{1};
        record rec;
        due_elsewhere ctx{new pagewait::async_wait<std::uint32_t>(&count<std::uint32_t>, &rec)};
        pagewait::async_wait<std::uint32_t> first(&destroys_elsewhere, &ctx);
        (void)first.start_wait_clear(w, 1u);
        (void)ctx.victim->start_wait_clear(w, 1u);
        pagewait::clear_bit_and_wake(w, 1u);
      },
      "destroyed while pending");
}

// fork(): a wait pending in the parent is in no queue of the child. There, cancel() returns true
// at once, the waiter can be started again, and the child's own waits work.
TEST(AsyncWaitFork, AWaitPendingAtForkIsCancelledInTheChild) {
  std::atomic<std::uint32_t> w{1};
  record rec;
  pagewait::async_wait<std::uint32_t> a(&count<std::uint32_t>, &rec);
  ASSERT_EQ(a.start_wait_clear(w, 1u), async_start::pending);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = 0;
    if (!a.pending()) bad |= 1;
    if (!a.cancel()) bad |= 2;
    if (a.pending()) bad |= 4;
    std::atomic<std::uint32_t> v{1};
    if (a.start_wait_clear(v, 1u) != async_start::pending) bad |= 8;
    pagewait::clear_bit_and_wake(v, 1u);
    if (rec.cleared.load() != 1) bad |= 16;
    pagewait::clear_bit_and_wake(w, 1u);  // the parent's waiter is not called in the child
    if (rec.calls.load() != 1) bad |= 32;
    std::_Exit(bad);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child failures (bit mask)";
  // The parent's wait is untouched.
  EXPECT_TRUE(a.pending());
  pagewait::clear_bit_and_wake(w, 1u);
  EXPECT_EQ(rec.cleared.load(), 1);
}

// Blocking and asynchronous waiters on one bit, all queued, released by another thread, round
// after round: every pending start gets exactly one callback, with `cleared`, and every blocking
// waiter returns, from the same release.
TYPED_TEST(AsyncWait, SharesEveryReleaseWithBlockingWaiters) {
  using W = TypeParam;
  constexpr W B = W(1) << 5;
  constexpr int async_n = 16, blocking_n = 3;
  const int rounds = pwtest::scaled(150);
  std::atomic<W> w{0};
  std::vector<record> recs(async_n);
  std::vector<std::unique_ptr<pagewait::async_wait<W>>> waiters;
  for (int i = 0; i < async_n; ++i)
    waiters.push_back(std::make_unique<pagewait::async_wait<W>>(&count<W>, &recs[i]));
  for (int r = 0; r < rounds; ++r) {
    w.fetch_or(B);
    for (auto& a : waiters) ASSERT_EQ(a->start_wait_clear(w, B), async_start::pending);
    std::vector<std::thread> blockers;
    for (int i = 0; i < blocking_n; ++i) blockers.emplace_back([&] { pagewait::wait_bit_clear(w, B); });
    ASSERT_TRUE(pwtest::wait_queued(w, std::size_t(async_n + blocking_n), B));
    std::thread releaser([&] { pagewait::clear_bit_and_wake(w, B); });
    releaser.join();
    for (auto& t : blockers) t.join();
    for (int i = 0; i < async_n; ++i) {
      ASSERT_EQ(recs[std::size_t(i)].cleared.load(), r + 1) << "waiter " << i << ", round " << r;
      ASSERT_FALSE(waiters[std::size_t(i)]->pending());
    }
  }
  for (auto& rec : recs) EXPECT_EQ(rec.cancelled.load(), 0);
  EXPECT_EQ(w.load(), W(0));
}

// Cancel races the clear: exactly one of "cancel returned true" and "the callback ran", every
// round; the waiter is reused only once both sides are done. The releaser is a thread that stays
// up and clears on a signal; the cancel comes after a varying delay, so that both outcomes occur.
TEST(AsyncWaitRace, CancelRacesTheClear) {
  constexpr std::uint32_t B = 0b100;
  const int rounds = pwtest::scaled(3000);
  std::atomic<std::uint32_t> w{0};
  record rec;
  pagewait::async_wait<std::uint32_t> a(&count<std::uint32_t>, &rec);
  std::atomic<int> go{0}, done{0};
  std::thread releaser([&] {
    for (int r = 1; r <= rounds; ++r) {
      while (go.load(std::memory_order_acquire) < r) pwtest::native::cpu_relax();
      pagewait::clear_bit_and_wake(w, B);
      done.store(r, std::memory_order_release);
    }
  });
  int withdrawn_n = 0, called_n = 0;
  for (int r = 1; r <= rounds; ++r) {
    w.fetch_or(B);
    ASSERT_EQ(a.start_wait_clear(w, B), async_start::pending);
    const int calls_before = rec.calls.load();
    go.store(r, std::memory_order_release);
    for (int i = 0; i < (r * 37) % 400; ++i) pwtest::native::cpu_relax();
    const bool withdrawn = a.cancel();
    while (done.load(std::memory_order_acquire) < r) pwtest::native::cpu_relax();
    const int got = rec.calls.load() - calls_before;
    if (withdrawn) {
      ++withdrawn_n;
      ASSERT_EQ(got, 0) << "round " << r << ": a callback after a cancel that returned true";
    } else {
      ++called_n;
      ASSERT_EQ(got, 1) << "round " << r << ": cancel said too late, but no callback came";
    }
    ASSERT_FALSE(a.pending());
  }
  releaser.join();
  EXPECT_EQ(rec.cancelled.load(), 0) << "no hand-off here: a callback can only say cleared";
  EXPECT_EQ(withdrawn_n + called_n, rounds);
  EXPECT_EQ(w.load(), 0u);
  RecordProperty("withdrawn", withdrawn_n);
  RecordProperty("called_back", called_n);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Coroutines: co_await wait_bit_clear_async(word, bit, scheduler[, stop]).

namespace {

// A one-thread event loop: post() queues a handle from any thread; the loop resumes them in order.
class loop {
 public:
  loop() : thread_([this] { run(); }) {}
  ~loop() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void post(std::coroutine_handle<> h) noexcept {
    {
      std::lock_guard<std::mutex> g(m_);
      q_.push_back(h);
    }
    cv_.notify_one();
  }
  std::thread::id id() const { return thread_.get_id(); }

 private:
  void run() {
    std::unique_lock<std::mutex> g(m_);
    for (;;) {
      cv_.wait(g, [&] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;
      const std::coroutine_handle<> h = q_.front();
      q_.pop_front();
      g.unlock();
      h.resume();
      g.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::coroutine_handle<>> q_;
  bool stop_ = false;
  std::thread thread_;
};

using pwtest::detached;

struct outcome {
  std::atomic<int> done{0};
  std::atomic<int> cleared{0};
  std::thread::id resumed_on;
};

detached waits(std::atomic<std::uint32_t>& w, std::uint32_t bit, loop& l, outcome& o,
               std::stop_token stop = {}) {
  const bool ok = co_await pagewait::wait_bit_clear_async(w, bit, l, std::move(stop));
  o.resumed_on = std::this_thread::get_id();
  if (ok) o.cleared.fetch_add(1);
  o.done.fetch_add(1, std::memory_order_release);
}

}  // namespace

TEST(AsyncCoroutine, AClearBitDoesNotSuspend) {
  loop l;
  std::atomic<std::uint32_t> w{0b10};
  outcome o;
  waits(w, 0b1, l, o);
  EXPECT_EQ(o.done.load(), 1) << "a clear bit must not suspend";
  EXPECT_EQ(o.cleared.load(), 1);
  EXPECT_EQ(o.resumed_on, std::this_thread::get_id());
  EXPECT_EQ(w.load(), 0b10u);
}

TEST(AsyncCoroutine, ResumesThroughTheSchedulerAfterTheClear) {
  loop l;
  std::atomic<std::uint32_t> w{0b100};
  outcome o;
  waits(w, 0b100, l, o);
  EXPECT_EQ(o.done.load(), 0);
  EXPECT_EQ(pwtest::queued_on(w), 1u);
  std::thread releaser([&] { pagewait::clear_bit_and_wake(w, 0b100u); });
  releaser.join();
  ASSERT_TRUE(pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == 1; }));
  EXPECT_EQ(o.cleared.load(), 1);
  EXPECT_EQ(o.resumed_on, l.id()) << "resumed on the releasing thread instead of the scheduler";
}

TEST(AsyncCoroutine, StopRequestedBeforeReturnsFalseWithoutQueueing) {
  loop l;
  std::atomic<std::uint32_t> w{1};
  std::stop_source stop;
  stop.request_stop();
  outcome o;
  waits(w, 1, l, o, stop.get_token());
  EXPECT_EQ(o.done.load(), 1);
  EXPECT_EQ(o.cleared.load(), 0);
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  EXPECT_EQ(w.load(), 1u) << "nothing queued: the waiters bit must not be set";
  // A clear bit is reported clear even with stop requested.
  std::atomic<std::uint32_t> clear{0};
  waits(clear, 1, l, o, stop.get_token());
  EXPECT_EQ(o.cleared.load(), 1);
}

TEST(AsyncCoroutine, StopWhileSuspendedWithdrawsTheWait) {
  loop l;
  std::atomic<std::uint32_t> w{1};
  std::stop_source stop;
  outcome o;
  waits(w, 1, l, o, stop.get_token());
  ASSERT_EQ(pwtest::queued_on(w), 1u);
  stop.request_stop();
  ASSERT_TRUE(pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == 1; }));
  EXPECT_EQ(o.cleared.load(), 0);
  EXPECT_EQ(o.resumed_on, l.id());
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  pagewait::clear_bit_and_wake(w, 1u);
  EXPECT_EQ(o.done.load(), 1) << "resumed twice";
}

TEST(AsyncCoroutine, ManyCoroutinesOneClear) {
  loop l;
  std::atomic<std::uint32_t> w{1u << 7};
  const int n = pwtest::scaled(1000);
  outcome o;
  for (int i = 0; i < n; ++i) waits(w, 1u << 7, l, o);
  EXPECT_TRUE(pwtest::wait_queued(w, std::size_t(n)));
  std::thread releaser([&] { pagewait::clear_bit_and_wake(w, 1u << 7); });
  releaser.join();
  ASSERT_TRUE(pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == n; }));
  EXPECT_EQ(o.cleared.load(), n);
  EXPECT_EQ(w.load(), 0u);
}

// Stop races the clear, round after round: each coroutine resumes exactly once, with true or
// false, and leaves nothing queued.
TEST(AsyncCoroutine, StopRacesTheClear) {
  loop l;
  std::atomic<std::uint32_t> w{0};
  const int rounds = pwtest::scaled(2000);
  outcome o;
  int stopped = 0;
  for (int r = 0; r < rounds; ++r) {
    w.fetch_or(1u);
    std::stop_source stop;
    const int before = o.cleared.load();
    waits(w, 1u, l, o, stop.get_token());
    std::thread releaser([&] { pagewait::clear_bit_and_wake(w, 1u); });
    for (int i = 0; i < (r * 53) % 500; ++i) pwtest::native::cpu_relax();
    stop.request_stop();
    releaser.join();
    ASSERT_TRUE(pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == r + 1; }))
        << "round " << r << ": never resumed";
    stopped += o.cleared.load() == before;
    ASSERT_EQ(pwtest::queued_on(w), 0u);
  }
  EXPECT_EQ(o.done.load(), rounds) << "a coroutine resumed twice";
  EXPECT_EQ(w.load(), 0u);
  RecordProperty("stopped", stopped);
}

// Two threads cancel one waiter at once: at most one cancel returns true, and the queue is intact.
TEST(AsyncWaitRace, ConcurrentCancelsWithdrawOnce) {
  pwtest::same_bucket_words<std::uint32_t> words(2);
  std::atomic<std::uint32_t>& w = *words.words[0];
  std::atomic<std::uint32_t>& other = *words.words[1];
  record rec, other_rec;
  pagewait::async_wait<std::uint32_t> a(&count<std::uint32_t>, &rec), b(&count<std::uint32_t>, &other_rec);
  for (int r = 0; r < pwtest::scaled(2000); ++r) {
    w.store(1);
    other.store(1);
    ASSERT_EQ(b.start_wait_clear(other, 1u), async_start::pending);  // shares the bucket queue
    ASSERT_EQ(a.start_wait_clear(w, 1u), async_start::pending);
    std::atomic<int> wins{0};
    std::thread t([&] { wins.fetch_add(a.cancel()); });
    wins.fetch_add(a.cancel());
    t.join();
    ASSERT_EQ(wins.load(), 1) << "round " << r;
    ASSERT_EQ(pwtest::queued_on(other), 1u) << "a second unlink damaged the bucket queue";
    pagewait::clear_bit_and_wake(other, 1u);
    ASSERT_EQ(other_rec.cleared.load(), r + 1);
    pagewait::clear_bit_and_wake(w, 1u);
  }
  EXPECT_EQ(rec.calls.load(), 0);
}

// fork() from inside a callback: the completions queued behind it (the same release) belong to
// the parent; the child, which returns from the callback into the release, runs none of them, and
// in the child cancel() withdraws those waiters.
struct fork_ctx {
  pid_t child = -1;  // in the parent: the child's pid; in the child: 0
};
void forks(pagewait::async_wait<std::uint32_t>& w, async_result) noexcept {
  static_cast<fork_ctx*>(w.user_data())->child = fork();
}

TEST(AsyncWaitFork, ForkInACallbackLeavesTheRestOfTheReleaseToTheParent) {
  std::atomic<std::uint32_t> w{1};
  record rec;
  pagewait::async_wait<std::uint32_t> behind(&count<std::uint32_t>, &rec);
  fork_ctx ctx;
  pagewait::async_wait<std::uint32_t> first(&forks, &ctx);
  ASSERT_EQ(first.start_wait_clear(w, 1u), async_start::pending);
  ASSERT_EQ(behind.start_wait_clear(w, 1u), async_start::pending);
  pagewait::clear_bit_and_wake(w, 1u);  // forks inside the first callback; both processes return here
  if (ctx.child == 0) {
    int bad = 0;
    if (rec.calls.load() != 0) bad |= 1;  // the parent's queued callback ran in the child
    if (!behind.cancel()) bad |= 2;
    std::_Exit(bad);
  }
  ASSERT_GT(ctx.child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(ctx.child, &status, 0), ctx.child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "child failures (bit mask): 1 the parent's callback ran, 2 cancel failed";
  EXPECT_EQ(rec.cleared.load(), 1) << "the parent's second callback must still run, once";
}

// A cancel() on another thread while the start is still setting the waiter up: it returns false
// (the start decides) or, once the wait is queued, true; never does a withdrawn wait get a
// callback, and the queue it shares with another waiter stays intact.
TEST(AsyncWaitRace, CancelRacesTheStart) {
  pwtest::same_bucket_words<std::uint32_t> words(2);
  std::atomic<std::uint32_t>& w = *words.words[0];
  std::atomic<std::uint32_t>& other = *words.words[1];
  record rec, other_rec;
  pagewait::async_wait<std::uint32_t> a(&count<std::uint32_t>, &rec), b(&count<std::uint32_t>, &other_rec);
  const int rounds = pwtest::scaled(3000);
  int withdrawn_n = 0, called_n = 0;
  for (int r = 0; r < rounds; ++r) {
    w.store(1);
    other.store(1);
    ASSERT_EQ(b.start_wait_clear(other, 1u), async_start::pending);
    std::atomic<bool> go{true};
    std::atomic<int> withdrawn{0};
    std::thread canceller([&] {
      while (go.load(std::memory_order_acquire))
        if (a.cancel()) withdrawn.fetch_add(1);
    });
    for (int i = 0; i < (r * 29) % 300; ++i) pwtest::native::cpu_relax();
    const int calls_before = rec.calls.load();
    ASSERT_EQ(a.start_wait_clear(w, 1u), async_start::pending);
    for (int i = 0; i < (r * 31) % 300; ++i) pwtest::native::cpu_relax();
    go.store(false, std::memory_order_release);
    canceller.join();
    ASSERT_LE(withdrawn.load(), 1);
    ASSERT_EQ(pwtest::queued_on(other), 1u) << "round " << r << ": the shared queue was damaged";
    pagewait::clear_bit_and_wake(w, 1u);
    pagewait::clear_bit_and_wake(other, 1u);
    const int got = rec.calls.load() - calls_before;
    ASSERT_EQ(got + withdrawn.load(), 1)
        << "round " << r << ": callbacks " << got << ", withdrawn " << withdrawn;
    ASSERT_EQ(other_rec.cleared.load(), r + 1);
    ASSERT_FALSE(a.pending());
    withdrawn_n += withdrawn.load();
    called_n += got;
  }
  RecordProperty("withdrawn", withdrawn_n);
  RecordProperty("called_back", called_n);
}

// ---------------------------------------------------------------------------------------------
// Asynchronous locks: async_wait::start_lock and co_await lock_bit_async.

TYPED_TEST(AsyncWait, StartLockOnAFreeBitIsDoneAndOwned) {
  using W = TypeParam;
  constexpr W L = W(0b100);
  std::atomic<W> w{W(0b1)};
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  EXPECT_EQ(a.start_lock(w, L), async_start::done);
  EXPECT_EQ(w.load(), W(0b101)) << "done means the caller holds the bit";
  EXPECT_FALSE(a.pending());
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(w.load(), W(0b1));
  EXPECT_EQ(rec.calls.load(), 0);
}

TYPED_TEST(AsyncWait, UnlockGrantsAPendingLockOnTheUnlockingThread) {
  using W = TypeParam;
  constexpr W L = W(1) << (sizeof(W) * 8 - 2);  // the highest bit under the waiters bit
  std::atomic<W> w{0};
  pagewait::lock_bit(w, L);
  pagewait::disown_bit(w, L);  // unlocked by another thread below
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  ASSERT_EQ(a.start_lock(w, L), async_start::pending);
  EXPECT_TRUE(a.pending());
  EXPECT_EQ(pwtest::queued_on(w, L), 1u);
  std::thread::id unlocker;
  std::thread t([&] {
    unlocker = std::this_thread::get_id();
    pagewait::unlock_bit(w, L);
    // Called inside unlock_bit, so it has run by now.
    EXPECT_EQ(rec.locked.load(), 1);
  });
  t.join();
  EXPECT_EQ(rec.calls.load(), 1);
  EXPECT_EQ(rec.locked.load(), 1);
  EXPECT_EQ(rec.thread, unlocker);
  EXPECT_FALSE(a.pending());
  EXPECT_EQ(w.load(), L) << "locked: the waiter owns the bit, and nobody else waits";
  EXPECT_FALSE(pagewait::try_lock_bit(w, L));
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(w.load(), W(0));
}

TYPED_TEST(AsyncWait, CancelWithdrawsAQueuedLockWait) {
  using W = TypeParam;
  constexpr W L = W(0b10);
  std::atomic<W> w{0};
  pagewait::lock_bit(w, L);
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  ASSERT_EQ(a.start_lock(w, L), async_start::pending);
  EXPECT_TRUE(a.cancel());
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(rec.calls.load(), 0);
  EXPECT_EQ(w.load(), W(0)) << "a withdrawn lock wait takes no lock";
}

TYPED_TEST(AsyncWait, StartLockBadInputThrowsAndLeavesTheWord) {
  using W = TypeParam;
  const W before = W(0b1011);
  std::atomic<W> w{before};
  record rec;
  pagewait::async_wait<W> a(&count<W>, &rec);
  EXPECT_THROW(a.start_lock(w, W(0)), std::invalid_argument);
  EXPECT_THROW(a.start_lock(w, W(0b110)), std::invalid_argument);
  EXPECT_THROW(a.start_lock(w, pagewait::waiters_bit<W>), std::invalid_argument);
  EXPECT_EQ(w.load(), before);
  ASSERT_EQ(a.start_lock(w, W(0b10)), async_start::pending);
  const W queued = w.load();
  EXPECT_THROW(a.start_lock(w, W(0b100)), pagewait::usage_error);
  EXPECT_THROW(a.start_wait_clear(w, W(0b1)), pagewait::usage_error);
  EXPECT_EQ(w.load(), queued);
  EXPECT_EQ(pwtest::queued_on(w), 1u);
  EXPECT_TRUE(a.cancel());
}

// With every lock waiter earning a hand-off, an unlock hands the bit to the asynchronous lock
// waiter: the bit never clears, so a reader queued ahead of it is not called.
TEST(AsyncLockHandoff, AnEarnedHandoffGoesToTheAsyncWaiter) {
  constexpr std::uint32_t L = 1;
  const pagewait::fairness_settings saved = pagewait::get_fairness();
  pagewait::set_fairness({0, 0ns});
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, L);
  record reader, locker;
  pagewait::async_wait<std::uint32_t> r(&count<std::uint32_t>, &reader), a(&count<std::uint32_t>, &locker);
  ASSERT_EQ(r.start_wait_clear(w, L), async_start::pending);
  ASSERT_EQ(a.start_lock(w, L), async_start::pending);
  pagewait::unlock_bit(w, L);
  EXPECT_EQ(locker.locked.load(), 1);
  EXPECT_EQ(reader.calls.load(), 0) << "the bit was handed off, not cleared: the reader must wait on";
  EXPECT_EQ(pwtest::queued_on(w, L), 1u);
  EXPECT_TRUE(w.load() & L);
  pagewait::unlock_bit(w, L);  // the asynchronous owner's unlock clears it
  EXPECT_EQ(reader.cleared.load(), 1);
  EXPECT_EQ(w.load(), 0u);
  pagewait::set_fairness(saved);
}

// A lock waiter woken to race races inside the unlock that woke it: a callback on the same
// thread that unlocks and then tries to lock again cannot overtake it (were the race left to the
// completion list, behind the running callback, that callback would win every time and the
// waiter, not queued, could never earn its hand-off).
struct relocker {
  std::atomic<std::uint32_t>* word;
  int sections = 0;
  int max_sections;
  record* other;  // the waiter that must not be overtaken
  int other_done_at = -1;
};

void relock_until_pending(pagewait::async_wait<std::uint32_t>& w, async_result r) noexcept {
  auto* c = static_cast<relocker*>(w.user_data());
  EXPECT_EQ(r, async_result::locked);
  for (;;) {
    ++c->sections;
    pagewait::unlock_bit(*c->word, 1u);
    if (c->other->calls.load() && c->other_done_at < 0) c->other_done_at = c->sections;
    if (c->sections == c->max_sections) return;
    if (w.start_lock(*c->word, 1u) == async_start::pending) return;
  }
}

TEST(AsyncLockFairness, AWokenLockWaiterRacesBeforeTheUnlockerCanRelock) {
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, 1u);
  record other;
  relocker ctx{&w, 0, 1000, &other};
  pagewait::async_wait<std::uint32_t> x(&relock_until_pending, &ctx), a(&count<std::uint32_t>, &other);
  ASSERT_EQ(x.start_lock(w, 1u), async_start::pending);  // first in the queue
  ASSERT_EQ(a.start_lock(w, 1u), async_start::pending);
  pagewait::unlock_bit(w, 1u);  // wakes x to race; x wins, and its callback runs (below)
  // x's first unlock woke `a`, which raced inside that unlock and took the bit: x's next start
  // is pending behind it, and a's callback ran once x's callback returned.
  EXPECT_EQ(ctx.sections, 1) << "the unlocking callback overtook the lock waiter it had woken";
  EXPECT_EQ(other.locked.load(), 1);
  EXPECT_TRUE(x.pending());
  EXPECT_TRUE(w.load() & 1u);
  pagewait::unlock_bit(w, 1u);  // a's unlock: x gets the lock again and runs to its limit
  EXPECT_EQ(ctx.sections, ctx.max_sections);
  EXPECT_EQ(w.load(), 0u);
}

// A callback may cancel (or destroy) a lock waiter the same release served, whose callback is
// queued behind it: cancel() returns true, the waiter's callback never runs, and a lock the
// release had handed to it is unlocked on its behalf (here: to a blocking locker waiting next).
struct tears_down {
  std::unique_ptr<pagewait::async_wait<std::uint32_t>>* victim;
  bool cancel_result = false;
};

void destroy_the_victim(pagewait::async_wait<std::uint32_t>& w, async_result r) noexcept {
  auto* c = static_cast<tears_down*>(w.user_data());
  EXPECT_EQ(r, async_result::cleared);
  c->cancel_result = (*c->victim)->cancel();
  c->victim->reset();  // destroying it is fine now: it is no longer pending
}

TEST(AsyncLockLifetime, ACallbackMayTearDownALockWaiterServedByTheSameRelease) {
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, 1u);
  record victim_rec;
  auto victim = std::make_unique<pagewait::async_wait<std::uint32_t>>(&count<std::uint32_t>, &victim_rec);
  tears_down ctx{&victim};
  pagewait::async_wait<std::uint32_t> reader(&destroy_the_victim, &ctx);
  ASSERT_EQ(reader.start_wait_clear(w, 1u), async_start::pending);  // queued first: called first
  ASSERT_EQ(victim->start_lock(w, 1u), async_start::pending);
  // The unlock clears the bit (no hand-off earned), wakes the reader, and wakes the lock waiter to
  // race: it races inside the unlock and wins, so its `locked` callback is queued behind the
  // reader's, which cancels it and destroys it.
  pagewait::unlock_bit(w, 1u);
  EXPECT_TRUE(ctx.cancel_result) << "the victim's callback was still queued on this thread";
  EXPECT_EQ(victim_rec.calls.load(), 0);
  EXPECT_FALSE(victim);
  EXPECT_EQ(w.load(), 0u) << "the lock granted to the cancelled waiter must be unlocked for it";
  EXPECT_EQ(pwtest::queued_on(w), 0u);
}

TEST(AsyncLockLifetime, DestroyingAPendingLockWaiterWithdrawsIt) {
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, 1u);
  record rec;
  {
    pagewait::async_wait<std::uint32_t> a(&count<std::uint32_t>, &rec);
    ASSERT_EQ(a.start_lock(w, 1u), async_start::pending);
  }
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  pagewait::unlock_bit(w, 1u);
  EXPECT_EQ(rec.calls.load(), 0);
  EXPECT_EQ(w.load(), 0u);
}

// Mutual exclusion under contention: threads in lock_bit and asynchronous lockers (each callback
// does its critical section, unlocks, and starts again until its quota is done) share one bit.
// A plain counter guarded only by the bit must come out exact, and TSan must see no race on it:
// a `locked` callback is ordered after the previous owner's unlock.
struct async_locker {
  std::atomic<std::uint32_t>* word;
  std::uint64_t* counter;
  std::atomic<int>* inside;
  int left;
  std::atomic<int>* finished;
  pagewait::async_wait<std::uint32_t>* self;
  int callbacks = 0;  // `locked` callbacks (each a pending start granted)
};

void critical_section(std::atomic<int>& inside, std::uint64_t& counter) {
  EXPECT_EQ(inside.fetch_add(1), 0) << "two owners";
  ++counter;
  for (int i = 0; i < 50; ++i) pwtest::native::cpu_relax();  // long enough for others to queue
  inside.fetch_sub(1);
}

void locked_then_again(pagewait::async_wait<std::uint32_t>& w, async_result r) noexcept {
  auto* c = static_cast<async_locker*>(w.user_data());
  EXPECT_EQ(r, async_result::locked);
  ++c->callbacks;
  for (;;) {
    critical_section(*c->inside, *c->counter);
    pagewait::unlock_bit(*c->word, 1u);
    if (--c->left == 0) {
      c->finished->fetch_add(1, std::memory_order_release);
      return;
    }
    // Started again from its own callback: `done` (taken at once) loops here; `pending` returns.
    if (c->self->start_lock(*c->word, 1u) == async_start::pending) return;
  }
}

TEST(AsyncLockRace, AsyncAndBlockingLockersShareOneBit) {
  std::atomic<std::uint32_t> w{0};
  std::uint64_t counter = 0;
  std::atomic<int> inside{0}, finished{0};
  const int per = pwtest::scaled(3000);
  constexpr int async_n = 4, threads_n = 2;
  std::vector<std::unique_ptr<pagewait::async_wait<std::uint32_t>>> waiters;
  std::vector<async_locker> ctx(async_n);
  for (int i = 0; i < async_n; ++i) {
    ctx[std::size_t(i)] = {&w, &counter, &inside, per, &finished, nullptr};
    waiters.push_back(
        std::make_unique<pagewait::async_wait<std::uint32_t>>(&locked_then_again, &ctx[std::size_t(i)]));
    ctx[std::size_t(i)].self = waiters.back().get();
  }
  // Held while every asynchronous locker starts, so each start is pending; each locker then
  // lives in its callbacks, on whichever thread unlocks.
  pagewait::lock_bit(w, 1u);
  for (int i = 0; i < async_n; ++i)
    ASSERT_EQ(waiters[std::size_t(i)]->start_lock(w, 1u), async_start::pending);
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < per; ++i) {
        pagewait::lock_bit(w, 1u);
        critical_section(inside, counter);
        pagewait::unlock_bit(w, 1u);
      }
    });
  pagewait::unlock_bit(w, 1u);
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(pwtest::eventually([&] { return finished.load(std::memory_order_acquire) == async_n; }))
      << "an asynchronous locker never got the lock back (a lost wake-up)";
  EXPECT_EQ(counter, std::uint64_t(per) * (async_n + threads_n));
  EXPECT_EQ(w.load(), 0u);
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  int granted = 0;
  for (const async_locker& c : ctx) {
    EXPECT_GE(c.callbacks, 1);
    granted += c.callbacks;
  }
  RecordProperty("locked_callbacks", granted);
}

namespace {
struct lock_outcome {
  std::atomic<int> done{0};
  std::atomic<int> owned{0};
  std::thread::id resumed_on;
};

detached locks(std::atomic<std::uint32_t>& w, std::uint32_t bit, loop& l, lock_outcome& o, bool unlock = true,
               std::stop_token stop = {}) {
  const bool ok = co_await pagewait::lock_bit_async(w, bit, l, std::move(stop));
  o.resumed_on = std::this_thread::get_id();
  if (ok) {
    o.owned.fetch_add(1);
    EXPECT_TRUE(w.load() & bit) << "resumed as the owner of a clear bit";
    if (unlock) pagewait::unlock_bit(w, bit);
  }
  o.done.fetch_add(1, std::memory_order_release);
}
}  // namespace

TEST(AsyncCoroutine, LockAFreeBitDoesNotSuspend) {
  loop l;
  std::atomic<std::uint32_t> w{0b10};
  lock_outcome o;
  locks(w, 0b1, l, o, false);
  EXPECT_EQ(o.done.load(), 1);
  EXPECT_EQ(o.owned.load(), 1);
  EXPECT_EQ(o.resumed_on, std::this_thread::get_id());
  EXPECT_EQ(w.load(), 0b11u);
}

TEST(AsyncCoroutine, LockResumesThroughTheSchedulerAsTheOwner) {
  loop l;
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, 1u);
  pagewait::disown_bit(w, 1u);  // unlocked by another thread below
  lock_outcome o;
  locks(w, 1u, l, o, false);
  EXPECT_EQ(o.done.load(), 0);
  std::thread unlocker([&] { pagewait::unlock_bit(w, 1u); });
  unlocker.join();
  ASSERT_TRUE(pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == 1; }));
  EXPECT_EQ(o.owned.load(), 1);
  EXPECT_EQ(o.resumed_on, l.id());
  EXPECT_EQ(w.load(), 1u) << "the coroutine owns the bit";
  pagewait::unlock_bit(w, 1u);
}

TEST(AsyncCoroutine, StopWhileWaitingForALockTakesNoLock) {
  loop l;
  std::atomic<std::uint32_t> w{0};
  pagewait::lock_bit(w, 1u);
  std::stop_source stop;
  lock_outcome o;
  locks(w, 1u, l, o, true, stop.get_token());
  ASSERT_EQ(pwtest::queued_on(w), 1u);
  stop.request_stop();
  ASSERT_TRUE(pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == 1; }));
  EXPECT_EQ(o.owned.load(), 0);
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  pagewait::unlock_bit(w, 1u);
  EXPECT_EQ(w.load(), 0u) << "a stopped lock wait must not take the bit";
  // A free bit is taken even with stop requested, as a bit found clear is reported clear.
  locks(w, 1u, l, o, true, stop.get_token());
  EXPECT_EQ(o.owned.load(), 1);
}

// Many coroutines on one loop take one lock in turn while threads contend for it: each gets it
// exactly once per round, nobody twice at a time.
TEST(AsyncCoroutine, ManyCoroutinesAndThreadsShareALock) {
  loop l;
  std::atomic<std::uint32_t> w{0};
  const int n = pwtest::scaled(300);
  lock_outcome o;
  pagewait::lock_bit(w, 1u);
  for (int i = 0; i < n; ++i) locks(w, 1u, l, o);
  EXPECT_TRUE(pwtest::wait_queued(w, std::size_t(n)));
  std::atomic<bool> stop{false};
  std::thread barger([&] {
    while (!stop.load(std::memory_order_acquire))
      if (pagewait::try_lock_bit(w, 1u)) pagewait::unlock_bit(w, 1u);
  });
  pagewait::unlock_bit(w, 1u);
  ASSERT_TRUE(pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == n; }))
      << o.done.load() << " of " << n << " coroutines got the lock";
  stop.store(true, std::memory_order_release);
  barger.join();
  EXPECT_EQ(o.owned.load(), n);
  EXPECT_EQ(w.load(), 0u);
}
