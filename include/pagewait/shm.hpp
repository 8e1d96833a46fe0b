// pagewait/shm.hpp — bits of words in memory that several processes map: a wait domain.
//
// The functions of pagewait.hpp wait and wake within one process (their table and parkers are
// that process's). A domain puts what waiting needs into the shared memory itself, so that a
// word in a MAP_SHARED mapping (shm_open, memfd_create, a file) can be locked, waited on and
// released by any process that maps it, each at its own address:
//
//   // One process formats the memory (once), the others attach to it.
//   void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
//   pagewait::shm::domain d = pagewait::shm::domain::create(base, size);   // or ::attach
//   auto* words = static_cast<std::atomic<std::uint32_t>*>(d.user_area());
//   d.lock_bit(words[7], 1u);  ...  d.unlock_bit(words[7], 1u);
//
// The memory holds a header (magic, layout version, ABI fingerprint, sizes), the buckets, the
// slots (one per slow operation in progress, in any process: a waiter's node and its parker, a
// release's place holders) and then the user area, where the words live. Same protocol as
// pagewait.hpp (detail/core.hpp, run by detail/shm_policy.hpp), same guarantees (CONTRACT §3),
// same cost uncontended: one RMW on the word, nothing in the domain touched. docs/SHARED.md is
// the manual: layout, limits, errors, what a dying process leaves behind.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>

#include "pagewait/bits.hpp"
#include "pagewait/detail/core.hpp"
#include "pagewait/detail/deadline.hpp"
#include "pagewait/detail/shm_policy.hpp"
#include "pagewait/detail/tsan.hpp"
#include "pagewait/protocol.hpp"
#include "pagewait/stats.hpp"

namespace pagewait::shm {
class domain;
}
namespace pagewait::detail {
template <word_type W>
using shm_core = core<shm_policy, release_protocol::atomic_clear, W>;
// Resets bucket `i` of the domain's table (core::reset): what recovery from a process that died
// inside the bucket will do, run here by a live thread of any process, for tests. With every
// process alive it only delays releases. Returns how many waiters the bucket held.
// Throws std::out_of_range for a bucket the table has not.
std::size_t shm_reset_bucket(const shm::domain& d, std::size_t i);
// For tests: the lock of bucket i (to hold it, as a slow operation does, and die holding it).
// Throws std::out_of_range for a bucket the table has not.
shm_bucket_lock& shm_bucket_lock_of(const shm::domain& d, std::size_t i);
// For a supervisor that looks at a process it has stopped with SIGSTOP (tests, `pagewait demo
// --processes --kill`): waits (up to a second) until /proc shows `pid` stopped, then says whether
// it is blocked in a futex wait (or its restart after a stop) on the parker of one of the
// domain's slots holding a wait of that process, and if so that wait's word and bit. It looks
// at the process's main thread only. The process maps the domain `shift` bytes above this
// handle's mapping (0: at the same address, as a forked child that did not map it again). A process parked so
// is inside that wait: it holds nothing the wait would give it (its other locks are its own business).
struct shm_parked_wait {
  bool parked = false;
  bool exclusive = false;  // a lock wait (else a wait for the bit to clear)
  const void* word = nullptr;
  std::uint64_t bit = 0;
};
shm_parked_wait shm_parked(const shm::domain& d, int pid, std::ptrdiff_t shift = 0);
}  // namespace pagewait::detail
// The slow paths, compiled once in the library.
extern template struct pagewait::detail::core<pagewait::detail::shm_policy,
                                              pagewait::release_protocol::atomic_clear, std::uint32_t>;
extern template struct pagewait::detail::core<pagewait::detail::shm_policy,
                                              pagewait::release_protocol::atomic_clear, std::uint64_t>;

namespace pagewait::shm {

// How often a parked waiter of a domain wakes to recover the waits of dead processes.
inline constexpr std::chrono::milliseconds recovery_poll = detail::shm_parker::recovery_poll;

enum class errc {
  bad_magic = 1,    // attach: the memory was never formatted by create (or was overwritten)
  layout_version,   // attach: formatted by a pagewait with another layout
  abi_mismatch,     // attach: same layout version, but another build's structure sizes
  not_ready,        // attach: create has not finished formatting it
  too_small,        // create/attach: the memory cannot hold the domain (or its header says more)
  misaligned,       // create/attach: base is not aligned to 64 bytes
  bad_options,      // create: buckets, slots or the release reserve out of range
  word_outside,     // an operation on a word that is not in this domain's user area
  slots_exhausted,  // a wait or lock found every slot taken (options::slots)
  unsupported,      // this build has no shared futexes (not Linux, or PAGEWAIT_PORTABLE_PARKING)
  overlaps,         // create/attach: the memory overlaps a domain this process has attached
  too_many,         // create/attach: this process has 64 domains attached already
  pid_namespace,    // attach: the domain was created in another PID namespace; recover: this
                    // process was forked into another one after its parent attached
};

// What went wrong, and which errc. Thrown before the word (or the memory, for create/attach)
// is changed.
class domain_error : public std::runtime_error {
 public:
  domain_error(errc c, const std::string& what) : std::runtime_error(what), code_(c) {}
  errc code() const noexcept { return code_; }

 private:
  errc code_;
};

// What domain::recover() did: the slots it found held by threads that no longer run (their
// processes died), and what became of each. docs/SHARED.md, "When a process dies", says what is
// recovered and what is not.
struct recovery_report {
  std::size_t dead_slots = 0;       // slots whose thread had died (each counted below once)
  std::size_t waits_finished = 0;   // dead waits taken out of the table, their slots freed
  std::size_t locks_passed_on = 0;  // of them: locks handed to a dead waiter, released for it
  // Dead waits left for a later call: a release still holds the node, or its bucket lock stayed
  // busy for a millisecond.
  std::size_t waits_pending = 0;
  // Releases killed in progress: finished for them (what they had decided delivered, or, killed
  // before they decided, made again), their slots freed.
  std::size_t releases_finished = 0;
  // Dead releases left for a later call: their bucket lock stayed busy.
  std::size_t releases_pending = 0;
  // Bucket locks held by a thread that died: taken over, and their buckets rebuilt from the slots.
  std::size_t buckets_taken_over = 0;
};

struct options {
  std::uint32_t buckets = 256;  // wait-table buckets (rounded up to a power of two, 1..65536)
  // Slow operations that can be in progress at once, over every process (a waiter for its whole
  // wait, a release for its walk). `release_reserve` of them are kept for releases, so that an
  // unlock never waits for a waiter to leave: a release takes a reserved slot, else any free one,
  // else yields until one is free. A wait or lock that would sleep takes an unreserved slot, or
  // throws slots_exhausted: size `slots` for the waiters you expect plus the slow releases in
  // progress at once beyond the reserve.
  std::uint32_t slots = 256;          // 2..65536
  std::uint32_t release_reserve = 8;  // 1..slots-1
};

class domain {
 public:
  // 2: the statistics area; 3: a bucket's reset epoch and a record's word width (core::reset);
  // 4: slots name their process, a node its word's width, the header its PID namespace (recover);
  // 5: a bucket lock holds its holder's thread id; 6: a node's designated-waker flag; 7: a node's
  // claimer, a record's kind and decision, a slot's bucket (a bucket rebuilt from the slots)
  static constexpr std::uint32_t layout_version = 7;

  // The bytes a domain needs with a user area of `user_bytes`. Throws domain_error(bad_options)
  // as create does, and std::invalid_argument if the total does not fit in a size_t.
  static std::size_t bytes_needed(std::size_t user_bytes, const options& o = {});

  // Formats [base, base + size) as a new domain (its previous contents are overwritten) and
  // attaches this process to it. Other processes then attach(). Throws domain_error (too_small,
  // misaligned, bad_options, unsupported, overlaps, too_many), or std::invalid_argument for a
  // null base, without writing anything.
  static domain create(void* base, std::size_t size, const options& o = {});
  // Attaches this process to the domain that create formatted at [base, base + size) (mapped here
  // at any address). Throws domain_error (bad_magic, layout_version, abi_mismatch, not_ready,
  // too_small, misaligned, unsupported, overlaps, too_many, pid_namespace), or
  // std::invalid_argument for a null base; writes nothing.
  static domain attach(void* base, std::size_t size);

  domain(domain&& o) noexcept : s_(o.s_), user_(o.user_), end_(o.end_) {
    o.s_ = nullptr;
    o.user_ = o.end_ = nullptr;  // a moved-from handle contains no word
  }
  domain& operator=(domain&& o) noexcept;
  domain(const domain&) = delete;
  domain& operator=(const domain&) = delete;
  // Detaches this process's handle (the memory and the other processes' handles are untouched).
  // No thread of this process may be in an operation on the domain, as for destroying a mutex.
  ~domain();

  // Where the words go: from the first 64-byte boundary after the domain's structures to the end.
  void* user_area() const noexcept { return user_; }
  std::size_t user_size() const noexcept { return std::size_t(end_ - user_); }
  bool contains(const void* p, std::size_t n) const noexcept {
    const char* c = static_cast<const char*>(p);
    return c >= user_ && c <= end_ && n <= std::size_t(end_ - c);
  }
  const options& settings() const noexcept;

  // ---- contention statistics (pagewait/stats.hpp's counters, kept in the domain) ----
  // Counted in the shared memory, per bucket of the domain's table, by every attached process
  // while the domain's switch is on: one switch for all processes, off when created. Costs
  // nothing on the fast paths, on or off; on slow paths, while any domain this process attached
  // is counting, what pagewait.hpp's statistics cost. get_stats() gives the domain's buckets (by
  // index in its table: bucket_of tells a word's), their total, and the futex wake calls and
  // sleeps of the domain's parkers; the contention hook of stats.hpp is not called for domains.
  void enable_stats(bool on = true) noexcept;
  bool stats_enabled() const noexcept;
  stats_snapshot get_stats() const;
  void reset_stats() noexcept;
  // ---- processes that die (docs/SHARED.md, "When a process dies") ----
  // Finishes the waits of processes that were killed while they waited: a dead waiter leaves the
  // queue, and a lock handed to it (or a wake-up to race for one) is passed on as it would have
  // been, so that the living do not wait for it. Every waiter of the domain does this on its own
  // while it sleeps, every shm::recovery_poll, and when its timed wait gives up (at most once per
  // period for the domain); a program that learns of a death sooner (waitpid), or whose threads
  // never sleep in a wait, calls it. First it takes over the bucket locks whose holder died and
  // rebuilds their buckets from the slots; then it finishes dead waits, and dead releases (what
  // they had decided delivered; one killed before it decided made again). A lock a process
  // returned with stays held when it dies. May be called by
  // any thread of any attached process, at any time. Rethrows what a release made for a dead
  // waiter threw (usage_error: its bit was clear, changed by somebody not holding it). Throws
  // domain_error(pid_namespace) in a process forked into another PID namespace than the domain's
  // (it cannot tell who died), before it looks at any slot.
  recovery_report recover();
  // The slots that threads of process `pid` (an id in this process's PID namespace) hold: its
  // waits and slow releases in progress, or, once it has died, those that no recovery has finished
  // yet. For what a dead waiter held beside its wait (a reference to the object whose bit it waited
  // for): 0, once the process is gone, means every wait and release it was in is finished — a lock
  // handed to it passed on, its nodes out of every queue — so that may be dropped now; before,
  // an unlock could still hand it the lock. Counts only (call recover() to finish them). A new
  // process that reuses the pid is counted too, and so is every slot of a process outside the
  // domain's PID namespace (its ids mean nothing here): a later 0, never an early one. Throws
  // std::invalid_argument for a pid that cannot name a process (below 1, above 4194303),
  // std::logic_error on a moved-from handle, and domain_error(pid_namespace) as recover() does.
  std::size_t slots_held_by(int pid) const;

  // The bucket of the domain's table that `word`'s waiters use (the same in every process).
  // Throws domain_error(word_outside) if the word is not in the user area.
  std::size_t bucket_of(const void* word) const;

  // ---- the operations of pagewait.hpp, on words in this domain's user area ----
  // Same semantics, same timeout rules, same errors (usage_error, std::invalid_argument for a
  // bad bit or a NaN timeout), plus domain_error(word_outside) for a word not in the user area
  // and domain_error(slots_exhausted) from a wait or lock that would sleep with no slot free. Each
  // is thrown before the word is touched.

  template <word_type W>
  bool try_lock_bit(std::atomic<W>& word, std::type_identity_t<W> bit) {
    check(word, bit);
    detail::tsan::acquiring t(&word);
    return t.locked(detail::shm_core<W>::try_lock(word, bit));
  }
  template <word_type W>
  void lock_bit(std::atomic<W>& word, std::type_identity_t<W> bit) {
    check(word, bit);
    detail::tsan::acquiring t(&word);
    detail::shm_core<W>::lock(word, bit);
    t.locked(true);
  }
  template <word_type W, class Clock, class Duration>
  bool try_lock_bit_until(std::atomic<W>& word, std::type_identity_t<W> bit,
                          const std::chrono::time_point<Clock, Duration>& abs) {
    check(word, bit);
    detail::deadline::check(abs);
    detail::tsan::acquiring t(&word);
    if (detail::shm_core<W>::try_lock(word, bit)) return t.locked(true);
    return t.locked(detail::shm_core<W>::lock_slow(word, bit, detail::deadline::until(abs), nullptr));
  }
  template <word_type W, class Rep, class Period>
  bool try_lock_bit_for(std::atomic<W>& word, std::type_identity_t<W> bit,
                        const std::chrono::duration<Rep, Period>& rel) {
    check(word, bit);
    detail::deadline::check(rel);
    detail::tsan::acquiring t(&word);
    if (detail::shm_core<W>::try_lock(word, bit)) return t.locked(true);
    return t.locked(detail::shm_core<W>::lock_slow(word, bit, detail::deadline::after(rel), nullptr));
  }
  template <word_type W>
  bool lock_bit(std::atomic<W>& word, std::type_identity_t<W> bit, std::stop_token stop) {
    check(word, bit);
    detail::tsan::acquiring t(&word);
    if (detail::shm_core<W>::try_lock(word, bit)) return t.locked(true);
    return t.locked(detail::shm_core<W>::lock_slow(word, bit, detail::deadline::never(), &stop));
  }
  template <word_type W>
  void unlock_bit(std::atomic<W>& word, std::type_identity_t<W> bit) {
    check(word, bit);
    detail::tsan::releasing t(&word);
    detail::shm_core<W>::release(word, bit, detail::release_kind::unlock);
  }
  template <word_type W>
  void clear_bit_and_wake(std::atomic<W>& word, std::type_identity_t<W> bit) {
    check(word, bit);
    detail::tsan::releasing t(&word);
    detail::shm_core<W>::release(word, bit, detail::release_kind::event);
  }
  template <word_type W>
  void wait_bit_clear(std::atomic<W>& word, std::type_identity_t<W> bit) {
    check(word, bit);
    detail::tsan::acquiring t(&word);
    t.waited(detail::shm_core<W>::wait_clear(word, bit, detail::deadline::never(), nullptr));
  }
  template <word_type W, class Clock, class Duration>
  bool wait_bit_clear_until(std::atomic<W>& word, std::type_identity_t<W> bit,
                            const std::chrono::time_point<Clock, Duration>& abs) {
    check(word, bit);
    const detail::deadline dl = detail::deadline::until(abs);
    detail::tsan::acquiring t(&word);
    return t.waited(detail::shm_core<W>::wait_clear(word, bit, dl, nullptr));
  }
  template <word_type W, class Rep, class Period>
  bool wait_bit_clear_for(std::atomic<W>& word, std::type_identity_t<W> bit,
                          const std::chrono::duration<Rep, Period>& rel) {
    check(word, bit);
    const detail::deadline dl = detail::deadline::after(rel);
    detail::tsan::acquiring t(&word);
    return t.waited(detail::shm_core<W>::wait_clear(word, bit, dl, nullptr));
  }
  template <word_type W>
  bool wait_bit_clear(std::atomic<W>& word, std::type_identity_t<W> bit, std::stop_token stop) {
    check(word, bit);
    detail::tsan::acquiring t(&word);
    return t.waited(detail::shm_core<W>::wait_clear(word, bit, detail::deadline::never(), &stop));
  }

 private:
  friend std::size_t detail::shm_reset_bucket(const domain& d, std::size_t i);
  friend detail::shm_bucket_lock& detail::shm_bucket_lock_of(const domain& d, std::size_t i);
  friend detail::shm_parked_wait detail::shm_parked(const domain& d, int pid, std::ptrdiff_t shift);
  explicit domain(detail::shm_domain_state* s) noexcept;
  [[noreturn]] static void throw_outside(const void* word, std::size_t size, const domain* d);
  // The word lies in the user area, whole and aligned; the bit is one bit, not the waiters bit.
  // A few compares: no memory access but the handle's two bounds.
  template <word_type W>
  void check(const std::atomic<W>& word, W bit) const {
    detail::check_bit(bit);
    const char* c = reinterpret_cast<const char*>(&word);
    if (c < user_ || c + sizeof(W) > end_ || (reinterpret_cast<std::uintptr_t>(c) & (sizeof(W) - 1)))
        [[unlikely]]
      throw_outside(&word, sizeof(W), this);
  }

  detail::shm_domain_state* s_;
  char* user_;
  char* end_;
};

}  // namespace pagewait::shm
