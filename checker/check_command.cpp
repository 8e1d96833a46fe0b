// checker/check_command.cpp — `pagewait check`: the model checker's command.
//
//   pagewait check                      every scenario against every protocol, as a table, plus
//                                       the self-test; exit 0 iff every verdict is the expected
//                                       one (atomic-clear passes everything; clear-then-wake
//                                       fails writeback-free; the broken walk is caught)
//   pagewait check --protocol P --scenario S    one cell; on a violation, the schedule step by
//                                       step, and exit 1
//   --mode random|pct --seed N --runs R          sample instead; the seed is printed, and the
//                                       command that replays a failing cell
// Bad options (a value out of range, an option of another mode): a message and exit 2.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "command.hpp"
#include "numeric_option.hpp"
#include "scenarios.hpp"

namespace pagewait::check {
namespace {

const char* mode_name(mode m) {
  return m == mode::exhaustive ? "exhaustive" : m == mode::random ? "random" : "pct";
}

// Bounds of the options that have one besides their type's: a preemption bound past this is
// "unbounded" in every scenario, and a PCT depth past this means more priority change points
// than any scenario has steps.
constexpr int max_preemptions = 1000;
constexpr unsigned max_pct_depth = 1000;

// "random, seed 7, 20000 runs" / "pct, seed 7, depth 3, 20000 runs".
std::string sampling_text(const run_options& o) {
  std::string t = std::string(mode_name(o.how)) + ", seed " + std::to_string(o.seed);
  if (o.how == mode::pct) t += ", depth " + std::to_string(o.pct_depth);
  return t + ", " + std::to_string(o.runs) + " runs";
}

// The command line that runs one cell of a random or pct search again, with the same schedules:
// every cell seeds its own generator with --seed, so a cell alone replays as it ran in the table.
std::string replay_command(std::string_view scenario, std::string_view protocol, bool broken_walk,
                           const run_options& o) {
  std::string c = "./scripts/pagewait check --protocol " + std::string(protocol) + " --scenario " +
                  std::string(scenario) + " --mode " + mode_name(o.how) + " --seed " +
                  std::to_string(o.seed) + " --runs " + std::to_string(o.runs);
  if (o.how == mode::pct) c += " --pct-depth " + std::to_string(o.pct_depth);
  if (broken_walk) c += " --broken-walk";
  if (o.offsets) c += " --offsets";
  return c;
}

std::string cell_text(const cell_result& r) {
  char b[96];
  std::snprintf(b, sizeof b, "%s %7llu %6.2fs",
                r.failed     ? "FAIL"
                : r.complete ? "pass"
                             : "pass*",
                static_cast<unsigned long long>(r.schedules), r.seconds);
  return b;
}

int check_main(int argc, char** argv) {
  CLI::App app{"pagewait check: run the shipped protocol core through every interleaving of small scenarios"};
  std::string protocol, scenario_name, how = "exhaustive";
  run_options o;
  bool trace_all = false;
  app.add_option("--protocol", protocol, "release protocol (default: all)")
      ->check(CLI::IsMember({"clear-then-wake", "pinned", "xor-waiters", "atomic-clear"}));
  std::vector<std::string> names;
  for (const scenario& s : scenarios()) names.push_back(s.name);
  app.add_option("--scenario", scenario_name, "scenario (default: all)")->check(CLI::IsMember(names));
  app.add_option("--mode", how, "exhaustive (bounded preemptions), random, or pct")
      ->check(CLI::IsMember({"exhaustive", "random", "pct"}));
  CLI::Option* seed =
      tool::whole_in(app.add_option("--seed", o.seed, "random, pct: seed (default 1)"), std::uint64_t{0});
  CLI::Option* runs = tool::whole_in(
      app.add_option("--runs", o.runs, "random, pct: schedules tried per cell (default 20000)"),
      std::uint64_t{1});
  CLI::Option* preemptions =
      tool::whole_in(app.add_option("--preemptions", o.preemptions,
                                    "exhaustive: preemption bound (default: the scenario's)"),
                     0, max_preemptions);
  CLI::Option* max_schedules =
      tool::whole_in(app.add_option("--max-schedules", o.max_schedules,
                                    "exhaustive: stop a cell after this many schedules (default 5000000)"),
                     std::uint64_t{1});
  CLI::Option* pct_depth = tool::whole_in(
      app.add_option("--pct-depth", o.pct_depth, "pct: bug depth d (default 3)"), 1u, max_pct_depth);
  CLI::Option* broken_walk = app.add_flag(
      "--broken-walk", o.broken_walk, "self-test, one cell of atomic-clear: the deliberately broken walk");
  CLI::Option* offsets = app.add_flag(
      "--offsets", o.offsets,
      "atomic-clear under the offset-shaped policy (a shared domain's links, keys and slots): one cell, "
      "or in the table that column alone");
  bool no_offsets = false;
  CLI::Option* no_offsets_opt =
      app.add_flag("--no-offsets", no_offsets, "table: without the offset-shaped column");
  CLI::Option* traces =
      app.add_flag("--traces", trace_all, "table mode: print the trace of every failing cell");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Bad options: a clear message and exit 2, as the other commands (CLI11's own code is 105+;
    // 1 is reserved for "a violation was found").
    std::fprintf(stderr, "pagewait check: %s\nRun `pagewait check --help` for the options.\n", e.what());
    return 2;
  }
  o.how = how == "random" ? mode::random : how == "pct" ? mode::pct : mode::exhaustive;
  const bool one_cell = !protocol.empty() && !scenario_name.empty();

  // An option that the chosen mode would ignore is a mistake in the command line: say so.
  const auto misplaced = [](const CLI::Option* opt, const char* where) {
    if (opt->count() == 0) return false;
    std::fprintf(stderr, "pagewait check: %s applies %s\nRun `pagewait check --help` for the options.\n",
                 opt->get_name().c_str(), where);
    return true;
  };
  const bool sampling = o.how != mode::exhaustive;
  if ((!sampling && (misplaced(seed, "to --mode random or pct only") ||
                     misplaced(runs, "to --mode random or pct only"))) ||
      (o.how != mode::pct && misplaced(pct_depth, "to --mode pct only")) ||
      (sampling && (misplaced(preemptions, "to --mode exhaustive (the default) only") ||
                    misplaced(max_schedules, "to --mode exhaustive (the default) only"))) ||
      (!(one_cell && protocol == "atomic-clear") &&
       misplaced(broken_walk, "to one cell of atomic-clear only (--protocol atomic-clear --scenario S)")) ||
      (protocol != "atomic-clear" &&
       misplaced(offsets,
                 "to atomic-clear only (--protocol atomic-clear: one cell, or that column alone)")) ||
      (o.broken_walk && o.offsets && misplaced(offsets, "without --broken-walk only")) ||
      (one_cell && misplaced(no_offsets_opt, "to the table only")) ||
      (o.offsets && misplaced(no_offsets_opt, "without --offsets only")) ||
      (!protocol.empty() && protocol != "atomic-clear" &&
       misplaced(no_offsets_opt, "to the tables of atomic-clear or of every protocol only")) ||
      (one_cell && misplaced(traces, "to the table only (one cell always prints its trace)")))
    return 2;

  // One cell.
  if (one_cell) {
    const scenario& s = *find_scenario(scenario_name);
    const release_protocol p = *parse_release_protocol(protocol);
    std::size_t pi = 0;
    while (all_release_protocols[pi] != p) ++pi;
    if (!o.offsets && !(o.broken_walk ? s.broken_walk_setup : s.setup[pi])) {
      std::size_t ac = 0;
      while (all_release_protocols[ac] != release_protocol::atomic_clear) ++ac;
      if (!s.setup[ac])
        std::fprintf(stderr,
                     "pagewait check: %s has an offsets cell only: its waiter dies, as only a process "
                     "waiting in a wait domain can (try --protocol atomic-clear --offsets)\n",
                     s.name);
      else
        std::fprintf(stderr,
                     "pagewait check: %s has no %s cell: a bucket is reset only in a wait domain, which "
                     "runs atomic-clear (try --protocol atomic-clear, or --offsets)\n",
                     s.name, o.broken_walk ? "broken-walk" : std::string(to_string(p)).c_str());
      return 2;
    }
    if (o.offsets && !s.offsets_setup) {
      std::fprintf(
          stderr,
          "pagewait check: %s has no offsets cell: its asynchronous waiters' nodes live in the caller's "
          "frames, and a domain's waits are blocking ones\n",
          s.name);
      return 2;
    }
    const cell_result r = check_cell(s, p, o.broken_walk, o);
    const run_options co = cell_options(s, o);  // a sampled row's pct, where o is the default
    const bool cell_sampling = co.how != mode::exhaustive;
    std::printf("%s%s%s / %s (%s%s): %s, %llu schedules, %.2f s%s\n", o.broken_walk ? "[broken walk] " : "",
                o.offsets ? "[offsets] " : "", s.name, protocol.c_str(),
                cell_sampling ? sampling_text(co).c_str() : mode_name(co.how),
                cell_sampling && !sampling ? "; a sampled row" : "", r.failed ? "VIOLATION" : "pass",
                static_cast<unsigned long long>(r.schedules), r.seconds,
                !r.failed && !r.complete ? " (search stopped at --max-schedules: incomplete)" : "");
    if (r.failed && cell_sampling)
      std::printf("replay: %s\n", replay_command(s.name, protocol, o.broken_walk, co).c_str());
    if (r.failed) std::printf("\n%s", r.trace.c_str());
    return r.failed ? 1 : 0;
  }

  // The table. With --offsets, the offset-shaped column alone (its verdicts; the count it must
  // share with atomic-clear's column is compared where both run); with --no-offsets, without it.
  // (The sanitizer builds run the two halves as two tests, side by side.)
  std::vector<release_protocol> protos;
  for (release_protocol p : all_release_protocols)
    if ((protocol.empty() || to_string(p) == protocol) && !o.offsets) protos.push_back(p);
  std::vector<const scenario*> scens;
  for (const scenario& s : scenarios())
    if (scenario_name.empty() || scenario_name == s.name) scens.push_back(&s);

  std::printf("pagewait check: %s search, SC model (docs/CHECKER.md)\n", mode_name(o.how));
  std::printf("cell: verdict, schedules explored, seconds   (! = not the expected verdict)\n");
  if (o.how == mode::exhaustive) {
    std::printf("K: preemption bound (every schedule with at most K preemptions)\n");
    for (const scenario* s : scens)
      if (const run_options co = cell_options(*s, o); co.how != o.how)
        std::printf("K = d%u: %s is a sampled row, which no bound searches in a table's time: %s\n",
                    co.pct_depth, s->name, sampling_text(co).c_str());
  } else
    std::printf("sampled: %s per cell; a cell replays alone: --protocol P --scenario S, same options\n",
                sampling_text(o).c_str());
  std::printf("\n");
  std::printf("%-22s %2s", "scenario", "K");
  for (release_protocol p : protos) std::printf(" | %-22.*s", int(to_string(p).size()), to_string(p).data());
  // The offset-shaped policy runs atomic-clear's cell again with a domain's representations
  // (links as offsets, nodes in per-thread slots): it must pass, and in the exhaustive search
  // explore exactly as many schedules, since only where the structures live differs.
  const bool with_offsets = (protocol.empty() || protocol == "atomic-clear") && !no_offsets;
  const bool compare_counts = !o.offsets;
  if (with_offsets) std::printf(" | %-22s", "offsets (atomic-clear)");
  std::printf("\n");
  bool all_as_expected = true;
  std::vector<std::string> failures;
  for (const scenario* s : scens) {
    const run_options co = cell_options(*s, o);
    if (co.how != o.how)
      std::printf("%-22s d%u", s->name, co.pct_depth);
    else
      std::printf(
          "%-22s %2d", s->name,
          o.how == mode::exhaustive ? (o.preemptions >= 0 ? o.preemptions : int(s->preemption_bound)) : 0);
    std::fflush(stdout);
    std::uint64_t atomic_clear_schedules = 0;
    bool atomic_clear_ran = false;  // a death row has no atomic-clear cell to compare with
    for (release_protocol p : protos) {
      std::size_t pi = 0;
      while (all_release_protocols[pi] != p) ++pi;
      if (!s->setup[pi]) {
        std::printf(" | %-22s", "n/a (domain only)");
        continue;
      }
      const cell_result r = check_cell(*s, p, false, o);
      if (p == release_protocol::atomic_clear) {
        atomic_clear_schedules = r.schedules;
        atomic_clear_ran = true;
      }
      // Random and pct modes may miss a failure; only the exhaustive search is held to it.
      const bool want_fail = expected_to_fail(p, s->name);
      const bool ok = r.failed == want_fail || (!r.failed && o.how != mode::exhaustive);
      const bool incomplete = o.how == mode::exhaustive && !r.failed && !r.complete;
      if (!ok || (incomplete && p == release_protocol::atomic_clear)) all_as_expected = false;
      std::printf(" | %s%s", cell_text(r).c_str(), ok ? " " : "!");
      std::fflush(stdout);
      if (r.failed) {
        failures.push_back(std::string(s->name) + " / " + std::string(to_string(p)) + ": " + r.violation);
        if (co.how != mode::exhaustive)
          failures.back() += "\n  replay: " + replay_command(s->name, to_string(p), false, co);
        if (trace_all || (p == release_protocol::clear_then_wake && std::string(s->name) == "writeback-free"))
          failures.back() += "\n" + r.trace;
      }
    }
    if (with_offsets) {
      if (!s->offsets_setup) {
        std::printf(" | %-22s", "n/a (asynchronous)");
      } else {
        run_options oo = o;
        oo.offsets = true;
        const cell_result r = check_cell(*s, release_protocol::atomic_clear, false, oo);
        const bool same = o.how != mode::exhaustive || !compare_counts || !atomic_clear_ran ||
                          r.schedules == atomic_clear_schedules;
        const bool ok = !r.failed && same && !(o.how == mode::exhaustive && !r.complete);
        if (!ok) all_as_expected = false;
        std::printf(" | %s%s", cell_text(r).c_str(), ok ? " " : "!");
        if (r.failed) {
          failures.push_back(std::string(s->name) + " / offsets (atomic-clear): " + r.violation);
          if (co.how != mode::exhaustive)
            failures.back() +=
                "\n  replay: " + replay_command(s->name, "atomic-clear", false, cell_options(*s, oo));
          if (trace_all) failures.back() += "\n" + r.trace;
        } else if (!same) {
          failures.push_back(std::string(s->name) +
                             " / offsets (atomic-clear): " + std::to_string(r.schedules) +
                             " schedules, atomic-clear explored " + std::to_string(atomic_clear_schedules) +
                             ": the offset-shaped policy changed the protocol's steps");
        }
      }
      std::fflush(stdout);
    }
    std::printf("\n");
  }
  // The self-test: the checker must catch the broken walk.
  if ((protocol.empty() || protocol == "atomic-clear") && !o.offsets) {
    const scenario& s = *find_scenario("arrivals-during-walk");
    const cell_result r = check_cell(s, release_protocol::atomic_clear, true, o);
    const bool ok = r.failed || o.how != mode::exhaustive;
    if (!ok) all_as_expected = false;
    std::printf("\nself-test, atomic-clear with a walk that clears in a later hold, on %s: %s%s\n", s.name,
                cell_text(r).c_str(),
                r.failed ? " (caught, as it must be)"
                : ok     ? ""
                         : " NOT CAUGHT: the checker is broken");
    if (r.failed) {
      failures.push_back(std::string("self-test (broken walk) / ") + s.name + ": " + r.violation);
      if (sampling) failures.back() += "\n  replay: " + replay_command(s.name, "atomic-clear", true, o);
    }
  }
  if (o.how == mode::exhaustive)
    std::printf(
        "\npass* = search stopped at --max-schedules; exhaustive = every schedule within the preemption "
        "bound\n");
  if (!failures.empty()) {
    std::printf("\nviolations found:\n");
    for (const std::string& f : failures) std::printf("- %s\n", f.c_str());
  }
  std::printf("\n%s\n",
              all_as_expected ? "every verdict is the expected one" : "UNEXPECTED VERDICTS (marked !)");
  return all_as_expected ? 0 : 1;
}

const tool::command_registrar reg{{"check", "model-check the protocol core on small scenarios", &check_main}};

}  // namespace
}  // namespace pagewait::check
