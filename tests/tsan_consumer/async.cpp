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
#include <atomic>
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
  for (request* q : all) delete q;
  std::printf("async: %u rounds with pending waits, %u waits withdrawn\n", pending_rounds, withdrawn);
  return pending_rounds == rounds ? 0 : 1;
}
