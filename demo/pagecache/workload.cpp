// demo/pagecache/workload.cpp — the threads of the demo and the final data check.
#include "workload.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <coroutine>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include "event_loop.hpp"
#include "page_cache.hpp"
#include "pagewait/async.hpp"

namespace pagewait::demo {
namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t max_wait_samples = std::size_t(1) << 20;

double percentile_us(std::vector<std::uint32_t>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * double(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k] / 1000.0;
}

void compute_percentiles(run_result& r) {
  r.wait_p50_us = percentile_us(r.wait_samples_ns, 0.50);
  r.wait_p99_us = percentile_us(r.wait_samples_ns, 0.99);
}

// Counters the controlling thread reads while the run is going (progress, stop at first
// touch). Each is written by its one owner thread only, hence a load and a store, no RMW.
struct alignas(64) live_counters {
  std::atomic<std::uint64_t> ops{0}, writebacks{0}, touched{0}, reused{0};
  static void bump(std::atomic<std::uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

// A worker's counts at the end of its run: what run_result adds up. Plain data, so that a
// process can leave it in shared memory for the parent.
struct worker_totals {
  std::uint64_t ops = 0, writebacks = 0, touched = 0, reused = 0;
  std::uint64_t rmws = 0, bucket_locks = 0, writeback_waits = 0, bad_reads = 0;
  std::uint64_t lost_wakeups = 0, woken_early = 0, timeouts = 0, lock_waits = 0;
};

struct worker {
  live_counters live;
  wait_counters wc;
  std::uint64_t rmws = 0, bucket_locks = 0, writeback_waits = 0, bad_reads = 0;
  std::vector<std::uint32_t> wait_ns;  // waits for writeback, capped
  std::uint64_t rng;

  worker_totals totals() const {
    worker_totals t;
    t.ops = live.ops.load(std::memory_order_relaxed);
    t.writebacks = live.writebacks.load(std::memory_order_relaxed);
    t.touched = live.touched.load(std::memory_order_relaxed);
    t.reused = live.reused.load(std::memory_order_relaxed);
    t.rmws = rmws;
    t.bucket_locks = bucket_locks;
    t.writeback_waits = writeback_waits;
    t.bad_reads = bad_reads;
    t.lost_wakeups = wc.lost_wakeups;
    t.woken_early = wc.woken_early;
    t.timeouts = wc.timeouts;
    t.lock_waits = wc.lock_waits;
    return t;
  }

  explicit worker(std::uint64_t seed) : rng(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {  // xorshift64*
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
  }
  void record_wait(clock_type::duration d) {
    ++writeback_waits;
    if (wait_ns.size() < max_wait_samples)
      wait_ns.push_back(static_cast<std::uint32_t>(std::min<long long>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(), 0xffffffffll)));
  }
};

// The scratch file: created new (never an existing file), zero-filled, removed at the end.
class scratch_file {
 public:
  scratch_file(const std::string& path, std::uint64_t bytes) {
    if (path.empty()) {
      const char* dir = std::getenv("TMPDIR");
      std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/pagewait-demo-XXXXXX";
      fd_ = mkstemp(tmpl.data());
      if (fd_ < 0)
        throw std::runtime_error("cannot create a temporary file in " + tmpl + ": " + std::strerror(errno));
      path_ = tmpl;
    } else {
      fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd_ < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
      path_ = path;
    }
    if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
      const int e = errno;
      close(fd_);
      unlink(path_.c_str());
      throw std::runtime_error("cannot size " + path_ + ": " + std::strerror(e));
    }
  }
  ~scratch_file() {
    close(fd_);
    unlink(path_.c_str());
  }
  scratch_file(const scratch_file&) = delete;
  scratch_file& operator=(const scratch_file&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A coroutine that starts at once and destroys itself at its end (the loop owns nothing).
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::abort(); }
  };
};

// What the roles share besides the pool: in this process's memory (threads), or at the start of
// the wait domain's user area (processes).
struct shared_control {
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<unsigned> hint{0};  // the frame whose writeback began last
};

// Process mode: what one child leaves for the parent, in the shared mapping, before it exits
// (the parent reads it after waitpid). A child that failed says why in `error`.
constexpr std::size_t process_samples = 8192;  // waits for writeback kept per process
struct process_report {
  worker_totals totals;
  std::uint32_t samples = 0;
  std::uint32_t sample_ns[process_samples];
  char error[256];
};

// The roles, over one pool and one cache: threads of this process (page_cache<R>, any protocol)
// or forked processes over a shared mapping (shm_page_cache, through a wait domain).
template <class Cache>
class workload {
 public:
  workload(const run_config& cfg, Cache& cache, shared_control& ctl, std::atomic<std::uint64_t>* last_version)
      : cfg_(cfg), pool_(cache.pool()), cache_(cache), ctl_(ctl), last_version_(last_version) {}

  run_result run_threads() {
    run_result r = with_roles();

    std::vector<std::unique_ptr<worker>> ws;
    std::vector<std::thread> ts;
    auto spawn = [&](unsigned count, void (workload::*body)(worker&)) {
      for (unsigned i = 0; i < count; ++i) {
        ws.push_back(std::make_unique<worker>(ws.size() + 1));
        ts.emplace_back([this, body, w = ws.back().get()] {
          while (!ctl_.go.load(std::memory_order_acquire)) std::this_thread::yield();
          (this->*body)(*w);
        });
      }
    };
    spawn(r.writers, &workload::writer);
    spawn(r.readers, &workload::reader);
    spawn(r.writeback_threads, &workload::writeback);
    spawn(r.truncators, &workload::truncator);
    // The asynchronous readers: one more thread, the loop, and its coroutines.
    std::unique_ptr<event_loop> loop;
    worker async_w(0xA5);
    std::atomic<bool> loop_done{false};
    std::thread loop_thread;
    if (cfg_.async_readers) {
      loop = std::make_unique<event_loop>(cfg_.async_uring);
      loop_thread = std::thread([&] {
        while (!ctl_.go.load(std::memory_order_acquire)) std::this_thread::yield();
        for (unsigned i = 0; i < cfg_.async_readers; ++i) async_reader(*loop, async_w);
        loop->run([&] { return async_finished_ == cfg_.async_readers; });
        loop_done.store(true, std::memory_order_release);
      });
    }

    const auto start = clock_type::now();
    ctl_.go.store(true, std::memory_order_release);
    const auto limit = std::chrono::duration_cast<clock_type::duration>(cfg_.duration);
    auto last_progress = start;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const auto now = clock_type::now();
      if (now - start >= limit) break;
      if (cfg_.stop_at_first_touch) {
        std::uint64_t touched = 0;
        for (auto& w : ws) touched += w->live.touched.load(std::memory_order_relaxed);
        if (touched) break;
      }
      if (cfg_.progress && now - last_progress >= std::chrono::milliseconds(50)) {
        last_progress = now;
        cfg_.progress(std::chrono::duration<double>(now - start) / cfg_.duration);
      }
    }
    ctl_.stop.store(true, std::memory_order_relaxed);
    const auto end = clock_type::now();
    if (loop) {
      // Every thread stops within its current page op and releases what it holds: a coroutine
      // still suspended on a page lock 5 s from now was not woken. It is stopped, and counted if
      // the bit is clear (a grant handed to it and lost would leave the bit set: the threads
      // that want that page then time out and count lost wake-ups, and the join waits on them).
      const auto limit_at = clock_type::now() + std::chrono::seconds(5);
      while (!loop_done.load(std::memory_order_acquire) && clock_type::now() < limit_at)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      async_abort_.request_stop();
    }
    for (auto& t : ts) t.join();
    r.seconds = std::chrono::duration<double>(end - start).count();
    if (loop) {
      loop_thread.join();
      r.async_coroutines = cfg_.async_readers;
      for (unsigned i = r.writers; i < r.writers + r.readers; ++i)
        r.reader_ops += ws[i]->live.ops.load(std::memory_order_relaxed);
      r.async_ops = async_w.live.ops.load(std::memory_order_relaxed);
      r.bad_reads += async_w.bad_reads;
      r.lost_wakeups += async_w.wc.lost_wakeups;
      r.wait_timeouts += async_w.wc.timeouts;
      r.async_timers_fired = loop->timers_fired();
      r.async_reads = loop->reads();
      r.async_max_in_flight = loop->max_in_flight();
      r.async_mean_in_flight = loop->mean_in_flight();
      r.async_lock_waits = async_lock_waits_;
      r.async_loop_wakeups = loop->wakeups();
      r.async_io = loop->uring() ? "io_uring" : loop->fallback_reason();
    }

    std::vector<std::uint32_t> waits;
    for (auto& w : ws) {
      add_totals(r, w->totals());
      waits.insert(waits.end(), w->wait_ns.begin(), w->wait_ns.end());
    }
    r.wait_samples_ns = std::move(waits);
    compute_percentiles(r);
    verify(r);
    return r;
  }

  // Each role in a process of its own, forked from this one (which must have no other thread):
  // the children share the pool, the control block and `reports` (one per child) through the
  // domain's mapping, and the page file through the inherited descriptor. A child that fails, or
  // does not stop in time, fails the run (`failure`); it never hangs the demo.
  // `parked_in_page_lock(pid, word)`: whether a stopped child is parked waiting for the lock of
  // the page whose flags are `word` (kill_one); `recover(r, pid)`: the domain's recovery, run after
  // the kill, its report added into r; it returns the slots the killed process `pid` still holds
  // (0: every wait it was in is finished).
  run_result run_processes(process_report* reports,
                           const std::function<bool(pid_t, const void*)>& parked_in_page_lock,
                           const std::function<std::size_t(run_result&, pid_t)>& recover) {
    run_result r = with_roles();
    r.processes = r.writers + r.readers + r.writeback_threads + r.truncators;
    // The children must stay waitable until we reap them: with SIGCHLD ignored (a caller's
    // choice) the kernel would reap them itself, waitpid would fail, and a pid we kill could
    // already be another process's. Default for the run, restored after.
    struct sigchld_default {
      struct sigaction old {};
      sigchld_default() {
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGCHLD, &dfl, &old);
      }
      ~sigchld_default() { sigaction(SIGCHLD, &old, nullptr); }
    } chld;
    std::vector<pid_t> pids;
    pids.reserve(r.processes);  // no allocation (nothing that throws) between a fork and its record
    std::vector<bool> done(r.processes, false);  // reaped: its pid is no longer ours to signal
    const pid_t parent = getpid();
    // Whatever throws from the first fork on stops and reaps the children forked and not yet
    // reaped (after a normal end there are none).
    struct reaper {
      workload& w;
      const std::vector<pid_t>& pids;
      std::vector<bool>& done;
      ~reaper() {
        w.ctl_.stop.store(true, std::memory_order_relaxed);
        for (std::size_t i = 0; i < pids.size(); ++i)
          if (!done[i]) kill(pids[i], SIGKILL);
        for (std::size_t i = 0; i < pids.size(); ++i)
          if (!done[i]) waitpid(pids[i], nullptr, 0);
      }
    } on_error{*this, pids, done};
    auto spawn = [&](unsigned count, void (workload::*body)(worker&)) {
      for (unsigned i = 0; i < count; ++i) {
        const auto me = static_cast<unsigned>(pids.size());
        std::fflush(nullptr);  // nothing buffered is written twice
        const pid_t pid = fork();
        if (pid < 0) throw std::runtime_error(std::string("demo: fork: ") + std::strerror(errno));
        if (pid == 0) child(parent, me, body, reports[me]);
        pids.push_back(pid);
      }
    };
    spawn(r.writers, &workload::writer);
    spawn(r.readers, &workload::reader);
    spawn(r.writeback_threads, &workload::writeback);
    spawn(r.truncators, &workload::truncator);

    const auto start = clock_type::now();
    ctl_.go.store(true, std::memory_order_release);
    const auto limit = std::chrono::duration_cast<clock_type::duration>(cfg_.duration);
    auto last_progress = start;
    frame* dead_ref = nullptr;  // the page the killed process held a reference to
    if (cfg_.kill_one) {
      // Halfway through, this process holds the lock of a page that is in the cache, so that the
      // processes that come for it wait (and sleep); one that is found parked in that wait is
      // killed (stopped first, then looked at: whatever its role, it then holds a reference to
      // the page and nothing else). The unlock then hands the lock to the dead waiter if it is
      // first in the queue and has waited long enough to have earned it; the recovery passes it
      // on. At most a fifth of the run, and the others are let go at once after each look.
      std::this_thread::sleep_until(start + limit / 2);
      wait_counters wc;
      frame* held = nullptr;
      for (unsigned k = 0; k < pool_.frames() && !held && !stopping(); ++k) {
        // With a reference, as every worker: a truncation that removes the frame while we wait
        // for its lock frees it only once we drop ours, never with the lock handed to us (a
        // frame freed locked; reused, it would have two lock holders).
        frame* f = pool_.get_if_mapped(
            pool_.frame_at((ctl_.hint.load(std::memory_order_relaxed) + k) % pool_.frames()), 0);
        if (!f) continue;
        cache_.lock_page(f, wc);
        if (f->mapped) {
          held = f;
        } else {
          cache_.unlock_page(f);
          pool_.put(f);
        }
      }
      if (held) {
        const auto give_up = clock_type::now() + limit / 5;
        for (std::size_t i = 0; r.killed < 0 && clock_type::now() < give_up; i = (i + 1) % pids.size()) {
          if (i == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          if (kill(pids[i], SIGSTOP) != 0) continue;
          if (parked_in_page_lock(pids[i], &held->flags)) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], nullptr, 0);
            done[i] = true;
            r.killed = static_cast<int>(i);
            // Its reference to the page stays until its wait is finished (below): while its node
            // is queued on the page's word, an unlock may hand the lock to it, and a lock holder
            // must hold a reference (else a truncation's last put frees the frame locked, and a
            // reuse of it gets a recovery's unlock).
            dead_ref = held;
          } else {
            kill(pids[i], SIGCONT);
          }
        }
        cache_.unlock_page(held);
        pool_.put(held);  // ours
        // The dead's reference is dropped for it as soon as its wait is finished (no slot of its
        // left): by this recovery, or by a waiter's poll before it. Else at the end.
        if (dead_ref && recover(r, pids[static_cast<std::size_t>(r.killed)]) == 0) {
          pool_.put(dead_ref);
          dead_ref = nullptr;
        }
      }
    }
    while (clock_type::now() - start < limit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const auto now = clock_type::now();
      if (cfg_.progress && now - last_progress >= std::chrono::milliseconds(50)) {
        last_progress = now;
        cfg_.progress(std::chrono::duration<double>(now - start) / cfg_.duration);
      }
    }
    ctl_.stop.store(true, std::memory_order_relaxed);
    const auto end = clock_type::now();
    r.seconds = std::chrono::duration<double>(end - start).count();

    // Each child stops within its current page op. One still running long after that is stuck
    // (a wait nobody ends, a lock its holder never gave back): killed, and the run fails.
    const auto give_up_at = clock_type::now() + std::chrono::seconds(10) + 4 * cfg_.wait_timeout;
    for (auto left = static_cast<std::size_t>(std::count(done.begin(), done.end(), false)); left > 0;) {
      for (std::size_t i = 0; i < pids.size(); ++i) {
        if (done[i]) continue;
        int status = 0;
        const pid_t got = waitpid(pids[i], &status, WNOHANG);
        if (got == 0) continue;
        done[i] = true;
        --left;
        if (got < 0)
          note_failure(r, "process " + std::to_string(i) + ": waitpid: " + std::strerror(errno));
        else if (WIFSIGNALED(status))
          note_failure(
              r, "process " + std::to_string(i) + " died of signal " + std::to_string(WTERMSIG(status)));
        else if (WEXITSTATUS(status) != 0)
          note_failure(r,
                       "process " + std::to_string(i) + " failed: " +
                           std::string(reports[i].error, strnlen(reports[i].error, sizeof reports[i].error)));
      }
      if (left == 0) break;
      if (clock_type::now() >= give_up_at) {
        for (std::size_t i = 0; i < pids.size(); ++i)
          if (!done[i]) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], nullptr, 0);
            done[i] = true;
            note_failure(r, "process " + std::to_string(i) + " did not stop; killed");
          }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    std::vector<std::uint32_t> waits;
    for (std::size_t i = 0; i < pids.size(); ++i) {
      add_totals(r, reports[i].totals);
      waits.insert(waits.end(), reports[i].sample_ns, reports[i].sample_ns + reports[i].samples);
    }
    r.wait_samples_ns = std::move(waits);
    compute_percentiles(r);
    if (dead_ref) {
      // Every child is gone: the killed one's wait is finished now if no waiter's poll and no
      // recovery during the run did (nobody holds a bucket lock any more, so none stays pending),
      // and then its reference is dropped for it, as the dead's cleanup would (the last one if
      // the page was truncated meanwhile: the frame is freed, and must be unlocked by then).
      if (recover(r, pids[static_cast<std::size_t>(r.killed)]) != 0)
        note_failure(r, "the killed process's wait was still not finished once every process had ended");
      else
        pool_.put(dead_ref);
    }
    // Only once every child is gone: nobody changes a frame any more.
    verify(r);
    if (!r.failure.empty()) r.data_ok = false;
    return r;
  }

 private:
  // The roles: a quarter each writeback and truncation, the rest half writers, half readers.
  run_result with_roles() const {
    run_result r;
    r.protocol = cfg_.protocol;
    const unsigned n = std::max(cfg_.threads, 4u);
    r.writeback_threads = std::max(1u, n / 4);
    r.truncators = std::max(1u, n / 4);
    r.writers = std::max(1u, (n - r.writeback_threads - r.truncators) / 2);
    r.readers = n - r.writeback_threads - r.truncators - r.writers;
    return r;
  }

  static void add_totals(run_result& r, const worker_totals& t) {
    r.page_ops += t.ops;
    r.writebacks += t.writebacks;
    r.touched_after_free += t.touched;
    r.touched_after_reuse += t.reused;
    r.end_rmws += t.rmws;
    r.end_bucket_locks += t.bucket_locks;
    r.writeback_waits += t.writeback_waits;
    r.lost_wakeups += t.lost_wakeups;
    r.woken_early += t.woken_early;
    r.wait_timeouts += t.timeouts;
    r.lock_waits += t.lock_waits;
    r.bad_reads += t.bad_reads;
  }

  static void note_failure(run_result& r, const std::string& what) {
    r.failure += (r.failure.empty() ? "" : "; ") + what;
  }

  // A forked child: one role until the parent says stop, its report left in shared memory, then
  // _exit (no atexit handler, no stdio buffer of the parent's, no static destructor runs twice).
  [[noreturn]] void child(pid_t parent, unsigned me, void (workload::*body)(worker&), process_report& rep) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // an orphan would run until its own stop: none comes
    if (getppid() != parent) _exit(3);
    int status = 0;
    try {
      worker w(me + 1);
      while (!ctl_.go.load(std::memory_order_acquire) && !stopping()) sched_yield();
      (this->*body)(w);
      rep.totals = w.totals();
      rep.samples = static_cast<std::uint32_t>(std::min(w.wait_ns.size(), process_samples));
      std::copy_n(w.wait_ns.begin(), rep.samples, rep.sample_ns);
    } catch (const std::exception& e) {
      std::snprintf(rep.error, sizeof rep.error, "%s", e.what());
      status = 2;
    }
    _exit(status);
  }

  frame* get_locked(std::uint64_t index, worker& w) {
    bool created = false;
    frame* f = pool_.find_or_create(index, created);
    if (!f) return nullptr;
    if (created) {
      // Not cached, so the file holds its last version: truncation writes dirty pages before
      // it removes them, and waits for writeback to end.
      if (!pool_.read_page(f) ||
          !page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed)))
        ++w.bad_reads;
      f->flags.fetch_or(PG_UPTODATE, std::memory_order_relaxed);
      return f;
    }
    cache_.lock_page(f, w.wc);
    if (!f->mapped) {
      cache_.unlock_page(f);
      pool_.put(f);
      return nullptr;
    }
    return f;
  }

  void wait_writeback(frame* f, worker& w) {
    if (!(f->flags.load(std::memory_order_acquire) & PG_WRITEBACK)) return;
    const auto t0 = clock_type::now();
    if (cache_.wait_writeback(f, w.wc)) w.record_wait(clock_type::now() - t0);
  }

  bool stopping() const { return ctl_.stop.load(std::memory_order_relaxed); }

  // An asynchronous reader: the reader below, on the loop thread, never blocking it. A page it
  // brings in is read through the loop (io_uring); a page another holds locked is waited for with
  // co_await on the page lock, in the page cache's own wait table (the same core and table as the
  // threads': an asynchronous lock waiter is served as a thread in lock_page is).
  detached async_reader(event_loop& loop, worker& w) {
    using core = typename Cache::core;
    // Timed, as the threads' lock_page: a lost wake-up shows as a count, not as a stuck reader.
    using lock_awaitable = detail::bit_awaitable<std::uint32_t, event_loop, true, core, /*Timed=*/true>;
    while (!stopping()) {
      const std::uint64_t index = w.next() % cfg_.file_pages;
      bool created = false;
      frame* f = pool_.find_or_create(index, created);
      if (!f) {
        co_await loop.yield();  // no frame free: let the others run
        continue;
      }
      if (created) {
        // Locked by find_or_create: threads and coroutines that want the page wait for this read.
        const int n = co_await loop.read(pool_.fd(), f->data, unsigned(page_size), off_t(index * page_size));
        if (n != int(page_size) ||
            !page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed)))
          ++w.bad_reads;
        f->flags.fetch_or(PG_UPTODATE, std::memory_order_relaxed);
      } else {
        // A try first, only to count the waits that must suspend (the awaitable tries too).
        bool owner = core::try_lock(f->flags, PG_LOCKED);
        if (!owner) ++async_lock_waits_;
        while (!owner) {
          // Bound first: GCC 12 miscompiles a co_await that suspends in an if condition.
          owner =
              co_await lock_awaitable(f->flags, PG_LOCKED, loop, detail::deadline::after(cfg_.wait_timeout),
                                      async_abort_.get_token());
          if (owner) break;
          // Timed out (as lock_page: retried; counted as lost if the bit was clear), or stopped
          // 5 s after the run ended: the lock was never granted.
          const bool stopped = async_abort_.stop_requested();
          if (!(f->flags.load(std::memory_order_relaxed) & PG_LOCKED))
            ++w.wc.lost_wakeups;
          else if (!stopped)
            ++w.wc.timeouts;
          if (stopped) break;
        }
        if (!owner) {
          pool_.put(f);
          break;
        }
        if (!f->mapped) {
          cache_.unlock_page(f);
          pool_.put(f);
          continue;
        }
      }
      if (!page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed))) ++w.bad_reads;
      cache_.unlock_page(f);
      pool_.put(f);
      live_counters::bump(w.live.ops);
    }
    ++async_finished_;
  }

  void writer(worker& w) {
    while (!stopping()) {
      const std::uint64_t index = w.next() % cfg_.file_pages;
      frame* f = get_locked(index, w);
      if (!f) {
        std::this_thread::yield();
        continue;
      }
      wait_writeback(f, w);  // stable pages: the data being written must not change
      const std::uint64_t v = last_version_[index].load(std::memory_order_relaxed) + 1;
      fill_page(f->data, index, v);
      last_version_[index].store(v, std::memory_order_relaxed);
      f->flags.fetch_or(PG_DIRTY, std::memory_order_relaxed);
      cache_.unlock_page(f);
      pool_.put(f);
      live_counters::bump(w.live.ops);
    }
  }

  void reader(worker& w) {
    while (!stopping()) {
      const std::uint64_t index = w.next() % cfg_.file_pages;
      frame* f = get_locked(index, w);
      if (!f) {
        std::this_thread::yield();
        continue;
      }
      if (!page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed))) ++w.bad_reads;
      cache_.unlock_page(f);
      pool_.put(f);
      live_counters::bump(w.live.ops);
    }
  }

  void writeback(worker& w) {
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // --widen means microseconds, not 50 more
    unsigned misses = 0;
    while (!stopping()) {
      const unsigned slot = static_cast<unsigned>(w.next() % pool_.frames());
      frame* f = pool_.get_if_mapped(pool_.frame_at(slot), PG_DIRTY);
      if (!f) {
        if (++misses % 64 == 0) std::this_thread::yield();
        continue;
      }
      cache_.lock_page(f, w.wc);
      if (!f->mapped || (f->flags.load(std::memory_order_relaxed) & (PG_DIRTY | PG_WRITEBACK)) != PG_DIRTY) {
        cache_.unlock_page(f);
        pool_.put(f);
        continue;
      }
      start_writeback(f);
      cache_.unlock_page(f);
      ctl_.hint.store(slot, std::memory_order_relaxed);
      // Writeback holds no reference from here on (PG_writeback carries none): the frame stays
      // alive only because truncation waits for WRITEBACK to clear.
      pool_.put(f);
      pool_.write_page(f);
      const auto rep = cache_.end_writeback(f);
      w.rmws += rep.rmws;
      w.bucket_locks += rep.bucket_locks;
      if (rep.touched_after_free) live_counters::bump(w.live.touched);
      if (rep.touched_after_reuse) live_counters::bump(w.live.reused);
      live_counters::bump(w.live.writebacks);
    }
  }

  void truncator(worker& w) {
    while (!stopping()) {
      // Mostly the page whose writeback began last: truncation racing with writeback is the
      // scenario of the 2020 bug report (a random page rarely is in writeback).
      const std::uint64_t r = w.next();
      const unsigned slot = (r & 3) ? ctl_.hint.load(std::memory_order_relaxed)
                                    : static_cast<unsigned>((r >> 2) % pool_.frames());
      frame* f = pool_.get_if_mapped(pool_.frame_at(slot), 0);
      if (!f) {
        std::this_thread::yield();
        continue;
      }
      cache_.lock_page(f, w.wc);
      if (!f->mapped) {
        cache_.unlock_page(f);
        pool_.put(f);
        continue;
      }
      wait_writeback(f, w);
      if (f->flags.load(std::memory_order_relaxed) & PG_DIRTY) {
        // Under the page lock: a reader that brings the page back in waits for this write.
        if (!cfg_.truncate_drops_dirty_data) pool_.write_page(f);
        f->flags.fetch_and(~PG_DIRTY, std::memory_order_relaxed);
      }
      f->flags.fetch_and(~PG_UPTODATE, std::memory_order_relaxed);
      pool_.remove(f);
      cache_.unlock_page(f);
      pool_.put(f);  // usually the last reference: the frame is free and reused from now on
      live_counters::bump(w.live.ops);
    }
  }

  // All threads have stopped, so every writeback has ended. Write what is dirty, then read
  // the whole file back: each page must hold the last version written to it.
  void verify(run_result& r) {
    for (unsigned i = 0; i < pool_.frames(); ++i) {
      frame& f = pool_.frame_at(i);
      if (f.refs.load(std::memory_order_relaxed) != (f.mapped ? 1u : 0u)) ++r.frames_with_stray_refs;
      if (!f.mapped) continue;
      if (f.flags.load(std::memory_order_relaxed) & (PG_LOCKED | PG_WRITEBACK)) ++r.pages_wrong;
      if (f.flags.load(std::memory_order_relaxed) & PG_DIRTY) {
        pool_.write_page(&f);
        f.flags.fetch_and(~PG_DIRTY, std::memory_order_relaxed);
      }
    }
    alignas(64) unsigned char buf[page_size];
    for (std::uint64_t i = 0; i < cfg_.file_pages; ++i) {
      ++r.pages_checked;
      const off_t off = static_cast<off_t>(i * page_size);
      if (pread(pool_.fd(), buf, page_size, off) != static_cast<ssize_t>(page_size) ||
          !page_is(buf, i, last_version_[i].load(std::memory_order_relaxed)))
        ++r.pages_wrong;
    }
    r.bad_frees = pool_.bad_frees();
    r.io_errors = pool_.io_errors();
    r.data_ok = r.pages_wrong == 0 && r.bad_reads == 0 && r.bad_frees == 0 && r.io_errors == 0 &&
                r.frames_with_stray_refs == 0;
  }

  const run_config& cfg_;
  page_pool& pool_;
  Cache& cache_;
  shared_control& ctl_;
  // The last version written to each page (0: never written). Changed by writers holding the
  // page lock; what the file must hold once the page leaves the cache.
  std::atomic<std::uint64_t>* last_version_;
  // The asynchronous readers' (loop thread only, but for the stop source).
  unsigned async_finished_ = 0;
  std::uint64_t async_lock_waits_ = 0;
  std::stop_source async_abort_;
};

template <release_protocol R>
run_result run_with(const run_config& cfg, int fd) {
  page_pool pool(fd, cfg.frames, cfg.file_pages);
  page_cache<R> cache(pool, cfg.wait_timeout, cfg.widen);
  shared_control ctl;
  auto last_version = std::make_unique<std::atomic<std::uint64_t>[]>(cfg.file_pages);
  workload<page_cache<R>> w(cfg, cache, ctl, last_version.get());
  return w.run_threads();
}

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// A memfd mapping, MAP_SHARED: what the forked children share. Unmapped and closed at the end.
class shared_mapping {
 public:
  explicit shared_mapping(std::size_t bytes) : bytes_(bytes) {
    fd_ = memfd_create("pagewait-demo", MFD_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(std::string("demo: memfd_create: ") + std::strerror(errno));
    if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
      const int e = errno;
      close(fd_);
      throw std::runtime_error(std::string("demo: sizing the shared mapping: ") + std::strerror(e));
    }
    base_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (base_ == MAP_FAILED) {
      const int e = errno;
      close(fd_);
      throw std::runtime_error(std::string("demo: mmap: ") + std::strerror(e));
    }
  }
  ~shared_mapping() {
    munmap(base_, bytes_);
    close(fd_);
  }
  shared_mapping(const shared_mapping&) = delete;
  shared_mapping& operator=(const shared_mapping&) = delete;
  void* base() const { return base_; }

 private:
  std::size_t bytes_;
  int fd_ = -1;
  void* base_ = nullptr;
};

// Process mode: a wait domain over a fresh shared mapping; in its user area the control block,
// the last versions, the children's reports and the pool; the roles forked from this process.
run_result run_in_processes(const run_config& cfg, int fd) {
  const unsigned n = std::max(cfg.threads, 4u);
  const std::size_t versions_at = round_up(sizeof(shared_control), 64);
  const std::size_t reports_at =
      round_up(versions_at + std::size_t(cfg.file_pages) * sizeof(std::atomic<std::uint64_t>), 64);
  const std::size_t pool_at = round_up(reports_at + std::size_t(n) * sizeof(process_report), 64);
  const std::size_t user_bytes = pool_at + page_pool::shared_bytes(cfg.frames, cfg.file_pages);
  // One slot per process for its wait (each has one thread), and the release reserve on top: no
  // wait ever finds the slots exhausted.
  shm::options o;
  o.slots = n + 16;
  o.release_reserve = 8;
  const std::size_t bytes = shm::domain::bytes_needed(user_bytes, o);
  shared_mapping m(bytes);
  shm::domain d = shm::domain::create(m.base(), bytes, o);
  char* user = static_cast<char*>(d.user_area());
  auto* ctl = new (user) shared_control;
  auto* last_version = reinterpret_cast<std::atomic<std::uint64_t>*>(user + versions_at);
  for (std::uint64_t i = 0; i < cfg.file_pages; ++i) new (&last_version[i]) std::atomic<std::uint64_t>(0);
  auto* reports = reinterpret_cast<process_report*>(user + reports_at);
  for (unsigned i = 0; i < n; ++i) new (&reports[i]) process_report;
  page_pool pool(fd, cfg.frames, cfg.file_pages, d, user + pool_at);
  shm_page_cache cache(pool, d, cfg.wait_timeout);
  workload<shm_page_cache> w(cfg, cache, *ctl, last_version);
  d.enable_stats();  // in the mapping: every child counts
  // A stopped child parked on a slot of the domain, waiting for the lock of the page whose flags
  // are `word` (not for the page index's lock, nor for writeback, which is waited for holding the
  // page lock).
  const auto parked_in_page_lock = [&](pid_t pid, const void* word) {
    const detail::shm_parked_wait p = detail::shm_parked(d, pid);
    return p.parked && p.exclusive && p.bit == PG_LOCKED && p.word == word;
  };
  const auto recover = [&](run_result& res, pid_t dead) -> std::size_t {
    // Summed over the calls; a wait left pending (its bucket lock busy, or a release holding
    // its node) is counted as a dead slot by each call that finds it, and finished by a later
    // one (or by a waiter's poll). Whether it is finished is what slots_held_by says.
    const shm::recovery_report rep = d.recover();
    res.recovered_dead_slots += rep.dead_slots;
    res.recovered_waits += rep.waits_finished;
    res.recovered_locks_passed_on += rep.locks_passed_on;
    return d.slots_held_by(dead);
  };
  run_result r = w.run_processes(reports, parked_in_page_lock, recover);
  const stats_snapshot s = d.get_stats();
  r.domain_contention = s.total;
  r.domain_wake_syscalls = s.wake_syscalls;
  r.domain_sleeps = s.sleeps;
  return r;
}

}  // namespace

void run_result::add(const run_result& o) {
  seconds += o.seconds;
  page_ops += o.page_ops;
  writebacks += o.writebacks;
  touched_after_free += o.touched_after_free;
  touched_after_reuse += o.touched_after_reuse;
  end_rmws += o.end_rmws;
  end_bucket_locks += o.end_bucket_locks;
  writeback_waits += o.writeback_waits;
  lost_wakeups += o.lost_wakeups;
  woken_early += o.woken_early;
  wait_timeouts += o.wait_timeouts;
  lock_waits += o.lock_waits;
  bad_reads += o.bad_reads;
  bad_frees += o.bad_frees;
  io_errors += o.io_errors;
  pages_checked += o.pages_checked;
  pages_wrong += o.pages_wrong;
  frames_with_stray_refs += o.frames_with_stray_refs;
  data_ok = data_ok && o.data_ok;
  if (!o.failure.empty()) failure += (failure.empty() ? "" : "; ") + o.failure;
  async_coroutines = std::max(async_coroutines, o.async_coroutines);
  async_ops += o.async_ops;
  reader_ops += o.reader_ops;
  async_reads += o.async_reads;
  async_lock_waits += o.async_lock_waits;
  async_loop_wakeups += o.async_loop_wakeups;
  async_timers_fired += o.async_timers_fired;
  async_max_in_flight = std::max(async_max_in_flight, o.async_max_in_flight);
  // Weighted by time (`seconds` already includes o's).
  async_mean_in_flight =
      seconds > 0
          ? (async_mean_in_flight * (seconds - o.seconds) + o.async_mean_in_flight * o.seconds) / seconds
          : o.async_mean_in_flight;
  if (async_io.empty()) async_io = o.async_io;
  const std::size_t room = max_wait_samples - std::min(max_wait_samples, wait_samples_ns.size());
  wait_samples_ns.insert(
      wait_samples_ns.end(), o.wait_samples_ns.begin(),
      o.wait_samples_ns.begin() + static_cast<std::ptrdiff_t>(std::min(room, o.wait_samples_ns.size())));
  compute_percentiles(*this);
}

run_result run_demo(const run_config& cfg) {
  if (cfg.frames == 0 || cfg.file_pages < cfg.frames)
    throw std::invalid_argument("demo: need 0 < frames <= file pages");
  if (cfg.kill_one && !cfg.processes)
    throw std::invalid_argument("demo: kill_one kills one of the processes: it needs processes");
  if (cfg.processes) {
    if (cfg.protocol != release_protocol::atomic_clear)
      throw std::invalid_argument(
          "demo: processes share words through a wait domain, which runs atomic-clear only");
    if (cfg.async_readers || cfg.stop_at_first_touch)
      throw std::invalid_argument(
          "demo: processes have no asynchronous readers and no touch-after-free detector");
  }
  scratch_file file(cfg.file, cfg.file_pages * page_size);
  if (cfg.processes) return run_in_processes(cfg, file.fd());
  switch (cfg.protocol) {
    case release_protocol::clear_then_wake:
      return run_with<release_protocol::clear_then_wake>(cfg, file.fd());
    case release_protocol::pinned:
      return run_with<release_protocol::pinned>(cfg, file.fd());
    case release_protocol::xor_waiters:
      return run_with<release_protocol::xor_waiters>(cfg, file.fd());
    case release_protocol::atomic_clear:
      return run_with<release_protocol::atomic_clear>(cfg, file.fd());
  }
  throw std::invalid_argument("demo: unknown protocol");
}

}  // namespace pagewait::demo
