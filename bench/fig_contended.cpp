// bench/fig_contended.cpp — figure 3: throughput of one lock hammered by 1..16 threads.
//
// Each thread loops lock; critical section; unlock, with nothing between: the lock is the
// whole cost. Short section: a shared counter and ~10 multiply steps; long: ~400 steps (about
// a microsecond). Every point runs `reps` times, peers interleaved round-robin so that the
// load of the shared machine weighs on all alike; the median is reported, with every sample.
// Sleeps per op (voluntary context switches per lock transfer) for every peer; for pagewait
// also its wake system calls, sleeps, lost races and hand-offs per transfer (pagewait/stats.hpp). The machine
// has 2 cores: from 4 threads on, the lock holder is regularly preempted, which is what a lock under
// oversubscription must survive, and what the figure shows.
#include <sys/resource.h>

#include <pagewait/stats.hpp>
#include <thread>

#include "common.hpp"
#include "peers.hpp"

namespace pwbench {
namespace {

struct alignas(64) padded_count {
  std::uint64_t v = 0;
};

struct point {
  double ops_per_s = 0;
  double sleeps_per_op = 0;  // voluntary context switches (the thread blocked) per lock transfer
  std::uint64_t ops = 0;
};

// Voluntary context switches of the calling thread so far: each is a sleep in the kernel (a
// futex wait that blocked, for every peer here), counted the same way for every peer.
long voluntary_switches() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nvcsw;
}

template <class Peer>
point ops_per_second(unsigned threads, unsigned cs_steps, double seconds) {
  typename Peer::object o;
  std::uint64_t shared_counter = 0;
  std::vector<padded_count> counts(threads), switches(threads);
  std::atomic<bool> go{false}, stop{false};
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      const long sw0 = voluntary_switches();
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        Peer::lock(o);
        ++shared_counter;
        spin_work(cs_steps);
        Peer::unlock(o);
        ++n;
      }
      counts[t].v = n;
      switches[t].v = std::uint64_t(voluntary_switches() - sw0);
    });
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = clock_type::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  const double elapsed = seconds_since(t0);
  for (auto& t : ts) t.join();
  std::uint64_t total = 0, sleeps = 0;
  for (auto& c : counts) total += c.v;
  for (auto& c : switches) sleeps += c.v;
  if (total != shared_counter)
    throw std::runtime_error(std::string(Peer::name) + ": lost updates: not a lock");
  return {double(total) / elapsed, total ? double(sleeps) / double(total) : 0.0, total};
}

json run_contended(const run_options& o) {
  const std::vector<unsigned> thread_counts = {1, 2, 4, 8, 16};
  const struct {
    const char* name;
    unsigned steps;
  } sections[] = {{"short", 10}, {"long", 400}};
  const unsigned reps = o.quick ? 1 : 5;
  const double seconds = (o.quick ? 0.04 : 0.15) * o.scale;
  json rows = json::array();
  for (const auto& cs : sections)
    for (unsigned t : thread_counts) {
      std::vector<std::vector<double>> samples, sleeps;
      std::vector<std::string> names;
      for (unsigned r = 0; r < reps; ++r) {
        std::size_t i = 0;
        for_each_peer<all_peers>([&]<class Peer>() {
          if (r == 0) {
            names.emplace_back(Peer::name);
            samples.emplace_back();
            sleeps.emplace_back();
          }
          const point p = ops_per_second<Peer>(t, cs.steps, seconds);
          samples[i].push_back(p.ops_per_s);
          sleeps[i++].push_back(p.sleeps_per_op);
        });
      }
      // pagewait's own counts (pagewait/stats.hpp) in one more run, apart: counting reads the
      // clock on every slow-path wait, which the timed runs above must not pay.
      pagewait::enable_stats();
      pagewait::reset_stats();
      const point counted = ops_per_second<pw_atomic_clear>(t, cs.steps, seconds);
      const pagewait::stats_snapshot st = pagewait::get_stats();
      pagewait::enable_stats(false);
      const double per_op = counted.ops ? 1.0 / double(counted.ops) : 0.0;
      for (std::size_t i = 0; i < names.size(); ++i) {
        json row = {{"peer", names[i]},
                    {"section", cs.name},
                    {"cs_steps", cs.steps},
                    {"threads", t},
                    {"ops_per_s", percentile(samples[i], 50)},
                    {"samples", samples[i]},
                    {"sleeps_per_op", percentile(sleeps[i], 50)}};
        if (names[i] == pw_atomic_clear::name) {
          row["wake_syscalls_per_op"] = double(st.wake_syscalls) * per_op;
          row["parker_sleeps_per_op"] = double(st.sleeps) * per_op;
          row["lost_races_per_op"] = double(st.total.lost_races) * per_op;
          row["handoffs_per_op"] = double(st.total.handoffs) * per_op;
          row["slow_releases_per_op"] = double(st.total.releases) * per_op;
        }
        rows.push_back(std::move(row));
      }
    }
  return {{"rows", rows},
          {"seconds_per_point", seconds},
          {"reps", reps},
          {"hardware_threads", std::thread::hardware_concurrency()}};
}

figure_registrar reg{
    {"contended", "fig 3: one lock, 1-16 threads, short and long critical sections", &run_contended}};

}  // namespace
}  // namespace pwbench
