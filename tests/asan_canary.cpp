// tests/asan_canary.cpp — shows that the asan preset's lifetime tests can fail. It runs the
// lifetime tests' poller scenario with a real delete on the OLD protocol, clear_then_wake,
// with the release stalled mid-walk (stall_policy.hpp): the poller deletes the object the
// instant the bit is clear, and the walk then clears the waiters bit of the freed word. ASan
// must report a heap-use-after-free; ctest (asan preset only) passes if, and only if, it does.
// The same run with `atomic-clear` as argument must be clean (a second ctest test).
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>

#include "stall_policy.hpp"

namespace {

template <pagewait::release_protocol R>
int run() {
  using pwtest::stall_policy;
  using C = pagewait::detail::core<stall_policy, R, std::uint32_t>;
  constexpr std::uint32_t E = 1u << 3;
  auto* word = new std::atomic<std::uint32_t>(E);
  std::thread waiter([word] { C::wait_clear(*word, E, pagewait::detail::deadline::never(), nullptr); });
  // Wait until the waiter is queued: its waiters bit is set under its bucket lock.
  while (!(word->load() & pagewait::waiters_bit<std::uint32_t>)) std::this_thread::yield();
  std::thread poller([word] {
    while (word->load(std::memory_order_acquire) & E) std::this_thread::yield();
    delete word;
    stall_policy::killed.store(true);
  });
  stall_policy::armed.store(true);
  C::release(*word, E, pagewait::detail::release_kind::event);
  poller.join();
  waiter.join();
  std::printf("%s: release finished without touching freed memory\n",
              std::string(pagewait::to_string(R)).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "atomic-clear") == 0)
    return run<pagewait::release_protocol::atomic_clear>();
  return run<pagewait::release_protocol::clear_then_wake>();
}
