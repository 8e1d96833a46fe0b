// tests/tsan_consumer/racy.cpp — the annotations must not hide real races. Built like the other
// tsan_consumer programs; each case touches data outside the lock (or reads an event's data
// before waiting for it) and ThreadSanitizer must report "data race". The racing pair is
// separated by a pagewait hand-off or wake-up through the library's slow path, so the case
// would pass silently if an annotation ordered more than the operation does.
//
//   racy mutex     a write after unlock() races with the next owner's read after its lock()
//   racy bit_lock  the same on a bit_lock, the next owner queued (hand-off)
//   racy event     a write after clear_bit_and_wake races with a woken waiter's read
// and pagewait::mutex is known to TSan as a mutex:
//   racy lock_order  two threads take two pagewait::mutex in opposite orders, one after the
//                    other (no deadlock happens): TSan reports a lock-order inversion
// Each case prints the address of the racing variable first, so that run.cmake can check that
// the race reported is that one and no other.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <pagewait/mutex.hpp>
#include <pagewait/pagewait.hpp>
#include <thread>

namespace {

using namespace std::chrono_literals;

long protected_data = 0;
long unprotected = 0;

template <class Lockable>
int lock_case(Lockable& l) {
  pagewait::set_fairness({0, std::chrono::nanoseconds(0)});
  l.lock();
  std::thread t([&] {
    l.lock();  // queues, then owns by hand-off
    ++protected_data;
    l.unlock();
    std::this_thread::sleep_for(50ms);
    std::printf("read %ld\n", unprotected);  // races with the write below
  });
  std::this_thread::sleep_for(50ms);  // t queues
  ++protected_data;
  l.unlock();
  unprotected = 1;  // outside the lock: not ordered before t's read
  t.join();
  return 0;
}

int lock_order_case() {
  pagewait::mutex a, b;
  std::thread t([&] {
    std::scoped_lock ga(a);
    std::scoped_lock gb(b);
  });
  t.join();
  std::scoped_lock gb(b);
  std::scoped_lock ga(a);
  return 0;
}

int event_case() {
  std::atomic<std::uint32_t> word{1u};
  std::thread t([&] {
    pagewait::wait_bit_clear(word, 1u);     // sleeps, woken by the release walk
    const long published = protected_data;  // ordered by the release: no report for this one
    std::this_thread::sleep_for(50ms);
    std::printf("read %ld %ld\n", published, unprotected);  // races with the write below
  });
  std::this_thread::sleep_for(50ms);
  protected_data = 1;
  pagewait::clear_bit_and_wake(word, 1u);
  unprotected = 1;  // after the release: not ordered before t's read
  t.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* which = argc > 1 ? argv[1] : "";
  std::fprintf(stderr, "unprotected at %p\n", static_cast<void*>(&unprotected));
  if (!std::strcmp(which, "mutex")) {
    pagewait::mutex m;
    return lock_case(m);
  }
  if (!std::strcmp(which, "bit_lock")) {
    std::atomic<std::uint64_t> w{0};
    pagewait::bit_lock<std::uint64_t> l(w, std::uint64_t(1) << 7);
    return lock_case(l);
  }
  if (!std::strcmp(which, "event")) return event_case();
  if (!std::strcmp(which, "lock_order")) return lock_order_case();
  std::fprintf(stderr, "usage: racy mutex|bit_lock|event|lock_order\n");
  return 2;
}
