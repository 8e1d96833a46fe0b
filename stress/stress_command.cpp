// stress/stress_command.cpp — `pagewait stress`: a randomized soak of every kind of wait the
// library has, on the public API, checking the contract as it goes (issue 13).
//
//   pagewait stress [--seconds S | --ops N] [--threads T] [--seed X] [--words W]
//
// Each worker thread draws operations at random (its own generator, seeded from --seed and its
// index: the same seed gives every thread the same sequence of operations; the interleaving is
// the machine's) over a set of words, half 32-bit and half 64-bit, a quarter of them hashing to
// one bucket of the wait table. What is checked, and how:
//   two owners      every lock holder swaps its id into the word's owner slot and increments a
//                   counter no atomics protect; another holder found there, or a final counter
//                   that differs from the number of acquisitions, is a violation (under TSan
//                   the counter itself would also be reported)
//   woken set       an event start writes a new generation into the word with the bit; a
//                   wait_bit_clear that began during generation g and returns true must not
//                   find the bit still set with generation g (woken means cleared)
//   early timeout   a timed lock or wait that gives up before its deadline
//   bad cancel      a stop-token lock or wait that gives up although no stop was requested
//   touch after free  DROP waits: an object is published with its event bit set, a waiter
//                   takes it, waits for the bit to clear, and frees it at once; the freed slot
//                   is poisoned (a pattern in the word; under ASan the memory is poisoned too)
//                   and checked when reused: a release that touched the word after its clear
//                   changed the pattern
//   hang            an operation in progress for longer than --hang-seconds (a lost wake-up or
//                   a deadlock: every lock and event here is held for microseconds)
//   quiescence      at the end: every bit released, no waiter left in the table, and on each
//                   word whose waiters bit is still set (allowed while waiters time out) a
//                   further release must clear it
// The asynchronous forms (pagewait/async.hpp) run the same checks from a worker that plays the
// event loop: an async_wait whose callback (on the releasing thread) hands the result back, which
// the worker may cancel() at a random moment; and coroutines (plain, with a stop_token, timed)
// on a scheduler the worker drives, whose post() and timers it runs and whose disarm_timer
// releases and stop requests call from other threads. Checked besides the above:
//   callback        a callback with none due: after a cancel() that returned true, a second
//                   one for one start, one after a start that returned `done`
//   async result    a result that cannot be: `cleared` for a lock, `locked` for a wait,
//                   `cancelled` with no cancel() that returned false
//   timer left      a coroutine's timer still armed once its co_await has returned, or the
//                   scheduler armed twice at once or disarmed one timer twice
// Exit status: 0 no violation, 1 violations (counted per kind in the summary), 2 bad options.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <coroutine>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <pagewait/async.hpp>
#include <pagewait/pagewait.hpp>
#include <pagewait/stats.hpp>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "command.hpp"
#include "numeric_option.hpp"
#include "pagewait/detail/native_policy.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define PAGEWAIT_STRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PAGEWAIT_STRESS_ASAN 1
#endif
#endif
#ifndef PAGEWAIT_STRESS_ASAN
#define PAGEWAIT_STRESS_ASAN 0
#endif
#if PAGEWAIT_STRESS_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace pagewait::stress {
namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ------------------------------------------------------------------------------------------
// What is counted.

enum op_kind : int {
  k_lock,        // lock_bit + unlock_bit
  k_try_lock,    // try_lock_bit
  k_timed_lock,  // try_lock_bit_until, deadline 0-300 us away
  k_stop_lock,   // lock_bit with a stop_token another thread may stop
  k_event,       // set the event bit (new generation), hold it, clear_bit_and_wake
  k_wait,        // wait_bit_clear on the event bit
  k_timed_wait,  // wait_bit_clear_until
  k_stop_wait,   // wait_bit_clear with a stop_token
  k_drop_start,  // publish an object with its event bit set, then end its event
  k_drop_wait,   // take a published object, wait for its bit (DROP), free it at once
  k_async_lock,  // async_wait::start_lock, the callback handing the lock back; cancel() sometimes
  k_async_wait,  // async_wait::start_wait_clear on the event bit; cancel() sometimes
  k_co_lock,     // co_await lock_bit_async / with a stop_token / try_lock_bit_async_until
  k_co_wait,     // co_await wait_bit_clear_async / with a stop_token / wait_bit_clear_async_until
  k_count
};
constexpr const char* kind_name[k_count] = {
    "lock",      "try_lock",   "timed lock", "stop lock",  "event",      "wait",          "timed wait",
    "stop wait", "drop start", "drop wait",  "async lock", "async wait", "co_await lock", "co_await wait"};
constexpr int kind_weight[k_count] = {18, 8, 10, 5, 14, 14, 10, 5, 8, 8, 6, 6, 6, 6};

enum violation_kind : int {
  v_two_owners,
  v_lost_update,
  v_woken_set,
  v_early_timeout,
  v_bad_cancel,
  v_touch_after_free,
  v_hang,
  v_bit_left_set,
  v_table_not_empty,
  v_stale_waiters_bit,
  v_exception,
  v_callback,
  v_async_result,
  v_timer_left,
  v_count
};
constexpr const char* violation_name[v_count] = {"two owners",
                                                 "lost update (lock counter)",
                                                 "woken into a set bit",
                                                 "timed out early",
                                                 "gave up, no stop",
                                                 "touch after free",
                                                 "hang",
                                                 "bit left set",
                                                 "wait table not empty",
                                                 "waiters bit not cleared",
                                                 "exception",
                                                 "callback with none due",
                                                 "impossible async result",
                                                 "timer left armed or disarmed twice"};

struct counters {
  std::array<std::atomic<std::uint64_t>, k_count> ops{};
  std::array<std::atomic<std::uint64_t>, k_count> done{};       // lock taken, wait saw the clear
  std::array<std::atomic<std::uint64_t>, k_count> timed_out{};  // deadline
  std::array<std::atomic<std::uint64_t>, k_count> stopped{};    // stop requested
  std::array<std::atomic<std::uint64_t>, v_count> violations{};
};

struct options {
  double seconds = 10;
  std::uint64_t ops = 0;
  unsigned threads = 8;
  std::uint64_t seed = 0;
  unsigned words = 64;
  double hang_seconds = 30;
  std::string inject;
};

// ------------------------------------------------------------------------------------------
// Words. Bits: the lock bit, the event bit, a 23-bit event generation in bits 8..30 (bit 31 of
// a 32-bit word is the waiters bit); 64-bit words use bits 40 and 41 for lock and event.

template <class W>
struct bits;
template <>
struct bits<std::uint32_t> {
  static constexpr std::uint32_t lock = 1u << 0, event = 1u << 1, probe = 1u << 2;
};
template <>
struct bits<std::uint64_t> {
  static constexpr std::uint64_t lock = std::uint64_t(1) << 40, event = std::uint64_t(1) << 41,
                                 probe = std::uint64_t(1) << 42;
};
constexpr unsigned gen_shift = 8;
constexpr std::uint64_t gen_mask = (std::uint64_t(1) << 23) - 1;
template <class W>
std::uint64_t gen_of(W v) {
  return (std::uint64_t(v) >> gen_shift) & gen_mask;
}

template <class W>
struct alignas(64) slot {
  std::atomic<W> word{0};
  std::atomic<int> owner{0};
  std::uint64_t counter = 0;  // protected by the lock bit alone
  std::atomic<std::uint64_t> acquisitions{0};
};

// ------------------------------------------------------------------------------------------
// DROP objects: freed by their waiter the moment the bit is seen clear, and reused at once.

constexpr std::uint32_t poison =
    0xA5A5A5A4u;  // bits 0 and 1 clear, waiters bit set: any release RMW changes it

struct alignas(64) drop_object {  // a granule of its own, for ASan's poisoning
  std::atomic<std::uint32_t> word{poison};
};

class drop_pool {
 public:
  explicit drop_pool(std::size_t n) : objs_(n) {
    for (auto& o : objs_) {
      free_.push_back(&o);
      poison_memory(&o);
    }
  }
  // A free object, its poison checked (false: a touch after free was seen), or nullptr.
  drop_object* take(bool& touched) {
    std::lock_guard<std::mutex> g(m_);
    touched = false;
    if (free_.empty()) return nullptr;
    drop_object* o = free_.back();  // LIFO: the memory freed last is reused first
    free_.pop_back();
    unpoison_memory(o);
    touched = o->word.load(std::memory_order_relaxed) != poison;
    return o;
  }
  void give_back(drop_object* o) {
    o->word.store(poison, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(m_);
    poison_memory(o);
    free_.push_back(o);
  }
  void publish(drop_object* o) {
    std::lock_guard<std::mutex> g(m_);
    published_.push_back(o);
  }
  drop_object* claim() {
    std::lock_guard<std::mutex> g(m_);
    if (published_.empty()) return nullptr;
    drop_object* o = published_.front();
    published_.pop_front();
    return o;
  }

 private:
  static void poison_memory([[maybe_unused]] drop_object* o) {
#if PAGEWAIT_STRESS_ASAN
    ASAN_POISON_MEMORY_REGION(o, sizeof *o);
#endif
  }
  static void unpoison_memory([[maybe_unused]] drop_object* o) {
#if PAGEWAIT_STRESS_ASAN
    ASAN_UNPOISON_MEMORY_REGION(o, sizeof *o);
#endif
  }
  std::mutex m_;
  std::deque<drop_object> objs_;
  std::vector<drop_object*> free_;
  std::deque<drop_object*> published_;
};

// ------------------------------------------------------------------------------------------
// Cancellation: each worker publishes the stop_source of its stop-token operation; a canceller
// thread requests stop on one at random now and then.

struct alignas(64) stop_slot {
  std::mutex m;
  std::stop_source* src = nullptr;
};

// What a worker is doing, for the hang watchdog.
struct alignas(64) activity {
  std::atomic<std::int64_t> since_ns{0};  // 0: between operations
  std::atomic<int> kind{-1};
  std::atomic<const void*> word{nullptr};
};

struct shared_state {
  options o;
  counters c;
  std::vector<slot<std::uint32_t>*> w32;
  std::vector<slot<std::uint64_t>*> w64;
  drop_pool drops;
  std::vector<stop_slot> stops;
  std::vector<activity> act;
  std::atomic<bool> stop{false};
  std::mutex report_m;
  std::array<int, v_count> reported{};  // messages printed per kind (the first few only)

  explicit shared_state(const options& oo)
      : o(oo), drops(std::size_t(oo.threads) * 4), stops(oo.threads), act(oo.threads) {}

  void violation(violation_kind v, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
};

void shared_state::violation(violation_kind v, const char* fmt, ...) {
  c.violations[std::size_t(v)].fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(report_m);
  if (reported[std::size_t(v)]++ >= 5) return;
  std::fprintf(stderr, "VIOLATION (%s): ", violation_name[v]);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

// ------------------------------------------------------------------------------------------
// The scheduler of a worker's coroutines: post() and the timers hand work back to the worker,
// which runs it in poll() on its own thread. post() and disarm_timer() are called from other
// threads too (the releasing thread, the canceller's request_stop()).

class worker_loop {
 public:
  void post(std::coroutine_handle<> h) noexcept {
    std::lock_guard<std::mutex> g(m_);
    posted_.push_back(h);
  }
  void arm_timer(async_timer& t, clock_type::time_point at) noexcept {
    std::lock_guard<std::mutex> g(m_);
    if (timer_) misuse_ = true;  // one co_await at a time: one timer
    timer_ = &t;
    at_ = at;
    disarmed_ = nullptr;
  }
  bool disarm_timer(async_timer& t) noexcept {
    std::lock_guard<std::mutex> g(m_);
    if (disarmed_ == &t) misuse_ = true;  // disarmed twice (the concept: at most once)
    if (timer_ != &t) return false;       // taken by poll(): its fire() has begun
    timer_ = nullptr;
    disarmed_ = &t;
    return true;
  }
  // Fires the timer if it is due (taken out under the mutex, fired outside it), then resumes
  // what was posted. Returns whether anything ran.
  bool poll() {
    std::vector<std::coroutine_handle<>> hs;
    async_timer* due = nullptr;
    {
      std::lock_guard<std::mutex> g(m_);
      hs.swap(posted_);
      if (timer_ && clock_type::now() >= at_) std::swap(due, timer_);
    }
    if (due) due->fire();  // not touched after: the frame may be gone
    for (std::coroutine_handle<> h : hs) h.resume();
    return due || !hs.empty();
  }
  // A timer still armed, or the scheduler misused (two armed at once, one disarmed twice).
  bool timer_wrong() {
    std::lock_guard<std::mutex> g(m_);
    return timer_ != nullptr || misuse_;
  }

 private:
  std::mutex m_;
  std::vector<std::coroutine_handle<>> posted_;
  async_timer* timer_ = nullptr;
  const async_timer* disarmed_ = nullptr;  // the last timer disarmed with true, since the last arm
  clock_type::time_point at_{};
  bool misuse_ = false;
};
static_assert(async_timed_scheduler<worker_loop>);

// A coroutine that starts at once and frees itself at its end.
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

struct co_result {
  bool done = false;  // the worker's thread only: the coroutine runs there
  bool ok = false;
};

// variant 0: plain; 1: with a stop_token; 2: timed (until `dl`) and with a stop_token.
template <class W>
detached co_lock(worker_loop& l, std::atomic<W>& w, W bit, int variant, clock_type::time_point dl,
                 std::stop_token st, co_result& r) {
  bool ok;  // bound first: GCC 12 miscompiles a co_await that suspends in an if condition
  if (variant == 0)
    ok = co_await lock_bit_async(w, bit, l);
  else if (variant == 1)
    ok = co_await lock_bit_async(w, bit, l, std::move(st));
  else
    ok = co_await try_lock_bit_async_until(w, bit, l, dl, std::move(st));
  r.ok = ok;
  r.done = true;
}
template <class W>
detached co_wait(worker_loop& l, std::atomic<W>& w, W bit, int variant, clock_type::time_point dl,
                 std::stop_token st, co_result& r) {
  bool ok;
  if (variant == 0)
    ok = co_await wait_bit_clear_async(w, bit, l);
  else if (variant == 1)
    ok = co_await wait_bit_clear_async(w, bit, l, std::move(st));
  else
    ok = co_await wait_bit_clear_async_until(w, bit, l, dl, std::move(st));
  r.ok = ok;
  r.done = true;
}

// ------------------------------------------------------------------------------------------
// The operations.

class worker {
 public:
  worker(shared_state& s, unsigned index)
      : s_(s), index_(index), rng_(s.o.seed ^ (0x9E3779B97F4A7C15ull * (index + 1))) {}

  void run(std::uint64_t quota) {
    std::discrete_distribution<int> pick(std::begin(kind_weight), std::end(kind_weight));
    for (std::uint64_t n = 0; (quota == 0 || n < quota) && !s_.stop.load(std::memory_order_relaxed); ++n) {
      const auto k = static_cast<op_kind>(pick(rng_));
      const bool wide = (rng_() & 1) != 0;
      s_.c.ops[k].fetch_add(1, std::memory_order_relaxed);
      activity& a = s_.act[index_];
      a.kind.store(k, std::memory_order_relaxed);
      a.since_ns.store(now_ns(), std::memory_order_relaxed);
      try {
        if (wide)
          one(k, *s_.w64[rng_() % s_.w64.size()]);
        else
          one(k, *s_.w32[rng_() % s_.w32.size()]);
      } catch (const std::exception& e) {
        s_.violation(v_exception, "%s threw: %s", kind_name[k], e.what());
      }
      a.since_ns.store(0, std::memory_order_relaxed);
    }
  }

 private:
  template <class W>
  void one(op_kind k, slot<W>& sl) {
    s_.act[index_].word.store(&sl.word, std::memory_order_relaxed);
    switch (k) {
      case k_lock:
        lock_bit(sl.word, bits<W>::lock);
        critical(k, sl);
        break;
      case k_try_lock:
        if (try_lock_bit(sl.word, bits<W>::lock))
          critical(k, sl);
        else if (s_.o.inject == "two-owners")
          enter_unlocked(sl);
        break;
      case k_timed_lock: {
        const auto dl = clock_type::now() + std::chrono::microseconds(rng_() % 300);
        if (try_lock_bit_until(sl.word, bits<W>::lock, dl))
          critical(k, sl);
        else
          gave_up_at(k, dl, &sl.word);
        break;
      }
      case k_stop_lock: {
        std::stop_source src;
        publish_stop(&src);
        const bool ok = lock_bit(sl.word, bits<W>::lock, src.get_token());
        publish_stop(nullptr);
        if (ok)
          critical(k, sl);
        else
          stopped(k, src, &sl.word);
        break;
      }
      case k_event:
        event(sl);
        break;
      case k_wait:
      case k_timed_wait:
      case k_stop_wait:
        wait(k, sl);
        break;
      case k_drop_start:
        drop_start();
        break;
      case k_drop_wait:
        drop_wait();
        break;
      case k_async_lock:
      case k_async_wait:
        async_op(k, sl, async_waiter<W>());
        break;
      case k_co_lock:
      case k_co_wait:
        co_op(k, sl);
        break;
      case k_count:
        break;
    }
  }

  // Inside a held lock bit: exclusive ownership, checked.
  template <class W>
  void critical(op_kind k, slot<W>& sl) {
    s_.c.done[k].fetch_add(1, std::memory_order_relaxed);
    const int me = int(index_) + 1;
    const int before = sl.owner.exchange(me, std::memory_order_relaxed);
    if (before != 0)
      s_.violation(v_two_owners, "thread %u acquired the lock bit of word %p held by thread %d", index_,
                   static_cast<const void*>(&sl.word), before - 1);
    ++sl.counter;
    sl.acquisitions.fetch_add(1, std::memory_order_relaxed);
    hold();
    sl.owner.store(0, std::memory_order_relaxed);
    unlock_bit(sl.word, bits<W>::lock);
  }

  // Self-test (--inject two-owners): a try_lock that failed and goes in anyway. The owner
  // check, here or in the holder, must see it. (It leaves the counter alone: a plain write
  // would be a data race, which a TSan build would report instead.)
  template <class W>
  void enter_unlocked(slot<W>& sl) {
    const int me = int(index_) + 1;
    const int before = sl.owner.exchange(me, std::memory_order_relaxed);
    if (before != 0)
      s_.violation(v_two_owners, "thread %u entered the section of word %p held by thread %d", index_,
                   static_cast<const void*>(&sl.word), before - 1);
    hold();
    sl.owner.store(0, std::memory_order_relaxed);
  }

  // Starts an event (a new generation) if none is running, holds it, ends it.
  template <class W>
  void event(slot<W>& sl) {
    W v = sl.word.load(std::memory_order_relaxed);
    W nv;
    do {
      if (v & bits<W>::event) return;  // one is running: its starter ends it
      const std::uint64_t g = (gen_of(v) + 1) & gen_mask;
      nv = W((v & ~W(gen_mask << gen_shift)) | W(g << gen_shift) | bits<W>::event);
    } while (!sl.word.compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_relaxed));
    hold();
    clear_bit_and_wake(sl.word, bits<W>::event);
    s_.c.done[k_event].fetch_add(1, std::memory_order_relaxed);
  }

  template <class W>
  void wait(op_kind k, slot<W>& sl) {
    const W v0 = sl.word.load(std::memory_order_acquire);
    bool ok = false;
    if (k == k_wait) {
      wait_bit_clear(sl.word, bits<W>::event);
      ok = true;
    } else if (k == k_timed_wait) {
      const auto dl = clock_type::now() + std::chrono::microseconds(rng_() % 300);
      ok = wait_bit_clear_until(sl.word, bits<W>::event, dl);
      if (!ok) gave_up_at(k, dl, &sl.word);
    } else {
      std::stop_source src;
      publish_stop(&src);
      ok = wait_bit_clear(sl.word, bits<W>::event, src.get_token());
      publish_stop(nullptr);
      if (!ok) stopped(k, src, &sl.word);
    }
    if (!ok) return;
    s_.c.done[k].fetch_add(1, std::memory_order_relaxed);
    // The event that was running when the wait began must be over: the bit clear, or set again
    // by a later event (another generation).
    woken_check(sl, v0);
  }

  void drop_start() {
    bool touched = false;
    drop_object* o = s_.drops.take(touched);
    if (!o) return;
    if (touched)
      s_.violation(v_touch_after_free, "a freed object's word %p was changed after its free (0x%08x)",
                   static_cast<const void*>(&o->word), unsigned(o->word.load()));
    o->word.store(bits<std::uint32_t>::event, std::memory_order_relaxed);
    s_.drops.publish(o);  // its waiter may take, wait and free it from now on
    hold();
    clear_bit_and_wake(o->word, bits<std::uint32_t>::event);  // the last touch: o may be reused now
    s_.c.done[k_drop_start].fetch_add(1, std::memory_order_relaxed);
    if (s_.o.inject == "touch-after-free" && (rng_() % 16) == 0) {
      // Self-test: a release that touches the word after its clear, once its waiter freed it
      // (what the 2020 bug did). The poison check must see it at the object's reuse; in an
      // ASan build, ASan reports the access to the poisoned memory first.
      const auto until = clock_type::now() + 1ms;
      while (o->word.load(std::memory_order_relaxed) != poison && clock_type::now() < until)
        std::this_thread::yield();
      o->word.fetch_or(bits<std::uint32_t>::lock, std::memory_order_relaxed);
    }
  }

  void drop_wait() {
    drop_object* o = s_.drops.claim();
    if (!o) return;
    wait_bit_clear(o->word, bits<std::uint32_t>::event);  // DROP: no reference held, none needed
    s_.drops.give_back(o);                                // freed the moment the bit is seen clear
    s_.c.done[k_drop_wait].fetch_add(1, std::memory_order_relaxed);
  }

  // An asynchronous lock or wait with a callback. The callback runs on the releasing thread and
  // hands the result back through a_calls_; this thread plays the caller's event loop: it waits
  // for that, and may cancel() the wait at a random moment first.
  template <class W>
  void async_op(op_kind k, slot<W>& sl, async_wait<W>& a) {
    const bool lock = k == k_async_lock;
    const W bit = lock ? bits<W>::lock : bits<W>::event;
    const W v0 = sl.word.load(std::memory_order_acquire);
    const unsigned calls = a_calls_.load(std::memory_order_acquire);
    a_due_.store(true, std::memory_order_relaxed);  // published to the callback by the start
    if ((lock ? a.start_lock(sl.word, bit) : a.start_wait_clear(sl.word, bit)) == async_start::done) {
      a_due_.store(false, std::memory_order_relaxed);
      if (lock) return critical(k, sl);
      s_.c.done[k].fetch_add(1, std::memory_order_relaxed);
      return;
    }
    int cancel_in = (rng_() % 4 == 0) ? int(rng_() % 64) : -1;
    bool cancel_failed = false;
    while (a_calls_.load(std::memory_order_acquire) == calls) {
      if (cancel_in >= 0 && cancel_in-- == 0) {
        if (a.cancel()) {
          // No callback comes now: one that did would find none due.
          if (!a_due_.exchange(false, std::memory_order_acq_rel))
            s_.violation(v_callback, "cancel() returned true after the callback on word %p",
                         static_cast<const void*>(&sl.word));
          s_.c.stopped[k].fetch_add(1, std::memory_order_relaxed);
          return;
        }
        cancel_failed = true;
      }
      std::this_thread::yield();
    }
    const auto r = static_cast<async_result>(a_result_.load(std::memory_order_relaxed));
    if (s_.o.inject == "double-callback" && (rng_() % 8) == 0) on_async<W>(a, r);  // self-test
    if (r == async_result::cancelled) {
      if (!cancel_failed)
        s_.violation(v_async_result, "%s on word %p: `cancelled` with no cancel() that returned false",
                     kind_name[k], static_cast<const void*>(&sl.word));
      s_.c.stopped[k].fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (r != (lock ? async_result::locked : async_result::cleared)) {
      s_.violation(v_async_result, "%s on word %p: result %d", kind_name[k],
                   static_cast<const void*>(&sl.word), int(r));
      return;
    }
    if (lock) return critical(k, sl);  // owned; any thread may unlock an asynchronous lock
    s_.c.done[k].fetch_add(1, std::memory_order_relaxed);
    woken_check(sl, v0);
  }

  template <class W>
  static void on_async(async_wait<W>& a, async_result r) noexcept {
    auto* self = static_cast<worker*>(a.user_data());
    if (!self->a_due_.exchange(false, std::memory_order_acq_rel)) {
      self->s_.violation(v_callback, "a callback with none due (result %d) on thread %u's waiter", int(r),
                         self->index_);
      return;
    }
    self->a_result_.store(int(r), std::memory_order_relaxed);
    self->a_calls_.fetch_add(1, std::memory_order_release);  // the result, and the lock, to the worker
  }
  template <class W>
  async_wait<W>& async_waiter() {
    if constexpr (sizeof(W) == 4)
      return aw32_;
    else
      return aw64_;
  }

  // A coroutine lock or wait on this worker's loop; the canceller may stop it, its timer may fire.
  template <class W>
  void co_op(op_kind k, slot<W>& sl) {
    const bool lock = k == k_co_lock;
    const W bit = lock ? bits<W>::lock : bits<W>::event;
    const int variant = int(rng_() % 3);
    const auto dl = clock_type::now() + std::chrono::microseconds(rng_() % 300);
    const W v0 = sl.word.load(std::memory_order_acquire);
    std::stop_source src;
    if (variant) publish_stop(&src);
    co_result r;
    if (lock)
      co_lock(loop_, sl.word, bit, variant, dl, src.get_token(), r);
    else
      co_wait(loop_, sl.word, bit, variant, dl, src.get_token(), r);
    while (!r.done)
      if (!loop_.poll()) std::this_thread::yield();
    // Checked here, before the next co_await's poll() could fire a leaked timer into a freed frame.
    if (loop_.timer_wrong())
      s_.violation(v_timer_left,
                   "%s on word %p: its timer outlived the co_await, or was armed or disarmed twice",
                   kind_name[k], static_cast<const void*>(&sl.word));
    if (variant) publish_stop(nullptr);
    if (r.ok) {
      if (lock) return critical(k, sl);
      s_.c.done[k].fetch_add(1, std::memory_order_relaxed);
      return woken_check(sl, v0);
    }
    if (variant == 2 && !src.stop_requested())
      gave_up_at(k, dl, &sl.word);
    else
      stopped(k, src, &sl.word);
  }

  // After a wait that saw its clear: the event running when it began must be over.
  template <class W>
  void woken_check(slot<W>& sl, W v0) {
    if (!(v0 & bits<W>::event)) return;
    const W v1 = sl.word.load(std::memory_order_acquire);
    if ((v1 & bits<W>::event) && gen_of(v1) == gen_of(v0))
      s_.violation(v_woken_set,
                   "wait on word %p returned true with the event of generation %" PRIu64
                   " it waited for still running",
                   static_cast<const void*>(&sl.word), gen_of(v0));
  }

  void gave_up_at(op_kind k, clock_type::time_point dl, const void* w) {
    s_.c.timed_out[k].fetch_add(1, std::memory_order_relaxed);
    if (clock_type::now() < dl)
      s_.violation(v_early_timeout, "%s on word %p gave up before its deadline", kind_name[k], w);
  }
  void stopped(op_kind k, const std::stop_source& src, const void* w) {
    s_.c.stopped[k].fetch_add(1, std::memory_order_relaxed);
    if (!src.stop_requested())
      s_.violation(v_bad_cancel, "%s on word %p gave up though no stop was requested", kind_name[k], w);
  }
  void publish_stop(std::stop_source* src) {
    stop_slot& st = s_.stops[index_];
    std::lock_guard<std::mutex> g(st.m);
    st.src = src;
  }

  // A short hold: a few pauses, sometimes a yield (the holder preempted, as on a loaded machine).
  void hold() {
    const unsigned r = unsigned(rng_() % 64);
    if (r == 0) {
      std::this_thread::yield();
      return;
    }
    for (unsigned i = 0; i < (r & 15); ++i) detail::native_policy::cpu_relax();
  }

  shared_state& s_;
  unsigned index_;
  std::mt19937_64 rng_;
  // The asynchronous operations' state: a callback is due (set before a start, taken by the
  // callback or by a cancel() that returned true), the callbacks so far and the last result.
  std::atomic<bool> a_due_{false};
  std::atomic<unsigned> a_calls_{0};
  std::atomic<int> a_result_{0};
  async_wait<std::uint32_t> aw32_{&on_async<std::uint32_t>, this};
  async_wait<std::uint64_t> aw64_{&on_async<std::uint64_t>, this};
  worker_loop loop_;
};

// ------------------------------------------------------------------------------------------
// Set-up and the end.

// `n` words, a quarter of them in the bucket of the first one (many words, one bucket: the
// walk's key checks and bounded holds), the rest wherever they fall.
template <class W>
std::vector<slot<W>*> make_words(unsigned n, std::vector<std::unique_ptr<slot<W>[]>>& keep) {
  auto& table = detail::native_policy::table();
  const std::size_t pool = std::size_t(n) * 64;
  keep.push_back(std::make_unique<slot<W>[]>(pool));
  slot<W>* cand = keep.back().get();
  std::vector<slot<W>*> out;
  const std::size_t home = table.index_of(&cand[0].word);
  std::vector<bool> used(pool);
  for (std::size_t i = 0; i < pool && out.size() < std::max(1u, n / 4); ++i)
    if (table.index_of(&cand[i].word) == home) {
      out.push_back(&cand[i]);
      used[i] = true;
    }
  for (std::size_t i = 0; i < pool && out.size() < n; ++i)
    if (!used[i]) out.push_back(&cand[i]);
  return out;
}

// After every worker has returned: nothing is held, nobody waits, the counters add up, and
// the next release of a word clears a waiters bit left set by waiters that timed out.
template <class W>
void check_quiescent(shared_state& s, std::vector<slot<W>*>& words) {
  for (slot<W>* sl : words) {
    const W v = sl->word.load();
    if (v & (bits<W>::lock | bits<W>::event))
      s.violation(v_bit_left_set, "word %p: 0x%llx has a lock or event bit set at the end",
                  static_cast<const void*>(&sl->word), static_cast<unsigned long long>(v));
    if (sl->counter != sl->acquisitions.load())
      s.violation(v_lost_update, "word %p: counter %llu after %llu acquisitions",
                  static_cast<const void*>(&sl->word), static_cast<unsigned long long>(sl->counter),
                  static_cast<unsigned long long>(sl->acquisitions.load()));
    if (v & waiters_bit<W>) {
      sl->word.fetch_or(bits<W>::probe);
      clear_bit_and_wake(sl->word, bits<W>::probe);
      if (sl->word.load() & waiters_bit<W>)
        s.violation(v_stale_waiters_bit, "word %p: the waiters bit stays set after a release with no waiter",
                    static_cast<const void*>(&sl->word));
    }
  }
}

void check_table_empty(shared_state& s) {
  auto& t = detail::native_policy::table();
  for (std::size_t i = 0; i < t.size(); ++i) {
    auto& b = t.at(i);
    detail::native_policy::lock(b.lock);
    const bool busy = b.head.get() != nullptr || b.releases.get() != nullptr;
    detail::native_policy::unlock(b.lock);
    if (busy) s.violation(v_table_not_empty, "bucket %zu still holds a waiter or a release at the end", i);
  }
}

void canceller(shared_state& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  while (!s.stop.load(std::memory_order_relaxed)) {
    std::this_thread::sleep_for(std::chrono::microseconds(20 + rng() % 200));
    stop_slot& st = s.stops[rng() % s.stops.size()];
    std::lock_guard<std::mutex> g(st.m);
    if (st.src) st.src->request_stop();
  }
}

std::string grouped(std::uint64_t v) {
  std::string d = std::to_string(v), out;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i && (d.size() - i) % 3 == 0) out += ' ';
    out += d[i];
  }
  return out;
}

std::uint64_t total_ops(const counters& c) {
  std::uint64_t t = 0;
  for (const auto& x : c.ops) t += x.load(std::memory_order_relaxed);
  return t;
}

int stress_main(int argc, char** argv) {
  CLI::App app{"pagewait stress: a randomized soak of every kind of wait, checking the contract as it goes"};
  options o;
  CLI::Option* seconds = tool::real_in(
      app.add_option("--seconds", o.seconds, "run this long (default 10; with --ops: at most this long)"),
      0.05, 1e6);
  tool::whole_in(app.add_option("--ops", o.ops, "stop after this many operations in all (default: by time)"),
                 std::uint64_t{1});
  tool::whole_in(app.add_option("--threads", o.threads, "worker threads (default 8)"), 2u, 1024u);
  CLI::Option* seed =
      tool::whole_in(app.add_option("--seed", o.seed, "seed of the operation sequences (default: random)"),
                     std::uint64_t{0});
  tool::whole_in(
      app.add_option("--words", o.words, "words to work on, half 32-bit, half 64-bit (default 64)"), 4u,
      1u << 20);
  tool::real_in(app.add_option("--hang-seconds", o.hang_seconds,
                               "an operation in progress this long is a violation (default 30)"),
                1.0, 3600.0);
  app.add_option("--inject", o.inject, "self-test: inject a fault the checks must report")
      ->check(CLI::IsMember({"two-owners", "touch-after-free", "double-callback"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "pagewait stress: %s\nRun `pagewait stress --help` for the options.\n", e.what());
    return 2;
  }
  if (o.ops != 0 && seconds->count() == 0) o.seconds = 1e6;  // by count, bounded by the hang check
  if (seed->count() == 0) o.seed = (std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();

  shared_state s(o);
  std::vector<std::unique_ptr<slot<std::uint32_t>[]>> keep32;
  std::vector<std::unique_ptr<slot<std::uint64_t>[]>> keep64;
  s.w32 = make_words<std::uint32_t>(std::max(2u, o.words / 2), keep32);
  s.w64 = make_words<std::uint64_t>(std::max(2u, o.words - o.words / 2), keep64);

  std::printf("pagewait stress: %u threads, %u words (%zu 32-bit, %zu 64-bit), seed %" PRIu64 "%s\n",
              o.threads, o.words, s.w32.size(), s.w64.size(), o.seed,
              o.inject.empty() ? "" : (", inject " + o.inject).c_str());
  std::printf("replay the same operation sequences: pagewait stress --seed %" PRIu64
              " --threads %u --words %u\n",
              o.seed, o.threads, o.words);
  std::fflush(stdout);

  enable_stats();  // printed at the end (pagewait/stats.hpp)
  reset_stats();
  const auto t0 = clock_type::now();
  std::vector<std::thread> ts;
  const std::uint64_t quota = o.ops ? (o.ops + o.threads - 1) / o.threads : 0;
  for (unsigned i = 0; i < o.threads; ++i) ts.emplace_back([&s, i, quota] { worker(s, i).run(quota); });
  std::thread cancel([&s] { canceller(s, s.o.seed + 1); });

  // Progress, the watchdog and the clock, once every 100 ms.
  auto next_line = t0 + 1s;
  bool hung = false;
  for (;;) {
    std::this_thread::sleep_for(100ms);
    const auto now = clock_type::now();
    bool running = false;
    for (unsigned i = 0; i < o.threads; ++i) {
      const std::int64_t since = s.act[i].since_ns.load(std::memory_order_relaxed);
      if (since != 0) running = true;
      if (since != 0 && double(now_ns() - since) / 1e9 > o.hang_seconds) {
        const int k = s.act[i].kind.load();
        s.violation(v_hang, "thread %u has been in a %s on word %p for more than %.0f s", i,
                    k >= 0 ? kind_name[k] : "?", s.act[i].word.load(), o.hang_seconds);
        hung = true;
      }
    }
    const double el = std::chrono::duration<double>(now - t0).count();
    if (now >= next_line) {
      const std::uint64_t n = total_ops(s.c);
      std::uint64_t v = 0;
      for (const auto& x : s.c.violations) v += x.load();
      std::fprintf(stderr, "  %7.1f s  %s ops  %.0f ops/s  violations %" PRIu64 "\n", el, grouped(n).c_str(),
                   double(n) / el, v);
      next_line += 1s;
    }
    if (hung) break;
    if (el >= o.seconds) s.stop = true;
    if (s.stop.load() || (quota && !running && total_ops(s.c) >= o.ops)) {
      // Stopping: the workers finish the operation they are in. The watchdog keeps watching
      // until none is in one, so that an operation that never ends is reported as a hang (and
      // not as a join that never returns).
      s.stop = true;
      if (!running) break;
    }
  }
  if (hung) {
    // A thread is stuck in the library: it cannot be joined. Report and leave.
    std::fprintf(stderr, "pagewait stress: a hang; exiting without the end-of-run checks\n");
    std::fflush(stderr);
    std::_Exit(1);
  }
  for (auto& t : ts) t.join();
  s.stop = true;
  cancel.join();
  enable_stats(false);  // the workload's counts, not those of the end-of-run checks
  const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();

  // Objects still published: their events have ended; their waits return at once.
  while (drop_object* d = s.drops.claim()) {
    wait_bit_clear(d->word, bits<std::uint32_t>::event);
    s.drops.give_back(d);
  }
  check_quiescent(s, s.w32);
  check_quiescent(s, s.w64);
  check_table_empty(s);

  const std::uint64_t n = total_ops(s.c);
  std::printf("\n%-14s %14s %14s %12s %12s\n", "operation", "count", "done", "timed out", "stopped");
  for (int k = 0; k < k_count; ++k)
    std::printf("%-14s %14s %14s %12s %12s\n", kind_name[k], grouped(s.c.ops[std::size_t(k)].load()).c_str(),
                grouped(s.c.done[std::size_t(k)].load()).c_str(),
                grouped(s.c.timed_out[std::size_t(k)].load()).c_str(),
                grouped(s.c.stopped[std::size_t(k)].load()).c_str());
  std::uint64_t acq = 0;
  for (auto* sl : s.w32) acq += sl->acquisitions.load();
  for (auto* sl : s.w64) acq += sl->acquisitions.load();
  std::printf("%-14s %14s ops in %.1f s (%.0f ops/s); %s lock acquisitions\n", "total", grouped(n).c_str(),
              elapsed, double(n) / elapsed, grouped(acq).c_str());
  const stats_snapshot st = get_stats();
  const contention_stats& t = st.total;
  std::printf(
      "\ncontention (pagewait/stats.hpp): %s lock waits, %s shared waits, %s gave up, %s lost races, "
      "%s slow releases, %s hand-offs\n",
      grouped(t.lock_waits).c_str(), grouped(t.shared_waits).c_str(), grouped(t.gave_up).c_str(),
      grouped(t.lost_races).c_str(), grouped(t.releases).c_str(), grouped(t.handoffs).c_str());
  std::printf(
      "  longest wait %.3f ms, longest bucket-lock hold %.1f us, longest walk %s nodes; %zu buckets used",
      double(t.longest_wait.count()) / 1e6, double(t.longest_hold.count()) / 1e3,
      grouped(t.longest_walk).c_str(), st.buckets.size());
  if (!st.buckets.empty()) {
    const auto busiest =
        std::max_element(st.buckets.begin(), st.buckets.end(), [](const auto& a, const auto& b) {
          return a.second.lock_waits + a.second.shared_waits < b.second.lock_waits + b.second.shared_waits;
        });
    std::printf(", busiest %zu (%s waits)", busiest->first,
                grouped(busiest->second.lock_waits + busiest->second.shared_waits).c_str());
  }
  std::printf("\n");
  std::uint64_t bad = 0;
  std::printf("\nviolations:");
  for (int v = 0; v < v_count; ++v) {
    const std::uint64_t x = s.c.violations[std::size_t(v)].load();
    bad += x;
    if (x) std::printf(" %s %s;", violation_name[v], grouped(x).c_str());
  }
  if (bad)
    std::printf("\nFAIL: %s violations (seed %" PRIu64 ")\n", grouped(bad).c_str(), o.seed);
  else
    std::printf(" none\nok (seed %" PRIu64 ")\n", o.seed);
  return bad ? 1 : 0;
}

const tool::command_registrar reg{
    {"stress", "soak every kind of wait on many words, checking the contract as it goes", &stress_main}};

}  // namespace
}  // namespace pagewait::stress
