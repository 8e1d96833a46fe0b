// bench/fig_wakeall.cpp — figure 5: one release waking N waiters.
//
// N threads (small stacks) wait for one event bit; once all of them are queued, one release
// clears it. Reported: the release call's own time, the total time until the last waiter ran
// (on 2 cores, mostly the scheduler running N threads), and for pagewait the longest single
// hold of the bucket lock by the release, in walk visits and µs, and the number of holds.
// The pagewait rows run the core with probe_policy (bench/probe_policy.hpp), which times each
// bucket-lock hold of the releasing thread and counts its visits, and which knows when all N
// are parked. "no bookmarks" is the same core with the chunk bound lifted (probe_no_bookmarks):
// the hold the kernel's bookmarks exist to prevent. Peers cannot report a hold: a futex wake of
// N holds the kernel's futex hash-bucket lock for all N, out of sight.
#include <pthread.h>

#include <thread>

#include "common.hpp"
#include "peers.hpp"
#include "probe_policy.hpp"

namespace pwbench {
namespace {

template <pagewait::release_protocol R, class Policy, const char* Name>
struct probed : pw_peer_base<R, Policy> {
  static constexpr std::string_view name = Name;
  static constexpr bool probed_policy = true;
};
constexpr char n_ac[] = "pagewait (atomic-clear)";
constexpr char n_pinned[] = "pinned";
constexpr char n_xor[] = "xor-waiters";
constexpr char n_ctw[] = "clear-then-wake";
constexpr char n_nobm[] = "atomic-clear, no bookmarks";
using rel = pagewait::release_protocol;

template <class Peer>
constexpr bool is_probed() {
  if constexpr (requires { Peer::probed_policy; })
    return true;
  else
    return false;
}

struct waiter_args {
  void (*body)(void*);
  void* ctx;
};

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

json run_wakeall(const run_options& o) {
  std::vector<unsigned> ns = {1, 10, 100, 1000, 10000};
  if (o.quick) ns = {1, 10, 100, 1000};
  using rows_t =
      std::tuple<probed<rel::atomic_clear, probe, n_ac>, probed<rel::pinned, probe, n_pinned>,
                 probed<rel::xor_waiters, probe, n_xor>, probed<rel::clear_then_wake, probe, n_ctw>,
                 probed<rel::atomic_clear, probe_no_bookmarks, n_nobm>, atomic_wait_peer, naive_futex_peer>;
  json rows = json::array();
  for (unsigned n : ns) for_each_peer<rows_t>([&]<class Peer>() { rows.push_back(wake_all<Peer>(n)); });
  return {{"rows", rows}, {"chunk_visits", pagewait::detail::native_policy::chunk_visits}};
}

figure_registrar reg{
    {"wakeall", "fig 5: one release waking N waiters; longest bucket-lock hold", &run_wakeall}};

}  // namespace
}  // namespace pwbench
