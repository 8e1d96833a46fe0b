// src/pagewait.cpp — errors, settings, and the compiled slow paths of the shipped protocol.
#include "pagewait/pagewait.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "at_fork.hpp"

namespace pagewait {

template struct detail::core<detail::native_policy, release_protocol::atomic_clear, std::uint32_t>;
template struct detail::core<detail::native_policy, release_protocol::atomic_clear, std::uint64_t>;

namespace detail {

// For the TSan annotations of a user's TSan build (detail/tsan.hpp): whether this library was
// itself built with TSan (then TSan sees its synchronization, and the annotations stand aside),
// and the wait slots, which are only ever used as addresses.
const bool library_tsan_instrumented = PAGEWAIT_TSAN != 0;
unsigned char tsan_wait_slots[wait_slot_count];

namespace {
std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

void throw_bad_bit(std::uint64_t bit, std::uint64_t waiters) {
  if (bit == 0) throw std::invalid_argument("pagewait: bit mask is 0; pass a mask with exactly one bit set");
  if (bit == waiters)
    throw std::invalid_argument("pagewait: bit " + hex(bit) + " is the reserved waiters bit");
  throw std::invalid_argument("pagewait: bit mask " + hex(bit) + " has several bits set; pass exactly one");
}

void throw_not_set(std::uint64_t bit) {
  throw usage_error("pagewait: releasing bit " + hex(bit) + " which is not set");
}

void fatal_not_set(const char* who, const void* word, std::uint64_t bit) noexcept {
  // No allocation, no exception: the program's state is already broken.
  std::fprintf(stderr,
               "pagewait: fatal: %s of bit 0x%llx of the word at %p, which is not set (not locked, or "
               "unlocked twice)\n",
               who, static_cast<unsigned long long>(bit), word);
  std::fflush(stderr);
  std::abort();
}

namespace {
std::mutex settings_mutex;
std::atomic<unsigned> max_lost{fairness_settings{}.max_lost_races};
std::atomic<long long> max_wait_ns{fairness_settings{}.max_wait.count()};
}  // namespace

void settings_at_fork(fork_phase ph) noexcept {
  if (ph == fork_phase::prepare)
    settings_mutex.lock();
  else
    settings_mutex.unlock();  // in the child too: the forking thread is the one that locked it
}

fairness_settings native_policy::fairness() noexcept {
  return {max_lost.load(std::memory_order_relaxed),
          std::chrono::nanoseconds(max_wait_ns.load(std::memory_order_relaxed))};
}

}  // namespace detail

void set_fairness(const fairness_settings& s) {
  if (s.max_wait < std::chrono::nanoseconds::zero())
    throw std::invalid_argument("pagewait: fairness max_wait must not be negative");
  std::lock_guard<std::mutex> g(detail::settings_mutex);
  detail::max_lost.store(s.max_lost_races, std::memory_order_relaxed);
  detail::max_wait_ns.store(s.max_wait.count(), std::memory_order_relaxed);
}

fairness_settings get_fairness() noexcept { return detail::native_policy::fairness(); }

std::size_t wait_table_size() noexcept { return detail::native_policy::table().size(); }

}  // namespace pagewait
