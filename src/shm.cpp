// src/shm.cpp — wait domains in shared memory (pagewait/shm.hpp, detail/shm_policy.hpp):
// formatting and attaching, the process's registry of attached domains, slots, the shared
// bucket lock.
#include "pagewait/shm.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>

#include "stats_counters.hpp"

namespace pagewait {

template struct detail::core<detail::shm_policy, release_protocol::atomic_clear, std::uint32_t>;
template struct detail::core<detail::shm_policy, release_protocol::atomic_clear, std::uint64_t>;

namespace detail {

namespace {

constexpr std::uint64_t magic = 0x5041474557414954ull;  // "PAGEWAIT"
constexpr std::uint32_t state_formatting = 1, state_ready = 2;
constexpr std::size_t header_bytes = 4096;

// The header, at the mapping's base. Written once by create, read by attach; after that only
// `state` is an atomic anybody reads.
struct header {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t abi;  // abi_fingerprint() of the build that formatted it
  std::atomic<std::uint32_t> state;
  std::uint32_t buckets, slots, release_reserve;
  std::uint64_t buckets_off, slots_off, stats_off, user_off, size;
  // The PID namespace of the process that created the domain (the inode of /proc/self/ns/pid, 0
  // if unknown): a slot names its process by pid, which means another process in another
  // namespace, so every process must be in this one (attach refuses others).
  std::uint64_t pid_ns;
  // When a recovery last began (steady clock, ns): the parked waiters' polls recover at most once
  // per shm_parker::recovery_poll between them (recover_poll).
  std::atomic<std::int64_t> recovered_at_ns;
};

// The domain's statistics, at stats_off: the switch and the domain-wide counts, then one
// bucket_counters per bucket. Counted by every attached process while `counting` is set.
struct alignas(64) domain_stats {
  std::atomic<std::uint32_t> counting{0};
  std::atomic<std::uint64_t> wake_calls{0}, sleeps{0};
};
using stats_impl::bucket_counters;
static_assert(sizeof(header) <= header_bytes);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "a shared futex word must be address-free");

// What two builds must agree on to share a mapping: the sizes and alignments of what lives in
// it, and the word size. A build that differs gets abi_mismatch, never a misread structure.
std::uint32_t abi_fingerprint() noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint64_t v :
       {std::uint64_t(sizeof(header)), std::uint64_t(sizeof(bucket<shm_policy>)),
        std::uint64_t(alignof(bucket<shm_policy>)), std::uint64_t(sizeof(shm_slot)),
        std::uint64_t(alignof(shm_slot)), std::uint64_t(sizeof(waiter_node<shm_policy>)),
        std::uint64_t(sizeof(release_record<shm_policy>)), std::uint64_t(sizeof(void*)),
        std::uint64_t(sizeof(domain_stats)), std::uint64_t(sizeof(bucket_counters)),
        // and what the bits in them mean: tokens, parker flags, node states,
        // the null distance (a change of any needs a new layout_version too)
        std::uint64_t(token_cleared), std::uint64_t(token_retry), std::uint64_t(token_handoff),
        std::uint64_t(token_abandoned), std::uint64_t(sleeping_flag), std::uint64_t(interrupted_flag),
        std::uint64_t(node_kind::exclusive), std::uint64_t(node_kind::bookmark),
        std::uint64_t(node_state::claimed), std::uint64_t(node_state::idle), std::uint64_t(rel<int>::null),
        std::uint64_t(slot_wait), std::uint64_t(slot_release), slot_owner::recovering, slot_owner::gen_shift,
        std::uint64_t(shm_bucket_lock::contended), std::uint64_t(shm_bucket_lock::unknown_holder)}) {
    h ^= v;
    h *= 1099511628211ull;
  }
  return std::uint32_t(h ^ (h >> 32));
}

std::size_t round_up(std::size_t n, std::size_t a) noexcept { return (n + a - 1) / a * a; }

struct layout {
  std::size_t buckets, buckets_off, slots_off, stats_off, user_off;
};
layout layout_for(const shm::options& o) noexcept {
  layout l{};
  l.buckets = std::bit_ceil(std::size_t(o.buckets ? o.buckets : 1));
  l.buckets_off = header_bytes;
  l.slots_off = round_up(l.buckets_off + wait_table<shm_policy>::bytes_for(l.buckets), 64);
  l.stats_off = round_up(l.slots_off + std::size_t(o.slots) * sizeof(shm_slot), 64);
  l.user_off = round_up(l.stats_off + sizeof(domain_stats) + l.buckets * sizeof(bucket_counters), 64);
  return l;
}

[[noreturn]] void fail(shm::errc c, const char* fmt, unsigned long long a = 0, unsigned long long b = 0) {
  char msg[256];
  std::snprintf(msg, sizeof msg, fmt, a, b);
  throw shm::domain_error(c, std::string("pagewait::shm: ") + msg);
}

}  // namespace

// This process's handle on one domain: where the mapping is here, and its table.
struct shm_domain_state {
  char* base;
  char* user;  // from the checked layout, never re-read from the shared header
  char* end;
  shm::options opts;
  wait_table<shm_policy> table;
  shm_slot* slots;
  domain_stats* stats;
  bucket_counters* counters;                 // one per bucket, after *stats
  std::uint64_t pid_ns = 0;                  // the header's, checked at attach (0: unknown)
  shm_domain_state* retired_next = nullptr;  // the registry's list of detached states
  shm_domain_state(char* b, std::size_t size, const shm::options& o, const layout& l, bool construct)
      : base(b),
        user(b + l.user_off),
        end(b + size),
        opts(o),
        table(l.buckets, b + l.buckets_off, construct),
        slots(reinterpret_cast<shm_slot*>(b + l.slots_off)),
        stats(reinterpret_cast<domain_stats*>(b + l.stats_off)),
        counters(reinterpret_cast<bucket_counters*>(b + l.stats_off + sizeof(domain_stats))) {}
  bool counting() const noexcept { return stats->counting.load(std::memory_order_relaxed) != 0; }
  bucket_counters& counters_of(const void* word) const noexcept {
    return counters[table.index_of_key(std::uint64_t(static_cast<const char*>(word) - base))];
  }
};

namespace {

// The process's attached domains. Looked up by address on every slow path without a lock (the
// entries are published with release stores and never move); changed under the mutex. A
// detached domain's state is never freed: a slow path on another domain may be reading its
// entry at that moment (its bounds, to see that the word is not there), and with no reclamation
// scheme in the lookup that read must stay valid. A state is a few hundred bytes, kept once per
// attach over the process's life (the review of the first version found the use after free).
constexpr std::size_t max_domains = 64;
std::mutex registry_m;
std::array<std::atomic<shm_domain_state*>, max_domains> registry{};
std::atomic<std::size_t> registry_used{0};

// fork(): a thread of the parent may hold the registry's mutex while another forks; the child,
// which has only the forking thread, would then never get it. Held across fork by the forker,
// released on both sides (the mutex is the forking thread's own in the child).
[[maybe_unused]] const bool registry_fork_handlers =
    pthread_atfork([] { registry_m.lock(); }, [] { registry_m.unlock(); }, [] { registry_m.unlock(); }) == 0;

shm_domain_state* find(const void* p) noexcept {
  const char* c = static_cast<const char*>(p);
  const std::size_t n = registry_used.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    shm_domain_state* d = registry[i].load(std::memory_order_acquire);
    if (d && c >= d->base && c < d->end) return d;
  }
  return nullptr;
}

void enroll(shm_domain_state* d) {
  std::lock_guard<std::mutex> g(registry_m);
  const std::size_t n = registry_used.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < n; ++i) {
    shm_domain_state* o = registry[i].load(std::memory_order_relaxed);
    if (o && d->base < o->end && o->base < d->end)
      fail(shm::errc::overlaps, "the memory overlaps a domain this process has attached already");
  }
  for (std::size_t i = 0; i < max_domains; ++i)
    if (!registry[i].load(std::memory_order_relaxed)) {
      registry[i].store(d, std::memory_order_release);
      if (i >= n) registry_used.store(i + 1, std::memory_order_release);
      return;
    }
  fail(shm::errc::too_many, "more than %llu domains attached in one process", max_domains);
}

shm_domain_state* retired = nullptr;  // registry_m; kept reachable, so never reported as leaked

void unenroll(shm_domain_state* d) noexcept {
  std::lock_guard<std::mutex> g(registry_m);
  for (auto& e : registry)
    if (e.load(std::memory_order_relaxed) == d) e.store(nullptr, std::memory_order_release);
  d->retired_next = retired;
  retired = d;
}

shm_domain_state& domain_of(const void* word) noexcept {
  shm_domain_state* d = find(word);
  if (!d) [[unlikely]] {
    // The public operations check the word first; getting here is a bug in pagewait.
    std::fprintf(stderr, "pagewait::shm: internal error: slow path on a word outside every domain (%p)\n",
                 word);
    std::abort();
  }
  return *d;
}

// Where a thread starts its search for a free slot: spread, so that threads rarely meet on one,
// and so that processes do: a forked child's threads would otherwise start from the parent's
// counter, and children forked before any slow path all from slot 0. The process id is mixed
// in, and a fork makes the child's threads draw again.
std::atomic<std::uint32_t> hint_epoch{1};
[[maybe_unused]] const bool hint_fork_handler =
    pthread_atfork(nullptr, nullptr, [] { hint_epoch.fetch_add(1, std::memory_order_relaxed); }) == 0;
// This thread's process and thread ids, as a slot's owner names them: read once per thread
// (getpid and gettid are system calls), again after a fork (the child's thread has new ones; a
// child made by a raw clone() that bypasses the fork handlers must not use a domain its parent
// attached: SHARED.md).
std::atomic<std::uint32_t> ids_epoch{1};
// Set in a child whose parent it cannot see (getppid() is 0: the child is the first process of a
// PID namespace its parent made), and inherited by the child's own children: every domain this
// process holds was attached in another namespace. /proc may not say so (it can be hidden).
std::atomic<bool> outside_parents_namespace{false};
[[maybe_unused]] const bool ids_fork_handler =
    pthread_atfork(nullptr, nullptr, [] {
      ids_epoch.fetch_add(1, std::memory_order_relaxed);
      if (getppid() == 0) outside_parents_namespace.store(true, std::memory_order_relaxed);
    }) == 0;
// The PID namespace this process is in (0 if /proc does not say).
std::uint64_t pid_namespace() noexcept {
  struct stat st {};
  return ::stat("/proc/self/ns/pid", &st) == 0 ? std::uint64_t(st.st_ino) : 0;
}

struct thread_ids {
  std::uint32_t pid, tid;
  // The PID namespace the ids belong to. A process's own namespace never changes, but a child
  // forked after its parent entered another one (unshare, setns) is in that one, with the
  // handles of the domains its parent attached.
  std::uint64_t ns;
  // Whether this process's ids name it in domain d's namespace (the one its slots use). Not when
  // it was forked out of its parent's namespace, nor when it cannot tell its namespace and the
  // domain's creator could (the safe side: its waits are then never recovered, never misjudged).
  // When the domain's is unknown (its creator had no /proc), attach checked what it could.
  bool native_to(const shm_domain_state& d) const noexcept {
    return !outside_parents_namespace.load(std::memory_order_relaxed) && (!d.pid_ns || ns == d.pid_ns);
  }
};
thread_ids self_ids() noexcept {
  thread_local thread_ids ids{0, 0, 0};
  thread_local std::uint32_t read_in = 0;
  if (const std::uint32_t e = ids_epoch.load(std::memory_order_relaxed); read_in != e) {
    read_in = e;
    ids = {std::uint32_t(getpid()), std::uint32_t(gettid()), pid_namespace()};
  }
  return ids;
}

std::uint32_t slot_hint() noexcept {
  static std::atomic<std::uint32_t> next{0};
  thread_local std::uint32_t h = 0, drawn_in = 0;
  if (const std::uint32_t e = hint_epoch.load(std::memory_order_relaxed); drawn_in != e) {
    drawn_in = e;
    h = next.fetch_add(0x9E3779B9u, std::memory_order_relaxed) ^ (std::uint32_t(getpid()) * 0x85EBCA6Bu);
  }
  return h;
}

}  // namespace

shm_policy::table_ref shm_policy::table_for(const void* word) noexcept {
  shm_domain_state& d = domain_of(word);
  return {&d.table, d.base};
}

shm_slot& shm_take_slot(const void* word, bool for_release) {
  shm_domain_state& d = domain_of(word);
  const std::uint32_t n = d.opts.slots;
  // Waits take from the first slots - release_reserve; releases from all of them, reserve first.
  const std::uint32_t waits = n - d.opts.release_reserve;
  const std::uint32_t reserve = d.opts.release_reserve;
  // Acquire: the previous holder's last use of the slot (its node's destruction, its parker's
  // last read) happens-before ours. Pairs with shm_give_slot's release store. Release too: a
  // rebuild that reads what we write into the slot after the take (a record built anew) also
  // sees the new generation, and so never takes it for the previous release's (core::rebuild).
  const thread_ids me = self_ids();
  // A thread of a process outside the domain's PID namespace (forked after its parent entered
  // another) names its slots with thread id 0, "liveness unknown": its ids would name other
  // processes to the domain's, which would take its live waits for dead. Such slots are never
  // recovered (a death there is not seen), never wrongly finished.
  const std::uint32_t tid = me.native_to(d) ? me.tid : 0;
  const auto take = [&me, tid](shm_slot& s) {
    std::uint64_t v = s.owner.load(std::memory_order_relaxed);
    return slot_owner::free(v) &&
           s.owner.compare_exchange_strong(v, slot_owner::make(slot_owner::gen(v) + 1, me.pid, tid),
                                           std::memory_order_acq_rel, std::memory_order_relaxed);
  };
  for (;;) {
    const std::uint32_t h = slot_hint();
    if (for_release) {
      // The reserve first, then any slot a waiter is not using.
      for (std::uint32_t i = 0; i < reserve; ++i)
        if (shm_slot& s = d.slots[waits + (h + i) % reserve]; take(s)) return s;
      for (std::uint32_t i = 0; i < waits; ++i)
        if (shm_slot& s = d.slots[(h + i) % waits]; take(s)) return s;
      // Every slot is taken. Waiters hold theirs for as long as they wait, but at most
      // `slots - release_reserve` of them; the reserve is held only by releases, each for one
      // bounded walk. So one frees soon: an unlock never fails.
      std::this_thread::yield();
      continue;
    }
    for (std::uint32_t i = 0; i < waits; ++i)
      if (shm_slot& s = d.slots[(h + i) % waits]; take(s)) return s;
    fail(shm::errc::slots_exhausted,
         "every slot of the domain is taken (%llu slots, %llu kept for releases): a wait or lock that would "
         "sleep needs one (raise options::slots)",
         n, reserve);
  }
}

shm_parker& shm_policy::current_parker() noexcept {
  std::fprintf(stderr, "pagewait::shm: internal error: a domain node must take its slot's parker\n");
  std::abort();
}

std::uint32_t shm_bucket_index(const void* word) noexcept {
  const shm_domain_state& d = domain_of(word);
  return std::uint32_t(d.table.index_of_key(std::uint64_t(static_cast<const char*>(word) - d.base)));
}

shm_slot* shm_slots_of(const bucket<shm_policy>* b, std::uint32_t& n, std::uint32_t& index) noexcept {
  shm_domain_state& d = domain_of(b);
  n = d.opts.slots;
  index = std::uint32_t(b - &d.table.at(0));
  return d.slots;
}

void shm_give_slot(shm_slot& s) noexcept {
  // Free, keeping the generation (only the holder writes `owner` while it holds the slot).
  s.owner.store(slot_owner::make(slot_owner::gen(s.owner.load(std::memory_order_relaxed)), 0, 0),
                std::memory_order_release);
}

std::uint32_t shm_bucket_lock::id_for(const void* lock) noexcept {
  const thread_ids me = self_ids();
  const shm_domain_state* d = find(lock);
  return d && !me.native_to(*d) ? unknown_holder : me.tid;
}

namespace {
bool thread_id_gone(std::uint32_t tid) noexcept;
}  // namespace

void shm_bucket_lock::lock_slow() noexcept {
  const std::uint32_t me = id_for(this);
  // Spin a little: the lock is held for at most chunk_visits node visits.
  for (int i = 0; i < 100; ++i) {
    std::uint32_t c = w_.value.load(std::memory_order_relaxed);
    if (c == 0 && w_.value.compare_exchange_weak(c, me, std::memory_order_acquire, std::memory_order_relaxed))
      return;
    native_policy::cpu_relax();
  }
  // Then sleep, with `contended` set so that the holder's unlock wakes one sleeper. A thread that
  // takes the lock after sleeping keeps `contended` (others may still sleep): at worst one wake
  // too many, as in a three-state futex mutex. The holder's id is never overwritten while held.
  // The sleep is cut in slices of shm_parker::recovery_poll. A holder that dies holding the lock
  // never wakes anybody, and every thread that could take it over (the parked waiters' polls)
  // may be asleep right here; and one killed between its unlock's exchange and its wake leaves
  // the lock free with sleepers. So after a slice the sleeper looks: a free lock is taken, and a
  // holder whose thread has gone is taken over and its bucket rebuilt (as recover_domain does).
  for (;;) {
    std::uint32_t c = w_.value.load(std::memory_order_relaxed);
    if (c == 0) {
      if (w_.value.compare_exchange_weak(c, me | contended, std::memory_order_acquire,
                                         std::memory_order_relaxed))
        return;
      continue;
    }
    if (!(c & contended) && !w_.value.compare_exchange_weak(c, c | contended, std::memory_order_relaxed,
                                                            std::memory_order_relaxed))
      continue;
    if (w_.wait_shared(c | contended, deadline{deadline::clock::now() + shm_parker::recovery_poll})) continue;
    const std::uint32_t h = (c | contended) & ~contended;
    if (w_.value.load(std::memory_order_relaxed) == (c | contended) && me != unknown_holder &&
        h != unknown_holder && thread_id_gone(h) && take_over(h)) {
      shm_policy::shm_hold_start_ns = shm_policy::stats_on_for(this) ? shm_policy::stat_now_ns() : 0;
      shm_core<std::uint32_t>::rebuild(*reinterpret_cast<bucket<shm_policy>*>(this));  // drops the lock
    }
  }
}

// How many times this thread's recovery tries a busy bucket lock before it leaves that wait for
// later (try_lock_for_recovery); a recovery at a timed wait's deadline lowers it while it runs.
namespace {
constexpr int recovery_tries_default = 1000;
thread_local int recovery_tries = recovery_tries_default;
struct recovery_patience {
  int saved;
  explicit recovery_patience(int tries) noexcept : saved(recovery_tries) { recovery_tries = tries; }
  ~recovery_patience() { recovery_tries = saved; }
  recovery_patience(const recovery_patience&) = delete;
  recovery_patience& operator=(const recovery_patience&) = delete;
};
}  // namespace

bool shm_bucket_lock::take_over(std::uint32_t dead) noexcept {
  std::uint32_t c = w_.value.load(std::memory_order_relaxed);
  // Only from the dead holder named: a lock that it does not hold (any more: taken over by
  // another recoverer, then given back and taken again) is not touched. `contended` is set, so
  // that the unlock after the rebuild wakes a thread that slept on the lock while the dead held it.
  // Acquire: what the dead did before it died is seen (its death ordered it long before).
  return (c & ~contended) == dead &&
         w_.value.compare_exchange_strong(c, id_for(this) | contended, std::memory_order_acquire,
                                          std::memory_order_relaxed);
}

bool shm_policy::try_lock_for_recovery(bucket_lock& l) noexcept {
  // By default about a millisecond or more: a live holder keeps a bucket lock for at most
  // chunk_visits node visits, so only a holder that died (or is descheduled that long) makes this
  // give up. A recovery at a timed wait's deadline tries once (recover_poll).
  for (int i = 0; i < recovery_tries; ++i) {
    if (l.try_lock()) {
      shm_hold_start_ns = stats_on_for(&l) ? stat_now_ns() : 0;
      return true;
    }
    std::this_thread::yield();
  }
  return false;
}

namespace {

// Whether /proc shows this system's processes (it may be missing, or another's, in a container).
bool proc_readable() noexcept {
  static const bool ok = ::access("/proc/self/task", R_OK) == 0;
  return ok;
}

// Whether thread `tid` of process `pid` has stopped running: it is gone (its process died, or it
// was torn down by another thread's exec), or it is a zombie (a dead process's leader, until its
// parent reaps it). A thread this cannot see counts as running: the cost of a wrong "running" is
// a slot kept, of a wrong "gone" a live waiter's wait finished under it. Per thread, not per
// process: a process whose main thread has exited while others wait lives on (its leader is a
// zombie), and its waiters are alive.
bool thread_gone(std::uint32_t pid, std::uint32_t tid) noexcept {
  if (::syscall(SYS_tgkill, pid_t(pid), pid_t(tid), 0) != 0) return errno == ESRCH;
  // Only a process's leader stays a zombie until it is reaped; any other thread is released as
  // it exits (a moment in which it counts as running: the next look sees it gone), unless it is
  // traced (then it stays a zombie until its tracer reaps it: recovered later, never wrongly).
  // So the /proc read, ten times a tgkill's cost, is made for leaders only.
  if (tid != pid || !proc_readable()) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/task/%u/stat", pid, tid);
  std::FILE* f = std::fopen(path, "re");
  if (!f) return errno == ENOENT;  // it was there a moment ago (tgkill), and /proc works
  char buf[512];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  // "tid (comm) S ...": the state follows the last ')' (comm may hold anything, ')' too).
  const char* p = std::strrchr(buf, ')');
  return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

// Whether the thread with id `tid` (a bucket lock names only the thread) has stopped running:
// kill() with no signal finds any thread by its id, and a zombie is a dead process's leader.
bool thread_id_gone(std::uint32_t tid) noexcept {
  if (::kill(pid_t(tid), 0) != 0) return errno == ESRCH;
  // Found. A thread that is not a process's leader is running (only leaders linger as zombies);
  // a leader is judged as thread_gone judges it.
  if (::syscall(SYS_tgkill, pid_t(tid), pid_t(tid), 0) != 0) return false;
  return thread_gone(tid, tid);
}

// Finishes the operation of a slot whose process died; true if the slot can be freed. The caller
// has taken it over (the recovering flag is set in `owner`).
bool recover_slot(shm_slot& s, shm::recovery_report& r) {
  switch (s.use.load(std::memory_order_acquire)) {  // pairs with the scope's release store
    case slot_unused:
      return true;  // taken, but nothing built in it yet, or already torn down
    case slot_release: {
      // A release killed in progress: its bucket is rebuilt, and what it had decided delivered,
      // or, if it had not decided, it is made again (core::finish_dead_release).
      release_record<shm_policy>& rec = s.area.release.rec;
      const bool done = rec.width == sizeof(std::uint64_t)
                            ? shm_core<std::uint64_t>::finish_dead_release(rec)
                            : shm_core<std::uint32_t>::finish_dead_release(rec);
      if (!done) {
        ++r.releases_pending;
        return false;
      }
      ++r.releases_finished;
      s.use.store(slot_unused, std::memory_order_relaxed);
      std::destroy_at(&s.area.release.rec);
      std::destroy_at(&s.area.release.mark);
      std::destroy_at(&s.area.release.end);
      return true;
    }
    default:
      break;
  }
  waiter_node<shm_policy>& n = s.area.wait.node;
  if (!n.word.get()) return true;  // built, never keyed: the wait had not begun
  // Acquire: pairs with the release's unpark (fetch_or, release), as a park's load does.
  const std::uint32_t t = s.parker.word.value.load(std::memory_order_acquire) & token_mask;
  const bool done = n.width == sizeof(std::uint64_t) ? shm_core<std::uint64_t>::finish_dead_wait(n, t)
                                                     : shm_core<std::uint32_t>::finish_dead_wait(n, t);
  if (!done) {
    ++r.waits_pending;
    return false;
  }
  ++r.waits_finished;
  if (t == token_handoff) ++r.locks_passed_on;
  s.use.store(slot_unused, std::memory_order_relaxed);
  std::destroy_at(&n);
  return true;
}

shm::recovery_report recover_domain(shm_domain_state& d) {
  shm::recovery_report r;
  const thread_ids me = self_ids();
  // Outside the domain's PID namespace, the slots' ids name other processes, or none: every live
  // waiter would look dead.
  if (!me.native_to(d))
    fail(shm::errc::pid_namespace,
         "this process is in another PID namespace (%llu; 0: unknown) than the domain (%llu), or cannot "
         "tell: it cannot tell whose processes died (it was forked after its parent entered a new one)",
         me.ns, d.pid_ns);
  std::exception_ptr first_error;
  // First the bucket locks whose holder died: taken over, and their buckets rebuilt from the
  // slots (the dead may have left any link half-changed), so that the slow operations on their
  // words go on, and the dead waits and releases below can take them. The take-over is a CAS from
  // the dead holder's id, which a dead thread's lock keeps for good: two recoverers cannot both
  // take it, and a live thread that reuses the id cannot hold the lock meanwhile.
  for (std::size_t i = 0; i < d.table.size(); ++i) {
    bucket<shm_policy>& b = d.table.at(i);
    const std::uint32_t h = b.lock.holder();
    if (!h || h == shm_bucket_lock::unknown_holder || h == me.tid || !thread_id_gone(h) ||
        !b.lock.take_over(h))
      continue;
    shm_policy::shm_hold_start_ns = shm_policy::stats_on_for(&b.lock) ? shm_policy::stat_now_ns() : 0;
    shm_core<std::uint32_t>::rebuild(b);
    ++r.buckets_taken_over;
  }
  for (std::uint32_t i = 0; i < d.opts.slots; ++i) {
    shm_slot& s = d.slots[i];
    std::uint64_t v = s.owner.load(std::memory_order_relaxed);
    const std::uint32_t pid = slot_owner::pid(v), tid = slot_owner::tid(v);
    // tid 0: taken by a process outside the namespace (shm_take_slot), whose liveness is unknown.
    if (pid == 0 || tid == 0 || (v & slot_owner::recovering) || (pid == me.pid && tid == me.tid) ||
        !thread_gone(pid, tid))
      continue;
    // One recoverer per slot, and only for the owner it judged: a slot freed and taken again since
    // the load has another generation, and the CAS fails. Acquire: the dead owner's writes to the
    // slot, made before it died, are seen (its death ordered them long before).
    if (!s.owner.compare_exchange_strong(v, v | slot_owner::recovering, std::memory_order_acquire,
                                         std::memory_order_relaxed))
      continue;
    ++r.dead_slots;
    bool freed = false;
    try {
      freed = recover_slot(s, r);
    } catch (...) {
      if (!first_error) first_error = std::current_exception();  // the other slots still get theirs
    }
    // Freed: the release store orders the recovery's last use of the slot before its next taker's
    // acquire (as shm_give_slot's). Else back to the dead owner, for a later recovery.
    s.owner.store(freed ? slot_owner::make(slot_owner::gen(v), 0, 0) : v, std::memory_order_release);
  }
  if (first_error) std::rethrow_exception(first_error);
  return r;
}

// pid: 1..slot_owner::id_mask (domain::slots_held_by checks).
std::size_t count_slots_of(const shm_domain_state& d, int pid) {
  // The slots name their threads by their ids in the domain's namespace: ours would be others'.
  if (!self_ids().native_to(d))
    fail(shm::errc::pid_namespace,
         "this process is in another PID namespace (%llu; 0: unknown) than the domain (%llu), or cannot "
         "tell: its process ids are not the domain's",
         self_ids().ns, d.pid_ns);
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < d.opts.slots; ++i) {
    // Acquire: pairs with the release store that frees a slot (its owner's, shm_give_slot, or a
    // recovery's, recover_domain), so that a caller that finds a dead process's slot free also
    // sees what its recovery did before (a lock handed to the dead passed on, its node unlinked).
    // A slot being recovered still names the dead (the recovering flag is beside its ids). A slot
    // of a process outside the namespace (tid 0, shm_take_slot) holds a pid of its own namespace,
    // which may be anyone's here: it counts for every pid (a later 0, never an early one).
    const std::uint64_t v = d.slots[i].owner.load(std::memory_order_acquire);
    if (!slot_owner::free(v) && (slot_owner::pid(v) == std::uint32_t(pid) || slot_owner::tid(v) == 0)) ++n;
  }
  return n;
}

}  // namespace

claimer_state shm_policy::release_owner(const release_record<shm_policy>* r, std::uint32_t tag) noexcept {
  // The record lives in the release area of a slot of the domain holding it. Acquire: a slot
  // taken again since (another generation) is told apart, and what its new taker wrote after
  // the take (a record built anew) is not read as the old release's (core::rebuild reads the
  // owner again after the record: the take's CAS is acq_rel, shm_take_slot).
  shm_domain_state& d = domain_of(r);
  const std::size_t i =
      std::size_t(reinterpret_cast<const char*>(r) - reinterpret_cast<const char*>(d.slots)) /
      sizeof(shm_slot);
  const std::uint64_t v = d.slots[i].owner.load(std::memory_order_acquire);
  if (slot_owner::free(v) || std::uint32_t(slot_owner::gen(v)) != tag) return claimer_state::stale;
  return shm_owner_gone(v) ? claimer_state::dead : claimer_state::alive;
}

bool shm_owner_gone(std::uint64_t v) noexcept {
  const std::uint32_t pid = slot_owner::pid(v), tid = slot_owner::tid(v);
  // Liveness unknown (tid 0: a process outside the namespace) counts as alive: never judged.
  return pid != 0 && tid != 0 && thread_gone(pid, tid);
}

void shm_parker::recover_poll(const void* p, bool at_deadline) noexcept {
  shm_domain_state* d = find(p);
  if (!d || !self_ids().native_to(*d)) return;  // it could not tell the dead (recover_domain)
  auto& at = reinterpret_cast<header*>(d->base)->recovered_at_ns;
  const std::int64_t now = stats_impl::now_ns();
  std::int64_t last = at.load(std::memory_order_relaxed);
  const std::int64_t period = std::chrono::duration_cast<std::chrono::nanoseconds>(recovery_poll).count();
  // The steady clocks of two processes may differ (a time namespace offsets a process's): a
  // `last` ahead of our now counts as long ago, so that one process's future stamp never stops
  // the others' polls (each may then poll at its own pace: more polls, never none).
  if ((now >= last && now - last < period) ||
      !at.compare_exchange_strong(last, now, std::memory_order_relaxed))
    return;
  // At a timed wait's deadline the caller is due back: a bucket lock that is busy is not waited
  // for (its wait is left for a later poll), so the recovery costs the scan and what it finishes.
  const recovery_patience patience(at_deadline ? 1 : recovery_tries_default);
  try {
    recover_domain(*d);
  } catch (...) {
    // A release made for a dead waiter found its bit clear: the word was changed by somebody
    // that does not own it. recover() reports that to its caller; a parked waiter has nobody to
    // tell, and must go on waiting.
  }
}

// ---- statistics: the hooks the core and the parkers call (slow paths only) ----
// Each looks only at the domain holding the address it was given: the caller's operation keeps
// that one attached and mapped (another domain may be detached and unmapped meanwhile).

namespace {
shm_domain_state* counting_domain_of(const void* p) noexcept {
  shm_domain_state* d = find(p);
  return d && d->counting() ? d : nullptr;
}
}  // namespace

bool shm_policy::stats_on_for(const void* p) noexcept { return counting_domain_of(p) != nullptr; }

std::int64_t shm_policy::stat_now_ns() noexcept { return stats_impl::now_ns(); }

void shm_policy::stat_wait_done(const void* word, std::uint64_t, bool exclusive, bool ok,
                                std::chrono::steady_clock::duration waited) noexcept {
  if (shm_domain_state* d = counting_domain_of(word))
    stats_impl::count_wait(d->counters_of(word), exclusive, ok,
                           std::chrono::duration_cast<std::chrono::nanoseconds>(waited));
}

void shm_policy::stat_lost_race(const void* word) noexcept {
  if (shm_domain_state* d = counting_domain_of(word))
    d->counters_of(word).lost_races.fetch_add(1, std::memory_order_relaxed);
}

void shm_policy::stat_release_done(const void* word, bool handoff) noexcept {
  if (shm_domain_state* d = counting_domain_of(word))
    stats_impl::count_release(d->counters_of(word), handoff, shm_release_visits);
}

void shm_policy::stat_hold_end(const bucket_lock* l) noexcept {
  const std::int64_t start = shm_hold_start_ns;
  shm_hold_start_ns = 0;
  shm_domain_state* d = counting_domain_of(l);
  if (!d) return;
  const auto* first = reinterpret_cast<const char*>(&d->table.at(0).lock);
  const std::size_t i = std::size_t(reinterpret_cast<const char*>(l) - first) / sizeof(bucket<shm_policy>);
  if (i < d->table.size() && &d->table.at(i).lock == l)
    stats_impl::raise_to(d->counters[i].longest_hold_ns, std::uint64_t(stats_impl::now_ns() - start));
}

void shm_parker::count_wake(const void* p) noexcept {
  if (shm_domain_state* d = counting_domain_of(p))
    d->stats->wake_calls.fetch_add(1, std::memory_order_relaxed);
}

void shm_parker::count_sleep(const void* p) noexcept {
  if (shm_domain_state* d = counting_domain_of(p)) d->stats->sleeps.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

namespace shm {

namespace {
void check_memory(void* base, std::size_t size) {
  if (!base) throw std::invalid_argument("pagewait::shm: the domain's base is null");
  if (!PAGEWAIT_HAVE_FUTEX)
    detail::fail(errc::unsupported,
                 "this build has no shared futexes (Linux only, without PAGEWAIT_PORTABLE_PARKING)");
  if (reinterpret_cast<std::uintptr_t>(base) % 64)
    detail::fail(errc::misaligned, "the domain's base must be aligned to 64 bytes (a mapping's start is)");
  if (size < detail::header_bytes)
    detail::fail(errc::too_small, "%llu bytes cannot hold a domain's header (%llu)", size,
                 detail::header_bytes);
}
}  // namespace

namespace {
void check_options(const options& o) {
  if (o.buckets < 1 || o.buckets > 65536)
    detail::fail(errc::bad_options, "options::buckets is %llu, not in 1..65536", o.buckets);
  if (o.slots < 2 || o.slots > 65536)
    detail::fail(errc::bad_options, "options::slots is %llu, not in 2..65536", o.slots);
  if (o.release_reserve < 1 || o.release_reserve >= o.slots)
    detail::fail(errc::bad_options, "options::release_reserve is %llu, not in 1..slots-1 (%llu)",
                 o.release_reserve, o.slots - 1);
}
}  // namespace

std::size_t domain::bytes_needed(std::size_t user_bytes, const options& o) {
  check_options(o);
  const std::size_t front = detail::layout_for(o).user_off;
  if (user_bytes > SIZE_MAX - front)
    throw std::invalid_argument("pagewait::shm: bytes_needed: a user area of " + std::to_string(user_bytes) +
                                " bytes does not fit in the address space");
  return front + user_bytes;
}

domain domain::create(void* base, std::size_t size, const options& o) {
  check_memory(base, size);
  check_options(o);
  const detail::layout l = detail::layout_for(o);
  if (size <= l.user_off)
    detail::fail(errc::too_small, "%llu bytes leave no user area (the domain's structures take %llu)", size,
                 l.user_off);
  char* b = static_cast<char*>(base);
  auto* h = reinterpret_cast<detail::header*>(b);
  options oo = o;
  oo.buckets = std::uint32_t(l.buckets);
  // Enrolled before anything is written, so that every refusal (overlaps, too_many, out of
  // memory) leaves the memory as it was. Nothing can look the domain up before create returns:
  // no word of it has been handed out.
  auto* d = new detail::shm_domain_state(b, size, oo, l, false);
  d->pid_ns = detail::pid_namespace();
  try {
    detail::enroll(d);
  } catch (...) {
    delete d;
    throw;
  }
  // Say "formatting" before anything else, so that a concurrent attach refuses (not_ready)
  // rather than reading half-built structures; ready is published last, with a release store.
  // (Formatting memory that other processes have attached is the caller's error: every process
  // detaches first, as for re-initialising any shared memory.)
  auto* st = new (&h->state) std::atomic<std::uint32_t>(detail::state_formatting);
  h->magic = 0;  // not a domain until the end
  new (&d->table) detail::wait_table<detail::shm_policy>(l.buckets, b + l.buckets_off, true);
  for (std::uint32_t i = 0; i < o.slots; ++i) new (&d->slots[i]) detail::shm_slot;
  new (d->stats) detail::domain_stats;  // not counting
  for (std::size_t i = 0; i < l.buckets; ++i) new (&d->counters[i]) detail::bucket_counters;
  h->layout_version = layout_version;
  h->abi = detail::abi_fingerprint();
  h->buckets = oo.buckets;
  h->slots = o.slots;
  h->release_reserve = o.release_reserve;
  h->buckets_off = l.buckets_off;
  h->slots_off = l.slots_off;
  h->stats_off = l.stats_off;
  h->user_off = l.user_off;
  h->size = size;
  h->pid_ns = detail::pid_namespace();
  new (&h->recovered_at_ns) std::atomic<std::int64_t>(0);
  h->magic = detail::magic;
  st->store(detail::state_ready, std::memory_order_release);
  return domain(d);
}

domain domain::attach(void* base, std::size_t size) {
  check_memory(base, size);
  char* b = static_cast<char*>(base);
  auto* h = reinterpret_cast<detail::header*>(b);
  // Acquire: pairs with create's release store of `ready`: every structure it formatted is seen.
  const std::uint32_t state = h->state.load(std::memory_order_acquire);
  // One copy of the header, checked, and only the copy used: the checks and the handle see the
  // same values. (Formatting memory that others are attaching is the caller's error; the state
  // is read again at the end so that a create seen starting meanwhile refuses, not half-reads.)
  detail::header c;
  std::memcpy(static_cast<void*>(&c), static_cast<const void*>(h), sizeof c);
  if (c.magic != detail::magic) {
    if (state == detail::state_formatting) detail::fail(errc::not_ready, "the domain is still being created");
    detail::fail(errc::bad_magic, "no domain here (bad magic 0x%llx)", c.magic);
  }
  if (c.layout_version != layout_version)
    detail::fail(errc::layout_version, "the domain has layout version %llu, this pagewait reads version %llu",
                 c.layout_version, layout_version);
  if (c.abi != detail::abi_fingerprint())
    detail::fail(
        errc::abi_mismatch,
        "the domain was formatted by a build with other structure sizes (ABI 0x%llx, this build 0x%llx)",
        c.abi, detail::abi_fingerprint());
  if (state != detail::state_ready) detail::fail(errc::not_ready, "the domain is still being created");
  if (c.size > size)
    detail::fail(errc::too_small, "the domain is %llu bytes, the mapping here only %llu", c.size, size);
  if (const std::uint64_t ns = detail::pid_namespace(); ns && c.pid_ns && ns != c.pid_ns)
    detail::fail(errc::pid_namespace,
                 "the domain was created in another PID namespace (%llu, this process is in %llu): its "
                 "slots name processes by pid, which would name others here",
                 c.pid_ns, ns);
  options o;
  o.buckets = c.buckets;
  o.slots = c.slots;
  o.release_reserve = c.release_reserve;
  const detail::layout l = detail::layout_for(o);
  if (l.buckets != c.buckets || l.buckets_off != c.buckets_off || l.slots_off != c.slots_off ||
      l.stats_off != c.stats_off || l.user_off != c.user_off || l.user_off >= c.size ||
      o.release_reserve < 1 || o.release_reserve >= o.slots)
    detail::fail(errc::abi_mismatch, "the domain's header does not describe this build's layout");
  if (h->state.load(std::memory_order_acquire) != detail::state_ready || h->magic != detail::magic)
    detail::fail(errc::not_ready, "the domain is being created again");
  auto* d = new detail::shm_domain_state(b, std::size_t(c.size), o, l, false);
  d->pid_ns = c.pid_ns;
  try {
    detail::enroll(d);
  } catch (...) {
    delete d;
    throw;
  }
  return domain(d);
}

domain::domain(detail::shm_domain_state* s) noexcept : s_(s), user_(s->user), end_(s->end) {}

domain& domain::operator=(domain&& o) noexcept {
  if (this != &o) {
    this->~domain();
    new (this) domain(std::move(o));
  }
  return *this;
}

domain::~domain() {
  if (s_) detail::unenroll(s_);  // the state stays allocated: see the registry
}

const options& domain::settings() const noexcept { return s_->opts; }

void domain::enable_stats(bool on) noexcept {
  if (s_) s_->stats->counting.store(on ? 1 : 0, std::memory_order_relaxed);
}

bool domain::stats_enabled() const noexcept { return s_ && s_->counting(); }

stats_snapshot domain::get_stats() const {
  stats_snapshot out;
  if (!s_) return out;
  out.wake_syscalls = s_->stats->wake_calls.load(std::memory_order_relaxed);
  out.sleeps = s_->stats->sleeps.load(std::memory_order_relaxed);
  detail::stats_impl::snapshot_buckets(s_->counters, s_->table.size(), out);
  return out;
}

void domain::reset_stats() noexcept {
  if (!s_) return;
  s_->stats->wake_calls.store(0, std::memory_order_relaxed);
  s_->stats->sleeps.store(0, std::memory_order_relaxed);
  for (std::size_t i = 0; i < s_->table.size(); ++i) detail::stats_impl::zero(s_->counters[i]);
}

recovery_report domain::recover() {
  if (!s_) return {};
  return detail::recover_domain(*s_);
}

std::size_t domain::slots_held_by(int pid) const {
  // Linux's pid_max is at most 2^22, and a slot keeps 22 bits of each id.
  if (pid < 1 || std::uint64_t(pid) > detail::slot_owner::id_mask)
    throw std::invalid_argument("pagewait::shm: slots_held_by: " + std::to_string(pid) +
                                " is not a process id (1.." + std::to_string(detail::slot_owner::id_mask) +
                                ")");
  // Not 0 for a moved-from handle: a caller would take it for "finished" and drop what it guards.
  if (!s_) throw std::logic_error("pagewait::shm: slots_held_by on a moved-from domain handle");
  return detail::count_slots_of(*s_, pid);
}

std::size_t domain::bucket_of(const void* word) const {
  if (!contains(word, 1)) throw_outside(word, 1, this);
  return s_->table.index_of_key(std::uint64_t(static_cast<const char*>(word) - s_->base));
}

void domain::throw_outside(const void* word, std::size_t size, const domain* d) {
  char msg[200];
  std::snprintf(msg, sizeof msg,
                "pagewait::shm: the %zu-byte word at %p is not %s the domain's user area [%p, %p)", size,
                word, d->s_ ? "aligned inside" : "in (moved-from handle)", static_cast<void*>(d->user_),
                static_cast<void*>(d->end_));
  throw domain_error(errc::word_outside, msg);
}

}  // namespace shm

detail::shm_parked_wait detail::shm_parked(const shm::domain& d, int pid, std::ptrdiff_t shift) {
  shm_parked_wait w;
  if (!d.s_) return w;
  char path[64], buf[512];
  // Stopped: state T in /proc/<pid>/stat (after the last ')', as in thread_gone).
  bool stopped = false;
  for (int i = 0; i < 10000 && !stopped; ++i) {
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    std::FILE* f = std::fopen(path, "re");
    if (!f) return w;
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* p = std::strrchr(buf, ')');
    stopped = p && p[1] == ' ' && p[2] == 'T';
    if (!stopped) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  if (!stopped) return w;
  // "nr uaddr op ...": SYS_futex, FUTEX_WAIT or FUTEX_WAIT_BITSET (without the private and
  // realtime flags), on the futex word at uaddr.
  std::snprintf(path, sizeof path, "/proc/%d/syscall", pid);
  std::FILE* f = std::fopen(path, "re");
  if (!f) return w;
  long nr = -1;
  unsigned long long addr = 0, op = 0;
  const int got = std::fscanf(f, "%ld %llx %llx", &nr, &addr, &op);
  std::fclose(f);
  // A futex wait that a stop interrupted shows as restart_syscall (its arguments are the
  // interrupted call's, as long as it is not resumed); the parker's wait has a timeout, so it
  // is restarted that way.
  const bool futex_wait = nr == SYS_futex && ((op & 0x7f) == 0 || (op & 0x7f) == 9);
  if (got != 3 || !(futex_wait || nr == SYS_restart_syscall)) return w;
  for (std::uint32_t i = 0; i < d.s_->opts.slots; ++i) {
    shm_slot& s = d.s_->slots[i];
    if (reinterpret_cast<unsigned long long>(&s.parker.word.value) + static_cast<unsigned long long>(shift) !=
        addr)
      continue;
    const std::uint64_t owner = s.owner.load(std::memory_order_acquire);
    if (slot_owner::free(owner) || slot_owner::pid(owner) != std::uint32_t(pid) ||
        s.use.load(std::memory_order_acquire) != slot_wait)
      return w;
    const waiter_node<shm_policy>& n = s.area.wait.node;  // the stopped process changes nothing
    w.parked = true;
    w.exclusive = n.kind == node_kind::exclusive;
    w.word = n.word.get();
    w.bit = n.bit;
    return w;
  }
  return w;
}

detail::shm_bucket_lock& detail::shm_bucket_lock_of(const shm::domain& d, std::size_t i) {
  if (!d.s_ || i >= d.s_->table.size()) throw std::out_of_range("pagewait::shm: no such bucket");
  return d.s_->table.at(i).lock;
}

std::size_t detail::shm_reset_bucket(const shm::domain& d, std::size_t i) {
  if (!d.s_ || i >= d.s_->table.size()) throw std::out_of_range("pagewait::shm: no such bucket");
  return shm_core<std::uint32_t>::reset(d.s_->table.at(i));
}

}  // namespace pagewait
