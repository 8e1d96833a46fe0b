// tests/tsan_consumer/async.cpp — asynchronous waits (pagewait/async.hpp) in a program built with
// -fsanitize=thread against an uninstrumented pagewait library. ThreadSanitizer must report
// nothing:
//   * what the loop thread wrote into a request before starting its wait is visible to the
//     callback, which runs on the releasing thread (the start publishes the waiter);
//   * what the releaser wrote before the clear is visible to the callback (same thread), and,
//     through the loop's own queue, to the loop;
//   * the callback's own synchronisation (a std::mutex around the loop's queue) is seen: the
//     callback runs outside the ignore region of the release that calls it.
// Some waits are cancelled by the loop instead; a withdrawn one is reused at once.
// Then locks: a thread in lock_bit, asynchronous lockers whose callbacks run on whichever thread
// unlocks, and coroutines in co_await lock_bit_async on this loop take turns on one bit that
// guards a plain counter: each owner's increment must be ordered after the previous owner's.
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <pagewait/async.hpp>
#include <pagewait/pagewait.hpp>
#include <thread>
#include <vector>

namespace {

constexpr std::uint32_t IO = 1u << 4;
constexpr unsigned requests = 8;
constexpr unsigned rounds = 400;

struct request;
std::mutex queue_lock;
std::deque<request*> ready;  // the loop's queue: callbacks post here

std::atomic<std::uint32_t> flags{0};
long payload = 0;  // written by the releaser before each clear

struct request {
  long before_start = 0;  // written by the loop before the start, read by the callback
  long seen_payload = 0;  // written by the callback, read by the loop
  unsigned round = 0;
  pagewait::async_wait<std::uint32_t> wait;
  explicit request(pagewait::async_wait<std::uint32_t>::callback cb) : wait(cb, this) {}
};

void on_clear(pagewait::async_wait<std::uint32_t>& w, pagewait::async_result r) noexcept {
  auto* q = static_cast<request*>(w.user_data());
  if (r != pagewait::async_result::cleared || q->before_start != long(q->round) * 7) {
    std::fprintf(stderr, "async: bad callback (result %d, before_start %ld, round %u)\n", int(r),
                 q->before_start, q->round);
    std::abort();
  }
  q->seen_payload = payload;
  std::lock_guard<std::mutex> g(queue_lock);
  ready.push_back(q);
}

// The coroutine form: the loop's coroutines wait with co_await; the scheduler posts their
// handles to the loop under a mutex; the loop resumes them and checks what they saw.
struct scheduler {
  std::mutex m;
  std::deque<std::coroutine_handle<>> q;
  void post(std::coroutine_handle<> h) noexcept {
    std::lock_guard<std::mutex> g(m);
    q.push_back(h);
  }
  // The loop's step: resumes the oldest posted handle, or yields if there is none.
  void run_one() {
    std::coroutine_handle<> h;
    {
      std::lock_guard<std::mutex> g(m);
      if (!q.empty()) {
        h = q.front();
        q.pop_front();
      }
    }
    if (h)
      h.resume();
    else
      std::this_thread::yield();
  }
};
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::abort(); }
  };
};
long co_local[requests];          // written by each coroutine before it waits, read after it resumes
long co_payload[rounds / 4 + 1];  // one per round: written by the releaser before its clear
unsigned co_done = 0;             // the loop thread only
detached co_reader(unsigned i, unsigned r, scheduler& s) {
  co_local[i] = long(r) * 11;
  const bool ok = co_await pagewait::wait_bit_clear_async(flags, IO, s);
  if (!ok || co_local[i] != long(r) * 11 || co_payload[r] != long(r) * 3) {
    std::fprintf(stderr, "async: coroutine %u saw ok=%d local %ld payload %ld in round %u\n", i, int(ok),
                 co_local[i], co_payload[r], r);
    std::abort();
  }
  ++co_done;
}

constexpr std::uint32_t LK = 1u << 5;
long guarded = 0;  // only under LK
constexpr int lock_rounds = 300;

struct locker {
  int left = lock_rounds;
  std::atomic<bool> finished{false};
  pagewait::async_wait<std::uint32_t> wait;
  explicit locker(pagewait::async_wait<std::uint32_t>::callback cb) : wait(cb, this) {}
};
void on_locked(pagewait::async_wait<std::uint32_t>& w, pagewait::async_result r) noexcept {
  auto* l = static_cast<locker*>(w.user_data());
  if (r != pagewait::async_result::locked) {
    std::fprintf(stderr, "async: lock callback with result %d\n", int(r));
    std::abort();
  }
  for (;;) {
    ++guarded;
    pagewait::unlock_bit(flags, LK);
    if (--l->left == 0) {
      l->finished.store(true, std::memory_order_release);
      return;
    }
    if (w.start_lock(flags, LK) == pagewait::async_start::pending) return;
  }
}
unsigned co_lockers_done = 0;  // the loop thread only
detached co_locker(scheduler& s) {
  for (int i = 0; i < lock_rounds; ++i) {
    // Bound first: GCC 12 miscompiles a co_await that suspends in an if condition.
    const bool owner = co_await pagewait::lock_bit_async(flags, LK, s);
    if (!owner) std::abort();
    ++guarded;
    pagewait::unlock_bit(flags, LK);
  }
  ++co_lockers_done;
}

}  // namespace

int main() {
  std::vector<request*> all;
  for (unsigned i = 0; i < requests; ++i) all.push_back(new request(&on_clear));
  std::atomic<unsigned> go{0}, released{0};
  std::thread releaser([&] {
    for (unsigned r = 1; r <= rounds; ++r) {
      // Relaxed on both sides: the round number orders nothing for TSan, so that only pagewait
      // orders the loop's writes before the start with the callback's reads.
      while (go.load(std::memory_order_relaxed) < r) std::this_thread::yield();
      payload = long(r) * 3;
      pagewait::clear_bit_and_wake(flags, IO);
      released.store(r, std::memory_order_release);
    }
  });
  unsigned pending_rounds = 0, withdrawn = 0;
  for (unsigned r = 1; r <= rounds; ++r) {
    flags.fetch_or(IO);
    unsigned pending = 0;
    for (request* q : all) {
      q->round = r;
      q->before_start = long(r) * 7;
      if (q->wait.start_wait_clear(flags, IO) == pagewait::async_start::pending) ++pending;
    }
    // Every fourth round the loop withdraws half of them before the release.
    if (r % 4 == 0)
      for (unsigned i = 0; i < requests / 2; ++i)
        if (all[i]->wait.cancel()) {
          --pending;
          ++withdrawn;
        }
    pending_rounds += pending != 0;
    go.store(r, std::memory_order_relaxed);
    unsigned got = 0;
    while (got < pending) {
      request* q = nullptr;
      {
        std::lock_guard<std::mutex> g(queue_lock);
        if (!ready.empty()) {
          q = ready.front();
          ready.pop_front();
        }
      }
      if (!q) {
        std::this_thread::yield();
        continue;
      }
      if (q->seen_payload != long(r) * 3) {
        std::fprintf(stderr, "async: callback saw payload %ld in round %u\n", q->seen_payload, r);
        return 1;
      }
      ++got;
    }
    while (released.load(std::memory_order_acquire) < r) std::this_thread::yield();
  }
  releaser.join();

  // Coroutines: the releaser writes the payload before each clear; the coroutine reads it after
  // it is resumed on this thread (ordered by the release and the scheduler's mutex).
  scheduler sched;
  std::atomic<unsigned> co_go{0}, co_released{0};
  std::thread co_releaser([&] {
    for (unsigned r = 1; r <= rounds / 4; ++r) {
      while (co_go.load(std::memory_order_relaxed) < r) std::this_thread::yield();
      co_payload[r] = long(r) * 3;
      pagewait::clear_bit_and_wake(flags, IO);
      co_released.store(r, std::memory_order_release);
    }
  });
  for (unsigned r = 1; r <= rounds / 4; ++r) {
    flags.fetch_or(IO);
    for (unsigned i = 0; i < requests; ++i) co_reader(i, r, sched);
    co_go.store(r, std::memory_order_relaxed);
    while (co_done < r * requests) sched.run_one();
    while (co_released.load(std::memory_order_acquire) < r) std::this_thread::yield();
  }
  co_releaser.join();

  // Locks.
  constexpr unsigned cb_lockers = 3, co_lockers = 3;
  std::vector<locker*> lockers;
  for (unsigned i = 0; i < cb_lockers; ++i) lockers.push_back(new locker(&on_locked));
  std::thread lock_thread([] {
    for (int i = 0; i < lock_rounds; ++i) {
      pagewait::lock_bit(flags, LK);
      ++guarded;
      pagewait::unlock_bit(flags, LK);
    }
  });
  for (locker* l : lockers)
    if (l->wait.start_lock(flags, LK) == pagewait::async_start::done)
      on_locked(l->wait, pagewait::async_result::locked);
  for (unsigned i = 0; i < co_lockers; ++i) co_locker(sched);
  auto lockers_done = [&] {
    for (locker* l : lockers)
      if (!l->finished.load(std::memory_order_acquire)) return false;
    return co_lockers_done == co_lockers;
  };
  while (!lockers_done()) sched.run_one();
  lock_thread.join();
  const long expected = long(lock_rounds) * (1 + cb_lockers + co_lockers);
  if (guarded != expected) {
    std::fprintf(stderr, "async: guarded counter %ld, expected %ld\n", guarded, expected);
    return 1;
  }
  for (locker* l : lockers) delete l;
  for (request* q : all) delete q;
  std::printf("async: %u rounds with pending waits, %u waits withdrawn, %u coroutines resumed\n",
              pending_rounds, withdrawn, co_done);
  return pending_rounds == rounds ? 0 : 1;
}
