// bench/bench_command.cpp — `pagewait bench`: runs the benchmark driver (bench/run.py) on this
// build's benchmark binaries. Every figure, every peer, one run; see docs/benchmarks.md.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "command.hpp"

namespace pagewait::bench {
namespace {

int bench_main(int argc, char** argv) {
  CLI::App app{
      "Benchmarks pagewait against std::mutex, absl::Mutex, an atomic::wait bit lock, a naive futex bit lock "
      "and a spinlock, under each release protocol, in one run: writes results.json, PNG plots and "
      "docs/benchmarks.md (with --quick: into the build directory).",
      "pagewait bench"};
  bool quick = false, no_callgrind = false, no_plots = false;
  std::string out, doc;
  double scale = 1.0;
  app.add_flag("--quick", quick, "CI mode: fewer sizes and shorter runs (under two minutes)");
  app.add_option("--out", out, "directory for results.json and the plots");
  app.add_option("--doc", doc, "the Markdown file to write");
  app.add_option("--scale", scale, "multiply durations and iteration counts")->check(CLI::Range(0.01, 100.0));
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
  std::vector<std::string> args = {"python3", PAGEWAIT_BENCH_DRIVER, "--bin", PAGEWAIT_BENCH_BINARIES};
  if (quick) args.emplace_back("--quick");
  if (!out.empty()) args.insert(args.end(), {"--out", out});
  if (!doc.empty()) args.insert(args.end(), {"--doc", doc});
  if (scale != 1.0) args.insert(args.end(), {"--scale", std::to_string(scale)});
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
