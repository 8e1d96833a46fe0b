// bench/common.hpp — what the figure runners share: options, clocks, statistics, threads.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace pwbench {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct run_options {
  bool quick = false;  // the CI mode: fewer sizes, shorter runs
  double scale = 1.0;  // multiplies every duration and iteration count
};

// One figure: its id (what `pagewait_figures --figure` takes) and its runner.
struct figure {
  const char* id;
  const char* summary;
  json (*run)(const run_options&);
};
struct figure_registrar {
  explicit figure_registrar(const figure& f);
};

inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}
inline double ns_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::nano>(b - a).count();
}

// The p-th percentile (0..100) of v, nearest rank; v is sorted in place.
inline double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t i =
      std::min(v.size() - 1, std::size_t(std::ceil(p / 100.0 * double(v.size()))) - (p > 0 ? 1 : 0));
  return v[i];
}

// Jain's fairness index over per-thread counts: 1 = perfectly even, 1/n = one thread did all.
inline double jain_index(const std::vector<double>& x) {
  double s = 0, s2 = 0;
  for (double v : x) {
    s += v;
    s2 += v * v;
  }
  return s2 == 0 ? 0 : (s * s) / (double(x.size()) * s2);
}

// Runs f(i) on n threads, started together (each spins until all have started).
void run_threads(unsigned n, const std::function<void(unsigned)>& f);

// Resident set size of this process, bytes (from /proc/self/statm).
std::uint64_t resident_bytes();

// Busy work of about `n` dependent steps that the compiler cannot remove.
// Waits until the thread whose /proc stat file is `stat_path` (/proc/<pid>/task/<tid>/stat) is
// asleep in the kernel, state S: in the hand-off figures, a waiter in a futex wait. Gives up
// after `limit` (a waiter that spins, or one still yielding on a loaded machine) and says so.
// A fixed grace time alone cannot tell: a waiter that spins and yields before it sleeps (pagewait,
// absl, tbb::mutex) may still be yielding when the release comes, which then times no wake-up.
inline bool wait_until_asleep(const std::string& stat_path, std::chrono::microseconds limit) {
  const auto until = clock_type::now() + limit;
  for (;;) {
    std::ifstream f(stat_path);
    std::string line;
    std::getline(f, line);
    // "pid (comm) S ...": the command may hold spaces and parentheses; the state follows the last ')'.
    const std::size_t close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'S') return true;
    if (clock_type::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

inline void spin_work(unsigned n) {
  std::uint64_t x = n;
  for (unsigned i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    asm volatile("" : "+r"(x));
  }
}

}  // namespace pwbench
