// Built against an installed pagewait by tests/consumer/run.cmake. Exits 0 if the headers and
// the library work together: a lock hand-over and an event wake-up between two threads.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <pagewait/pagewait.hpp>
#include <thread>

int main() {
  std::atomic<std::uint32_t> word{0};
  constexpr std::uint32_t lock = 1u << 0, event = 1u << 1;
  int shared = 0;
  word.fetch_or(event);
  pagewait::lock_bit(word, lock);
  std::thread t([&] {
    pagewait::wait_bit_clear(word, event);
    pagewait::bit_lock<std::uint32_t> bl(word, lock);
    std::scoped_lock g(bl);
    ++shared;
  });
  ++shared;
  pagewait::unlock_bit(word, lock);
  pagewait::clear_bit_and_wake(word, event);
  t.join();
  const bool ok = shared == 2 && (word.load() & ~pagewait::waiters_bit<std::uint32_t>) == 0 &&
                  pagewait::wait_table_size() >= 256;
  std::printf("consumer: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
