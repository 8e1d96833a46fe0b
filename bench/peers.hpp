// bench/peers.hpp — every lock the benchmarks compare, behind one shape.
//
// A peer is a type with
//   name                      its label in tables and plots
//   object                    what one lock (or event) costs in memory: the user's object
//   lock(o), unlock(o)        exclusive locking
//   has_event                 whether it can do an event bit (set / release-and-wake / wait)
//   set_event(o), release_event(o), wait_event(o)   when has_event
//
// pagewait appears once per release protocol. The shipped one (atomic-clear) goes through the
// public API, exactly as users call it; the other three are instantiations of the core
// (detail::core<native_policy, R, W>) with, for `pinned` and `xor-waiters`, a real reference
// count on the object as their pin (the kernel's folio_get / folio_put). Nothing here copies
// the protocol.
#pragma once

#include <absl/synchronization/mutex.h>
#include <linux/futex.h>
#include <oneapi/tbb/mutex.h>
#include <oneapi/tbb/queuing_mutex.h>
#include <oneapi/tbb/spin_mutex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <mutex>
#include <optional>
#include <pagewait/pagewait.hpp>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common.hpp"

namespace pwbench {

inline constexpr std::uint32_t LOCK = 1u << 0;
inline constexpr std::uint32_t EVENT = 1u << 1;

// Every benchmark process calls this first, so that each peer runs as in a production program:
//  - glibc runs pthread_mutex_lock without atomics while a process has one thread (its
//    SINGLE_THREAD_P shortcut); a lock is only ever needed with two threads, so one idle thread
//    is started, and std::mutex pays what it pays in real programs;
//  - Debian's absl is built without NDEBUG, which turns on absl::Mutex's deadlock detection
//    (a graph node per mutex, bookkeeping on every Lock); an NDEBUG build, what users ship,
//    has it off, so it is turned off here.
inline void prepare_process() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  static const bool started = [] {
    std::thread([] {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }).detach();
    return true;
  }();
  (void)started;
}

inline void cpu_relax() noexcept { pagewait::detail::native_policy::cpu_relax(); }

inline long futex_wait(std::atomic<std::uint32_t>* w, std::uint32_t expected) noexcept {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(w), FUTEX_WAIT_PRIVATE, expected, nullptr,
                 nullptr, 0);
}
inline long futex_wake(std::atomic<std::uint32_t>* w, int n) noexcept {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(w), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

// ---------------------------------------------------------------------------------------------
struct std_mutex_peer {
  static constexpr std::string_view name = "std::mutex";
  static constexpr bool has_event = false;
  struct object {
    std::mutex m;
  };
  static void lock(object& o) { o.m.lock(); }
  static void unlock(object& o) { o.m.unlock(); }
};

struct absl_mutex_peer {
  static constexpr std::string_view name = "absl::Mutex";
  static constexpr bool has_event = false;  // no event bit: absl::Notification is one-shot
  struct object {
    absl::Mutex m;
  };
  static void lock(object& o) { o.m.Lock(); }
  static void unlock(object& o) { o.m.Unlock(); }
};

// What a user writes without pagewait: a bit lock on C++20 std::atomic::wait / notify_all.
// (libstdc++ keeps a waiter count per address hash, so notify_all makes no syscall when nobody
// waits in the whole process slot.)
struct atomic_wait_peer {
  static constexpr std::string_view name = "atomic::wait bit";
  static constexpr bool has_event = true;
  struct object {
    std::atomic<std::uint32_t> word{0};
  };
  static void lock(object& o) {
    std::uint32_t v = o.word.fetch_or(LOCK, std::memory_order_acquire);
    while (v & LOCK) {
      o.word.wait(v, std::memory_order_relaxed);
      v = o.word.fetch_or(LOCK, std::memory_order_acquire);
    }
  }
  static void unlock(object& o) {
    o.word.fetch_and(~LOCK, std::memory_order_release);
    o.word.notify_all();  // other bits' waiters may sleep on this word too
  }
  static void set_event(object& o) { o.word.fetch_or(EVENT, std::memory_order_relaxed); }
  static void release_event(object& o) {
    o.word.fetch_and(~EVENT, std::memory_order_release);
    o.word.notify_all();
  }
  static void wait_event(object& o) {
    std::uint32_t v = o.word.load(std::memory_order_acquire);
    while (v & EVENT) {
      o.word.wait(v, std::memory_order_acquire);
      v = o.word.load(std::memory_order_acquire);
    }
  }
};

// A naive futex bit lock: no waiters bit, so every release makes the wake system call. Lock
// releases wake one sleeper (a word with one lock bit); event releases wake all.
struct naive_futex_peer {
  static constexpr std::string_view name = "naive futex bit";
  static constexpr bool has_event = true;
  struct object {
    std::atomic<std::uint32_t> word{0};
  };
  static void lock(object& o) {
    std::uint32_t v;
    while ((v = o.word.fetch_or(LOCK, std::memory_order_acquire)) & LOCK) futex_wait(&o.word, v);
  }
  static void unlock(object& o) {
    o.word.fetch_and(~LOCK, std::memory_order_release);
    futex_wake(&o.word, 1);
  }
  static void set_event(object& o) { o.word.fetch_or(EVENT, std::memory_order_relaxed); }
  static void release_event(object& o) {
    o.word.fetch_and(~EVENT, std::memory_order_release);
    futex_wake(&o.word, INT_MAX);
  }
  static void wait_event(object& o) {
    std::uint32_t v;
    while ((v = o.word.load(std::memory_order_acquire)) & EVENT) futex_wait(&o.word, v);
  }
};

// A test-and-test-and-set spinlock (pause while it spins). Never sleeps: no event either.
struct tas_spin_peer {
  static constexpr std::string_view name = "TAS spinlock";
  static constexpr bool has_event = false;
  struct object {
    std::atomic<std::uint32_t> word{0};
  };
  static void lock(object& o) {
    while (o.word.exchange(1, std::memory_order_acquire))
      while (o.word.load(std::memory_order_relaxed)) cpu_relax();
  }
  static void unlock(object& o) { o.word.store(0, std::memory_order_release); }
};

// oneTBB's mutexes (Debian libtbb-dev 2021.8): tbb::mutex spins briefly, then sleeps (futex);
// tbb::spin_mutex spins with exponential backoff and yields, never sleeps; tbb::queuing_mutex
// is a fair MCS queue lock, each waiter spinning on its own node. None has an event.
struct tbb_mutex_peer {
  static constexpr std::string_view name = "tbb::mutex";
  static constexpr bool has_event = false;
  struct object {
    tbb::mutex m;
  };
  static void lock(object& o) { o.m.lock(); }
  static void unlock(object& o) { o.m.unlock(); }
};

struct tbb_spin_peer {
  static constexpr std::string_view name = "tbb::spin_mutex";
  static constexpr bool has_event = false;
  struct object {
    tbb::spin_mutex m;
  };
  static void lock(object& o) { o.m.lock(); }
  static void unlock(object& o) { o.m.unlock(); }
};

// The queuing mutex is locked through a scoped_lock, the waiter's queue node; the benchmarks
// hold one lock at a time per thread, so one node per thread serves.
struct tbb_queuing_peer {
  static constexpr std::string_view name = "tbb::queuing_mutex";
  static constexpr bool has_event = false;
  struct object {
    tbb::queuing_mutex m;
  };
  static std::optional<tbb::queuing_mutex::scoped_lock>& node() {
    thread_local std::optional<tbb::queuing_mutex::scoped_lock> n;
    return n;
  }
  static void lock(object& o) { node().emplace(o.m); }
  static void unlock(object&) { node().reset(); }
};

// ---------------------------------------------------------------------------------------------
// pagewait. The object is the user's word; the pinning protocols' objects also carry the
// reference count their pin takes (as a page carries its refcount).

template <bool Pinned>
struct pw_object {
  std::atomic<std::uint32_t> word{0};
};
template <>
struct pw_object<true> {
  std::atomic<std::uint32_t> word{0};
  std::atomic<std::int32_t> refs{1};  // the caller's own reference
};

// folio_get / folio_put on the object's reference count: two atomic RMWs around the release.
struct ref_pin {
  std::atomic<std::int32_t>* refs;
  void get() noexcept { refs->fetch_add(1, std::memory_order_relaxed); }
  void put() noexcept {
    // The object is never freed here (the benchmark keeps its own reference), but the put is
    // the kernel's: a full decrement-and-test.
    if (refs->fetch_sub(1, std::memory_order_acq_rel) == 1) [[unlikely]]
      std::abort();
  }
};

template <pagewait::release_protocol R, class Policy = pagewait::detail::native_policy>
struct pw_peer_base {
  static constexpr bool has_event = true;
  static constexpr bool pins = pagewait::protocol_pins(R);
  using object = pw_object<pins>;
  using core = pagewait::detail::core<Policy, R, std::uint32_t>;
  static auto pin_of([[maybe_unused]] object& o) {
    if constexpr (pins)
      return ref_pin{&o.refs};
    else
      return pagewait::no_pin{};
  }
  static void lock(object& o) { core::lock(o.word, LOCK); }
  static void unlock(object& o) {
    core::release(o.word, LOCK, pagewait::detail::release_kind::unlock, pin_of(o));
  }
  static void set_event(object& o) { o.word.fetch_or(EVENT, std::memory_order_relaxed); }
  static void release_event(object& o) {
    core::release(o.word, EVENT, pagewait::detail::release_kind::event, pin_of(o));
  }
  static void wait_event(object& o) {
    core::wait_clear(o.word, EVENT, pagewait::detail::deadline::never(), nullptr);
  }
};

template <pagewait::release_protocol R>
struct pw_peer : pw_peer_base<R> {
  static constexpr std::string_view name = pagewait::to_string(R);
};

// The shipped protocol: the public API, as users call it.
template <>
struct pw_peer<pagewait::release_protocol::atomic_clear>
    : pw_peer_base<pagewait::release_protocol::atomic_clear> {
  static constexpr std::string_view name = "pagewait (atomic-clear)";
  static void lock(object& o) { pagewait::lock_bit(o.word, LOCK); }
  static void unlock(object& o) { pagewait::unlock_bit(o.word, LOCK); }
  static void release_event(object& o) { pagewait::clear_bit_and_wake(o.word, EVENT); }
  static void wait_event(object& o) { pagewait::wait_bit_clear(o.word, EVENT); }
};

using pw_atomic_clear = pw_peer<pagewait::release_protocol::atomic_clear>;
using pw_pinned = pw_peer<pagewait::release_protocol::pinned>;
using pw_xor_waiters = pw_peer<pagewait::release_protocol::xor_waiters>;
using pw_clear_then_wake = pw_peer<pagewait::release_protocol::clear_then_wake>;

// Every lock peer, in table order: the shipped protocol first.
using all_peers = std::tuple<pw_atomic_clear, pw_pinned, pw_xor_waiters, pw_clear_then_wake, std_mutex_peer,
                             absl_mutex_peer, tbb_mutex_peer, tbb_spin_peer, tbb_queuing_peer,
                             atomic_wait_peer, naive_futex_peer, tas_spin_peer>;

template <class Tuple, class F>
void for_each_peer(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (f.template operator()<std::tuple_element_t<I, Tuple>>(), ...);
  }
  (std::make_index_sequence<std::tuple_size_v<Tuple>>{});
}

// Runs `run_one.template operator()<Peer>()` for every peer of Tuple, `reps` times, the peers
// interleaved within each repetition so that a change in the machine's load weighs on all alike.
// Returns each peer's results in repetition order (for per-repetition ratios), in Tuple's order;
// a peer whose run returns null (it cannot run here) has no entry.
template <class Tuple, class F>
std::vector<std::vector<json>> interleaved_runs(unsigned reps, F&& run_one) {
  std::vector<std::vector<json>> runs(std::tuple_size_v<Tuple>);
  for (unsigned r = 0; r < reps; ++r) {
    std::size_t i = 0;
    for_each_peer<Tuple>([&]<class Peer>() {
      json j = run_one.template operator()<Peer>();
      if (!j.is_null()) runs[i].push_back(std::move(j));
      ++i;
    });
  }
  std::erase_if(runs, [](const std::vector<json>& v) { return v.empty(); });
  return runs;
}

}  // namespace pwbench
