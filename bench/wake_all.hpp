// bench/wake_all.hpp — one release waking N threads, the measurement of figures 5 and 9.
//
// N threads (small stacks) wait for the peer's event; once all of them are queued, one release
// ends it. Returns the release call's own time ("release_ns") and the time until the last waiter
// ran ("total_ns"); for a peer on probe_policy also the bucket-lock holds it measured.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"
#include "probe_policy.hpp"

namespace pwbench {

template <class Peer>
constexpr bool is_probed() {
  if constexpr (requires { Peer::probed_policy; })
    return true;
  else
    return false;
}

template <class Peer>
json wake_all(unsigned n) {
  typename Peer::object o;
  Peer::set_event(o);
  std::atomic<unsigned> arrived{0};
  std::vector<std::int64_t> woke(n, 0);
  struct ctx_t {
    typename Peer::object* o;
    std::atomic<unsigned>* arrived;
    std::int64_t* woke_at;
  };
  std::vector<ctx_t> ctx(n);
  std::vector<pthread_t> ts(n);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 * 1024);
  const std::uint64_t parked0 = parked_threads.load();
  for (unsigned i = 0; i < n; ++i) {
    ctx[i] = {&o, &arrived, &woke[i]};
    const int rc = pthread_create(
        &ts[i], &attr,
        [](void* p) -> void* {
          auto* c = static_cast<ctx_t*>(p);
          c->arrived->fetch_add(1);
          Peer::wait_event(*c->o);
          *c->woke_at = clock_type::now().time_since_epoch().count();
          return nullptr;
        },
        &ctx[i]);
    if (rc != 0) throw std::runtime_error("pthread_create failed: too many threads?");
  }
  pthread_attr_destroy(&attr);
  while (arrived.load() < n) std::this_thread::sleep_for(std::chrono::microseconds(200));
  if constexpr (is_probed<Peer>())
    while (parked_threads.load() - parked0 < n) std::this_thread::sleep_for(std::chrono::microseconds(200));
  // Let the last ones reach their futex wait (the peers' waiters cannot be observed queued).
  std::this_thread::sleep_for(std::chrono::milliseconds(5) + std::chrono::microseconds(5 * n));
  meters = {};
  meters.holding = true;
  const auto t0 = clock_type::now();
  Peer::release_event(o);
  const auto t1 = clock_type::now();
  meters.holding = false;
  for (auto& t : ts) pthread_join(t, nullptr);
  std::int64_t last = 0;
  for (auto w : woke) last = std::max(last, w);
  json j = {{"peer", std::string(Peer::name)},
            {"waiters", n},
            {"release_ns", ns_between(t0, t1)},
            {"total_ns", double(last - t0.time_since_epoch().count())}};
  if constexpr (is_probed<Peer>()) {
    j["holds"] = meters.holds;
    j["max_hold_visits"] = meters.max_hold_visits;
    j["max_hold_ns"] = double(meters.max_hold.count());
    j["visits"] = meters.visits;
  }
  return j;
}

}  // namespace pwbench
