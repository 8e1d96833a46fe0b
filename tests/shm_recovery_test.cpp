// tests/shm_recovery_test.cpp — a wait domain whose processes are killed while they wait
// (pagewait/shm.hpp, domain::recover; docs/SHARED.md, "When a process dies"). Each test forks a
// victim that attaches through its own mapping and queues on a word, kills it with SIGKILL while
// it is parked, and checks that what the victim was given, or would have been, reaches the
// living: a lock handed to the dead is passed on, a wake-up to race for it is raced for, a dead
// waiter's slot is freed. Both ways: a parked waiter's own poll, and recover() called at once.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "pagewait/pagewait.hpp"
#include "pagewait/shm.hpp"
#include "shm_test_util.hpp"

using namespace std::chrono_literals;
namespace shm = pagewait::shm;
using W = std::uint32_t;
constexpr W LOCK = 1u << 0, IO = 1u << 1;
constexpr W WB = pagewait::waiters_bit<W>;
constexpr std::size_t kSize = 1 << 20;

namespace {

using pwtest::at;
using pwtest::shared_file;

// The victim: a child that attaches through a mapping of its own, sets its fairness, and runs
// `wait` on the word at `offset` (which it is killed in). Offsets 0..63 of the user area are the
// test's: [0] counts victims that reached their wait. The mapping is made before the fork, so
// that this process knows where the victim's parkers are.
struct victim_process {
  pid_t pid;
  std::ptrdiff_t shift;  // the victim's mapping of the domain minus the test's (the first one)
};
template <class F>
victim_process victim(shared_file& f, std::size_t offset, pagewait::fairness_settings fair, F wait) {
  void* const own = f.map();
  const pid_t pid = fork();
  if (pid == 0) {
    pagewait::set_fairness(fair);
    shm::domain c = shm::domain::attach(own, kSize);
    at<std::atomic<W>>(c, 0).fetch_add(1);
    wait(c, at<std::atomic<W>>(c, offset));
    _exit(3);  // never reached: the test kills it while it waits
  }
  return {pid, static_cast<char*>(own) - static_cast<char*>(f.maps.front().first)};
}

// Polls until `pred` holds (5 s at most).
template <class F>
bool eventually(F pred) {
  for (int i = 0; i < 5000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

// Kills victims that are parked: stopped, each is seen asleep on its slot's parker (so its node
// is queued and its slot taken), then all are killed and reaped, so that they are gone, not
// zombies. Seeing the waiters bit set is not enough: with two victims on one word the second may
// not have queued yet (it happened under TSan on a loaded machine: a wait then found its slot
// still free). Every victim is stopped before any is killed: a parked waiter polls for the dead
// (shm::recovery_poll), so a victim still running after another was killed may finish the dead
// one's wait and free its slot (a CI run saw it: the test's wait found a slot, recover() none).
void kill_parked(std::initializer_list<victim_process> victims, shm::domain& d) {
  const std::vector<victim_process> v(victims);
  std::vector<char> parked(v.size(), 0);
  bool signalled = true;
  std::size_t seen = 0;
  for (int i = 0; i < 2500 && seen < v.size() && signalled; ++i) {
    for (std::size_t k = 0; k < v.size() && signalled; ++k) {
      if (parked[k]) continue;  // stays stopped until the kill
      signalled = kill(v[k].pid, SIGSTOP) == 0;
      parked[k] = signalled && pagewait::detail::shm_parked(d, v[k].pid, v[k].shift).parked;
      if (parked[k])
        ++seen;
      else if (signalled)
        signalled = kill(v[k].pid, SIGCONT) == 0;
    }
    if (seen < v.size()) std::this_thread::sleep_for(2ms);
  }
  // Killed parked or not: a victim left waiting would outlive the test (and keep ctest's pipe).
  bool all_parked = true, all_killed = true;
  for (std::size_t k = 0; k < v.size(); ++k) {
    const bool killed = kill(v[k].pid, SIGKILL) == 0;
    int st = 0;
    const bool reaped = waitpid(v[k].pid, &st, 0) == v[k].pid;
    all_parked = all_parked && parked[k];
    all_killed = all_killed && killed && reaped && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
  }
  ASSERT_TRUE(signalled) << "a victim could not be stopped or continued";
  ASSERT_TRUE(all_parked) << "a victim never parked";
  ASSERT_TRUE(all_killed) << "a victim was not killed while it waited";
}
void kill_parked(victim_process v, shm::domain& d) { kill_parked({v}, d); }

constexpr pagewait::fairness_settings earns_at_once{0, 0ns};  // every queued lock waiter earns a hand-off
constexpr pagewait::fairness_settings never_earns{1000000, std::chrono::hours(1)};

// The word at 64, whose lock this process holds, with a victim (of fairness `fair`) that queued
// for it killed while parked.
std::atomic<W>& locked_with_a_dead_waiter(shared_file& f, shm::domain& d, pagewait::fairness_settings fair) {
  auto& w = at<std::atomic<W>>(d, 64);
  d.lock_bit(w, LOCK);
  kill_parked(victim(f, 64, fair, [](shm::domain& c, std::atomic<W>& cw) { c.lock_bit(cw, LOCK); }), d);
  return w;
}

}  // namespace

// A lock handed to a waiter that was killed while it waited is released for it by recover(),
// called by a program that learned of the death (waitpid); the report says so, and the word is as
// if the dead waiter had taken the lock and released it at once.
TEST(ShmRecovery, RecoverPassesOnALockHandedToTheDead) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = locked_with_a_dead_waiter(f, d, earns_at_once);
  d.unlock_bit(w, LOCK);  // hands off to the dead victim (it has earned it): the bit stays set
  EXPECT_EQ(w.load(), LOCK) << "the unlock did not hand the lock to the queued victim";
  const shm::recovery_report r = d.recover();
  EXPECT_EQ(r.dead_slots, 1u);
  EXPECT_EQ(r.waits_finished, 1u);
  EXPECT_EQ(r.locks_passed_on, 1u);
  EXPECT_EQ(r.waits_pending, 0u);
  EXPECT_EQ(r.releases_pending, 0u);
  EXPECT_EQ(w.load(), 0u) << "the lock handed to the dead was not released for it";
  EXPECT_TRUE(d.try_lock_bit(w, LOCK));
  d.unlock_bit(w, LOCK);
  const shm::recovery_report again = d.recover();  // nothing left to do
  EXPECT_EQ(again.dead_slots, 0u);
}

// slots_held_by: what a dead waiter held beside its wait (a reference to the page whose lock it
// waited for) may be dropped once it counts 0. It counts a waiter's slot while it waits, keeps
// counting it after the kill, also once an unlock has handed the dead the lock, until a recovery
// has passed that lock on; it never counts another process's slots, and refuses what cannot be a
// process id.
TEST(ShmRecovery, SlotsHeldByADeadWaiterCountUntilItsWaitIsFinished) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = at<std::atomic<W>>(d, 64);
  d.lock_bit(w, LOCK);
  const victim_process v =
      victim(f, 64, earns_at_once, [](shm::domain& c, std::atomic<W>& cw) { c.lock_bit(cw, LOCK); });
  ASSERT_TRUE(eventually([&] { return d.slots_held_by(v.pid) == 1; })) << "the victim never took a slot";
  ASSERT_NO_FATAL_FAILURE(kill_parked(v, d));
  EXPECT_EQ(d.slots_held_by(v.pid), 1u) << "the dead waiter's slot was given back before any recovery";
  EXPECT_EQ(d.slots_held_by(getpid()), 0u) << "this process holds no slot between operations";
  d.unlock_bit(w, LOCK);  // hands off to the dead victim (it has earned it)
  EXPECT_EQ(w.load(), LOCK) << "the unlock did not hand the lock to the queued victim";
  EXPECT_EQ(d.slots_held_by(v.pid), 1u) << "a lock is held for the dead: its wait is not finished";
  EXPECT_EQ(d.recover().locks_passed_on, 1u);
  EXPECT_EQ(d.slots_held_by(v.pid), 0u);
  EXPECT_EQ(w.load(), 0u) << "counted 0 before the lock handed to the dead was released for it";
  for (const int bad : {0, -1, 1 << 22})
    EXPECT_THROW((void)d.slots_held_by(bad), std::invalid_argument) << bad;
  shm::domain moved = std::move(d);
  EXPECT_THROW((void)d.slots_held_by(0), std::invalid_argument);  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW((void)d.slots_held_by(v.pid), std::logic_error);   // not "0: drop it"
}

// The same with a live waiter queued behind the dead one, and nobody calling recover(): the live
// waiter's own poll finds the dead one and passes the lock on, to itself, long before its deadline.
TEST(ShmRecovery, AParkedWaiterPassesOnALockHandedToTheDead) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = locked_with_a_dead_waiter(f, d, earns_at_once);
  std::atomic<int> got{0};
  std::chrono::steady_clock::duration took{};
  std::thread live([&] {
    const auto t0 = std::chrono::steady_clock::now();
    if (d.try_lock_bit_for(w, LOCK, 30s)) {
      took = std::chrono::steady_clock::now() - t0;
      got = 1;
      d.unlock_bit(w, LOCK);
    } else {
      got = 2;
    }
  });
  std::this_thread::sleep_for(50ms);  // queued behind the dead victim
  d.unlock_bit(w, LOCK);              // to the dead victim, first in the queue
  live.join();
  EXPECT_EQ(got.load(), 1) << "the live waiter never got the lock handed to the dead one";
  EXPECT_LT(took, 10s) << "it got the lock only at its deadline";
  EXPECT_EQ(w.load() & LOCK, 0u);
  EXPECT_EQ(d.recover().dead_slots, 0u) << "the poll left the dead slot behind";
}

// A lock waiter woken to race for the bit (a clear, no hand-off earned) that is dead never races:
// the other lock waiters stay queued with the bit clear. The recovery races for it, and passes
// the lock it wins on at once, to the live waiter queued behind.
TEST(ShmRecovery, AWakeUpToRaceGivenToTheDeadIsRacedFor) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  pagewait::set_fairness(never_earns);  // this process's waiters never earn a hand-off either
  auto& w = locked_with_a_dead_waiter(f, d, never_earns);
  std::atomic<int> got{0};
  std::thread live([&] {
    got = d.try_lock_bit_for(w, LOCK, 30s) ? 1 : 2;
    if (got == 1) d.unlock_bit(w, LOCK);
  });
  std::this_thread::sleep_for(50ms);
  d.unlock_bit(w, LOCK);  // clears, wakes the dead victim to race; the live one stays queued
  live.join();
  pagewait::set_fairness({});
  EXPECT_EQ(got.load(), 1) << "the live lock waiter was left queued behind a dead one's wake-up";
  EXPECT_EQ(w.load() & LOCK, 0u);
}

// Dead waiters hold slots until they are recovered: with every wait slot taken by the dead, a
// wait that must sleep is refused (slots_exhausted); recover() frees them, and a live wait, which
// recover() never touches, then works.
TEST(ShmRecovery, DeadWaitersSlotsAreFreedLiveOnesKept) {
  shared_file f(kSize);
  shm::options o;
  o.slots = 3;
  o.release_reserve = 1;  // two slots for waits
  shm::domain d = shm::domain::create(f.map(), kSize, o);
  auto& w = at<std::atomic<W>>(d, 64);
  w.store(IO);
  const auto waits = [](shm::domain& c, std::atomic<W>& cw) { c.wait_bit_clear(cw, IO); };
  const victim_process a = victim(f, 64, {}, waits);
  const victim_process b = victim(f, 64, {}, waits);
  ASSERT_TRUE(eventually([&] { return at<std::atomic<W>>(d, 0).load() == 2; }));
  ASSERT_NO_FATAL_FAILURE(kill_parked({a, b}, d));  // both stopped before either dies
  // Long, though it throws at once: a wait whose deadline has passed before it would sleep needs
  // no slot and throws nothing, and 1 ms passed so under TSan on a loaded machine (a CI run). A
  // slot wrongly free shows as a wait that times out.
  EXPECT_THROW(d.wait_bit_clear_for(w, IO, 10s), shm::domain_error)
      << "a dead waiter's slot was free already";
  // A live waiter of this process (whose slot recover() must leave alone) once a slot is free.
  const shm::recovery_report r = d.recover();
  EXPECT_EQ(r.dead_slots, 2u);
  EXPECT_EQ(r.waits_finished, 2u);
  EXPECT_EQ(r.locks_passed_on, 0u);
  // The dead waiters have left the queue: a release of another bit of the word walks it, finds
  // no waiter, and clears the waiters bit (a dead node still queued would keep it).
  EXPECT_EQ(w.load(), IO | WB);
  d.lock_bit(w, LOCK);
  d.unlock_bit(w, LOCK);
  EXPECT_EQ(w.load(), IO) << "a dead waiter's node was still queued";
  std::atomic<int> done{0};
  std::thread live([&] { done = d.wait_bit_clear_for(w, IO, 30s) ? 1 : 2; });
  std::this_thread::sleep_for(50ms);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(d.recover().dead_slots, 0u) << "a live waiter was taken for dead";
  EXPECT_EQ(done.load(), 0);
  d.clear_bit_and_wake(w, IO);
  live.join();
  EXPECT_EQ(done.load(), 1) << "the live waiter did not see the clear";
  EXPECT_EQ(w.load(), 0u);
}

// Liveness is per thread: a process whose main thread has exited while another of its threads
// waits is alive (its leader shows as a zombie), and so is a waiter in any other live process.
// recover() from this process must leave both waits alone; they then end as usual.
TEST(ShmRecovery, LiveWaitersOfOtherProcessesAreNeverTakenForDead) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& a = at<std::atomic<W>>(d, 64);
  auto& b = at<std::atomic<W>>(d, 128);
  a.store(IO);
  d.lock_bit(b, LOCK);
  // A child waits on `a` from its main thread; another child's main thread exits, leaving a
  // thread that waits for the lock of `b`. Each reports at [8]/[16] how its wait ended.
  const pid_t plain = fork();
  if (plain == 0) {
    shm::domain c = shm::domain::attach(f.map(), kSize);
    at<std::atomic<W>>(c, 8).store(c.wait_bit_clear_for(at<std::atomic<W>>(c, 64), IO, 30s) ? 1 : 2);
    _exit(0);
  }
  const pid_t headless = fork();
  if (headless == 0) {
    static shm::domain* c = nullptr;
    c = new shm::domain(shm::domain::attach(f.map(), kSize));
    std::thread([] {
      auto& w = at<std::atomic<W>>(*c, 128);
      const bool got = c->try_lock_bit_for(w, LOCK, 30s);
      if (got) c->unlock_bit(w, LOCK);
      at<std::atomic<W>>(*c, 16).store(got ? 1 : 2);
      _exit(0);
    }).detach();
    syscall(SYS_exit, 0);  // the main thread alone: the process lives on in the other
  }
  ASSERT_TRUE(eventually([&] { return (a.load() & WB) && (b.load() & WB); }));
  std::this_thread::sleep_for(50ms);
  for (int i = 0; i < 20; ++i) {
    const shm::recovery_report r = d.recover();
    EXPECT_EQ(r.dead_slots, 0u) << "a live waiter of another process was taken for dead";
  }
  d.clear_bit_and_wake(a, IO);
  d.unlock_bit(b, LOCK);
  int st = 0;
  waitpid(plain, &st, 0);
  waitpid(headless, &st, 0);
  EXPECT_EQ(at<std::atomic<W>>(d, 8).load(), 1u) << "the plain child's wait did not see the clear";
  EXPECT_EQ(at<std::atomic<W>>(d, 16).load(), 1u) << "the headless child's lock wait did not get the lock";
  EXPECT_EQ(b.load() & LOCK, 0u);
}

// A lock handed to the dead reaches a living waiter that only ever waits for less than a poll (a
// loop of short timed locks): each wait that times out recovers once before it gives up.
TEST(ShmRecovery, ShortTimedWaitsRecoverAtTheirDeadline) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = locked_with_a_dead_waiter(f, d, earns_at_once);
  std::atomic<int> tries{0};
  std::atomic<bool> got{false};
  std::thread live([&] {
    for (int i = 0; i < 200 && !got; ++i) {
      ++tries;
      if (d.try_lock_bit_for(w, LOCK, 20ms)) {
        got = true;
        d.unlock_bit(w, LOCK);
      }
    }
  });
  std::this_thread::sleep_for(30ms);
  d.unlock_bit(w, LOCK);  // to the dead victim
  live.join();
  EXPECT_TRUE(got.load()) << "never got the lock in " << tries.load() << " waits of 20 ms";
  EXPECT_LT(tries.load(), 20) << "the lock reached the living only after many short waits";
}

// The polls are rate-limited by a stamp in the domain's header (when a recovery last began, on
// the steady clock of whoever began it). A process whose clock is ahead (a time namespace with an
// offset) writes a stamp from the others' future; that must not stop their polls: here the stamp
// is put far ahead by hand, and a parked waiter's poll must still pass on a lock handed to the
// dead, long before its deadline.
TEST(ShmRecovery, AStampFromAnotherClocksFutureDoesNotStopThePolls) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& w = locked_with_a_dead_waiter(f, d, earns_at_once);
  // The header: ... the creator's PID namespace (8 bytes at 72), the stamp (8 at 80).
  auto& stamp = *reinterpret_cast<std::atomic<std::int64_t>*>(static_cast<char*>(f.maps[0].first) + 80);
  stamp.store(std::numeric_limits<std::int64_t>::max() / 2);
  std::atomic<int> got{0};
  std::thread live([&] {
    got = d.try_lock_bit_for(w, LOCK, 5s) ? 1 : 2;
    if (got == 1) d.unlock_bit(w, LOCK);
  });
  std::this_thread::sleep_for(50ms);
  d.unlock_bit(w, LOCK);  // to the dead victim
  live.join();
  EXPECT_EQ(got.load(), 1) << "a stamp ahead of this clock stopped every poll";
  EXPECT_LT(stamp.load(), std::numeric_limits<std::int64_t>::max() / 2);
}

// A child forked after its parent entered a new PID namespace is in that namespace, with the
// parent's domain handles: its ids name other processes to the domain's processes, and theirs name
// nobody (or others) to it. Its recover() is refused (pid_namespace) — it would take every live
// waiter for dead —, its waits work, and neither their slots nor the bucket locks it holds are
// judged by the others (a death there goes unseen, never a live wait finished). The same when
// it cannot read /proc (hide_proc: it unmounts it in a mount namespace of its own), where it
// cannot tell its namespace from the domain's.
namespace {

void another_namespace_neither_judges_nor_is_judged(bool hide_proc) {
  shared_file f(kSize);
  shm::options o;
  o.buckets = 8;
  shm::domain d = shm::domain::create(f.map(), kSize, o);
  auto& ev = at<std::atomic<W>>(d, 64);
  auto& lk = at<std::atomic<W>>(d, 128);
  auto& skipped = at<std::atomic<W>>(d, 8);   // 1: no new PID namespace could be made here
  auto& refused = at<std::atomic<W>>(d, 16);  // 1: recover() refused with pid_namespace, 2: not
  auto& locked = at<std::atomic<W>>(d, 24);   // 1: the grandchild got the lock, 2: timed out
  auto& go = at<std::atomic<W>>(d, 32);       // 1: this process's live waiter is queued
  auto& named = at<std::atomic<W>>(d, 40);    // how the grandchild's bucket lock names it
  auto& let_go = at<std::atomic<W>>(d, 48);   // 1: the grandchild may unlock that bucket
  std::size_t spare = 0;                      // a bucket neither word uses
  while (spare == d.bucket_of(&ev) || spare == d.bucket_of(&lk)) ++spare;
  ev.store(IO);
  d.lock_bit(lk, LOCK);
  // Forked before this process starts a thread (TSan supports no thread started after a
  // multi-threaded fork); the grandchild waits for `go`.
  const pid_t child = fork();
  if (child == 0) {
    if (unshare(CLONE_NEWPID) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0) {
      skipped.store(1);
      _exit(0);
    }
    const pid_t grandchild = fork();  // the first process of the new namespace
    if (grandchild == 0) {
      if (hide_proc &&
          (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
           umount2("/proc", MNT_DETACH) != 0)) {
        skipped.store(1);
        _exit(0);
      }
      while (go.load() == 0) std::this_thread::sleep_for(1ms);
      try {
        d.recover();
        refused.store(2);
      } catch (const shm::domain_error& e) {
        refused.store(e.code() == shm::errc::pid_namespace ? 1 : 2);
      }
      // From a second thread: its ids in this namespace, (1, 2), name no thread of the other
      // namespace's pid 1 (tgkill finds none), so a judge there would take it for dead.
      std::thread([&] {
        auto& l = pagewait::detail::shm_bucket_lock_of(d, spare);
        l.lock();
        named.store(l.holder());
        while (let_go.load() == 0) std::this_thread::sleep_for(1ms);
        l.unlock();
        locked.store(d.try_lock_bit_for(lk, LOCK, 30s) ? 1 : 2);
        if (locked.load() == 1) d.unlock_bit(lk, LOCK);
      }).join();
      _exit(0);
    }
    int st = 0;
    _exit(grandchild > 0 && waitpid(grandchild, &st, 0) == grandchild && WIFEXITED(st) ? 0 : 1);
  }
  std::atomic<int> live_done{0};
  std::thread live([&] { live_done = d.wait_bit_clear_for(ev, IO, 30s) ? 1 : 2; });
  EXPECT_TRUE(eventually([&] { return (ev.load() & WB) != 0; }));
  go.store(1);
  EXPECT_TRUE(eventually([&] { return skipped.load() != 0 || named.load() != 0; }));
  if (skipped.load() == 0) {
    EXPECT_EQ(named.load(), pagewait::detail::shm_bucket_lock::unknown_holder)
        << "a bucket lock of another namespace's thread names it by an id that means nothing here";
    for (int i = 0; i < 5; ++i)
      EXPECT_EQ(d.recover().buckets_taken_over, 0u) << "another namespace's bucket lock was taken over";
  }
  let_go.store(1);
  EXPECT_TRUE(eventually([&] { return skipped.load() != 0 || (refused.load() != 0 && (lk.load() & WB)); }));
  if (skipped.load() == 0) {
    std::this_thread::sleep_for(50ms);  // the grandchild is parked, on a slot of its own
    for (int i = 0; i < 20; ++i)
      EXPECT_EQ(d.recover().dead_slots, 0u) << "a live waiter of another namespace was judged";
    // Its slot names it by its pid in its namespace (1), which means nothing here: it counts for
    // every pid, its parent's included (which holds no slot), never as "finished".
    EXPECT_GE(d.slots_held_by(child), 1u) << "another namespace's waiter was not counted";
  }
  EXPECT_EQ(live_done.load(), 0) << "this process's live wait was finished for it";
  d.clear_bit_and_wake(ev, IO);
  d.unlock_bit(lk, LOCK);
  live.join();
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  EXPECT_EQ(live_done.load(), 1) << "this process's wait did not see the clear";
  if (skipped.load() != 0) GTEST_SKIP() << "no new PID (or mount) namespace can be made here";
  EXPECT_EQ(refused.load(), 1u) << "a process of another namespace recovered the domain";
  EXPECT_EQ(locked.load(), 1u) << "the grandchild's wait did not get the lock";
}

}  // namespace

TEST(ShmRecovery, AChildInAnotherPidNamespaceNeitherJudgesNorIsJudged) {
  another_namespace_neither_judges_nor_is_judged(false);
}

TEST(ShmRecovery, AChildInAnotherPidNamespaceWithoutProcNeitherJudgesNorIsJudged) {
  another_namespace_neither_judges_nor_is_judged(true);
}

// A process of another PID namespace could not tell the domain's processes apart: its attach is
// refused, and the memory is left as it was.
TEST(ShmRecovery, AttachRefusesAnotherPidNamespace) {
  struct stat st {};
  if (::stat("/proc/self/ns/pid", &st) != 0) GTEST_SKIP() << "no /proc/self/ns/pid here";
  shared_file f(kSize);
  char* a = static_cast<char*>(f.map());
  { shm::domain d = shm::domain::create(a, kSize); }
  // The header: ... size (8 bytes at 64), the creator's PID namespace (8 at 72).
  std::uint64_t ns = 0;
  std::memcpy(&ns, a + 72, 8);
  ASSERT_EQ(ns, std::uint64_t(st.st_ino));
  const std::uint64_t other = ns + 1;
  std::memcpy(a + 72, &other, 8);
  try {
    shm::domain::attach(f.map(), kSize);
    ADD_FAILURE() << "attached from another PID namespace";
  } catch (const shm::domain_error& e) {
    EXPECT_EQ(e.code(), shm::errc::pid_namespace);
  }
  std::memcpy(a + 72, &ns, 8);
  shm::domain d = shm::domain::attach(f.map(), kSize);
  EXPECT_EQ(d.recover().dead_slots, 0u);
}

// An offset in the user area (from `from`, 4-byte steps) of a word whose bucket is `bucket`.
std::size_t offset_in_bucket(const shm::domain& d, std::size_t bucket, std::size_t from) {
  for (std::size_t off = from;; off += sizeof(W))
    if (d.bucket_of(&at<std::atomic<W>>(d, off)) == bucket) return off;
}

// The bucket whose lock is `l` (a bucket's lock is its first member): for a test that plays a
// holder which dies with the bucket's links half-changed.
pagewait::detail::bucket<pagewait::detail::shm_policy>& bucket_of_lock(pagewait::detail::shm_bucket_lock& l) {
  return *reinterpret_cast<pagewait::detail::bucket<pagewait::detail::shm_policy>*>(&l);
}

// A bucket lock names the thread that holds it: recovery takes over the locks whose holder has
// died — one held by a killed process's main thread not yet reaped (a zombie), one by another
// thread of a killed process — and rebuilds their buckets (core::rebuild), so that the slow
// operations on their words go on: a waiter blocked behind a dead holder gets through. A lock a
// live thread holds, in this process or another, is never taken.
TEST(ShmRecovery, BucketLocksHeldByTheDeadAreTakenOver) {
  shared_file f(kSize);
  shm::options o;
  o.buckets = 4;
  shm::domain d = shm::domain::create(f.map(), kSize, o);
  auto& ready = at<std::atomic<W>>(d, 0);
  // Child i holds the lock of bucket i + 1 until it is killed: from its main thread (i < 2), or
  // from a second thread (i == 2).
  std::vector<pid_t> kids;
  for (int i = 0; i < 3; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      static shm::domain* c = nullptr;
      c = new shm::domain(shm::domain::attach(f.map(), kSize));
      static std::size_t b = 0;
      b = std::size_t(i) + 1;
      const auto hold = [] {
        pagewait::detail::shm_bucket_lock_of(*c, b).lock();
        at<std::atomic<W>>(*c, 0).fetch_add(1);
        for (;;) pause();
      };
      if (i < 2) hold();
      std::thread(hold).join();
    }
    kids.push_back(pid);
  }
  // This process's threads start after the forks (TSan supports no thread started after a
  // multi-threaded fork).
  auto& mine = pagewait::detail::shm_bucket_lock_of(d, 0);
  std::atomic<bool> held{false}, drop{false};
  std::thread holder([&] {
    mine.lock();
    held = true;
    while (!drop) std::this_thread::sleep_for(1ms);
    mine.unlock();
  });
  EXPECT_TRUE(eventually([&] { return held && ready.load() == 3; }));
  // A waiter of a word in bucket 3, whose lock the second thread of child 2 holds: its slow path
  // blocks on that lock.
  auto& w = at<std::atomic<W>>(d, offset_in_bucket(d, 3, 64));
  w.store(IO);
  std::atomic<bool> waited{false};
  std::thread waiter([&] {
    d.wait_bit_clear(w, IO);
    waited = true;
  });
  EXPECT_TRUE(eventually([&] { return pagewait::detail::shm_bucket_lock_of(d, 3).sleepers(); }))
      << "the waiter did not block on the dead-to-be holder's lock";
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(d.recover().buckets_taken_over, 0u) << "a live holder's lock was taken";
  int st = 0;
  kill(kids[1], SIGKILL);  // its main thread held bucket 2: a zombie until reaped below
  kill(kids[2], SIGKILL);  // a second thread held bucket 3
  ASSERT_EQ(waitpid(kids[2], &st, 0), kids[2]);
  // Until the zombie shows as one. Each recover() takes over what it finds, and the waiter asleep
  // on bucket 3's lock may take that one over itself (it looks every 100 ms): the counts add up
  // to 1 or 2, and nobody sleeps on bucket 2's.
  std::size_t taken = 0;
  EXPECT_TRUE(eventually([&] {
    taken += d.recover().buckets_taken_over;
    return pagewait::detail::shm_bucket_lock_of(d, 2).holder() == 0 &&
           pagewait::detail::shm_bucket_lock_of(d, 3).holder() == 0;
  })) << "took over "
      << taken << " of the two dead holders' locks";
  EXPECT_GE(taken, 1u);
  EXPECT_LE(taken, 2u);
  d.clear_bit_and_wake(w, IO);
  ASSERT_TRUE(eventually([&] { return waited.load(); }))
      << "the waiter behind the dead holder never got through";
  ASSERT_EQ(waitpid(kids[1], &st, 0), kids[1]);
  EXPECT_EQ(d.recover().buckets_taken_over, 0u);
  kill(kids[0], SIGKILL);  // the live one, now dead too
  ASSERT_EQ(waitpid(kids[0], &st, 0), kids[0]);
  EXPECT_EQ(d.recover().buckets_taken_over, 1u);
  EXPECT_TRUE(pagewait::detail::shm_bucket_lock_of(d, 1).try_lock());
  pagewait::detail::shm_bucket_lock_of(d, 1).unlock();
  drop = true;
  holder.join();
  waiter.join();
  EXPECT_EQ(d.recover().buckets_taken_over, 0u);  // bucket 0's lock was given back, not taken
  EXPECT_EQ(d.recover().dead_slots, 0u);
}

// Nobody calls recover() and no waiter is parked: a thread asleep on the lock of a holder that
// died takes it over itself (it looks every 100 ms), rebuilds the bucket and goes on.
TEST(ShmRecovery, AThreadAsleepOnADeadHoldersLockTakesItOver) {
  shared_file f(kSize);
  shm::options o;
  o.buckets = 4;
  shm::domain d = shm::domain::create(f.map(), kSize, o);
  auto& ready = at<std::atomic<W>>(d, 0);
  auto& w = at<std::atomic<W>>(d, offset_in_bucket(d, 2, 64));
  w.store(IO);
  const pid_t pid = fork();
  if (pid == 0) {
    shm::domain c = shm::domain::attach(f.map(), kSize);
    pagewait::detail::shm_bucket_lock_of(c, 2).lock();
    at<std::atomic<W>>(c, 0).store(1);
    for (;;) pause();
  }
  ASSERT_TRUE(eventually([&] { return ready.load() == 1; }));
  std::atomic<bool> waited{false};
  std::thread waiter([&] {
    d.wait_bit_clear(w, IO);  // blocks on the bucket lock before it can queue
    waited = true;
  });
  EXPECT_TRUE(eventually([&] { return pagewait::detail::shm_bucket_lock_of(d, 2).sleepers(); }));
  int st = 0;
  kill(pid, SIGKILL);
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  // The waiter has not queued (it never got the lock), so the waiters bit is clear and this is the
  // fast release: it takes no bucket lock. The waiter sees the bit clear once it has the lock.
  d.clear_bit_and_wake(w, IO);
  ASSERT_TRUE(eventually([&] { return waited.load(); }))
      << "the sleeper never took the dead holder's lock over";
  waiter.join();
  EXPECT_EQ(pagewait::detail::shm_bucket_lock_of(d, 2).holder(), 0u);
}

// The holder that dies may leave the bucket's links half-changed: the bucket is rebuilt from the
// slots, not from its links. A child takes the lock of the bucket where this process's thread is
// queued, empties the bucket's queue (its head and tail) as a walk cut short might leave it, and
// is killed; after the take-over, a release of the bit must still find and wake the waiter.
TEST(ShmRecovery, ABucketIsRebuiltFromItsSlotsNotItsLinks) {
  shared_file f(kSize);
  shm::options o;
  o.buckets = 4;
  shm::domain d = shm::domain::create(f.map(), kSize, o);
  auto& ready = at<std::atomic<W>>(d, 0);
  auto& go = at<std::atomic<W>>(d, 4);
  const std::size_t off = offset_in_bucket(d, 1, 64);
  auto& w = at<std::atomic<W>>(d, off);
  w.store(IO);
  const pid_t pid = fork();
  if (pid == 0) {
    shm::domain c = shm::domain::attach(f.map(), kSize);
    while (!at<std::atomic<W>>(c, 4).load()) usleep(200);
    auto& l = pagewait::detail::shm_bucket_lock_of(c, 1);
    l.lock();
    auto& b = bucket_of_lock(l);
    b.head.set(nullptr);
    b.tail.set(nullptr);
    at<std::atomic<W>>(c, 0).store(1);
    for (;;) pause();
  }
  std::atomic<bool> waited{false};
  std::thread waiter([&] {
    d.wait_bit_clear(w, IO);
    waited = true;
  });
  ASSERT_TRUE(eventually([&] { return (w.load() & WB) != 0; })) << "the waiter never queued";
  go = 1;
  ASSERT_TRUE(eventually([&] { return ready.load() == 1; }));
  int st = 0;
  kill(pid, SIGKILL);
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  // recover(), or the waiter's own poll, takes the lock over.
  EXPECT_TRUE(eventually([&] {
    d.recover();
    return pagewait::detail::shm_bucket_lock_of(d, 1).holder() == 0;
  }));
  EXPECT_FALSE(waited.load());
  d.clear_bit_and_wake(w, IO);
  // ASSERT: a failure ends the test at once (the waiter thread, still blocked, then aborts the
  // run) rather than hanging it.
  ASSERT_TRUE(eventually([&] { return waited.load(); })) << "the queued waiter was lost with the links";
  waiter.join();
  EXPECT_EQ(w.load() & (IO | WB), 0u);
}

// A release killed before its walk could take its bucket lock is made again for it: its bit is
// still set, and the lock waiter queued behind it gets the lock. The child holds the lock bit; this
// process's thread queues for it; this process holds the bucket lock while the child unlocks (its
// release has taken its slot and waits for the bucket lock), and kills it there.
TEST(ShmRecovery, AReleaseKilledBeforeItsWalkIsMadeAgain) {
  shared_file f(kSize);
  shm::domain d = shm::domain::create(f.map(), kSize);
  auto& ready = at<std::atomic<W>>(d, 0);
  auto& go = at<std::atomic<W>>(d, 4);
  auto& w = at<std::atomic<W>>(d, 64);
  auto& l = pagewait::detail::shm_bucket_lock_of(d, d.bucket_of(&w));
  const pid_t pid = fork();
  if (pid == 0) {
    shm::domain c = shm::domain::attach(f.map(), kSize);
    auto& cw = at<std::atomic<W>>(c, 64);
    c.lock_bit(cw, LOCK);
    at<std::atomic<W>>(c, 0).store(1);
    while (!at<std::atomic<W>>(c, 4).load()) usleep(200);
    c.unlock_bit(cw, LOCK);  // slow (a waiter is queued): blocks on the bucket lock, and is killed
    _exit(3);
  }
  ASSERT_TRUE(eventually([&] { return ready.load() == 1; }));
  std::atomic<bool> locked{false};
  std::thread locker([&] {
    d.lock_bit(w, LOCK);
    locked = true;
    d.unlock_bit(w, LOCK);
  });
  ASSERT_TRUE(eventually([&] { return (w.load() & WB) != 0; })) << "the locker never queued";
  l.lock();
  go = 1;
  EXPECT_TRUE(eventually([&] { return l.sleepers(); }))
      << "the child's release did not wait for the bucket lock";
  int st = 0;
  kill(pid, SIGKILL);
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  l.unlock();
  std::size_t finished = 0;
  ASSERT_TRUE(eventually([&] {
    finished += d.recover().releases_finished;
    return locked.load();
  })) << "the dead release was not made again: the lock stays set";
  locker.join();
  EXPECT_LE(finished, 1u);  // 0 if the locker's own poll made it
  EXPECT_EQ(w.load() & (LOCK | WB), 0u);
  EXPECT_EQ(d.recover().dead_slots, 0u);
}

// Processes lock and unlock four words (untimed: a lost wake-up hangs one), wait for event bits
// that another process sets and clears, and count their critical sections. One after another,
// processes are killed while they are parked in a wait — stopped first, and killed only if they
// are blocked on a parker of the domain's slots (queued, or claimed by a release; then they hold
// no bit: they never wait while holding one) — under whatever hand-offs and wake-ups were on their
// way to them. The others must go on and stop when told, with every count exact: no lost
// wake-up, no lock handed to the dead and lost, no two owners; nothing left queued.
TEST(ShmRecovery, ProcessesKilledWhileParkedNeverStopTheOthers) {
  constexpr int workers = 6, victims = 3, nwords = 4;
  shared_file f(kSize);
  shm::options o;
  o.buckets = 2;  // words share buckets: a recovery meets others' nodes
  o.slots = 32;
  shm::domain d = shm::domain::create(f.map(), kSize, o);
  // The user area: [0] stop, [8 + 8 i] worker i's completed critical sections, [128 + 64 w] word
  // w and its counter (guarded by its lock bit).
  auto& stop = at<std::atomic<W>>(d, 0);
  const auto done_of = [&](int i) -> std::atomic<std::uint64_t>& {
    return at<std::atomic<std::uint64_t>>(d, 8 + 8 * std::size_t(i));
  };
  const auto word_of = [&](int w) -> std::atomic<W>& {
    return at<std::atomic<W>>(d, 128 + 64 * std::size_t(w));
  };
  const auto count_of = [&](int w) -> std::uint64_t& {
    return at<std::uint64_t>(d, 136 + 64 * std::size_t(w));
  };
  std::vector<pid_t> pids;
  for (int i = 0; i <= workers; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::uint64_t x = 0x9E3779B97F4A7C15ull * std::uint64_t(i + 1);
      const auto next = [&x] { return (x = x * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
      int code = 0;
      try {
        if (i == workers) {  // the event process: sets and clears each word's IO bit in turn
          while (!stop.load()) {
            auto& w = word_of(int(next() % nwords));
            if (w.fetch_or(IO) & IO) continue;
            std::this_thread::sleep_for(std::chrono::microseconds(200 + next() % 800));
            d.clear_bit_and_wake(w, IO);
          }
        } else {
          for (std::uint64_t n = 0; !stop.load(); ++n) {
            const int k = int(next() % nwords);
            auto& w = word_of(k);
            if (n % 4 == 3) {
              if (!d.wait_bit_clear_for(w, IO, 60s)) code = 4;
              continue;
            }
            d.lock_bit(w, LOCK);
            const std::uint64_t c = count_of(k);
            for (int s = 0, m = int(next() % 64); s < m; ++s) asm volatile("" ::: "memory");
            // Now and then a long hold, so that the others' lock waits outlast their spin and
            // park: with short holds alone a lock waiter was seldom found parked (under TSan on
            // a loaded machine, none in 20 s once).
            if (next() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100 + next() % 400));
            count_of(k) = c + 1;
            d.unlock_bit(w, LOCK);
            done_of(i).fetch_add(1);
          }
        }
      } catch (...) {
        code = 5;
      }
      _exit(code);
    }
    pids.push_back(pid);
  }
  std::vector<bool> dead(pids.size(), false);
  int killed = 0, tries = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (killed < victims && std::chrono::steady_clock::now() - t0 < 20s) {
    std::this_thread::sleep_for(30ms);
    const int v = (tries++) % workers;  // never the event process
    if (dead[std::size_t(v)]) continue;
    const pid_t pid = pids[std::size_t(v)];
    ASSERT_EQ(kill(pid, SIGSTOP), 0);
    // Parked on a slot's parker (the children inherited this mapping: same addresses). The first
    // victims die in lock waits (a hand-off or a wake-up to race may be on its way to them), the
    // last in any wait.
    const pagewait::detail::shm_parked_wait p = pagewait::detail::shm_parked(d, pid);
    if (p.parked && (p.exclusive || killed == victims - 1)) {
      ASSERT_EQ(kill(pid, SIGKILL), 0);
      ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
      dead[std::size_t(v)] = true;
      ++killed;
      std::this_thread::sleep_for(200ms);  // the others go on without it (and poll it away)
    } else {
      ASSERT_EQ(kill(pid, SIGCONT), 0);
    }
  }
  EXPECT_EQ(killed, victims) << "no worker was found parked often enough (in " << tries << " tries)";
  // The survivors must still make progress.
  std::uint64_t before = 0, after = 0;
  for (int i = 0; i < workers; ++i) before += done_of(i).load();
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < workers; ++i) after += done_of(i).load();
  EXPECT_GT(after, before) << "the living stopped locking after the deaths";
  stop.store(1);
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  for (std::size_t i = 0; i < pids.size(); ++i) {
    if (dead[i]) continue;
    int st = 0;
    pid_t got = 0;
    while ((got = waitpid(pids[i], &st, WNOHANG)) == 0 && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(1ms);
    if (got == 0) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], &st, 0);
      ADD_FAILURE() << "process " << i << " never stopped: a wait of it was never ended";
      continue;
    }
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "process " << i << " status " << st;
  }
  d.recover();  // the deaths no parked waiter polled away
  std::uint64_t sections = 0, counted = 0;
  for (int i = 0; i < workers; ++i) sections += done_of(i).load();
  for (int w = 0; w < nwords; ++w) {
    counted += count_of(w);
    EXPECT_EQ(word_of(w).load() & (LOCK | IO), 0u) << "word " << w;
    if (!d.try_lock_bit_for(word_of(w), LOCK, 5s)) {
      ADD_FAILURE() << "word " << w << ": its lock was lost (handed to the dead, never passed on)";
      continue;
    }
    d.unlock_bit(word_of(w), LOCK);
    EXPECT_EQ(word_of(w).load(), 0u) << "word " << w << ": a waiter of the dead still queued";
  }
  EXPECT_EQ(counted, sections) << "critical sections lost or doubled (two owners)";
  const shm::recovery_report r = d.recover();
  EXPECT_EQ(r.dead_slots, 0u) << "a dead process's slot still taken";
}
