// demo/demo_command.cpp — `pagewait demo`: the seed's scenario on a real workload.
//
// Runs the page cache of demo/pagecache/ under each release protocol and prints, per protocol,
// throughput, how many ends of writeback touched a freed page, what an end of writeback costs
// in atomic RMWs on the page, how long waiters waited for writeback, lost wake-ups and the
// final data check; then a verdict per protocol in plain words: what it is, whether its end of
// writeback touched freed pages and how often, and what it cost. Every figure is measured in the
// run; none is assumed. Below the table, the contention statistics of each protocol's runs
// (pagewait/stats.hpp), counted by the library while the demo runs.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <pagewait/stats.hpp>
#include <string>
#include <vector>

#include "command.hpp"
#include "numeric_option.hpp"
#include "workload.hpp"

namespace pagewait::demo {
namespace {

struct options {
  double seconds = 4.0;
  unsigned threads = 8;
  std::string protocol = "all";
  unsigned widen_us = 50;
  std::string file;
  bool json = false;
  unsigned async = 0;  // asynchronous reader coroutines on one loop thread
  bool no_uring = false;
  bool processes = false;  // each worker a process, over a wait domain in shared memory
  bool kill = false;       // with processes: kill one mid-run, while it waits for a page lock
};

// A bar on stderr while a run goes, only when stderr is a terminal; erased when it ends.
class progress_bar {
 public:
  explicit progress_bar(bool on) : on_(on) {}
  void show(const std::string& label, double fraction) const {
    if (!on_) return;
    constexpr int width = 30;
    const int done = static_cast<int>(std::lround(std::min(1.0, std::max(0.0, fraction)) * width));
    std::fprintf(stderr, "\r  %-28s [%s%s] %3d%%", label.c_str(), std::string(std::size_t(done), '#').c_str(),
                 std::string(std::size_t(width - done), '.').c_str(), static_cast<int>(fraction * 100 + 0.5));
    std::fflush(stderr);
  }
  void clear() const {
    if (!on_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }

 private:
  bool on_;
};

nlohmann::json to_json(const run_result& r) {
  return {
      {"protocol", std::string(to_string(r.protocol))},
      {"seconds", r.seconds},
      {"page_ops", r.page_ops},
      {"page_ops_per_s", r.page_ops / r.seconds},
      {"writebacks", r.writebacks},
      {"writebacks_per_s", r.writebacks / r.seconds},
      {"touched_after_free", r.touched_after_free},
      {"touched_after_reuse", r.touched_after_reuse},
      {"rmws_per_end_of_writeback", r.rmws_per_end()},
      {"bucket_locks_per_end_of_writeback",
       r.writebacks ? double(r.end_bucket_locks) / double(r.writebacks) : 0.0},
      {"writeback_waits", r.writeback_waits},
      {"writeback_wait_p50_us", r.wait_p50_us},
      {"writeback_wait_p99_us", r.wait_p99_us},
      {"lost_wakeups", r.lost_wakeups},
      {"woken_early", r.woken_early},
      {"wait_timeouts", r.wait_timeouts},
      {"page_lock_waits", r.lock_waits},
      {"bad_reads", r.bad_reads},
      {"bad_frees", r.bad_frees},
      {"io_errors", r.io_errors},
      {"pages_checked", r.pages_checked},
      {"pages_wrong", r.pages_wrong},
      {"frames_with_stray_refs", r.frames_with_stray_refs},
      {"data_ok", r.data_ok},
      {"processes", r.processes},
      {"failure", r.failure},
      {"async",
       {{"coroutines", r.async_coroutines},
        {"page_ops", r.async_ops},
        {"page_ops_per_s", r.seconds > 0 ? r.async_ops / r.seconds : 0.0},
        {"page_reads", r.async_reads},
        {"reads_in_flight_max", r.async_max_in_flight},
        {"reads_in_flight_mean_per_busy_round", r.async_mean_in_flight},
        {"reader_thread_page_ops", r.reader_ops},
        {"lock_waits", r.async_lock_waits},
        {"loop_wakeups", r.async_loop_wakeups},
        {"timers_fired", r.async_timers_fired},
        {"io", r.async_io}}},
  };
}

nlohmann::json to_json(const contention_stats& t) {
  return {{"lock_waits", t.lock_waits},
          {"shared_waits", t.shared_waits},
          {"gave_up", t.gave_up},
          {"lost_races", t.lost_races},
          {"slow_releases", t.releases},
          {"handoffs", t.handoffs},
          {"longest_wait_us", double(t.longest_wait.count()) / 1e3},
          {"longest_walk", t.longest_walk}};
}

// The data check's word for a run: the data kept ("ok"), lost or corrupt, or kept but with
// frames that hold references nobody will drop (leaked), or a run that failed otherwise (a child
// that died or hung: its reason is in `failure`).
const char* data_state(const run_result& r) {
  if (r.data_ok) return "ok";
  if (r.pages_wrong || r.bad_reads || r.bad_frees || r.io_errors) return "LOST/CORRUPT";
  if (r.frames_with_stray_refs) return "LEAKED";
  return "FAILED";
}

std::string us(double v) {
  char b[32];
  if (v >= 10000)
    std::snprintf(b, sizeof b, "%.1f ms", v / 1000);
  else
    std::snprintf(b, sizeof b, "%.1f µs", v);
  return b;
}

// printf pads by bytes; "µ" is two.
std::string pad(const std::string& s, int width) {
  int visible = 0;
  for (unsigned char c : s) visible += (c & 0xC0) != 0x80;
  return visible >= width ? s : std::string(std::size_t(width - visible), ' ') + s;
}

void print_table(const options& o, unsigned slices, const run_config& base,
                 const std::vector<run_result>& rs) {
  const run_result& a = rs.front();
  std::printf(
      "pagewait demo: a page cache of %u frames of 4 KiB over a %llu-page file; %u threads (%u writers, %u "
      "readers, "
      "%u writeback, %u truncators);\n%.1f s per protocol (in %u turns); end of writeback widened by %u "
      "µs\n\n",
      base.frames, static_cast<unsigned long long>(base.file_pages),
      a.writers + a.readers + a.writeback_threads + a.truncators, a.writers, a.readers, a.writeback_threads,
      a.truncators, o.seconds, slices, o.widen_us);
  std::printf("%-16s  %11s  %13s  %27s  %14s  %11s  %11s  %13s  %11s  %s\n", "protocol", "page ops/s",
              "writebacks/s", "touched after free (reused)", "RMWs/end of wb", "wb wait p50", "p99",
              "lost wake-ups", "woken early", "data");
  for (const run_result& r : rs) {
    char touched[64];
    std::snprintf(touched, sizeof touched, "%llu (%llu)",
                  static_cast<unsigned long long>(r.touched_after_free),
                  static_cast<unsigned long long>(r.touched_after_reuse));
    std::printf("%-16s  %11.0f  %13.0f  %27s  %14.2f  %s  %s  %13llu  %11llu  %s\n",
                std::string(to_string(r.protocol)).c_str(), r.page_ops / r.seconds, r.writebacks / r.seconds,
                touched, r.rmws_per_end(), pad(r.writeback_waits ? us(r.wait_p50_us) : "-", 11).c_str(),
                pad(r.writeback_waits ? us(r.wait_p99_us) : "-", 11).c_str(),
                static_cast<unsigned long long>(r.lost_wakeups),
                static_cast<unsigned long long>(r.woken_early), data_state(r));
  }
  std::printf(
      "\ntouched after free  ends of writeback that accessed their page after it had been freed (in "
      "brackets: and\n"
      "                    handed out again): detected by the frame's generation on each access, not "
      "assumed;\n"
      "                    the kernel's BUG_ON(PageWriteback) of Nov 2020\n"
      "RMWs/end of wb      atomic read-modify-writes on the page (flags word, reference count) per end of "
      "writeback\n"
      "                    (the wait table's bucket lock, taken when there are waiters, is not counted; see "
      "--json)\n"
      "wb wait             time a writer or truncator waited for writeback to end, when it had to (-: "
      "never);\n"
      "                    with --widen, waiters of the old protocols also sit out the widened window\n"
      "lost wake-ups       waits that timed out (%.1f s) although their bit had been cleared\n"
      "woken early         writeback waits woken while the page was still under writeback (a late wake-up)\n"
      "data                the file read back holds the last version written to every page; LEAKED: it\n"
      "                    does, but a frame keeps a reference nobody holds once the workers are gone\n",
      std::chrono::duration<double>(base.wait_timeout).count());
}

// The asynchronous readers (--async), per protocol, beside the threaded readers of the same runs.
void print_async(const std::vector<run_result>& rs, unsigned frames) {
  const run_result& a = rs.front();
  std::printf("\nasynchronous readers: %u coroutines on 1 loop thread, page reads by %s\n",
              a.async_coroutines, a.async_io.c_str());
  std::printf("%-16s  %16s  %20s  %20s  %13s  %12s\n", "protocol", "async page ops/s", "per reader thread/s",
              "reads in flight, max", "lock waits/s", "timers fired");
  for (const run_result& r : rs) {
    const double secs = r.seconds > 0 ? r.seconds : 1;
    std::printf("%-16s  %16.0f  %20.0f  %20u  %13.0f  %12llu\n", std::string(to_string(r.protocol)).c_str(),
                r.async_ops / secs, r.readers ? r.reader_ops / secs / r.readers : 0.0, r.async_max_in_flight,
                r.async_lock_waits / secs, static_cast<unsigned long long>(r.async_timers_fired));
  }
  std::printf(
      "async page ops/s      page reads by the coroutines (a lookup, a read from the file if not cached, the "
      "page\n"
      "                      lock, the data check), all on one thread that never blocks on a page\n"
      "per reader thread/s   the same by each threaded reader, in the same runs\n"
      "reads in flight, max  page reads handed to io_uring and not yet completed, at most (a read holds its "
      "frame:\n"
      "                      at most the pool's %u frames; the file is in the kernel's page cache, so reads "
      "are short)\n"
      "lock waits/s          page locks a coroutine found held and waited for with co_await lock_bit_async, "
      "in the\n"
      "                      same wait table as the threads, each with a timer on the loop (the threads' "
      "wait "
      "timeout)\n"
      "timers fired          of those timers, the ones that reached their deadline (a timeout, or a release "
      "that won\n"
      "                      as it fired); the timed-out waits are in the timeouts and lost wake-ups above\n"
      "With --async the loop thread takes a core of its own (a coroutine that finds no free frame yields "
      "and\n"
      "tries again, as a threaded reader does), and page locks granted to coroutines stay held until the "
      "loop\n"
      "resumes them: the threads' figures above are not comparable with a run without --async.\n",
      frames);
}

void print_contention(const std::vector<run_result>& rs, const std::vector<contention_stats>& cs,
                      const char* counted_by = "pagewait/stats.hpp: slow paths only, all turns") {
  std::printf("\ncontention, per protocol (%s)\n", counted_by);
  std::printf("%-16s  %11s  %12s  %8s  %10s  %13s  %9s  %12s  %12s\n", "protocol", "lock waits",
              "shared waits", "gave up", "lost races", "slow releases", "hand-offs", "longest wait",
              "longest walk");
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const contention_stats& t = cs[i];
    std::printf("%-16s  %11llu  %12llu  %8llu  %10llu  %13llu  %9llu  %s  %12llu\n",
                std::string(to_string(rs[i].protocol)).c_str(), static_cast<unsigned long long>(t.lock_waits),
                static_cast<unsigned long long>(t.shared_waits), static_cast<unsigned long long>(t.gave_up),
                static_cast<unsigned long long>(t.lost_races), static_cast<unsigned long long>(t.releases),
                static_cast<unsigned long long>(t.handoffs),
                pad(us(double(t.longest_wait.count()) / 1e3), 12).c_str(),
                static_cast<unsigned long long>(t.longest_walk));
  }
  std::printf(
      "lock/shared waits   calls that found the bit set and took the slow path (the page lock; writeback and "
      "lock waits)\n"
      "slow releases       releases that found the waiters bit set and walked the wait table; hand-offs "
      "among "
      "them\n"
      "longest walk        the most waiter nodes one release visited\n");
}

// What each protocol is, in one line.
const char* what_it_is(release_protocol p) {
  switch (p) {
    case release_protocol::clear_then_wake:
      return "Linux v5.9's end_page_writeback: clears the bit, then looks for waiters, so it touches the "
             "page after the clear";
    case release_protocol::pinned:
      return "the Nov 2020 fix: an extra page reference held around the clear and the wake-up";
    case release_protocol::xor_waiters:
      return "today's mainline: one xor clears the bit and reports the waiters; still pinned";
    case release_protocol::atomic_clear:
      return "the seed (pagewait): the bit is cleared inside the wake-up, so no reference is taken";
  }
  return "";
}

// "18343 of 29508 (62%)", "3 of 29508 (1 in 9836)".
std::string how_often(std::uint64_t n, std::uint64_t of) {
  char b[96];
  const double f = of ? double(n) / double(of) : 0.0;
  if (f >= 0.01)
    std::snprintf(b, sizeof b, "%llu of %llu ends of writeback (%.0f%%)", static_cast<unsigned long long>(n),
                  static_cast<unsigned long long>(of), f * 100);
  else
    std::snprintf(b, sizeof b, "%llu of %llu ends of writeback (1 in %.0f)",
                  static_cast<unsigned long long>(n), static_cast<unsigned long long>(of), 1 / f);
  return b;
}

// Throughput against pinned, as the turns saw it. The load of a shared machine moves from turn
// to turn by more than the protocols differ, so the ratio is said together with its spread over
// the turns, and called a difference only when every turn agrees on its sign and there are at
// least 6 turns (noise alone makes 6 turns agree 2 times in 64).
constexpr std::size_t turns_to_call_a_difference = 6;

std::string against_pinned(const std::vector<double>& mine, const std::vector<double>& pinned, double ratio) {
  std::vector<double> q;
  for (std::size_t t = 0; t < mine.size() && t < pinned.size(); ++t)
    if (pinned[t] > 0) q.push_back(mine[t] / pinned[t]);
  char b[192];
  if (q.empty()) {
    std::snprintf(b, sizeof b, "%.2fx pinned's", ratio);
    return b;
  }
  const auto [lo, hi] = std::minmax_element(q.begin(), q.end());
  const auto above = std::count_if(q.begin(), q.end(), [](double x) { return x > 1; });
  const char* verdict = q.size() < turns_to_call_a_difference
                            ? "too few turns to call a difference; --seconds 3 or more"
                        : above == std::ptrdiff_t(q.size()) ? "higher in every turn"
                        : above == 0                        ? "lower in every turn"
                                                            : "no consistent difference";
  std::snprintf(b, sizeof b, "%.2fx pinned's (turns: %.2fx to %.2fx, higher in %td of %zu: %s)", ratio, *lo,
                *hi, above, q.size(), verdict);
  return b;
}

// The verdict, one block per protocol: what it is; whether its end of writeback touched freed
// pages, and how often; what it cost.
void print_verdict(const std::vector<run_result>& rs, const std::vector<std::vector<double>>& turns) {
  const std::size_t n = rs.size();
  std::size_t pi = n;
  for (std::size_t i = 0; i < n; ++i)
    if (rs[i].protocol == release_protocol::pinned) pi = i;
  std::printf("\nverdict, per protocol\n");
  if (pi < n && n > 1)
    std::printf(
        "(writebacks/s: the whole workload's, each turn against pinned's in the same turn; the load of the "
        "machine\nmoves between turns, so a difference is called one only if every turn shows it)\n");
  for (std::size_t i = 0; i < n; ++i) {
    const run_result& r = rs[i];
    std::printf("\n%-16s %s\n", std::string(to_string(r.protocol)).c_str(), what_it_is(r.protocol));
    std::string touched;
    if (r.touched_after_free) {
      touched = "YES, " + how_often(r.touched_after_free, r.writebacks);
      char b[96];
      std::snprintf(b, sizeof b, "; %llu of those pages already handed out again",
                    static_cast<unsigned long long>(r.touched_after_reuse));
      touched += b;
    } else {
      touched = "no, in " + std::to_string(r.writebacks) + " ends of writeback";
    }
    if (r.lost_wakeups) touched += "; " + std::to_string(r.lost_wakeups) + " LOST WAKE-UPS";
    if (!r.data_ok) touched += std::string("; DATA ") + data_state(r);
    std::printf("  touched freed pages:  %s\n", touched.c_str());
    std::printf("  cost:                 %.2f atomic RMWs on the page per end of writeback\n",
                r.rmws_per_end());
    std::string speed;
    if (i == pi && n > 1)
      speed = "the reference";
    else if (pi < n && rs[pi].writebacks && r.seconds > 0)
      speed = against_pinned(turns[i], turns[pi],
                             (r.writebacks / r.seconds) / (rs[pi].writebacks / rs[pi].seconds));
    else {
      char b[64];
      std::snprintf(b, sizeof b, "%.0f", r.seconds > 0 ? r.writebacks / r.seconds : 0.0);
      speed = b;
    }
    std::printf("  writebacks/s:         %s\n", speed.c_str());
  }
}

// What --json says of the run's configuration in both modes.
nlohmann::json config_json(const options& o, const run_config& base) {
  return {{"seconds", o.seconds},
          {"frames", base.frames},
          {"file_pages", base.file_pages},
          {"page_size", 4096},
          {"wait_timeout_s", std::chrono::duration<double>(base.wait_timeout).count()}};
}

// The role of process i of a process-mode run (forked in this order).
const char* role_of(const run_result& r, int i) {
  const auto u = static_cast<unsigned>(i);
  return u < r.writers                                     ? "a writer"
         : u < r.writers + r.readers                       ? "a reader"
         : u < r.writers + r.readers + r.writeback_threads ? "a writeback process"
                                                           : "a truncator";
}

// Process mode: one protocol (atomic-clear through a wait domain), one run, no detector.
void print_processes(const options& o, const run_config& base, const run_result& r) {
  std::printf(
      "pagewait demo --processes: a page cache of %u frames of 4 KiB over a %llu-page file, in one shared "
      "mapping\n(a wait domain, pagewait/shm.hpp); %u processes (%u writers, %u readers, %u writeback, %u "
      "truncators), one thread each; %.1f s\n\n",
      base.frames, static_cast<unsigned long long>(base.file_pages), r.processes, r.writers, r.readers,
      r.writeback_threads, r.truncators, o.seconds);
  std::printf("%-16s  %11s  %13s  %11s  %11s  %13s  %11s  %s\n", "protocol", "page ops/s", "writebacks/s",
              "wb wait p50", "p99", "lost wake-ups", "woken early", "data");
  const double secs = r.seconds > 0 ? r.seconds : 1;
  std::printf("%-16s  %11.0f  %13.0f  %s  %s  %13llu  %11llu  %s\n",
              std::string(to_string(r.protocol)).c_str(), r.page_ops / secs, r.writebacks / secs,
              pad(r.writeback_waits ? us(r.wait_p50_us) : "-", 11).c_str(),
              pad(r.writeback_waits ? us(r.wait_p99_us) : "-", 11).c_str(),
              static_cast<unsigned long long>(r.lost_wakeups), static_cast<unsigned long long>(r.woken_early),
              data_state(r));
  std::printf(
      "\nwaits across processes: %llu page locks found held and waited for, %llu waits for writeback\n",
      static_cast<unsigned long long>(r.lock_waits), static_cast<unsigned long long>(r.writeback_waits));
  std::printf(
      "\nEvery page lock, writeback wait and end of writeback is a bit of a frame's word in the shared "
      "mapping,\nand so is the lock of the page index and free list: a process sleeps on a shared futex "
      "in the domain's\nslot, and another process's release wakes it. The file is read back at the end: "
      "every page must hold\nthe last version written to it, whichever process wrote it.\n"
      "lost wake-ups       waits that timed out (%.1f s) although their bit had been cleared\n"
      "woken early         writeback waits woken while the page was still under writeback\n",
      std::chrono::duration<double>(base.wait_timeout).count());
  print_contention({r}, {r.domain_contention},
                   "the wait domain's statistics, shm::domain::get_stats: every process, slow paths only");
  std::printf("futex wake calls %llu, sleeps %llu (the domain's parkers, all processes)\n",
              static_cast<unsigned long long>(r.domain_wake_syscalls),
              static_cast<unsigned long long>(r.domain_sleeps));
  if (base.kill_one) {
    if (r.killed >= 0)
      std::printf(
          "\n--kill: process %d (%s) was killed with SIGKILL halfway through, while it waited for a "
          "page lock\n(it held a reference to that page and nothing else). Its wait was finished for it "
          "(CONTRACT 3.12):\nthe parent's shm::domain::recover() (right after, and again at the end if the "
          "wait was not finished\nby then) found %llu dead slot(s), finished %llu wait(s), passed on %llu "
          "lock(s) handed to the dead\n(a waiter's own poll may have been first); once the dead held no slot "
          "(slots_held_by), its page\nreference was dropped for it. Its report is lost; the others' counts "
          "above are theirs.\n",
          r.killed, role_of(r, r.killed), static_cast<unsigned long long>(r.recovered_dead_slots),
          static_cast<unsigned long long>(r.recovered_waits),
          static_cast<unsigned long long>(r.recovered_locks_passed_on));
    else
      std::printf("\n--kill: no process was found parked in a page lock wait; nobody was killed\n");
  }
  const std::string verdict = !r.failure.empty()              ? "FAILED: " + r.failure
                              : !r.data_ok                    ? std::string("DATA ") + data_state(r)
                              : r.lost_wakeups                ? "LOST WAKE-UPS"
                              : base.kill_one && r.killed < 0 ? "NOBODY KILLED (no process was found waiting)"
                              : base.kill_one
                                  ? "one process killed while it waited; every other process finished; no "
                                    "wake-up lost; the data check passed"
                                  : "every process finished; no wake-up lost; the data check passed";
  std::printf("\nverdict: %s\n", verdict.c_str());
}

int run_processes(const options& o, run_config base) {
  const progress_bar bar(isatty(STDERR_FILENO) != 0);
  base.progress = [&](double f) { bar.show("processes", f); };
  run_result r;
  try {
    r = run_demo(base);
    bar.clear();
  } catch (const std::exception& e) {
    bar.clear();
    std::fprintf(stderr, "pagewait demo: %s\n", e.what());
    return 1;
  }
  if (o.json) {
    nlohmann::json j;
    j["config"] = config_json(o, base);
    j["config"]["protocol"] = "atomic-clear";
    j["config"]["processes"] = true;
    j["config"]["workers"] = o.threads;
    nlohmann::json run = to_json(r);
    run["contention"] = to_json(r.domain_contention);
    run["contention"]["wake_syscalls"] = r.domain_wake_syscalls;
    run["contention"]["sleeps"] = r.domain_sleeps;
    if (base.kill_one) {
      run["killed"] = r.killed;  // -1: nobody was found parked in a page lock wait
      run["recovered"] = {{"dead_slots", r.recovered_dead_slots},
                          {"waits_finished", r.recovered_waits},
                          {"locks_passed_on", r.recovered_locks_passed_on}};
    }
    j["runs"] = nlohmann::json::array({run});
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    print_processes(o, base, r);
  }
  return r.data_ok && r.failure.empty() && r.lost_wakeups == 0 && (!base.kill_one || r.killed >= 0) ? 0 : 1;
}

int demo_main(int argc, char** argv) {
  options o;
  CLI::App app{
      "Runs a small page cache (writers, readers, writeback, truncation over a scratch file) under each "
      "release protocol and shows which ones touch a page after it was freed.",
      "pagewait demo"};
  tool::real_in(app.add_option("--seconds", o.seconds, "seconds per protocol (default 4)"), 0.05, 3600.0);
  tool::whole_in(
      app.add_option("--threads", o.threads,
                     "worker threads (a quarter each: writers, writeback, truncators; the rest read; "
                     "default 8)"),
      4u, 256u);
  app.add_option("--protocol", o.protocol, "clear-then-wake, pinned, xor-waiters, atomic-clear or all")
      ->check(CLI::IsMember({"all", "clear-then-wake", "pinned", "xor-waiters", "atomic-clear"}));
  tool::whole_in(
      app.add_option("--widen", o.widen_us,
                     "microseconds to sleep between the clearing step and the wake-up of the non-atomic "
                     "protocols (atomic-clear sleeps as long after its release), 0 for none; default 50"),
      0u, 1000000u);
  app.add_option("--file", o.file,
                 "scratch file to create (must not exist; removed at the end); default: a temporary file");
  app.add_flag("--json", o.json, "print the results as JSON");
  tool::whole_in(
      app.add_option("--async", o.async,
                     "also run this many asynchronous reader coroutines on one more thread, reading "
                     "pages through io_uring and waiting for page locks with co_await (default 0: none)"),
      0u, 65536u);
  app.add_flag("--no-uring", o.no_uring,
               "with --async: read pages with pread on the loop thread, not io_uring");
  CLI::Option* protocol_opt = app.get_option("--protocol");
  CLI::Option* widen_opt = app.get_option("--widen");
  app.add_flag("--processes", o.processes,
               "run each worker as a process of its own (--threads of them), over a page cache in shared "
               "memory and a wait domain (atomic-clear)");
  app.add_flag("--kill", o.kill,
               "with --processes: halfway through, kill one process with SIGKILL while it waits for a page "
               "lock; the others must finish with the data check passing");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "pagewait demo: %s\nRun `pagewait demo --help` for the options.\n", e.what());
    return 2;
  }
  if (o.processes) {
    const char* wrong = o.async                                                 ? "--async"
                        : o.no_uring                                            ? "--no-uring"
                        : widen_opt->count()                                    ? "--widen"
                        : protocol_opt->count() && o.protocol != "atomic-clear" ? "--protocol"
                                                                                : nullptr;
    if (wrong) {
      std::fprintf(stderr,
                   "pagewait demo: %s does not go with --processes (processes share words through a wait "
                   "domain: atomic-clear, no asynchronous readers, no widened window)\n",
                   wrong);
      return 2;
    }
    o.protocol = "atomic-clear";
  }
  if (o.kill && !o.processes) {
    std::fprintf(stderr, "pagewait demo: --kill needs --processes (it kills one of the processes)\n");
    return 2;
  }
  if (o.no_uring && !o.async) {
    std::fprintf(stderr,
                 "pagewait demo: --no-uring needs --async (it says how the asynchronous readers read)\n");
    return 2;
  }
  if (!o.file.empty()) {
    std::error_code ec;
    if (std::filesystem::exists(o.file, ec)) {
      std::fprintf(stderr,
                   "pagewait demo: --file %s exists; give a new path (the demo will not overwrite a file)\n",
                   o.file.c_str());
      return 2;
    }
    const std::filesystem::path dir = std::filesystem::path(o.file).parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
      std::fprintf(stderr, "pagewait demo: --file %s: %s is not a directory\n", o.file.c_str(), dir.c_str());
      return 2;
    }
  }

  std::vector<release_protocol> protocols;
  if (o.protocol == "all")
    protocols.assign(std::begin(all_release_protocols), std::end(all_release_protocols));
  else
    protocols.push_back(*parse_release_protocol(o.protocol));

  run_config base;
  base.duration = std::chrono::duration<double>(o.seconds);
  base.threads = o.threads;
  base.widen = std::chrono::microseconds(o.widen_us);
  base.file = o.file;
  base.async_readers = o.async;
  base.async_uring = !o.no_uring;
  base.processes = o.processes;
  base.kill_one = o.kill;
  if (o.processes) return run_processes(o, base);

  // The protocols take turns in slices of about half a second, each on a fresh cache and file,
  // so that the load of a shared machine, which changes over seconds, weighs on all alike.
  const unsigned slices = std::max(1u, static_cast<unsigned>(std::lround(o.seconds / 0.5)));
  base.duration = std::chrono::duration<double>(o.seconds / slices);
  const double total = double(slices) * double(protocols.size());
  const progress_bar bar(isatty(STDERR_FILENO) != 0);
  std::vector<run_result> results(protocols.size());
  std::vector<std::vector<double>> turns(protocols.size());  // writebacks/s of each turn
  std::vector<contention_stats> contention(protocols.size());
  const bool stats_were_on = stats_enabled();
  enable_stats();
  try {
    double done = 0;
    for (unsigned s = 0; s < slices; ++s) {
      for (std::size_t i = 0; i < protocols.size(); ++i) {
        run_config c = base;
        c.protocol = protocols[i];
        const std::string label = std::string(to_string(c.protocol));
        c.progress = [&](double f) { bar.show(label, (done + f) / total); };
        bar.show(label, done / total);
        reset_stats();
        run_result r = run_demo(c);
        contention[i] += get_stats().total;  // summed over the turns (longest: the maximum)
        turns[i].push_back(r.seconds > 0 ? r.writebacks / r.seconds : 0.0);
        if (s == 0)
          results[i] = std::move(r);
        else
          results[i].add(r);
        done += 1;
      }
    }
    bar.clear();
    enable_stats(stats_were_on);
  } catch (const std::exception& e) {
    bar.clear();
    enable_stats(stats_were_on);
    std::fprintf(stderr, "pagewait demo: %s\n", e.what());
    return 1;
  }

  if (o.json) {
    nlohmann::json j;
    j["config"] = config_json(o, base);
    j["config"]["protocol"] = o.protocol;
    j["config"]["slices"] = slices;
    j["config"]["threads"] = o.threads;
    j["config"]["widen_us"] = o.widen_us;
    j["config"]["async_readers"] = o.async;
    j["runs"] = nlohmann::json::array();
    for (std::size_t i = 0; i < results.size(); ++i) {
      nlohmann::json run = to_json(results[i]);
      run["contention"] = to_json(contention[i]);
      j["runs"].push_back(std::move(run));
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    print_table(o, slices, base, results);
    if (o.async) print_async(results, base.frames);
    print_contention(results, contention);
    print_verdict(results, turns);
  }
  // The demo's claims: every protocol keeps the data, and only clear-then-wake touches a
  // freed page. A run that contradicts them fails.
  for (const run_result& r : results)
    if (!r.data_ok ||
        (r.protocol != release_protocol::clear_then_wake && (r.touched_after_free || r.lost_wakeups)))
      return 1;
  return 0;
}

const tool::command_registrar reg{
    {"demo", "the seed's scenario: a page cache under the four release protocols", &demo_main}};

}  // namespace
}  // namespace pagewait::demo
