// src/stats_counters.hpp — the counters behind pagewait/stats.hpp, shared by the process's own
// statistics (src/stats.cpp: one per bucket of the native table, in this process's memory) and a
// wait domain's (src/shm.cpp: one per bucket of the domain's table, in the shared memory, counted
// by every attached process). Relaxed atomics only: lock-free and address-free, so they may live
// in a mapping that several processes see at different addresses.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "pagewait/stats.hpp"

namespace pagewait::detail::stats_impl {

struct alignas(64) bucket_counters {
  std::atomic<std::uint64_t> lock_waits{0}, shared_waits{0}, gave_up{0}, lost_races{0}, releases{0},
      handoffs{0}, longest_wait_ns{0}, longest_hold_ns{0}, longest_walk{0};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void raise_to(std::atomic<std::uint64_t>& a, std::uint64_t v) noexcept {
  std::uint64_t cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// The end of one slow-path wait, counted in `c`.
inline void count_wait(bucket_counters& c, bool exclusive, bool ok,
                       std::chrono::nanoseconds waited) noexcept {
  (exclusive ? c.lock_waits : c.shared_waits).fetch_add(1, std::memory_order_relaxed);
  if (!ok) c.gave_up.fetch_add(1, std::memory_order_relaxed);
  raise_to(c.longest_wait_ns, std::uint64_t(waited.count() > 0 ? waited.count() : 0));
}

// The end of one slow release that visited `visits` nodes.
inline void count_release(bucket_counters& c, bool handoff, std::uint64_t visits) noexcept {
  c.releases.fetch_add(1, std::memory_order_relaxed);
  if (handoff) c.handoffs.fetch_add(1, std::memory_order_relaxed);
  raise_to(c.longest_walk, visits);
}

inline contention_stats read(const bucket_counters& c) noexcept {
  constexpr auto r = std::memory_order_relaxed;
  contention_stats s;
  s.lock_waits = c.lock_waits.load(r);
  s.shared_waits = c.shared_waits.load(r);
  s.gave_up = c.gave_up.load(r);
  s.lost_races = c.lost_races.load(r);
  s.releases = c.releases.load(r);
  s.handoffs = c.handoffs.load(r);
  s.longest_wait = std::chrono::nanoseconds(c.longest_wait_ns.load(r));
  s.longest_hold = std::chrono::nanoseconds(c.longest_hold_ns.load(r));
  s.longest_walk = c.longest_walk.load(r);
  return s;
}

inline void zero(bucket_counters& c) noexcept {
  for (auto* a : {&c.lock_waits, &c.shared_waits, &c.gave_up, &c.lost_races, &c.releases, &c.handoffs,
                  &c.longest_wait_ns, &c.longest_hold_ns, &c.longest_walk})
    a->store(0, std::memory_order_relaxed);
}

// The snapshot's per-bucket list and total, from `n` buckets' counters (wake_syscalls and sleeps
// are the caller's).
inline void snapshot_buckets(const bucket_counters* c, std::size_t n, stats_snapshot& out) {
  for (std::size_t i = 0; i < n; ++i) {
    const contention_stats s = read(c[i]);
    if (!(s.lock_waits || s.shared_waits || s.gave_up || s.lost_races || s.releases || s.handoffs ||
          s.longest_wait.count() || s.longest_hold.count() || s.longest_walk))
      continue;
    out.buckets.emplace_back(i, s);
    out.total += s;
  }
}

}  // namespace pagewait::detail::stats_impl
