// tests/async_timeout_test.cpp — the timed awaitables of pagewait/async.hpp
// (wait_bit_clear_async_for/_until, try_lock_bit_async_for/_until) and resume_inline: the
// timeout rules, the timer's hand-shake with the decision (deterministically, with a scheduler
// whose timer the test fires by hand), and timers racing releases and stops.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <pagewait/async.hpp>
#include <pagewait/pagewait.hpp>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
// A withdrawn wait may leave the waiters bit set (stale, CONTRACT §1): the next slow release
// clears it. The tests compare the other bits.
constexpr std::uint32_t wb = pagewait::waiters_bit<std::uint32_t>;

// An event loop with timers: post() and arm_timer() from any thread; the loop thread resumes
// handles in order and fires due timers. With `timer_thread`, timers fire on a second thread
// instead, so that a fire() can run while the loop resumes coroutines and releases run elsewhere.
class timed_loop {
 public:
  explicit timed_loop(bool timer_thread = false)
      : loop_([this, timer_thread] { run(false, !timer_thread); }),
        timers_(timer_thread ? std::thread([this] { run(true, true); }) : std::thread()) {}
  ~timed_loop() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_all();
    loop_.join();
    if (timers_.joinable()) timers_.join();
  }
  void post(std::coroutine_handle<> h) noexcept {
    {
      std::lock_guard<std::mutex> g(m_);
      q_.push_back(h);
    }
    cv_.notify_all();
  }
  void arm_timer(pagewait::async_timer& t, clock_type::time_point at) noexcept {
    {
      std::lock_guard<std::mutex> g(m_);
      armed_.emplace(at, &t);
      ++arms_;
    }
    cv_.notify_all();
  }
  bool disarm_timer(pagewait::async_timer& t) noexcept {
    std::lock_guard<std::mutex> g(m_);
    for (auto it = armed_.begin(); it != armed_.end(); ++it)
      if (it->second == &t) {
        armed_.erase(it);
        return true;
      }
    return false;
  }
  std::thread::id id() const { return loop_.get_id(); }
  std::size_t armed() {
    std::lock_guard<std::mutex> g(m_);
    return armed_.size();
  }
  int arms() {
    std::lock_guard<std::mutex> g(m_);
    return arms_;
  }

 private:
  void run(bool timers_only, bool fires_timers) {
    std::unique_lock<std::mutex> g(m_);
    for (;;) {
      if (!timers_only && !q_.empty()) {
        const std::coroutine_handle<> h = q_.front();
        q_.pop_front();
        g.unlock();
        h.resume();
        g.lock();
        continue;
      }
      if (fires_timers && !armed_.empty() && armed_.begin()->first <= clock_type::now()) {
        // Taken out under the lock (from then on disarm_timer says false), fired outside it.
        pagewait::async_timer* t = armed_.begin()->second;
        armed_.erase(armed_.begin());
        g.unlock();
        t->fire();
        g.lock();
        continue;
      }
      if (stop_ && (timers_only || q_.empty())) return;
      if (fires_timers && !armed_.empty())
        cv_.wait_until(g, clock_type::time_point(armed_.begin()->first));  // a copy: it may be erased
      else
        cv_.wait(g);
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::coroutine_handle<>> q_;
  std::multimap<clock_type::time_point, pagewait::async_timer*> armed_;
  int arms_ = 0;
  bool stop_ = false;
  std::thread loop_;
  std::thread timers_;
};

// A scheduler the test drives by hand: post() keeps the handles, and the test decides when the
// timer "fires" (from then on disarm_timer says false) and when fire() actually runs.
struct manual_sched {
  std::vector<std::coroutine_handle<>> posted;
  pagewait::async_timer* timer = nullptr;
  bool fire_begun = false;
  int disarms = 0;
  // Runs inside arm_timer, after the timer is taken in: what happens between the arming and the
  // end of await_suspend (a stop request, the timer taken to fire, or fired at once).
  std::function<void(pagewait::async_timer&)> on_arm;
  void post(std::coroutine_handle<> h) noexcept { posted.push_back(h); }
  void arm_timer(pagewait::async_timer& t, clock_type::time_point) noexcept {
    timer = &t;
    if (on_arm) on_arm(t);
  }
  bool disarm_timer(pagewait::async_timer& t) noexcept {
    ++disarms;
    if (timer != &t || fire_begun) return false;
    timer = nullptr;
    return true;
  }
  void run_posted() {
    std::vector<std::coroutine_handle<>> now;
    now.swap(posted);
    for (auto h : now) h.resume();
  }
};

static_assert(pagewait::async_timed_scheduler<timed_loop>);
static_assert(pagewait::async_timed_scheduler<manual_sched>);
static_assert(!pagewait::async_timed_scheduler<pagewait::resume_inline>);

using pwtest::detached;

struct outcome {
  std::atomic<int> done{0};
  std::atomic<int> granted{0};
  std::atomic<std::thread::id> resumed_on{};  // written by many coroutines in the stress tests
};

template <class S, class T>
detached waits_for(std::atomic<std::uint32_t>& w, std::uint32_t bit, S& s, T timeout, outcome& o,
                   std::stop_token stop = {}) {
  const bool ok = co_await pagewait::wait_bit_clear_async_for(w, bit, s, timeout, std::move(stop));
  o.resumed_on = std::this_thread::get_id();
  if (ok) o.granted.fetch_add(1);
  o.done.fetch_add(1, std::memory_order_release);
}

// Locks with a timeout; on success adds to `guarded` (a plain int: the lock must exclude) and
// unlocks.
template <class S>
detached locks_for(std::atomic<std::uint32_t>& w, std::uint32_t bit, S& s, clock_type::duration timeout,
                   outcome& o, long* guarded = nullptr, std::stop_token stop = {}) {
  const bool ok = co_await pagewait::try_lock_bit_async_for(w, bit, s, timeout, std::move(stop));
  o.resumed_on = std::this_thread::get_id();
  if (ok) {
    EXPECT_TRUE(w.load() & bit) << "resumed as owner, but the bit is clear";
    if (guarded) ++*guarded;
    o.granted.fetch_add(1);
    pagewait::unlock_bit(w, bit);
  }
  o.done.fetch_add(1, std::memory_order_release);
}

template <class S, class TP>
detached waits_until(std::atomic<std::uint32_t>& w, std::uint32_t bit, S& s, TP at, outcome& o) {
  const bool ok = co_await pagewait::wait_bit_clear_async_until(w, bit, s, at);
  o.resumed_on = std::this_thread::get_id();
  if (ok) o.granted.fetch_add(1);
  o.done.fetch_add(1, std::memory_order_release);
}

template <class S>
detached locks_until(std::atomic<std::uint32_t>& w, std::uint32_t bit, S& s, clock_type::time_point at,
                     bool& owner) {
  owner = co_await pagewait::try_lock_bit_async_until(w, bit, s, at);
}

// Untimed, for resume_inline.
template <class S>
detached waits(std::atomic<std::uint32_t>& w, std::uint32_t bit, S& s, outcome& o) {
  const bool ok = co_await pagewait::wait_bit_clear_async(w, bit, s);
  o.resumed_on = std::this_thread::get_id();
  if (ok) o.granted.fetch_add(1);
  o.done.fetch_add(1, std::memory_order_release);
}

template <class S>
detached locks_and_unlocks(std::atomic<std::uint32_t>& w, std::uint32_t bit, S& s, bool& owner) {
  const bool ok = co_await pagewait::lock_bit_async(w, bit, s);
  owner = ok && (w.load() & bit);
  if (ok) pagewait::unlock_bit(w, bit);
}

bool done_soon(const outcome& o, int n) {
  return pwtest::eventually([&] { return o.done.load(std::memory_order_acquire) == n; });
}

}  // namespace

TEST(AsyncTimeout, AWaitNobodyEndsTimesOutThroughTheScheduler) {
  timed_loop l;
  std::atomic<std::uint32_t> w{0b101};
  outcome o;
  const auto t0 = clock_type::now();
  waits_for(w, 0b100u, l, 20ms, o);
  ASSERT_TRUE(done_soon(o, 1));
  EXPECT_GE(clock_type::now() - t0, 20ms) << "gave up before the deadline";
  EXPECT_EQ(o.granted.load(), 0);
  EXPECT_EQ(o.resumed_on, l.id());
  EXPECT_EQ(pwtest::queued_on(w), 0u) << "the timed-out wait is still queued";
  EXPECT_EQ(w.load() & ~wb, 0b101u) << "a timeout must leave the word's bits as they were";
  pagewait::clear_bit_and_wake(w, 0b100u);
  EXPECT_EQ(o.done.load(), 1) << "resumed twice";
}

TEST(AsyncTimeout, AClearBeforeTheDeadlineDisarmsTheTimer) {
  timed_loop l;
  std::atomic<std::uint32_t> w{1};
  outcome o;
  waits_for(w, 1u, l, 1h, o);
  ASSERT_TRUE(pwtest::wait_queued(w, 1));
  EXPECT_EQ(l.armed(), 1u);
  std::thread([&] { pagewait::clear_bit_and_wake(w, 1u); }).join();
  ASSERT_TRUE(done_soon(o, 1));
  EXPECT_EQ(o.granted.load(), 1);
  EXPECT_EQ(o.resumed_on, l.id());
  EXPECT_EQ(l.armed(), 0u) << "the timer outlived the wait";
}

TEST(AsyncTimeout, ALockTimesOutOrIsGrantedAsOwner) {
  timed_loop l;
  std::atomic<std::uint32_t> w{0};
  ASSERT_TRUE(pagewait::try_lock_bit(w, 1u));
  outcome o;
  locks_for(w, 1u, l, 20ms, o);
  ASSERT_TRUE(done_soon(o, 1));
  EXPECT_EQ(o.granted.load(), 0);
  EXPECT_EQ(w.load() & ~wb, 1u) << "the holder's bit alone";
  locks_for(w, 1u, l, 1h, o);
  ASSERT_TRUE(pwtest::wait_queued(w, 1));
  pagewait::unlock_bit(w, 1u);
  ASSERT_TRUE(done_soon(o, 2));
  EXPECT_EQ(o.granted.load(), 1);
  EXPECT_EQ(w.load(), 0u) << "the coroutine unlocked what it was handed";
  EXPECT_EQ(l.armed(), 0u);
}

TEST(AsyncTimeout, APastDeadlineTriesOnceWithoutSuspending) {
  timed_loop l;
  std::atomic<std::uint32_t> w{1};
  outcome o;
  waits_for(w, 1u, l, -1s, o);
  EXPECT_EQ(o.done.load(), 1) << "a past deadline must not suspend";
  EXPECT_EQ(o.resumed_on, std::this_thread::get_id());
  EXPECT_EQ(o.granted.load(), 0);
  EXPECT_EQ(w.load(), 1u);
  EXPECT_EQ(l.arms(), 0);
  // The bit clear (the lock free) wins over a past deadline.
  std::atomic<std::uint32_t> clear{0};
  waits_for(clear, 1u, l, 0s, o);
  EXPECT_EQ(o.granted.load(), 1);
  bool owned = false;
  locks_until(clear, 1u, l, clock_type::now() - 1s, owned);
  EXPECT_TRUE(owned);
  EXPECT_EQ(clear.load(), 1u);
  EXPECT_EQ(l.arms(), 0);
}

TEST(AsyncTimeout, AnyClockAndTheHorizon) {
  timed_loop l;
  std::atomic<std::uint32_t> w{1};
  outcome o;
  // A system_clock time point is turned into time left.
  waits_until(w, 1u, l, std::chrono::system_clock::now() + 20ms, o);
  ASSERT_TRUE(done_soon(o, 1));
  EXPECT_EQ(o.granted.load(), 0);
  // Beyond the horizon: no timer at all.
  waits_for(w, 1u, l, std::chrono::hours::max(), o);
  waits_for(w, 1u, l, std::numeric_limits<double>::infinity() * 1s, o);
  ASSERT_TRUE(pwtest::wait_queued(w, 2));
  EXPECT_EQ(l.arms(), 1) << "an unbounded timeout armed a timer";
  pagewait::clear_bit_and_wake(w, 1u);
  ASSERT_TRUE(done_soon(o, 3));
  EXPECT_EQ(o.granted.load(), 2);
}

TEST(AsyncTimeout, BadInputThrowsBeforeTheWordIsTouched) {
  timed_loop l;
  std::atomic<std::uint32_t> w{1};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW((void)pagewait::wait_bit_clear_async_for(w, 1u, l, nan * 1s), std::invalid_argument);
  EXPECT_THROW((void)pagewait::try_lock_bit_async_for(w, 1u, l, nan * 1ms), std::invalid_argument);
  EXPECT_THROW((void)pagewait::wait_bit_clear_async_for(w, 0b11u, l, 1s), std::invalid_argument);
  EXPECT_THROW((void)pagewait::try_lock_bit_async_until(w, 0u, l, clock_type::now()), std::invalid_argument);
  EXPECT_THROW((void)pagewait::try_lock_bit_async_for(w, pagewait::waiters_bit<std::uint32_t>, l, 1s),
               std::invalid_argument);
  EXPECT_EQ(w.load(), 1u);
  EXPECT_EQ(l.arms(), 0);
}

// The hand-shake, step by step. The timer "fires" (the scheduler has taken it: disarm now fails)
// but fire() has not run yet when the release decides the wait: the coroutine must not be resumed
// until fire() is done with the awaitable, and then exactly once, with the release's result.
TEST(AsyncTimeoutHandshake, AReleaseWhileTheTimerFiresWaitsForTheFireToEnd) {
  manual_sched s;
  std::atomic<std::uint32_t> w{1};
  outcome o;
  waits_for(w, 1u, s, 1h, o);
  ASSERT_NE(s.timer, nullptr);
  pagewait::async_timer* t = s.timer;
  s.fire_begun = true;
  pagewait::clear_bit_and_wake(w, 1u);
  EXPECT_EQ(s.disarms, 1);
  EXPECT_TRUE(s.posted.empty()) << "resumed while the timer's fire() was still due to touch it";
  t->fire();
  ASSERT_EQ(s.posted.size(), 1u) << "the end of fire() must resume it";
  s.run_posted();
  EXPECT_EQ(o.done.load(), 1);
  EXPECT_EQ(o.granted.load(), 1) << "the release claimed the wait before the timer: its result stands";
}

// The timer withdraws the wait: its own cancel decides, and its disarm (from inside fire()) fails;
// the coroutine is resumed once, at the end of fire(), with false.
TEST(AsyncTimeoutHandshake, ATimerThatWithdrawsTheWaitResumesAtItsEnd) {
  manual_sched s;
  std::atomic<std::uint32_t> w{1};
  outcome o;
  waits_for(w, 1u, s, 1h, o);
  pagewait::async_timer* t = s.timer;
  ASSERT_NE(t, nullptr);
  s.fire_begun = true;
  t->fire();
  ASSERT_EQ(s.posted.size(), 1u);
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  s.run_posted();
  EXPECT_EQ(o.done.load(), 1);
  EXPECT_EQ(o.granted.load(), 0);
  EXPECT_EQ(w.load() & ~wb, 1u);
}

// Decided before the timer fires: disarmed, resumed at once, and fire() never comes.
TEST(AsyncTimeoutHandshake, AStopDisarmsTheTimer) {
  manual_sched s;
  std::atomic<std::uint32_t> w{1};
  std::stop_source stop;
  outcome o;
  waits_for(w, 1u, s, 1h, o, stop.get_token());
  ASSERT_NE(s.timer, nullptr);
  stop.request_stop();
  EXPECT_EQ(s.timer, nullptr) << "the timer is still armed";
  ASSERT_EQ(s.posted.size(), 1u);
  s.run_posted();
  EXPECT_EQ(o.done.load(), 1);
  EXPECT_EQ(o.granted.load(), 0);
}

// A lock handed over while the timer fires is the coroutine's: the timer's cancel is too late.
TEST(AsyncTimeoutHandshake, ALockHandedOverAsTheTimerFiresIsKept) {
  manual_sched s;
  std::atomic<std::uint32_t> w{0};
  ASSERT_TRUE(pagewait::try_lock_bit(w, 1u));
  outcome o;
  locks_for(w, 1u, s, 1h, o);
  pagewait::async_timer* t = s.timer;
  ASSERT_NE(t, nullptr);
  s.fire_begun = true;
  pagewait::unlock_bit(w, 1u);  // wakes the waiter to race, and it wins on this thread
  EXPECT_TRUE(s.posted.empty());
  EXPECT_EQ(w.load() & 1u, 1u) << "granted to the coroutine";
  t->fire();
  ASSERT_EQ(s.posted.size(), 1u);
  s.run_posted();
  EXPECT_EQ(o.granted.load(), 1);
  EXPECT_EQ(w.load(), 0u);
}

namespace {
// A coroutine whose frame the test owns, so that it can destroy it while suspended.
struct owned {
  struct promise_type {
    owned get_return_object() noexcept { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};
owned suspends_on(std::atomic<std::uint32_t>& w, timed_loop& l) {
  (void)co_await pagewait::wait_bit_clear_async_for(w, 1u, l, 1h);
}
}  // namespace

TEST(AsyncTimeout, DestroyingASuspendedCoroutineDisarmsItsTimer) {
  timed_loop l;
  std::atomic<std::uint32_t> w{1};
  owned c = suspends_on(w, l);
  ASSERT_FALSE(c.h.done());
  ASSERT_EQ(l.armed(), 1u);
  c.h.destroy();
  EXPECT_EQ(l.armed(), 0u) << "a timer left armed would fire into the freed frame";
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  EXPECT_EQ(w.load() & ~wb, 1u);
}

namespace {
owned suspends_on(std::atomic<std::uint32_t>& w, manual_sched& s, std::stop_token stop, int& result) {
  const bool ok = co_await pagewait::wait_bit_clear_async_for(w, 1u, s, 1h, std::move(stop));
  result = ok;
}
}  // namespace

// The decision comes while await_suspend has armed the timer but not yet suspended (a stop
// requested from inside arm_timer), and the scheduler has already taken the timer to fire: the
// coroutine must stay suspended until fire() is done, then be resumed once, by fire().
TEST(AsyncTimeoutHandshake, ADecisionBeforeTheSuspensionWhileTheTimerFiresSuspends) {
  manual_sched s;
  std::stop_source stop;
  s.on_arm = [&](pagewait::async_timer&) {
    s.fire_begun = true;
    stop.request_stop();
  };
  std::atomic<std::uint32_t> w{1};
  int result = -1;
  owned c = suspends_on(w, s, stop.get_token(), result);
  EXPECT_FALSE(c.h.done()) << "resumed while the timer's fire() was still due to touch it";
  EXPECT_TRUE(s.posted.empty());
  s.timer->fire();
  ASSERT_EQ(s.posted.size(), 1u) << "the end of fire() must resume it";
  s.posted[0].resume();
  EXPECT_TRUE(c.h.done());
  EXPECT_EQ(result, 0);
  c.h.destroy();
}

// A stop before the suspension ends, timer not taken: the suspending side disarms it and does not
// suspend.
TEST(AsyncTimeoutHandshake, AStopBeforeTheSuspensionDisarmsAndDoesNotSuspend) {
  manual_sched s;
  std::stop_source stop;
  s.on_arm = [&](pagewait::async_timer&) { stop.request_stop(); };
  std::atomic<std::uint32_t> w{1};
  int result = -1;
  owned c = suspends_on(w, s, stop.get_token(), result);
  EXPECT_TRUE(c.h.done()) << "suspended although the wait was decided and the timer disarmed";
  EXPECT_EQ(result, 0);
  EXPECT_EQ(s.timer, nullptr) << "the timer was left armed";
  EXPECT_EQ(s.disarms, 1);
  EXPECT_TRUE(s.posted.empty());
  c.h.destroy();
}

// A scheduler that fires a timer whose time has come inside arm_timer: fire() withdraws the wait
// and is done before await_suspend's exchange, which then does not suspend.
TEST(AsyncTimeoutHandshake, AFireInsideArmTimerEndsTheWaitWithoutSuspending) {
  manual_sched s;
  s.on_arm = [&](pagewait::async_timer& t) {
    s.fire_begun = true;
    t.fire();
  };
  std::atomic<std::uint32_t> w{1};
  int result = -1;
  owned c = suspends_on(w, s, {}, result);
  EXPECT_TRUE(c.h.done());
  EXPECT_EQ(result, 0);
  EXPECT_TRUE(s.posted.empty());
  EXPECT_EQ(pwtest::queued_on(w), 0u);
  c.h.destroy();
}

// A coroutine decided (by a stop, a release, or its timer) and posted, then destroyed before the
// scheduler runs it (a loop shutting down): allowed, as without a timer, and the timer is not
// disarmed a second time.
TEST(AsyncTimeout, DestroyingADecidedCoroutineBeforeItRuns) {
  std::atomic<std::uint32_t> w{1};
  for (int how = 0; how < 3; ++how) {
    manual_sched s;
    std::stop_source stop;
    int result = -1;
    owned c = suspends_on(w, s, stop.get_token(), result);
    ASSERT_NE(s.timer, nullptr);
    if (how == 0) stop.request_stop();
    if (how == 1) pagewait::clear_bit_and_wake(w, 1u);
    if (how == 2) {
      s.fire_begun = true;
      s.timer->fire();
    }
    ASSERT_EQ(s.posted.size(), 1u) << "how " << how;
    EXPECT_FALSE(c.h.done());
    c.h.destroy();
    EXPECT_EQ(s.disarms, 1) << "how " << how << ": a settled timer was disarmed again";
    w.fetch_or(1u);
  }
}

TEST(AsyncInline, ResumesOnTheReleasingThreadAfterItsLastTouch) {
  pagewait::resume_inline now;
  std::atomic<std::uint32_t> w{1};
  outcome o;
  waits(w, 1u, now, o);
  ASSERT_TRUE(pwtest::wait_queued(w, 1));
  std::thread::id releaser;
  std::thread t([&] {
    releaser = std::this_thread::get_id();
    pagewait::clear_bit_and_wake(w, 1u);
    EXPECT_EQ(o.done.load(), 1) << "not resumed inside clear_bit_and_wake";
  });
  t.join();
  EXPECT_EQ(o.resumed_on, releaser);
  EXPECT_EQ(o.granted.load(), 1);
  // A lock handed over inline: the coroutine runs as the owner inside the unlock.
  ASSERT_TRUE(pagewait::try_lock_bit(w, 1u));
  bool owner = false;
  locks_and_unlocks(w, 1u, now, owner);
  EXPECT_FALSE(owner);
  pagewait::unlock_bit(w, 1u);
  EXPECT_TRUE(owner);
  EXPECT_EQ(w.load(), 0u);
}

// Timers racing releases and stops, round after round: timers fire on their own thread, releases
// on another, the coroutines resume on the loop. Each coroutine resumes exactly once; a lock is
// held by one at a time; nothing is left queued or armed.
TEST(AsyncTimeoutRace, TimersRaceReleasesAndStops) {
  timed_loop l(/*timer_thread=*/true);
  std::atomic<std::uint32_t> w{0};
  const int rounds = pwtest::scaled(1500);
  outcome waits, locks;
  long guarded = 0;
  for (int r = 0; r < rounds; ++r) {
    std::stop_source stop;
    const auto timeout = std::chrono::microseconds((r * 37) % 300);
    w.fetch_or(1u);
    waits_for(w, 1u, l, timeout, waits, r % 3 ? std::stop_token{} : stop.get_token());
    ASSERT_TRUE(pagewait::try_lock_bit(w, 2u));
    locks_for(w, 2u, l, timeout, locks, &guarded, r % 5 ? std::stop_token{} : stop.get_token());
    for (int i = 0; i < (r * 53) % 400; ++i) pwtest::native::cpu_relax();
    std::thread releaser([&] { pagewait::clear_bit_and_wake(w, 1u); });
    if (r % 7 == 0) stop.request_stop();
    pagewait::unlock_bit(w, 2u);
    releaser.join();
    ASSERT_TRUE(done_soon(waits, r + 1)) << "round " << r << ": a wait never resumed";
    ASSERT_TRUE(done_soon(locks, r + 1)) << "round " << r << ": a lock never resumed";
    ASSERT_EQ(w.load() & ~wb, 0u) << "round " << r;
  }
  EXPECT_TRUE(pwtest::eventually([&] { return l.armed() == 0; }));
  EXPECT_EQ(guarded, locks.granted.load());
  RecordProperty("waits_cleared", waits.granted.load());
  RecordProperty("locks_granted", locks.granted.load());
}

// Many coroutines contend for one lock with short timeouts beside a thread that holds it in
// bursts: mutual exclusion and each coroutine resumed once (how many time out varies by run).
TEST(AsyncTimeoutRace, ManyTimedLockersAndAThread) {
  timed_loop l(/*timer_thread=*/true);
  std::atomic<std::uint32_t> w{0};
  const int n = pwtest::scaled(400);
  outcome o;
  long guarded = 0;
  long held = 0;
  std::atomic<bool> stop{false};
  std::thread holder([&] {
    while (!stop.load()) {
      pagewait::lock_bit(w, 1u);
      ++guarded;
      ++held;
      std::this_thread::sleep_for(50us);
      pagewait::unlock_bit(w, 1u);
    }
  });
  for (int i = 0; i < n; ++i)
    locks_for(w, 1u, l, std::chrono::microseconds(50 + (i * 31) % 500), o, &guarded);
  ASSERT_TRUE(done_soon(o, n));
  stop.store(true);
  holder.join();
  EXPECT_EQ(w.load() & ~wb, 0u);
  EXPECT_EQ(o.done.load(), n);
  // Every increment of the plain counter was made under the lock, by the thread or a coroutine
  // that owned it (TSan checks the same from the other side).
  EXPECT_EQ(guarded, held + o.granted.load());
  RecordProperty("granted", o.granted.load());
}
