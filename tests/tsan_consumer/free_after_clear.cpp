// tests/tsan_consumer/free_after_clear.cpp — "release is the last touch", under ThreadSanitizer.
// Built with -fsanitize=thread against an uninstrumented pagewait library; TSan must report
// nothing.
//
// Each round several threads wait on an event bit of a heap object. The first to queue frees the
// object the instant its wait_bit_clear returns, while the releaser's clear_bit_and_wake is still
// waking the others (the manual's promise: the clearing step is the releaser's last touch, and a
// waiter needs the object alive only while the bit is set). The others never touch the object
// again; they read data the releaser wrote outside it. So the free must be ordered after every
// access pagewait made to the word on behalf of the other threads (TSan must not see the
// releaser's or the other waiters' accesses to the word as racing with the free), and the late
// waiters must still see the releaser's writes although the word they waited on is gone.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <pagewait/pagewait.hpp>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct page {
  std::atomic<std::uint32_t> flags{0};
  std::atomic<std::uint64_t> flags64{0};
  long data[8] = {};
};
constexpr std::uint32_t WRITEBACK = 1u << 2;
constexpr std::uint64_t WRITEBACK64 = std::uint64_t(1) << 33;

constexpr unsigned waiters = 4;
constexpr unsigned rounds = 1000;

std::atomic<page*> current{nullptr};
std::atomic<unsigned> round_no{0};
std::atomic<unsigned> arrived{0}, done{0};
long queued_rounds = 0;      // rounds whose release found a waiter queued (the waiters bit set)
long outside[waiters] = {};  // written by the releaser before the clear; read by the late waiters

void waiter(unsigned id) {
  for (unsigned r = 1; r <= rounds; ++r) {
    while (round_no.load(std::memory_order_acquire) < r) std::this_thread::yield();
    // Waiter 0 queues first (the others wait for it to arrive), so it is the first woken.
    if (id != 0)
      while (arrived.load() == 0) std::this_thread::yield();
    page* p = current.load(std::memory_order_acquire);
    const bool on64 = r % 2;
    if (id == 0) {
      arrived.fetch_add(1);
      if (on64)
        pagewait::wait_bit_clear(p->flags64, WRITEBACK64);
      else
        pagewait::wait_bit_clear(p->flags, WRITEBACK);
      long sum = 0;
      for (long d : p->data) sum += d;
      delete p;  // at once: the releaser may still be waking the others
      if (sum != 8L * r) {
        std::fprintf(stderr, "round %u: stale page data\n", r);
        std::abort();
      }
    } else {
      std::this_thread::sleep_for(20us);  // queue after waiter 0
      arrived.fetch_add(1);
      const bool ok = on64 ? pagewait::wait_bit_clear_for(p->flags64, WRITEBACK64, 10s)
                           : pagewait::wait_bit_clear_for(p->flags, WRITEBACK, 10s);
      if (!ok) {
        std::fprintf(stderr, "wait gave up after 10 s\n");
        std::abort();
      }
      // p may be freed by now: not touched again. What the releaser wrote elsewhere is visible.
      if (outside[id] != long(r)) {
        std::fprintf(stderr, "round %u: waiter %u read a stale value\n", r, id);
        std::abort();
      }
    }
    done.fetch_add(1);
  }
}

}  // namespace

int main() {
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < waiters; ++i) ts.emplace_back(waiter, i);
  for (unsigned r = 1; r <= rounds; ++r) {
    auto* p = new page;
    const bool on64 = r % 2;
    if (on64)
      p->flags64.fetch_or(WRITEBACK64);  // writeback starts
    else
      p->flags.fetch_or(WRITEBACK);
    arrived.store(0);
    done.store(0);
    current.store(p, std::memory_order_release);
    round_no.store(r, std::memory_order_release);
    while (arrived.load() < waiters) std::this_thread::yield();
    std::this_thread::sleep_for(300us);  // let them queue
    for (long& d : p->data) d = r;
    for (long& o : outside) o = r;
    if (on64 ? (p->flags64.load() & pagewait::waiters_bit<std::uint64_t>)
             : (p->flags.load() & pagewait::waiters_bit<std::uint32_t>))
      ++queued_rounds;  // the release below takes the slow path and wakes sleepers
    // End of writeback: the last touch of *p by this thread.
    if (on64)
      pagewait::clear_bit_and_wake(p->flags64, WRITEBACK64);
    else
      pagewait::clear_bit_and_wake(p->flags, WRITEBACK);
    while (done.load() < waiters) std::this_thread::yield();
  }
  for (auto& t : ts) t.join();
  std::printf("free_after_clear: %u rounds x %u waiters, %ld rounds released with waiters queued\n", rounds,
              waiters, queued_rounds);
  if (queued_rounds < long(rounds) / 4) {
    std::printf("free_after_clear: FAILED: the waiters hardly slept\n");
    return 1;
  }
  std::printf("free_after_clear: ok\n");
  return 0;
}
