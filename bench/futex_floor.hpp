// bench/futex_floor.hpp — the floor under a wake-all that wakes each waiter on its own word.
//
// pagewait parks each waiter on a futex of its own (its thread's parker), so one release of N
// sleeping waiters makes N wake system calls, where std::atomic::wait's notify_all makes one
// that wakes all N. These two peers measure the floor of the per-waiter design without any of
// pagewait's walk: each waiter sleeps on its own word, registered in a list under a mutex, and
// the release sets every word and wakes it —
//   futex per waiter           one FUTEX_WAKE system call per waiter;
//   futex per waiter, io_uring the same wakes as IORING_OP_FUTEX_WAKE requests (Linux 6.7), all
//                              submitted by one io_uring_enter: what batching the wakes (issue 10's
//                              suggestion for closing figure 5's gap) could save at best.
// The io_uring row is built when liburing is (PAGEWAIT_BENCH_URING) and run when the kernel takes
// the request; otherwise the figure leaves it out and says why (uring_floor_unavailable()).
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "peers.hpp"

#if PAGEWAIT_BENCH_URING
#include <liburing.h>
#endif

namespace pwbench {

// The words of one event's waiters: stable addresses for as long as the event lives, so that a
// release may wake a word whose waiter has already returned.
struct per_waiter_event {
  std::mutex m;
  bool set = false;
  std::deque<std::atomic<std::uint32_t>> words;  // 0: asleep or going to sleep, 1: released
  std::vector<std::atomic<std::uint32_t>*> waiting;
};

inline void per_waiter_wait(per_waiter_event& o) {
  std::atomic<std::uint32_t>* w;
  {
    std::lock_guard g(o.m);
    if (!o.set) return;
    w = &o.words.emplace_back(0);
    o.waiting.push_back(w);
  }
  while (w->load(std::memory_order_acquire) == 0) futex_wait(w, 0);
}

// Takes the waiters off the event and sets each one's word; the caller wakes them.
inline std::vector<std::atomic<std::uint32_t>*> per_waiter_release(per_waiter_event& o) {
  std::vector<std::atomic<std::uint32_t>*> ws;
  {
    std::lock_guard g(o.m);
    o.set = false;
    ws.swap(o.waiting);
  }
  for (auto* w : ws) w->store(1, std::memory_order_release);
  return ws;
}

struct futex_per_waiter_peer {
  static constexpr std::string_view name = "futex per waiter";
  static constexpr bool has_event = true;
  using object = per_waiter_event;
  static void set_event(object& o) {
    std::lock_guard g(o.m);
    o.set = true;
  }
  static void wait_event(object& o) { per_waiter_wait(o); }
  static void release_event(object& o) {
    for (auto* w : per_waiter_release(o)) futex_wake(w, 1);
  }
};

#if PAGEWAIT_BENCH_URING
namespace uring_floor {
// Not in Debian 12's kernel headers (6.1): the values of Linux 6.7's uapi.
constexpr unsigned op_futex_wake = 52;      // IORING_OP_FUTEX_WAKE
constexpr unsigned futex2_size_u32 = 0x02;  // FUTEX2_SIZE_U32
constexpr unsigned futex2_private = 128;    // FUTEX2_PRIVATE
constexpr unsigned entries = 4096;

inline void prep_wake(io_uring_sqe* s, std::atomic<std::uint32_t>* w) {
  io_uring_prep_rw(int(op_futex_wake), s, int(futex2_size_u32 | futex2_private), w, 0, 1);  // wake 1
  s->addr3 = 0xffffffffu;                                                                   // any bitset
}

// The releasing thread's ring, or the reason there is none. One per thread: a ring is not
// shared between threads without a lock.
struct ring {
  io_uring r{};
  std::string why_not;
  ring() {
    if (const int e = io_uring_queue_init(entries, &r, 0); e < 0) {
      why_not = std::string("io_uring_queue_init: ") + std::strerror(-e);
      return;
    }
    // Does this kernel take the request? A wake of a word nobody waits on completes with 0.
    std::atomic<std::uint32_t> probe{0};
    prep_wake(io_uring_get_sqe(&r), &probe);
    io_uring_cqe* c = nullptr;
    if (io_uring_submit_and_wait(&r, 1) < 0 || io_uring_wait_cqe(&r, &c) < 0) {
      why_not = "io_uring_submit_and_wait failed";
    } else {
      if (c->res < 0)
        why_not = std::string("IORING_OP_FUTEX_WAKE: ") + std::strerror(-c->res) + " (Linux < 6.7?)";
      io_uring_cqe_seen(&r, c);
    }
  }
  ~ring() {
    if (r.ring_fd > 0) io_uring_queue_exit(&r);
  }
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;
  static ring& mine() {
    thread_local ring t;
    return t;
  }
  // Submits the wakes in batches of the ring's size (one io_uring_enter each; at most one batch
  // up to N = 4096) and reaps nothing: successful requests post no completion.
  void wake(const std::vector<std::atomic<std::uint32_t>*>& ws) {
    for (auto* w : ws) {
      io_uring_sqe* s = io_uring_get_sqe(&r);
      if (!s) {
        io_uring_submit(&r);
        s = io_uring_get_sqe(&r);
      }
      prep_wake(s, w);
      s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    io_uring_submit(&r);
    // A failed request would leave its waiter asleep and the figure waiting: say so and stop.
    io_uring_cqe* c;
    while (io_uring_peek_cqe(&r, &c) == 0) {
      if (c->res < 0)
        throw std::runtime_error(std::string("IORING_OP_FUTEX_WAKE failed: ") + std::strerror(-c->res));
      io_uring_cqe_seen(&r, c);
    }
  }
};
}  // namespace uring_floor

struct futex_per_waiter_uring_peer {
  static constexpr std::string_view name = "futex per waiter, io_uring";
  static constexpr bool has_event = true;
  static constexpr bool uses_io_uring = true;  // run only if uring_floor_unavailable() is empty
  using object = per_waiter_event;
  static void set_event(object& o) { futex_per_waiter_peer::set_event(o); }
  static void wait_event(object& o) { per_waiter_wait(o); }
  static void release_event(object& o) { uring_floor::ring::mine().wake(per_waiter_release(o)); }
};

// Why the io_uring row cannot run here, or empty if it can.
inline std::string uring_floor_unavailable() { return uring_floor::ring::mine().why_not; }
using futex_floor_peers = std::tuple<futex_per_waiter_peer, futex_per_waiter_uring_peer>;
#else
inline std::string uring_floor_unavailable() { return "the benchmarks were built without liburing"; }
using futex_floor_peers = std::tuple<futex_per_waiter_peer>;
#endif

}  // namespace pwbench
