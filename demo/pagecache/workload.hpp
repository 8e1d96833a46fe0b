// demo/pagecache/workload.hpp — the demo's workload: writers, readers, writeback, truncation.
//
//   writers     look a random page up (reading it in if absent), lock it, wait for writeback
//               to end (stable pages), write a new version of the whole page, mark it dirty,
//               unlock
//   readers     look a random page up (reading it in if absent), lock it, check its contents
//               against the last version written, unlock
//   writeback   take a dirty page, lock it, start writeback, unlock, drop the reference, write
//               the page to the file (pwrite), end writeback through the protocol under test
//   async readers (--async N)  N coroutines on one loop thread (event_loop.hpp), each a reader
//               as above that never blocks its thread: a page it brings in is read through
//               io_uring (many reads in flight), and a page another holds is waited for with
//               co_await lock_bit_async on the page lock, in the same wait table as the threads
//   truncators  take a page, preferring the one whose writeback began last, lock it, wait for
//               writeback, write it if dirty (so that nothing written is lost: the final data
//               check stays exact), remove it from the mapping, unlock, drop the references:
//               the frame is freed and handed out again at once
// At the end every dirty page is written and the file is read back: every page must hold the
// last version written to it.
//
// Process mode (run_config::processes, `pagewait demo --processes`): the same roles, each a
// process forked from the caller, over a pool that lives in a shared mapping (a memfd) formatted
// as a wait domain (pagewait/shm.hpp). The page bits and the mapping lock are bits of words in
// that mapping, locked, waited on and released through the domain, across processes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pagewait/protocol.hpp"
#include "pagewait/stats.hpp"

namespace pagewait::demo {

struct run_config {
  release_protocol protocol = release_protocol::atomic_clear;
  std::chrono::duration<double> duration{4.0};
  unsigned threads = 8;                   // >= 4: a quarter each role (readers take the rest)
  std::chrono::nanoseconds widen{50000};  // delay after the clearing step (see demo_policy)
  std::string file;                       // scratch file; empty: a temporary file
  unsigned frames = 64;                   // the pool
  std::uint64_t file_pages = 256;         // file size in pages (4 KiB)
  std::chrono::nanoseconds wait_timeout = std::chrono::seconds(1);
  // End the run as soon as one touch after free has been seen (tests: run until the first
  // detection, up to `duration`).
  bool stop_at_first_touch = false;
  // Fault injection, for the test that shows the data check can fail: truncation drops dirty
  // data instead of writing it.
  bool truncate_drops_dirty_data = false;
  // Asynchronous readers: coroutines on one extra loop thread (0: none); their page reads go
  // through io_uring when `async_uring` and the machine allow it, else pread on the loop thread.
  unsigned async_readers = 0;
  bool async_uring = true;
  // Each role a process of its own (`threads` of them), over a shared mapping and a wait domain;
  // atomic-clear only, no asynchronous readers, no touch detector. The caller must have no other
  // thread running (the roles are forked from it).
  bool processes = false;
  // Process mode: halfway through, kill one process with SIGKILL while it waits for a page lock
  // (stopped first, and killed only if it is parked in that wait: whatever its role, it then holds
  // a reference to the page and nothing else); the others must finish with the data check passing.
  bool kill_one = false;
  // Called about every 50 ms from the controlling thread with the fraction of time elapsed.
  std::function<void(double)> progress;
};

struct run_result {
  release_protocol protocol{};
  double seconds = 0;
  unsigned writers = 0, readers = 0, writeback_threads = 0, truncators = 0;
  unsigned processes = 0;  // process mode: one per role above (0: threads)
  // Process mode: what went wrong with a child (failed, killed by a signal, did not stop); the run
  // then fails (data_ok false). Empty when every child ended as it should.
  std::string failure;
  // Process mode with kill_one: the process killed (its index; -1: none was found parked in a page
  // lock wait), and what the parent's domain::recover() found, summed over its calls (right after
  // the kill, and once every process has ended if the victim still held a slot then); a parked
  // waiter's own poll may have recovered the victim first.
  int killed = -1;
  std::uint64_t recovered_dead_slots = 0, recovered_waits = 0, recovered_locks_passed_on = 0;
  // Process mode: the wait domain's own statistics over the run (shm::domain::get_stats), summed
  // over every process; in thread mode the command reads pagewait/stats.hpp's instead.
  contention_stats domain_contention;
  std::uint64_t domain_wake_syscalls = 0, domain_sleeps = 0;
  std::uint64_t page_ops = 0;             // reads + writes + truncations completed
  std::uint64_t writebacks = 0;           // ends of writeback
  std::uint64_t touched_after_free = 0;   // ends of writeback that touched a freed frame
  std::uint64_t touched_after_reuse = 0;  // ... that had been handed out again meanwhile
  std::uint64_t end_rmws = 0;             // atomic RMWs on the page during all ends of writeback
  std::uint64_t end_bucket_locks = 0;     // wait-table bucket lock holds during them (slow paths)
  std::uint64_t writeback_waits = 0;      // waits for writeback that had to wait
  double wait_p50_us = 0, wait_p99_us = 0;
  std::vector<std::uint32_t> wait_samples_ns;  // the waits behind the percentiles (capped)
  std::uint64_t lost_wakeups = 0;
  std::uint64_t woken_early = 0;
  std::uint64_t wait_timeouts = 0;
  std::uint64_t lock_waits = 0;  // page locks found held, waited for (the threads' and processes')
  std::uint64_t bad_reads = 0;   // a page read or looked at did not hold its last version
  std::uint64_t bad_frees = 0;   // a frame freed with LOCKED/WRITEBACK/DIRTY set
  std::uint64_t io_errors = 0;
  std::uint64_t pages_checked = 0;  // the final read-back of the file
  std::uint64_t pages_wrong = 0;
  // Frames whose reference count, once every worker is gone, is not the cache's alone (1 if the
  // frame is mapped, else 0): a reference taken and never dropped keeps a frame from ever being
  // freed, as a page leaked in the kernel.
  std::uint64_t frames_with_stray_refs = 0;
  bool data_ok = false;
  // The asynchronous readers (async_readers > 0): page ops they completed (not in page_ops),
  // pages they read in, reads in flight (the most at once, and the mean over the loop's rounds),
  // lock waits that had to suspend, and how the loop read pages.
  unsigned async_coroutines = 0;
  std::uint64_t reader_ops = 0;  // the threaded readers' page ops (a part of page_ops), with --async
  std::uint64_t async_ops = 0, async_reads = 0, async_lock_waits = 0, async_loop_wakeups = 0;
  std::uint64_t async_timers_fired =
      0;  // coroutines' lock-wait timers that fired (a release may still have won)
  unsigned async_max_in_flight = 0;
  double async_mean_in_flight = 0;
  std::string async_io;
  double rmws_per_end() const { return writebacks ? double(end_rmws) / double(writebacks) : 0.0; }

  // Adds another run of the same protocol: counts and time add up, the percentiles are those
  // of all waits. (The command runs the protocols round-robin in short slices, so that the
  // changing load of a shared machine spreads evenly over them.)
  void add(const run_result& o);
};

// Runs the workload once on the protocol in `cfg`. Throws std::runtime_error if the file
// cannot be created or used.
run_result run_demo(const run_config& cfg);

}  // namespace pagewait::demo
