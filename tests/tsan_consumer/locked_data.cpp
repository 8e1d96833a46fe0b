// tests/tsan_consumer/locked_data.cpp — plain counters protected by pagewait locks, in a program
// built with -fsanitize=thread against an uninstrumented pagewait library (tests/tsan_consumer/
// run.cmake). ThreadSanitizer must report nothing: every increment happens under a lock, and the
// lock's acquire and release, including a hand-off inside the library, order them.
//
// Each thread cycles through every way to take a lock: std::scoped_lock on a bit_lock (two bits
// of one 32-bit word, one bit of a 64-bit word), on pagewait::mutex, on two bits at once
// (std::lock), lock_bit/unlock_bit, try_lock_bit, the timed and stop_token forms, and
// unique_lock<pagewait::mutex> with try_lock_for. Holders sometimes yield inside the critical
// section, so that others queue: strict hand-off (set_fairness {0, 0}) then passes the lock
// through the library's slow paths. The program checks that the slow paths were taken.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <pagewait/mutex.hpp>
#include <pagewait/pagewait.hpp>
#include <stop_token>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
constexpr std::uint32_t A = 1u << 0, B = 1u << 5;
constexpr std::uint64_t C = std::uint64_t(1) << 40;
constexpr std::uint32_t WB32 = pagewait::waiters_bit<std::uint32_t>;
constexpr std::uint64_t WB64 = pagewait::waiters_bit<std::uint64_t>;

struct shared_state {
  std::atomic<std::uint32_t> w32{0};
  std::atomic<std::uint64_t> w64{0};
  pagewait::mutex m;
  // Plain data, each protected by one lock.
  long a = 0;     // bit A of w32
  long b = 0;     // bit B of w32
  long c = 0;     // bit C of w64
  long in_m = 0;  // m
  long both = 0;  // A and B together
};

std::atomic<long> contended{0};  // critical sections that saw a queued waiter on their word

void hold(long& x, const std::atomic<std::uint32_t>* w, unsigned i) {
  long v = x;  // read, yield, write: a lost update if the lock did not exclude
  if (i % 4 == 0) std::this_thread::yield();
  x = v + 1;
  if (w && (w->load(std::memory_order_relaxed) & WB32)) contended.fetch_add(1, std::memory_order_relaxed);
}

void worker(shared_state& s, unsigned id, unsigned iterations) {
  pagewait::bit_lock<std::uint32_t> la(s.w32, A), lb(s.w32, B);
  pagewait::bit_lock<std::uint64_t> lc(s.w64, C);
  std::stop_source never_stopped;
  for (unsigned i = 0; i < iterations; ++i) {
    switch ((i + id) % 10) {
      case 0: {
        std::scoped_lock g(la);
        hold(s.a, &s.w32, i);
        break;
      }
      case 1: {
        std::scoped_lock g(lb);
        hold(s.b, &s.w32, i);
        break;
      }
      case 2: {
        std::scoped_lock g(lc);
        long v = s.c;
        if (i % 4 == 0) std::this_thread::yield();
        s.c = v + 1;
        if (s.w64.load(std::memory_order_relaxed) & WB64) contended.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      case 3: {
        std::scoped_lock g(s.m);
        hold(s.in_m, nullptr, i);
        break;
      }
      case 4: {
        std::scoped_lock g(la, lb);  // std::lock: try_lock and lock on two bits of one word
        hold(s.both, &s.w32, i);
        break;
      }
      case 5:
        pagewait::lock_bit(s.w32, A);
        hold(s.a, &s.w32, i);
        pagewait::unlock_bit(s.w32, A);
        break;
      case 6:
        while (!pagewait::try_lock_bit(s.w32, B)) std::this_thread::yield();
        hold(s.b, &s.w32, i);
        pagewait::unlock_bit(s.w32, B);
        break;
      case 7:
        if (i % 2 ? pagewait::try_lock_bit_for(s.w32, A, 10s)
                  : pagewait::try_lock_bit_until(s.w32, A, std::chrono::steady_clock::now() + 10s)) {
          hold(s.a, &s.w32, i);
          pagewait::unlock_bit(s.w32, A);
        } else {
          std::fprintf(stderr, "timed lock_bit gave up after 10 s\n");
          std::abort();
        }
        break;
      case 8:
        if (pagewait::lock_bit(s.w64, C, never_stopped.get_token())) {
          long v = s.c;
          if (i % 4 == 0) std::this_thread::yield();
          s.c = v + 1;
          pagewait::unlock_bit(s.w64, C);
        } else {
          std::abort();
        }
        break;
      case 9: {
        std::unique_lock<pagewait::mutex> g(s.m, std::defer_lock);
        if (i % 2) {
          if (!g.try_lock_for(10s)) std::abort();
        } else {
          while (!g.try_lock()) std::this_thread::yield();
        }
        hold(s.in_m, nullptr, i);
        break;
      }
    }
  }
}

}  // namespace

int main() {
  pagewait::set_fairness({0, std::chrono::nanoseconds(0)});  // strict hand-off to queued waiters
  constexpr unsigned threads = 4, iterations = 20000;
  shared_state s;
  // Rounds until 100 critical sections saw a queued waiter (at most 20): how often threads queue
  // is the scheduler's, and a waiter that spins and yields before it queues queues less often.
  unsigned rounds = 0;
  do {
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t) ts.emplace_back(worker, std::ref(s), t, iterations);
    for (auto& t : ts) t.join();
    ++rounds;
  } while (contended.load() < 100 && rounds < 20);
  // Per thread and round, each case runs iterations / 10 times.
  const long per = long(rounds) * long(threads) * (iterations / 10);
  const bool counts_ok =
      s.a == 3 * per && s.b == 2 * per && s.c == 2 * per && s.in_m == 2 * per && s.both == per;
  std::printf("locked_data: a=%ld b=%ld c=%ld m=%ld both=%ld (each case %ld), contended sections %ld\n", s.a,
              s.b, s.c, s.in_m, s.both, per, contended.load());
  if (!counts_ok) {
    std::printf("locked_data: FAILED: lost updates\n");
    return 1;
  }
  if (contended.load() < 100) {
    std::printf("locked_data: FAILED: the slow paths were hardly exercised\n");
    return 1;
  }
  std::printf("locked_data: ok\n");
  return 0;
}
