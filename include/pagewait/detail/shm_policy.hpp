// pagewait/detail/shm_policy.hpp — the runtime policy of a wait domain in shared memory
// (pagewait/shm.hpp; docs/SHARED.md). The same core as the native policy (core.hpp), with the
// choices the core leaves to its policy (wait_table.hpp, "How the table's structures refer to
// each other", "Where a waiter's node ... live") made for memory that several processes map,
// each at its own address:
//   - every pointer the table's structures hold, and every key, is stored as the distance from
//     the field to its target (`rel`): the same bits name the same object in every mapping;
//   - a waiter's node and a release's place holders live in a slot of the domain, taken for the
//     length of the wait or the release (a thread's stack is not in the mapping);
//   - the parker a node names is its slot's, parking on a shared futex (shm_parker);
//   - the bucket lock is a futex lock on a shared futex that names its holder (shm_bucket_lock);
//   - the table is the domain's, found from the word's address (table_for);
//   - a slot names the process that holds it, so that a live process can finish the wait or the
//     release of one that was killed (core::finish_dead_wait, core::finish_dead_release;
//     shm::domain::recover), and says which bucket its wait is in, so that a bucket whose lock a
//     dead thread held can be rebuilt from the slots (core::rebuild, shm_policy::each_waiter).
// The word operations, fairness, chunk bound and spin are the native policy's. The policy is
// stateless; a slow operation finds its domain in the process's registry of attached domains.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>

#include "pagewait/detail/native_policy.hpp"
#include "pagewait/detail/parker.hpp"
#include "pagewait/detail/wait_table.hpp"

namespace pagewait::detail {

// A pointer stored as the distance from this field to its target. Targets (nodes, records,
// parkers) and the fields themselves are 8-byte aligned, so a distance is a multiple of 8 and 1
// can mean null. Both ends must be in the same mapping: that is what makes the distance the
// same in every process (the domain's code only ever stores pointers into its own mapping).
template <class T>
struct rel {
  static constexpr std::int64_t null = 1;
  std::int64_t off = null;
  T* load() const noexcept {
    return off == null ? nullptr
                       : reinterpret_cast<T*>(const_cast<char*>(reinterpret_cast<const char*>(this)) + off);
  }
  void store(T* x) noexcept {
    off = x ? reinterpret_cast<const char*>(x) - reinterpret_cast<const char*>(this) : null;
  }
};

// The bucket lock of a domain, on a shared futex: 0 when free, else its holder's thread id, with
// `contended` set when a thread may sleep on it. The id goes in with the CAS that takes the lock,
// so there is no moment at which a holder is not named, and a recoverer can tell a lock whose
// holder died, and take it over (shm::recovery_report::buckets_taken_over). Held for at most
// chunk_visits node visits.
class shm_bucket_lock {
 public:
  static constexpr std::uint32_t contended = std::uint32_t(1) << 31;
  // The id of a thread outside the domain's PID namespace (SHARED.md): never judged. Thread ids
  // stay below 2^22 (PID_MAX_LIMIT), so none is this.
  static constexpr std::uint32_t unknown_holder = (std::uint32_t(1) << 30) - 1;
  void lock() noexcept {
    std::uint32_t c = 0;
    if (w_.value.compare_exchange_strong(c, id_for(this), std::memory_order_acquire,
                                         std::memory_order_relaxed))
      return;
    lock_slow();
  }
  bool try_lock() noexcept {
    std::uint32_t c = 0;
    return w_.value.compare_exchange_strong(c, id_for(this), std::memory_order_acquire,
                                            std::memory_order_relaxed);
  }
  void unlock() noexcept {
    if (w_.value.exchange(0, std::memory_order_release) & contended) w_.wake_one_shared();
  }
  // A recoverer takes the lock from `dead`, a holder whose thread it found gone (its thread id
  // as holder() gave it); false if the lock is not that holder's any more. The bucket is then
  // rebuilt (core::rebuild): the dead may have left its lists half-changed.
  bool take_over(std::uint32_t dead) noexcept;
  // Whether a thread may be asleep on the lock (tests: a thread blocked behind a dead holder).
  bool sleepers() const noexcept { return (w_.value.load(std::memory_order_relaxed) & contended) != 0; }
  // The holder's thread id (0: free); relaxed, for a recoverer's look.
  std::uint32_t holder() const noexcept { return w_.value.load(std::memory_order_relaxed) & ~contended; }
  // The calling thread's id as a bucket lock of the domain holding `lock` names it (src/shm.cpp).
  static std::uint32_t id_for(const void* lock) noexcept;

 private:
  void lock_slow() noexcept;  // src/shm.cpp
  sleep_word w_;
};

struct shm_policy;
struct shm_domain_state;
template <class P>
struct shm_wait_scope;
template <class P>
struct shm_release_scope;

struct shm_policy : native_policy {
  using bucket_lock = shm_bucket_lock;
  // A bucket may be reset (core::reset): recovery from a process that died inside it.
  static constexpr bool resettable = true;
  // Every hold starts its timing afresh (0: not timed), so a start left by a hold whose domain
  // stopped counting meanwhile is never used by a later one.
  static void lock(bucket_lock& l) noexcept {
    l.lock();
    shm_hold_start_ns = stats_on_for(&l) ? stat_now_ns() : 0;
  }
  static void unlock(bucket_lock& l) noexcept {
    if (shm_hold_start_ns) stat_hold_end(&l);
    l.unlock();
  }
  // How a recoverer takes a bucket lock (core::finish_dead_wait, core::finish_dead_release): it
  // tries for a while (yielding) and gives up, so that a bucket whose lock a killed process holds
  // and nobody has taken over yet does not hang the thread that recovers, often a waiter of
  // another bucket.
  static bool try_lock_for_recovery(bucket_lock& l) noexcept;
  // A rebuild of a bucket (core::rebuild), after its lock was taken over from a dead holder or to
  // finish a dead release: the waiters of the bucket, found in the slots rather than through its
  // links, and whether the thread of a release (the slot holding its record) still runs.
  template <class F>
  static void each_waiter(bucket<shm_policy>& b, F&& f);
  static claimer_state release_owner(const release_record<shm_policy>* r, std::uint32_t tag) noexcept;
  // Counted always (a thread-local increment); the release scope zeroes it when a walk begins.
  static void visit(const void*) noexcept { ++shm_release_visits; }

  // Node fields: plain, as natively; a pointer is a rel.
  template <class T>
  struct cell {
    std::conditional_t<std::is_pointer_v<T>, rel<std::remove_pointer_t<T>>, T> v;
    cell(T x) noexcept { set(x); }  // NOLINT: brace-initialised like the native cell
    cell(const cell&) = delete;
    cell& operator=(const cell&) = delete;
    T get() const noexcept {
      if constexpr (std::is_pointer_v<T>)
        return v.load();
      else
        return v;
    }
    void set(T x) noexcept {
      if constexpr (std::is_pointer_v<T>)
        v.store(x);
      else
        v = x;
    }
  };
  template <class T>
  struct link {
    rel<T> r;
    link() = default;
    link(const link&) = delete;  // a copy's distance would name another place
    link& operator=(const link&) = delete;
    T* get() const noexcept { return r.load(); }
    void set(T* x) noexcept { r.store(x); }
  };
  struct key {
    rel<const void> r;
    key() = default;
    key(const key&) = delete;
    key& operator=(const key&) = delete;
    const void* get() const noexcept { return r.load(); }
    void set(const void* w) noexcept { r.store(w); }
  };

  using parker = shm_parker;
  // A domain node's parker is its slot's, which the wait scope gives (parker()); a thread has no
  // parker of its own in a domain. Declared with the domain's type so that code naming it
  // compiles; it aborts if called (src/shm.cpp).
  [[noreturn]] static parker& current_parker() noexcept;
  using wait_scope = shm_wait_scope<shm_policy>;
  using release_scope = shm_release_scope<shm_policy>;
  // The table of the domain whose user area holds `word` (the caller checked that one does).
  struct table_ref;
  static table_ref table_for(const void* word) noexcept;

  // Statistics (shm::domain::enable_stats; src/shm.cpp): counted in the domain's memory, per
  // bucket of its table, by every process while the domain's switch is on. The switch asked is
  // always that of the domain holding the address in hand (the word, the bucket lock), which the
  // operation keeps attached: never another domain's, which another thread may be detaching and
  // unmapping at that moment. One registry lookup and one relaxed load, on slow paths only.
  static bool stats_on_for(const void* p) noexcept;
  static void stat_wait_done(const void* word, std::uint64_t bit, bool exclusive, bool ok,
                             std::chrono::steady_clock::duration waited) noexcept;
  static void stat_lost_race(const void* word) noexcept;
  static void stat_release_done(const void* word, bool handoff) noexcept;
  static void stat_hold_end(const bucket_lock* l) noexcept;
  static std::int64_t stat_now_ns() noexcept;
  static inline thread_local std::int64_t shm_hold_start_ns = 0;
  static inline thread_local std::uint64_t shm_release_visits = 0;
};

// A domain's table as the core sees it (core::bucket_of): the buckets in the mapping, indexed by
// the word's offset from the mapping's base, which is the same in every process.
struct shm_policy::table_ref {
  wait_table<shm_policy>* t;
  const char* base;
  bucket<shm_policy>& bucket_for(const void* word) const noexcept {
    return t->at(t->index_of_key(std::uint64_t(static_cast<const char*>(word) - base)));
  }
};

// A slot: what one slow operation on a domain needs in the mapping. Taken by a wait or a release
// for its length, given back at its end; the storage holds the wait's node, or the release's end
// marker, bookmark and record, constructed when the scope opens and destroyed when it closes,
// exactly as on a stack. `use` says which, once they are built and the parker is prepared (a
// release store), so that a recoverer that finds the owner dead (shm::domain::recover) never
// reads what a previous operation left in the slot: a stale token in the parker would have it
// release a lock its holder still uses.
//
// `owner` names the thread that holds the slot: its process id and thread id (each below 2^22,
// Linux's PID_MAX_LIMIT), a generation bumped by every take, so that a recoverer's compare-and-swap
// fails on a slot freed and taken again since it read it (even by a thread whose ids are reused),
// and a flag set while a recoverer finishes the operation of a dead owner. Free: pid 0.
struct slot_owner {
  static constexpr std::uint64_t id_mask = (std::uint64_t(1) << 22) - 1;
  static constexpr std::uint64_t gen_shift = 44, gen_mask = (std::uint64_t(1) << 19) - 1;
  static constexpr std::uint64_t recovering = std::uint64_t(1) << 63;
  static std::uint32_t pid(std::uint64_t v) noexcept { return std::uint32_t(v & id_mask); }
  static std::uint32_t tid(std::uint64_t v) noexcept { return std::uint32_t((v >> 22) & id_mask); }
  static std::uint64_t gen(std::uint64_t v) noexcept { return (v >> gen_shift) & gen_mask; }
  static std::uint64_t make(std::uint64_t gen, std::uint32_t pid, std::uint32_t tid) noexcept {
    return ((gen & gen_mask) << gen_shift) | ((std::uint64_t(tid) & id_mask) << 22) | (pid & id_mask);
  }
  static bool free(std::uint64_t v) noexcept { return pid(v) == 0 && !(v & recovering); }
};
enum slot_use : std::uint8_t { slot_unused = 0, slot_wait = 1, slot_release = 2 };
struct alignas(64) shm_slot {
  std::atomic<std::uint64_t> owner{0};
  std::atomic<std::uint8_t> use{slot_unused};
  // A wait's bucket (the index of its word's), written before `use` is published: a rebuild finds
  // the bucket's waiters by it (shm_policy::each_waiter).
  std::uint32_t bucket = 0;
  shm_parker parker;  // its own cache line (alignas(64))
  union storage {
    struct wait_area {
      waiter_node<shm_policy> node;
    } wait;
    struct release_area {
      waiter_node<shm_policy> end, mark;
      release_record<shm_policy> rec;
    } release;
    storage() noexcept {}
    ~storage() {}
  } area;
};

// Takes a slot of the domain that holds `word`, for a wait (`for_release` false: only the slots
// outside the release reserve; throws shm::domain_error(slots_exhausted) when none is free, before
// the caller has touched the word) or a release (any slot; a release never fails: it yields
// until a slot frees, which every release does within its bounded walk). Gives it back.
shm_slot& shm_take_slot(const void* word, bool for_release);
void shm_give_slot(shm_slot& s) noexcept;

// Whether the thread a slot's owner word names has died (never for liveness unknown).
bool shm_owner_gone(std::uint64_t owner) noexcept;
// The index of the bucket of `word` in its domain's table.
std::uint32_t shm_bucket_index(const void* word) noexcept;
// The slots of the domain whose table holds bucket `b`, how many, and b's index.
shm_slot* shm_slots_of(const bucket<shm_policy>* b, std::uint32_t& n, std::uint32_t& index) noexcept;

template <class F>
void shm_policy::each_waiter(bucket<shm_policy>& b, F&& f) {
  std::uint32_t n = 0, bi = 0;
  shm_slot* const slots = shm_slots_of(&b, n, bi);
  for (std::uint32_t i = 0; i < n; ++i) {
    shm_slot& s = slots[i];
    // A consistent look at a slot: its owner's generation before and after the reads of its use,
    // bucket, token and node state. A slot given back and taken again meanwhile (its wait ended:
    // delivered, or idle) has another generation, and is skipped. What the look finds is then
    // stable while the caller holds the bucket lock, for every node the rebuild acts on: a
    // queued node, or a claimed one whose release is dead or has not decided, changes only
    // under that lock; a claimed one whose live release has decided may be delivered at any
    // moment, but the rebuild leaves it.
    const std::uint64_t g = s.owner.load(std::memory_order_acquire);
    if (slot_owner::free(g) || s.use.load(std::memory_order_acquire) != slot_wait || s.bucket != bi) continue;
    // Acquire: pairs with unpark's release (a token), or with prepare's (none): in both cases
    // the node's state as its waiter left it is seen.
    const std::uint32_t t = s.parker.word.value.load(std::memory_order_acquire) & token_mask;
    waiter_node<shm_policy>& node = s.area.wait.node;
    const node_state st = t ? node_state::idle : node.state.get();  // delivered: not needed
    // The reads above before this one: a release RMW that stores nothing (a recovery path), where
    // a fence would do, since TSan (g++ -Werror=tsan) supports no atomic_thread_fence.
    if (s.owner.fetch_add(0, std::memory_order_acq_rel) != g) continue;
    f(node, t, st, shm_owner_gone(g));
  }
}

template <class P>
struct shm_wait_scope {
  shm_slot& s;
  explicit shm_wait_scope(const void* word) : s(shm_take_slot(word, false)) {
    s.bucket = shm_bucket_index(word);
    new (&s.area.wait) decltype(s.area.wait);           // idle, no key: nothing to finish yet
    s.parker.prepare();                                 // no token of the slot's previous wait
    s.use.store(slot_wait, std::memory_order_release);  // after the node and the prepare
  }
  shm_wait_scope(const shm_wait_scope&) = delete;
  shm_wait_scope& operator=(const shm_wait_scope&) = delete;
  ~shm_wait_scope() {
    // The wait has returned: whatever it holds now (a lock) is its caller's, never finished for it.
    s.use.store(slot_unused, std::memory_order_relaxed);
    std::destroy_at(&s.area.wait.node);
    shm_give_slot(s);
  }
  waiter_node<P>& node() noexcept { return s.area.wait.node; }
  shm_parker& parker() noexcept { return s.parker; }
};

template <class P>
struct shm_release_scope {
  shm_slot& s;
  explicit shm_release_scope(const void* word) : s(shm_take_slot(word, true)) {
    new (&s.area.release) decltype(s.area.release);
    // Which release of this slot this is: the generation its take gave the owner word.
    s.area.release.rec.tag = std::uint32_t(slot_owner::gen(s.owner.load(std::memory_order_relaxed)));
    shm_policy::shm_release_visits = 0;  // a walk begins: its visits count from here
  }
  // The core has filled the record in: from now on a recoverer that finds the thread dead
  // finishes the release (core::finish_dead_release); before, it finds nothing begun.
  void ready() noexcept { s.use.store(slot_release, std::memory_order_release); }
  shm_release_scope(const shm_release_scope&) = delete;
  shm_release_scope& operator=(const shm_release_scope&) = delete;
  ~shm_release_scope() {
    s.use.store(slot_unused, std::memory_order_relaxed);
    std::destroy_at(&s.area.release.rec);
    std::destroy_at(&s.area.release.mark);
    std::destroy_at(&s.area.release.end);
    shm_give_slot(s);
  }
  waiter_node<P>& end() noexcept { return s.area.release.end; }
  waiter_node<P>& mark() noexcept { return s.area.release.mark; }
  release_record<P>& rec() noexcept { return s.area.release.rec; }
};

}  // namespace pagewait::detail
