// bench/fig_wakeall.cpp — figure 5: one release waking N waiters.
//
// N threads (small stacks) wait for one event bit; once all of them are queued, one release
// clears it. Reported: the release call's own time, the total time until the last waiter ran
// (on 2 cores, mostly the scheduler running N threads), and for pagewait the longest single
// hold of the bucket lock by the release, in walk visits and µs, and the number of holds; each N
// is repeated, peers interleaved, and the rows give medians, samples and the longest hold.
// The pagewait rows run the core with probe_policy (bench/probe_policy.hpp), which times each
// bucket-lock hold of the releasing thread and counts its visits, and which knows when all N
// are parked. "no bookmarks" is the same core with the chunk bound lifted (probe_no_bookmarks):
// the hold the kernel's bookmarks exist to prevent. Peers cannot report a hold: a futex wake of
// N holds the kernel's futex hash-bucket lock for all N, out of sight. The two "futex per waiter"
// rows (bench/futex_floor.hpp) are the floor of waking each waiter on a word of its own, as
// pagewait does: one system call per waiter, or all of them batched through io_uring.
#include <tuple>
#include <utility>

#include "common.hpp"
#include "futex_floor.hpp"
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
  using rows_t = decltype(std::tuple_cat(
      std::declval<std::tuple<
          probed<rel::atomic_clear, probe, n_ac>, probed<rel::pinned, probe, n_pinned>,
          probed<rel::xor_waiters, probe, n_xor>, probed<rel::clear_then_wake, probe, n_ctw>,
          probed<rel::atomic_clear, probe_no_bookmarks, n_nobm>, atomic_wait_peer, naive_futex_peer>>(),
      std::declval<futex_floor_peers>()));
  // The io_uring floor runs only where the kernel takes its request (Linux 6.7); the figure says
  // why it is missing otherwise.
  const std::string uring_missing = uring_floor_unavailable();
  // Every N is measured `reps` times, peers interleaved (interleaved_runs): a row gives the
  // medians and every sample (in repetition order), and the longest hold seen in any of them.
  const unsigned reps = o.quick ? 1 : 5;
  json rows = json::array();
  for (unsigned n : ns) {
    const auto runs = interleaved_runs<rows_t>(reps, [&]<class Peer>() -> json {
      if constexpr (requires { Peer::uses_io_uring; })
        if (!uring_missing.empty()) return nullptr;
      return wake_all<Peer>(n);
    });
    for (const std::vector<json>& peer_runs : runs) {
      json row = peer_runs.front();
      std::vector<double> total, release;
      for (const json& j : peer_runs) {
        total.push_back(j["total_ns"].get<double>());
        release.push_back(j["release_ns"].get<double>());
        if (j.contains("max_hold_ns")) {
          for (const char* k : {"holds", "max_hold_visits", "visits"})
            row[k] = std::max(row[k].get<std::uint64_t>(), j[k].get<std::uint64_t>());
          row["max_hold_ns"] = std::max(row["max_hold_ns"].get<double>(), j["max_hold_ns"].get<double>());
        }
      }
      row["total_samples"] = total;
      row["release_samples"] = release;
      row["total_ns"] = percentile(total, 50);
      row["release_ns"] = percentile(release, 50);
      rows.push_back(std::move(row));
    }
  }
  json out = {
      {"rows", rows}, {"reps", reps}, {"chunk_visits", pagewait::detail::native_policy::chunk_visits}};
  if (!uring_missing.empty()) out["uring_floor_missing"] = uring_missing;
  return out;
}

figure_registrar reg{
    {"wakeall", "fig 5: one release waking N waiters; longest bucket-lock hold", &run_wakeall}};

}  // namespace
}  // namespace pwbench
