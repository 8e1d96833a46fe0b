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
#include "common.hpp"
#include "peers.hpp"
#include "probe_policy.hpp"
#include "wake_all.hpp"

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
