// bench/fig_fairness.cpp — figure 6: fairness under contention.
//
// T threads loop lock; short section; unlock; a little work outside, for a fixed time. Each
// records how many times it acquired the lock and its longest wait (lock() call to return).
// Reported: Jain's index over the per-thread acquisitions (1 = even, 1/T = one thread took
// all), the longest wait of any thread, and the throughput, each the median of repeated runs
// (peers interleaved) with every run's value. With 2 cores and 4 or 8 threads, waits include
// the time a ready thread waits for a core.
#include <algorithm>
#include <thread>

#include "common.hpp"
#include "peers.hpp"

namespace pwbench {
namespace {

struct alignas(64) thread_result {
  std::uint64_t count = 0;
  double max_wait_ns = 0;
};

template <class Peer>
json fairness(unsigned threads, double seconds) {
  typename Peer::object o;
  std::vector<thread_result> res(threads);
  std::atomic<bool> go{false}, stop{false};
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      thread_result r;
      while (!stop.load(std::memory_order_relaxed)) {
        const auto a = clock_type::now();
        Peer::lock(o);
        const auto b = clock_type::now();
        r.max_wait_ns = std::max(r.max_wait_ns, ns_between(a, b));
        ++r.count;
        spin_work(50);
        Peer::unlock(o);
        spin_work(50);
      }
      res[t] = r;
    });
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = clock_type::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  const double elapsed = seconds_since(t0);
  for (auto& t : ts) t.join();
  std::vector<double> counts;
  double max_wait = 0, total = 0;
  for (auto& r : res) {
    counts.push_back(double(r.count));
    total += double(r.count);
    max_wait = std::max(max_wait, r.max_wait_ns);
  }
  return {{"peer", std::string(Peer::name)}, {"threads", threads},           {"jain", jain_index(counts)},
          {"max_wait_ns", max_wait},         {"ops_per_s", total / elapsed}, {"per_thread", counts}};
}

json run_fairness(const run_options& o) {
  const std::vector<unsigned> thread_counts =
      o.quick ? std::vector<unsigned>{4} : std::vector<unsigned>{4, 8};
  // Every point `reps` times, peers interleaved in each repetition: a row gives the medians of
  // the runs' Jain index, longest wait and throughput, each with its samples in run order (for
  // per-run ratios), and the longest wait of all the runs.
  const unsigned reps = o.quick ? 1 : 5;
  const double seconds = (o.quick ? 0.1 : 0.3) * o.scale;
  json rows = json::array();
  for (unsigned t : thread_counts) {
    const auto runs =
        interleaved_runs<all_peers>(reps, [&]<class Peer>() { return fairness<Peer>(t, seconds); });
    for (const std::vector<json>& peer_runs : runs) {
      json row = peer_runs.front();
      std::vector<double> jain, wait, ops;
      for (const json& j : peer_runs) {
        jain.push_back(j["jain"].get<double>());
        wait.push_back(j["max_wait_ns"].get<double>());
        ops.push_back(j["ops_per_s"].get<double>());
      }
      row["jain_samples"] = jain;
      row["max_wait_samples"] = wait;
      row["ops_samples"] = ops;
      row["longest_wait_ns"] = *std::max_element(wait.begin(), wait.end());
      row["jain"] = percentile(jain, 50);
      row["max_wait_ns"] = percentile(wait, 50);
      row["ops_per_s"] = percentile(ops, 50);
      row.erase("per_thread");  // one run's; the samples above are of every run
      rows.push_back(std::move(row));
    }
  }
  return {{"rows", rows}, {"seconds", seconds}, {"reps", reps}};
}

figure_registrar reg{
    {"fairness", "fig 6: longest wait and Jain's index over per-thread acquisitions", &run_fairness}};

}  // namespace
}  // namespace pwbench
