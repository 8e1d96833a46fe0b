// bench/fig_counts.cpp — figures 1 and 2, what is counted rather than timed.
//
//   counts   atomic RMWs (and plain loads) on the object per uncontended lock+unlock and per
//            event release with no waiter, for each release protocol: the core instantiated
//            with probe_policy, which counts the word operations; the pin counts its own two.
//   instr    instructions per uncontended lock+unlock and per event set+release, each peer in
//            its own loop between callgrind client requests (zero stats, dump "<fig>/<peer>"):
//            run it under `valgrind --tool=callgrind`; outside valgrind the requests do nothing.
#include <valgrind/callgrind.h>

#include "common.hpp"
#include "peers.hpp"
#include "probe_policy.hpp"

namespace pwbench {
namespace {

template <pagewait::release_protocol R>
json count_protocol(unsigned iters) {
  using core = pagewait::detail::core<probe, R, std::uint32_t>;
  pw_object<true> o;  // word + refcount (the count is used by the pinning protocols only)
  auto pin = [&] {
    if constexpr (pagewait::protocol_pins(R))
      return counted_pin{&o.refs};
    else
      return pagewait::no_pin{};
  };
  json j;
  j["protocol"] = std::string(pagewait::to_string(R));
  meters = {};
  meters.counting = true;
  for (unsigned i = 0; i < iters; ++i) {
    core::lock(o.word, LOCK);
    core::release(o.word, LOCK, pagewait::detail::release_kind::unlock, pin());
  }
  meters.counting = false;
  j["lock_unlock_rmws"] = double(meters.rmws) / iters;
  j["lock_unlock_loads"] = double(meters.loads) / iters;
  meters = {};
  for (unsigned i = 0; i < iters; ++i) {
    o.word.fetch_or(EVENT, std::memory_order_relaxed);  // the user's set: not the release's
    meters.counting = true;
    core::release(o.word, EVENT, pagewait::detail::release_kind::event, pin());
    meters.counting = false;
  }
  j["event_release_rmws"] = double(meters.rmws) / iters;
  j["event_release_loads"] = double(meters.loads) / iters;
  return j;
}

json run_counts(const run_options&) {
  json rows = json::array();
  for (auto r : pagewait::all_release_protocols) {
    switch (r) {
      case pagewait::release_protocol::clear_then_wake:
        rows.push_back(count_protocol<pagewait::release_protocol::clear_then_wake>(1000));
        break;
      case pagewait::release_protocol::pinned:
        rows.push_back(count_protocol<pagewait::release_protocol::pinned>(1000));
        break;
      case pagewait::release_protocol::xor_waiters:
        rows.push_back(count_protocol<pagewait::release_protocol::xor_waiters>(1000));
        break;
      case pagewait::release_protocol::atomic_clear:
        rows.push_back(count_protocol<pagewait::release_protocol::atomic_clear>(1000));
        break;
    }
  }
  return {{"rows", rows}};
}

// One loop per peer and figure, not inlined into each other, measured between client requests.
template <class Peer>
[[gnu::noinline]] void loop_lock(typename Peer::object& o, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    Peer::lock(o);
    Peer::unlock(o);
  }
}
template <class Peer>
[[gnu::noinline]] void loop_event(typename Peer::object& o, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    Peer::set_event(o);
    Peer::release_event(o);
  }
}
[[gnu::noinline]] void loop_empty(std::atomic<std::uint32_t>& w, unsigned n) {
  for (unsigned i = 0; i < n; ++i) asm volatile("" : : "r"(&w) : "memory");
}
[[gnu::noinline]] void loop_set_only(std::atomic<std::uint32_t>& w, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    w.fetch_or(EVENT, std::memory_order_relaxed);
    w.store(0, std::memory_order_release);
  }
}

template <class F>
void measured(const std::string& name, F&& f) {
  f(1000);  // warm: first calls resolve symbols, allocate thread state
  CALLGRIND_ZERO_STATS;
  f(0);  // nothing: the label below covers exactly the loop that follows
  CALLGRIND_ZERO_STATS;
  f(100000);
  CALLGRIND_DUMP_STATS_AT(name.c_str());
}

json run_instr(const run_options&) {
  std::atomic<std::uint32_t> w{0};
  measured("empty", [&](unsigned n) { loop_empty(w, n); });
  measured("set-only", [&](unsigned n) { loop_set_only(w, n); });
  for_each_peer<all_peers>([]<class Peer>() {
    typename Peer::object o;
    measured("fig1/" + std::string(Peer::name), [&](unsigned n) { loop_lock<Peer>(o, n); });
    if constexpr (Peer::has_event)
      measured("fig2/" + std::string(Peer::name), [&](unsigned n) { loop_event<Peer>(o, n); });
  });
  return {{"iterations", 100000}, {"running_on_valgrind", RUNNING_ON_VALGRIND != 0}};
}

figure_registrar r1{
    {"counts", "atomic RMWs per uncontended lock+unlock and event release (figs 1, 2)", &run_counts}};
figure_registrar r2{{"instr", "per-peer loops for callgrind (figs 1, 2); run under valgrind", &run_instr}};

}  // namespace
}  // namespace pwbench
