// bench/figures.cpp — `pagewait_figures`: runs the figures that Google Benchmark does not fit
// (counts under an instrumented policy, threads, latencies, sweeps) and prints JSON.
//   pagewait_figures --figure ID [--quick] [--scale X]      one figure
//   pagewait_figures --list                                 the figures
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "common.hpp"
#include "peers.hpp"

namespace pwbench {

namespace {
std::vector<figure>& registry() {
  static std::vector<figure> r;
  return r;
}
}  // namespace

figure_registrar::figure_registrar(const figure& f) { registry().push_back(f); }

void run_threads(unsigned n, const std::function<void(unsigned)>& f) {
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> ts;
  ts.reserve(n);
  for (unsigned i = 0; i < n; ++i)
    ts.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < n) std::this_thread::yield();
      f(i);
    });
  for (auto& t : ts) t.join();
}

std::uint64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * std::uint64_t(sysconf(_SC_PAGESIZE));
}

}  // namespace pwbench

int main(int argc, char** argv) {
  using namespace pwbench;
  CLI::App app{"Runs one benchmark figure and prints its results as JSON.", "pagewait_figures"};
  std::string id;
  run_options o;
  bool list = false;
  app.add_option("--figure", id, "the figure to run (--list shows them)");
  app.add_flag("--quick", o.quick, "CI mode: fewer sizes, shorter runs");
  app.add_option("--scale", o.scale, "multiply durations and iteration counts")
      ->check(CLI::Range(0.001, 1000.0));
  app.add_flag("--list", list, "list the figures");
  // Experiments only (the driver never passes them): pagewait's fairness bounds for this run.
  long max_wait_us = -1;
  int max_lost = -1;
  app.add_option("--pw-max-wait-us", max_wait_us, "experiment: pagewait::set_fairness max_wait (µs)");
  app.add_option("--pw-max-lost-races", max_lost, "experiment: pagewait::set_fairness max_lost_races");
  CLI11_PARSE(app, argc, argv);
  prepare_process();
  if (max_wait_us >= 0 || max_lost >= 0) {
    pagewait::fairness_settings f = pagewait::get_fairness();
    if (max_wait_us >= 0) f.max_wait = std::chrono::microseconds(max_wait_us);
    if (max_lost >= 0) f.max_lost_races = unsigned(max_lost);
    pagewait::set_fairness(f);
  }
  if (list || id.empty()) {
    for (const figure& f : registry()) std::printf("%-10s %s\n", f.id, f.summary);
    return id.empty() && !list ? 2 : 0;
  }
  for (const figure& f : registry())
    if (id == f.id) {
      json j = f.run(o);
      j["figure"] = id;
      j["quick"] = o.quick;
      j["scale"] = o.scale;
      std::cout << j.dump(1) << std::endl;
      return 0;
    }
  std::fprintf(stderr, "pagewait_figures: unknown figure '%s' (--list)\n", id.c_str());
  return 2;
}
