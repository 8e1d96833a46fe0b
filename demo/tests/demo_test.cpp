// The demo's claims, each on a short run of the real workload (no figure is asserted on speed).
#include <gtest/gtest.h>
#include <signal.h>

#include "page_cache.hpp"
#include "workload.hpp"

using namespace std::chrono_literals;
using pagewait::release_protocol;
using pagewait::demo::run_config;
using pagewait::demo::run_demo;
using pagewait::demo::run_result;

namespace {

run_config config(release_protocol p, std::chrono::duration<double> d) {
  run_config c;
  c.protocol = p;
  c.duration = d;
  c.threads = 8;
  c.widen = 50us;
  return c;
}

void expect_sound(const run_result& r) {
  EXPECT_GT(r.writebacks, 0u);
  EXPECT_GT(r.page_ops, 0u);
  EXPECT_TRUE(r.data_ok) << "pages wrong " << r.pages_wrong << ", bad reads " << r.bad_reads << ", bad frees "
                         << r.bad_frees << ", io errors " << r.io_errors << ", frames with stray references "
                         << r.frames_with_stray_refs;
  EXPECT_EQ(r.pages_checked, 256u);
}

}  // namespace

// The seed: no touch after free, without a pin, even with the window widened; nothing lost.
TEST(Demo, AtomicClearNeverTouchesAFreedPage) {
  const run_result r = run_demo(config(release_protocol::atomic_clear, 1.5s));
  expect_sound(r);
  EXPECT_EQ(r.touched_after_free, 0u);
  EXPECT_EQ(r.lost_wakeups, 0u);
  EXPECT_EQ(r.woken_early, 0u);
  // One CAS (or, with waiters, the clearing fetch_and under the bucket lock) per end of
  // writeback, and no reference-count RMW. Failed CASes (a lock taken meanwhile) are rare.
  EXPECT_GE(r.rmws_per_end(), 1.0);
  EXPECT_LT(r.rmws_per_end(), 2.0);
}

// The 2020 bug, detected: run until the first end of writeback touches a freed frame. If none
// ever does within the cap, the detector (or the workload) is broken.
TEST(Demo, ClearThenWakeTouchesAFreedPage) {
  run_config c = config(release_protocol::clear_then_wake, 60s);
  c.stop_at_first_touch = true;
  const run_result r = run_demo(c);
  EXPECT_GE(r.touched_after_free, 1u)
      << "no touch after free in " << r.seconds << " s and " << r.writebacks << " writebacks";
  expect_sound(r);
}

// The pin costs two reference-count RMWs around the clear, and prevents the touch after free.
TEST(Demo, PinnedProtocolsNeverTouchAFreedPage) {
  for (release_protocol p : {release_protocol::pinned, release_protocol::xor_waiters}) {
    SCOPED_TRACE(std::string(pagewait::to_string(p)));
    const run_result r = run_demo(config(p, 1s));
    expect_sound(r);
    EXPECT_EQ(r.touched_after_free, 0u);
    EXPECT_EQ(r.lost_wakeups, 0u);
    EXPECT_GE(r.rmws_per_end(), 3.0);  // get, the clearing RMW, put: every time
  }
}

TEST(Demo, RefusesAnExistingFile) {
  run_config c = config(release_protocol::atomic_clear, 0.1s);
  c.file = "/proc/self/status";
  EXPECT_THROW(run_demo(c), std::runtime_error);
}

// The data check is not vacuous: the contents name their page and version...
TEST(Demo, PageContentsIdentifyPageAndVersion) {
  alignas(64) unsigned char page[pagewait::demo::page_size];
  pagewait::demo::fill_page(page, 5, 7);
  EXPECT_TRUE(pagewait::demo::page_is(page, 5, 7));
  EXPECT_FALSE(pagewait::demo::page_is(page, 5, 6));
  EXPECT_FALSE(pagewait::demo::page_is(page, 4, 7));
  EXPECT_FALSE(pagewait::demo::page_is(page, 5, 0));
  page[pagewait::demo::page_size - 1] ^= 1;
  EXPECT_FALSE(pagewait::demo::page_is(page, 5, 7));
  pagewait::demo::fill_page(page, 5, 0);
  for (unsigned char b : page) ASSERT_EQ(b, 0);  // a page never written reads as zeros
}

// ...and a workload that loses writes fails it.
TEST(Demo, DataCheckCatchesLostWrites) {
  run_config c = config(release_protocol::atomic_clear, 0.5s);
  c.truncate_drops_dirty_data = true;
  const run_result r = run_demo(c);
  EXPECT_FALSE(r.data_ok);
  EXPECT_GT(r.pages_wrong + r.bad_reads, 0u);
}

// --async: reader coroutines on one loop thread share every page lock with the threads. They do
// page ops, they wait for locks with co_await (lock waits), nobody's wake-up is lost, and the
// data check passes; through io_uring when the machine allows it, and through the pread
// fallback. Under every protocol: an asynchronous lock waiter is served by the same core.
TEST(Demo, AsyncReadersShareThePageLocksWithTheThreads) {
  for (release_protocol p : pagewait::all_release_protocols) {
    for (const bool uring : {true, false}) {
      SCOPED_TRACE(std::string(pagewait::to_string(p)) + (uring ? ", io_uring if available" : ", pread"));
      run_config c = config(p, 0.5s);
      c.async_readers = 128;
      c.async_uring = uring;
      const run_result r = run_demo(c);
      expect_sound(r);
      EXPECT_EQ(r.async_coroutines, 128u);
      EXPECT_GT(r.async_ops, 0u);
      EXPECT_GT(r.async_reads, 0u) << "the coroutines never brought a page in";
      EXPECT_EQ(r.lost_wakeups, 0u);
      if (!uring) {
        EXPECT_NE(r.async_io.find("pread"), std::string::npos) << r.async_io;
      }
      RecordProperty(std::string(pagewait::to_string(p)) + (uring ? "_uring" : "_pread") + "_lock_waits",
                     std::to_string(r.async_lock_waits));
    }
  }
}

// --processes: each role a process of its own, over a pool in a shared mapping and a wait domain.
// Every process has one thread, so a page lock found held, and a wait for writeback, were each
// ended by another process's release. Every run must be sound (no failure, no lost wake-up, the
// data check); waits for writeback need a writer or truncator to meet a page during its short
// write, which a loaded machine can starve for a whole run, so runs of 0.5 s are repeated (up to
// 20) until one has seen both kinds of wait.
TEST(Demo, ProcessesShareOnePageCache) {
  bool seen_both = false;
  for (int i = 0; i < 20 && !seen_both; ++i) {
    run_config c = config(release_protocol::atomic_clear, 0.5s);
    c.processes = true;
    const run_result r = run_demo(c);
    SCOPED_TRACE("run " + std::to_string(i));
    EXPECT_EQ(r.failure, "");
    EXPECT_EQ(r.processes, 8u);
    expect_sound(r);
    EXPECT_EQ(r.lost_wakeups, 0u);
    EXPECT_EQ(r.woken_early, 0u);
    // The demo counts a wait when it finds the bit set; the domain counts, in the shared memory
    // and from every process, the calls that then took the slow path (the bit may have cleared in
    // between): its shared waits are waits for writeback, its lock waits page and mapping locks.
    // A slow-path call need not queue (a lock's spin may take the bit; a reader may find it
    // clear under the bucket lock), but one that slept had queued, set the waiters bit, and was
    // ended by a slow release (another process's: these waits have no deadline).
    if (r.domain_sleeps > 0) {
      EXPECT_GT(r.domain_contention.releases, 0u);
    }
    seen_both = r.lock_waits > 0 && r.writeback_waits > 0 && r.domain_contention.lock_waits > 0 &&
                r.domain_contention.shared_waits > 0 && r.domain_sleeps > 0;
    if (HasFailure()) break;
  }
  EXPECT_TRUE(seen_both) << "in 20 runs, no run had both a page-lock and a writeback wait across processes";
}

// A caller that ignores SIGCHLD (the kernel would reap the children itself) still gets its
// children's results: the run waits for them with the default disposition, and restores it.
TEST(Demo, ProcessesWorkWithSigchldIgnored) {
  struct sigaction ign {
  }, old{};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  ASSERT_EQ(sigaction(SIGCHLD, &ign, &old), 0);
  run_config c = config(release_protocol::atomic_clear, 0.3s);
  c.processes = true;
  const run_result r = run_demo(c);
  struct sigaction now {};
  sigaction(SIGCHLD, &old, &now);
  EXPECT_EQ(now.sa_handler, SIG_IGN);  // what the run found is what it left
  EXPECT_EQ(r.failure, "");
  expect_sound(r);
}

// The data check means the same across processes: lost writes fail it.
TEST(Demo, ProcessesDataCheckCatchesLostWrites) {
  run_config c = config(release_protocol::atomic_clear, 0.5s);
  c.processes = true;
  c.truncate_drops_dirty_data = true;
  const run_result r = run_demo(c);
  EXPECT_EQ(r.failure, "");
  EXPECT_FALSE(r.data_ok);
  EXPECT_GT(r.pages_wrong + r.bad_reads, 0u);
}

// --kill: halfway through, a process parked in a page lock wait is killed with SIGKILL (the run
// holds that page's lock for a while so that processes come to wait for it); its wait is finished
// for it, a lock handed to it passed on, and every other process finishes with the data check
// passing and no wake-up lost. A run in which no process was found parked kills nobody, and says
// so; runs are repeated (up to 5) until one has killed, each sound.
TEST(Demo, ProcessesSurviveOneKilledWhileWaiting) {
  run_result r;
  for (int i = 0; i < 5 && r.killed < 0; ++i) {
    run_config c = config(release_protocol::atomic_clear, 1s);
    c.processes = true;
    c.kill_one = true;
    r = run_demo(c);
    SCOPED_TRACE("run " + std::to_string(i));
    EXPECT_EQ(r.failure, "");
    expect_sound(r);
    EXPECT_EQ(r.lost_wakeups, 0u);
    if (HasFailure()) break;
  }
  ASSERT_GE(r.killed, 0) << "in 5 runs, no process was found parked waiting for the held page";
  // The victim's wait, finished by the parent's recovery unless a waiter's poll was first; a call
  // that found its bucket busy counted it as a dead slot and left it to the next. (That it was
  // finished at all is in `failure`, empty above: the run fails if the dead still holds a slot.)
  EXPECT_LE(r.recovered_waits, 1u);
  EXPECT_GE(r.recovered_dead_slots, r.recovered_waits);
}

// What process mode cannot do is refused before anything is created or forked.
TEST(Demo, ProcessesRefuseWhatTheyCannotDo) {
  run_config c = config(release_protocol::pinned, 0.1s);
  c.processes = true;
  EXPECT_THROW(run_demo(c), std::invalid_argument);  // a domain runs atomic-clear only
  c.protocol = release_protocol::atomic_clear;
  c.async_readers = 4;
  EXPECT_THROW(run_demo(c), std::invalid_argument);
  c.async_readers = 0;
  c.stop_at_first_touch = true;
  EXPECT_THROW(run_demo(c), std::invalid_argument);
  c.stop_at_first_touch = false;
  c.processes = false;
  c.kill_one = true;  // it kills one of the processes: there are none
  EXPECT_THROW(run_demo(c), std::invalid_argument);
}
