// bench/bench_command.cpp — `pagewait bench`: runs the benchmark driver (bench/run.py) on this
// build's benchmark binaries. Every figure, every peer, one run; see docs/benchmarks.md.
// The report goes into the build directory (bench/report/, or bench/quick/ with --quick);
// docs/benchmarks.md and docs/benchmarks/ are written only with --update-docs.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "command.hpp"
#include "numeric_option.hpp"

namespace pagewait::bench {
namespace {

int bench_main(int argc, char** argv) {
  CLI::App app{
      "Benchmarks pagewait against std::mutex, absl::Mutex, an atomic::wait bit lock, a naive futex bit lock "
      "and a spinlock, under each release protocol, in one run: writes results.json, PNG plots and "
      "benchmarks.md into the build directory (" PAGEWAIT_BENCH_BINARIES
      "/report, or /quick with --quick); "
      "--update-docs writes docs/benchmarks.md and docs/benchmarks/ instead.",
      "pagewait bench"};
  bool quick = false, no_callgrind = false, no_plots = false, update_docs = false;
  std::string out, doc;
  double scale = 1.0;
  CLI::Option* quick_opt =
      app.add_flag("--quick", quick, "CI mode: fewer sizes and shorter runs (under two minutes)");
  CLI::Option* out_opt = app.add_option("--out", out, "directory for results.json and the plots");
  CLI::Option* doc_opt =
      app.add_option("--doc", doc, "the Markdown file to write (default: benchmarks.md in --out)");
  app.add_flag(
         "--update-docs", update_docs,
         "write docs/benchmarks.md and docs/benchmarks/ of the source tree (a full run: not with --quick, "
         "--out or --doc)")
      ->excludes(quick_opt)
      ->excludes(out_opt)
      ->excludes(doc_opt);
  tool::real_in(app.add_option("--scale", scale, "multiply durations and iteration counts (default 1)"), 0.01,
                100.0);
  app.add_flag("--no-callgrind", no_callgrind, "skip the instruction counts (valgrind)");
  app.add_flag("--no-plots", no_plots, "skip the PNG plots");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "pagewait bench: %s\nRun `pagewait bench --help` for the options.\n", e.what());
    return 2;
  }
  // The benchmark binaries are targets of their own: building the program (as `pagewait demo`
  // does) leaves them out; `scripts/pagewait bench` and the `all` target build them.
  for (const char* bin : {"pagewait_micro", "pagewait_figures"}) {
    const std::string path = std::string(PAGEWAIT_BENCH_BINARIES) + "/" + bin;
    if (access(path.c_str(), X_OK) != 0) {
      std::fprintf(stderr,
                   "pagewait bench: %s is not built; build it with\n"
                   "  cmake --build %s --target pagewait_micro pagewait_figures\n"
                   "(./scripts/pagewait bench does)\n",
                   path.c_str(), PAGEWAIT_BUILD_DIR);
      return 1;
    }
  }
  std::vector<std::string> args = {"python3", PAGEWAIT_BENCH_DRIVER, "--bin", PAGEWAIT_BENCH_BINARIES};
  if (quick) args.emplace_back("--quick");
  if (update_docs) args.emplace_back("--update-docs");
  if (!out.empty()) args.insert(args.end(), {"--out", out});
  if (!doc.empty()) args.insert(args.end(), {"--doc", doc});
  if (scale != 1.0) args.insert(args.end(), {"--scale", tool::detail::format_real(scale)});
  if (no_callgrind) args.emplace_back("--no-callgrind");
  if (no_plots) args.emplace_back("--no-plots");
  std::string command = "./scripts/pagewait bench";
  for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
  args.insert(args.end(), {"--command", command});
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  // Debian's interpreter first: python3-matplotlib (scripts/install-deps) is installed for it, and
  // a python3 earlier in PATH (pyenv, a venv) may lack it.
  if (access("/usr/bin/python3", X_OK) == 0) execv("/usr/bin/python3", cargs.data());
  execvp("python3", cargs.data());
  std::perror("pagewait bench: cannot run python3");
  return 127;
}

const tool::command_registrar reg{
    {"bench", "benchmarks against every peer, one run: JSON, Markdown, plots", &bench_main}};

}  // namespace
}  // namespace pagewait::bench
