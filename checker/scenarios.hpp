// checker/scenarios.hpp — the scenarios of CONTRACT §5 (and two more), and how to run one cell.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "model.hpp"
#include "pagewait/protocol.hpp"

namespace pagewait::check {

using setup_fn = void (*)(runtime&);

struct scenario {
  const char* name;
  const char* summary;
  unsigned preemption_bound;   // exhaustive mode: schedules with at most this many preemptions
  setup_fn setup[4];           // per release protocol, in all_release_protocols order
  setup_fn broken_walk_setup;  // atomic-clear on the self-test's broken walk (or null)
  // atomic-clear under the offset-shaped policy (model.hpp: links as offsets, nodes and place
  // holders in per-thread slots of a model domain); null for the asynchronous scenarios, whose
  // nodes live in the caller's frames (a domain's waits are blocking ones).
  setup_fn offsets_setup;
  // A sampled row (pct_runs > 0): one whose bug needs more threads and preemptions than an
  // exhaustive search can cover in a table's time. Where the search would be exhaustive (the
  // default; --preemptions asks for it anyway), its cells run pct with this depth and this many
  // schedules instead, with seed 1: as deterministic as the other rows, but a pass says only that
  // these schedules found nothing. Other seeds: --mode pct with the row's depth and --seed.
  unsigned pct_depth = 0;
  std::uint64_t pct_runs = 0;
};

const std::vector<scenario>& scenarios();
const scenario* find_scenario(const std::string& name);

enum class mode { exhaustive, random, pct };

struct run_options {
  mode how = mode::exhaustive;
  std::uint64_t seed = 1;
  int preemptions = -1;                   // exhaustive: -1 = the scenario's bound
  std::uint64_t max_schedules = 5000000;  // exhaustive: stop (incomplete) after this many
  std::uint64_t runs = 20000;             // random, pct: schedules to try
  unsigned pct_depth = 3;                 // pct: bug depth d (d - 1 priority change points)
  bool broken_walk = false;               // self-test: the broken walk (atomic-clear only)
  bool offsets = false;                   // the offset-shaped policy (atomic-clear only)
};

// The options a cell of `s` runs with: `o`, but for a sampled row under the default search, pct
// with the row's depth and schedules (and o.seed, which is 1 there: --seed is refused).
run_options cell_options(const scenario& s, const run_options& o);

struct cell_result {
  bool failed = false;
  bool complete = false;  // exhaustive search finished within its bounds
  std::uint64_t schedules = 0;
  double seconds = 0;
  std::string violation;
  std::string trace;  // the failing schedule, step by step
};

// The verdict the default run requires of a cell (true: a violation must be found).
bool expected_to_fail(release_protocol p, const std::string& scenario);

cell_result check_cell(const scenario& s, release_protocol p, bool broken_walk, const run_options& o);

}  // namespace pagewait::check
