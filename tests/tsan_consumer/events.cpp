// tests/tsan_consumer/events.cpp — data published by an event release and read by its waiters,
// in a program built with -fsanitize=thread against an uninstrumented pagewait library.
// ThreadSanitizer must report nothing: a wait_bit_clear that returns true sees everything the
// releaser wrote before clear_bit_and_wake (or unlock_bit), including when the waiter slept and
// was woken by the library's release walk.
//
// Each round the producer makes a fresh item whose bit is set, hands it to the waiters, waits
// until they are all queued on it, only then writes the payload (so that nothing but the release
// orders it), and releases the bit: an event bit with clear_bit_and_wake, or a lock bit it holds
// with unlock_bit. Waiters use every form of wait_bit_clear, then read the payload.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <pagewait/pagewait.hpp>
#include <stop_token>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
constexpr std::uint64_t IO = std::uint64_t(1) << 3, LOCK = std::uint64_t(1) << 17;

struct item {
  std::atomic<std::uint32_t> w32{0};
  std::atomic<std::uint64_t> w64{0};
  long payload[4] = {};
};

constexpr unsigned waiters = 3;
constexpr unsigned rounds = 1000;

std::atomic<item*> current{nullptr};
std::atomic<unsigned> round_no{0};
std::atomic<unsigned> arrived{0}, done{0};
long queued_rounds = 0;   // rounds whose release found a waiter queued (the waiters bit set)
long global_payload = 0;  // written by the producer before the release, outside any item

template <class W>
bool wait_some_way(std::atomic<W>& w, W bit, unsigned how) {
  std::stop_source never;
  switch (how % 5) {
    case 0:
      pagewait::wait_bit_clear(w, bit);
      return true;
    case 1:
      return pagewait::wait_bit_clear_for(w, bit, 10s);
    case 2:
      return pagewait::wait_bit_clear_until(w, bit, std::chrono::steady_clock::now() + 10s);
    case 3:
      return pagewait::wait_bit_clear_until(w, bit, std::chrono::system_clock::now() + 10s);
    default:
      return pagewait::wait_bit_clear(w, bit, never.get_token());
  }
}

void waiter(unsigned id) {
  for (unsigned r = 1; r <= rounds; ++r) {
    while (round_no.load(std::memory_order_acquire) < r) std::this_thread::yield();
    item* it = current.load(std::memory_order_acquire);
    const bool on64 = r % 2;
    arrived.fetch_add(1);
    bool ok;
    if (on64)
      ok = wait_some_way(it->w64, r % 4 == 1 ? IO : LOCK, r + id);
    else
      ok = wait_some_way(it->w32, std::uint32_t(1), r + id);
    if (!ok) {
      std::fprintf(stderr, "wait gave up after 10 s\n");
      std::abort();
    }
    // Plain reads of what the producer wrote before its release.
    long sum = 0;
    for (long p : it->payload) sum += p;
    if (sum != 4L * r || global_payload != long(r)) {
      std::fprintf(stderr, "round %u: waiter %u read a stale payload\n", r, id);
      std::abort();
    }
    done.fetch_add(1);
  }
}

}  // namespace

int main() {
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < waiters; ++i) ts.emplace_back(waiter, i);
  for (unsigned r = 1; r <= rounds; ++r) {
    auto* it = new item;
    const bool on64 = r % 2;
    const std::uint64_t bit64 = r % 4 == 1 ? IO : LOCK;
    if (on64) {
      if (bit64 == IO)
        it->w64.fetch_or(IO);  // start the event
      else
        pagewait::lock_bit(it->w64, LOCK);
    } else {
      it->w32.fetch_or(1u);
    }
    arrived.store(0);
    done.store(0);
    current.store(it, std::memory_order_release);
    round_no.store(r, std::memory_order_release);
    while (arrived.load() < waiters) std::this_thread::yield();
    std::this_thread::sleep_for(300us);  // let them queue
    // Written after the waiters last synchronized with us: only the release orders these.
    for (long& p : it->payload) p = r;
    global_payload = r;
    if (on64 ? (it->w64.load() & pagewait::waiters_bit<std::uint64_t>)
             : (it->w32.load() & pagewait::waiters_bit<std::uint32_t>))
      ++queued_rounds;  // the release below takes the slow path and wakes sleepers
    if (on64) {
      if (bit64 == IO)
        pagewait::clear_bit_and_wake(it->w64, IO);
      else
        pagewait::unlock_bit(it->w64, LOCK);
    } else {
      pagewait::clear_bit_and_wake(it->w32, 1u);
    }
    while (done.load() < waiters) std::this_thread::yield();
    delete it;
  }
  for (auto& t : ts) t.join();
  std::printf("events: %u rounds x %u waiters, %ld rounds released with waiters queued\n", rounds, waiters,
              queued_rounds);
  if (queued_rounds < long(rounds) / 4) {
    std::printf("events: FAILED: the waiters hardly slept\n");
    return 1;
  }
  std::printf("events: ok\n");
  return 0;
}
