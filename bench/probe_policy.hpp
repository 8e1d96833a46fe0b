// bench/probe_policy.hpp — the native runtime plus the meters the figures need.
//
// probe_policy<Chunk> is native_policy in every respect but these, all of them per thread and
// active only on a thread that turned them on (so the instrumented core is used only where a
// figure reads the meters, and the shipped native path carries none of it):
//   - counting:  atomic RMWs on the user's word (test_and_set, fetch_*, compare_exchange
//                attempts) and plain loads; the pin adds its own RMWs (counted_pin).
//   - holding:   each bucket-lock hold taken by the thread, with its duration and the node
//                visits of the release walk made in it (lock() / visit(node) / unlock()).
//   - parking:   how many threads of the process have entered park(), i.e. are queued and
//                about to sleep: the wake-all figure waits for all N before releasing.
//   - Chunk:     walk visits per hold (the shipped bound is native_policy::chunk_visits = 64;
//                ~0u shows what the walk would hold without bookmarks).
// It has its own wait table, so its waiters never meet the library's.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <pagewait/pagewait.hpp>
#include <thread>
#include <vector>

namespace pwbench {

struct probe_meters {
  bool counting = false;
  std::uint64_t rmws = 0;
  std::uint64_t loads = 0;
  bool holding = false;
  std::chrono::steady_clock::time_point hold_start{};
  unsigned hold_visits = 0;
  std::uint64_t holds = 0;
  std::uint64_t max_hold_visits = 0;
  std::chrono::nanoseconds max_hold{0};
  std::uint64_t visits = 0;
};
inline thread_local probe_meters meters;

inline std::atomic<std::uint64_t> parked_threads{0};

// A parker that counts entries into park(). Parkers must outlive their threads (a releaser may
// unpark after the waiter returned): these are never freed, and stay reachable.
struct probe_parker {
  pagewait::detail::native_parker* inner;
  void prepare() noexcept { inner->prepare(); }
  std::uint32_t park(const pagewait::detail::deadline& dl, const std::stop_token* stop) noexcept {
    parked_threads.fetch_add(1, std::memory_order_relaxed);
    return inner->park(dl, stop);
  }
  void unpark(std::uint32_t token) noexcept { inner->unpark(token); }

  static probe_parker& current() {
    thread_local probe_parker* mine = nullptr;
    if (!mine) {
      static std::mutex m;
      static auto* all = new std::vector<probe_parker*>;
      mine = new probe_parker{&pagewait::detail::native_parker::current()};
      std::lock_guard g(m);
      all->push_back(mine);
    }
    return *mine;
  }
};

template <unsigned Chunk>
struct probe_policy : pagewait::detail::native_policy {
  using base = pagewait::detail::native_policy;

  template <class W>
  static W load(const std::atomic<W>& w, std::memory_order mo) noexcept {
    if (meters.counting) ++meters.loads;
    return w.load(mo);
  }
  template <class W>
  static bool test_and_set(std::atomic<W>& w, W bit, std::memory_order mo) noexcept {
    rmw();
    return base::test_and_set(w, bit, mo);
  }
  template <class W>
  static W fetch_or(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    rmw();
    return w.fetch_or(v, mo);
  }
  template <class W>
  static W fetch_and(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    rmw();
    return w.fetch_and(v, mo);
  }
  template <class W>
  static W fetch_xor(std::atomic<W>& w, W v, std::memory_order mo) noexcept {
    rmw();
    return w.fetch_xor(v, mo);
  }
  template <class W>
  static bool compare_exchange(std::atomic<W>& w, W& expected, W desired, std::memory_order success,
                               std::memory_order failure) noexcept {
    rmw();  // a failed attempt costs the line too
    return w.compare_exchange_weak(expected, desired, success, failure);
  }

  static void lock(bucket_lock& l) noexcept {
    base::lock(l);
    if (meters.holding) {
      meters.hold_start = std::chrono::steady_clock::now();
      meters.hold_visits = 0;
      ++meters.holds;
    }
  }
  static void unlock(bucket_lock& l) noexcept {
    if (meters.holding) {
      const auto d = std::chrono::steady_clock::now() - meters.hold_start;
      if (d > meters.max_hold) meters.max_hold = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
      if (meters.hold_visits > meters.max_hold_visits) meters.max_hold_visits = meters.hold_visits;
    }
    base::unlock(l);
  }
  static void visit(const void*) noexcept {
    if (meters.holding) {
      ++meters.hold_visits;
      ++meters.visits;
    }
  }

  using parker = probe_parker;
  static parker& current_parker() noexcept { return probe_parker::current(); }

  static constexpr unsigned chunk_visits = Chunk;

  static pagewait::detail::wait_table<probe_policy>& table() noexcept {
    static auto* t = new pagewait::detail::wait_table<probe_policy>(
        pagewait::detail::wait_table<probe_policy>::size_for_machine(std::thread::hardware_concurrency()));
    return *t;
  }

 private:
  static void rmw() noexcept {
    if (meters.counting) ++meters.rmws;
  }
};

using probe = probe_policy<pagewait::detail::native_policy::chunk_visits>;
using probe_no_bookmarks = probe_policy<~0u>;

// The pin of the pinning protocols, counting its two RMWs.
struct counted_pin {
  std::atomic<std::int32_t>* refs;
  void get() noexcept {
    if (meters.counting) ++meters.rmws;
    refs->fetch_add(1, std::memory_order_relaxed);
  }
  void put() noexcept {
    if (meters.counting) ++meters.rmws;
    refs->fetch_sub(1, std::memory_order_acq_rel);
  }
};

}  // namespace pwbench
