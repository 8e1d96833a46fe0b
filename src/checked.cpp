// src/checked.cpp — the checked mode (pagewait/checked.hpp).
//
// The handler, the poll interval and thread ids exist in every build (a program may set a
// handler whether or not its library is checked). The checks themselves are compiled only into
// a checked library (PAGEWAIT_CHECKED=1): an unchecked library has none of these symbols, so a
// checked program cannot link against it by mistake.
//
// What is kept, per word address and bit, in a side table sharded by address:
//   owners     the thread that holds a lock bit (from a successful lock to the start of its
//              release), or `disowned` (disown_bit: any thread may release it);
//   releasing  the thread whose release of a bit is in progress, from the call's start to the
//              moment, under the bucket lock, just before its last touch of the word (the core
//              calls checked_release_final there). Removed before the last touch, so that a thread
//              that frees the object and reuses its memory the instant the bit clears never
//              meets a stale entry.
// Lock order: a bucket lock, then a shard's mutex (checked_release_final); never the reverse.
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "at_fork.hpp"
#include "pagewait/pagewait.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define PAGEWAIT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PAGEWAIT_ASAN 1
#endif
#endif
#ifndef PAGEWAIT_ASAN
#define PAGEWAIT_ASAN 0
#endif
#if PAGEWAIT_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace pagewait {

namespace {

[[maybe_unused]] void default_handler(const violation& v) noexcept {
  std::fprintf(stderr, "%s\n", v.message);
  std::fflush(stderr);
  std::abort();
}

std::atomic<violation_handler> the_handler{nullptr};
std::atomic<long long> poll_ms{100};
std::atomic<std::uint64_t> next_thread_id{0};

}  // namespace

const char* to_string(violation_kind k) noexcept {
  switch (k) {
    case violation_kind::relock:
      return "relock";
    case violation_kind::unlock_not_owner:
      return "unlock_not_owner";
    case violation_kind::concurrent_release:
      return "concurrent_release";
    case violation_kind::bit_cleared_by_hand:
      return "bit_cleared_by_hand";
    case violation_kind::word_overwritten:
      return "word_overwritten";
    case violation_kind::word_freed:
      return "word_freed";
  }
  return "unknown";
}

violation_handler set_violation_handler(violation_handler h) noexcept {
  return the_handler.exchange(h, std::memory_order_acq_rel);
}

void set_checked_poll(std::chrono::milliseconds interval) {
  if (interval < std::chrono::milliseconds(1) || interval > std::chrono::hours(1))
    throw std::invalid_argument("pagewait: checked poll interval must be between 1 ms and 1 hour");
  poll_ms.store(interval.count(), std::memory_order_relaxed);
}

std::chrono::milliseconds get_checked_poll() noexcept {
  return std::chrono::milliseconds(poll_ms.load(std::memory_order_relaxed));
}

std::uint64_t checked_thread_id() noexcept {
  // A fork child's thread keeps its parent thread's id: it is the same thread of control, and it
  // still holds the bits that one held (pagewait.hpp, "fork()").
  thread_local std::uint64_t id = 0;
  if (id == 0) id = next_thread_id.fetch_add(1, std::memory_order_relaxed) + 1;
  return id;
}

namespace detail {

std::chrono::steady_clock::duration native_policy::checked_poll() noexcept { return get_checked_poll(); }

#if PAGEWAIT_CHECKED

namespace {

constexpr std::uint64_t disowned = ~std::uint64_t(0);

struct key {
  std::uintptr_t word;
  std::uint64_t bit;
  bool operator==(const key&) const = default;
};
struct key_hash {
  std::size_t operator()(const key& k) const noexcept {
    return std::size_t((k.word * 0x9E3779B97F4A7C15ull) ^ (k.bit * 0xC2B2AE3D27D4EB4Full));
  }
};

struct alignas(64) shard {
  std::mutex m;
  std::unordered_map<key, std::uint64_t, key_hash> owners;
  std::unordered_map<key, std::uint64_t, key_hash> releasing;
  // Designated wakers in flight (native_policy::designated_begin), by (word, bit). A fixed
  // table: its entries change under a bucket lock, where nothing is allocated or freed. Past its
  // size, one count stands for any (word, bit) of the shard (the check is then looser, never
  // wrong).
  struct designation {
    const void* word = nullptr;
    std::uint64_t bit = 0;
    unsigned count = 0;
  };
  designation designated[8];
  unsigned designated_overflow = 0;
};
// 16: fork() holds them all across the fork, and ThreadSanitizer tracks at most 64 locks held by one
// thread (its deadlock detector aborts beyond that).
constexpr unsigned shard_bits = 4;
constexpr std::size_t shard_count = std::size_t(1) << shard_bits;
// Immortal, as the wait table is: threads may lock and release after main returns.
union immortal_shards {
  shard s[shard_count];
  immortal_shards() : s() {}
  ~immortal_shards() {}
};
immortal_shards& shards() {
  static immortal_shards* const all = new immortal_shards;
  return *all;
}
shard& shard_of(const void* word) {
  const auto a = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(word));
  return shards().s[(a * 0x9E3779B97F4A7C15ull) >> (64 - shard_bits)];
}
key key_of(const void* word, std::uint64_t bit) { return {reinterpret_cast<std::uintptr_t>(word), bit}; }

// What a check found, reported once no lock of the library is held.
struct finding {
  bool any = false;
  violation_kind kind{};
  const void* word = nullptr;
  std::uint64_t bit = 0;
  std::uint64_t other = 0;
  std::size_t waiters = 0;
  const char* doing = "";  // what the reporting thread was doing
};

void report(const finding& f) noexcept {
  if (!f.any) return;
  const auto me = static_cast<unsigned long long>(checked_thread_id());
  const auto bit = static_cast<unsigned long long>(f.bit);
  const auto other = static_cast<unsigned long long>(f.other);
  char msg[512];
  switch (f.kind) {
    case violation_kind::relock:
      std::snprintf(msg, sizeof msg,
                    "pagewait checked: relock: thread %llu %s bit 0x%llx of the word at %p, which it holds "
                    "itself (a blocking call would wait for itself forever)",
                    me, f.doing, bit, f.word);
      break;
    case violation_kind::unlock_not_owner:
      if (f.other)
        std::snprintf(msg, sizeof msg,
                      "pagewait checked: unlock_not_owner: thread %llu %s bit 0x%llx of the word at %p, "
                      "which thread %llu holds (hand a lock to another thread with disown_bit)",
                      me, f.doing, bit, f.word, other);
      else
        std::snprintf(msg, sizeof msg,
                      "pagewait checked: unlock_not_owner: thread %llu %s bit 0x%llx of the word at %p, "
                      "which no thread locked through pagewait (set by hand, or already released?)",
                      me, f.doing, bit, f.word);
      break;
    case violation_kind::concurrent_release:
      if (f.other)
        std::snprintf(msg, sizeof msg,
                      "pagewait checked: concurrent_release: thread %llu releases bit 0x%llx of the word "
                      "at %p while thread %llu is releasing it",
                      me, bit, f.word, other);
      else
        std::snprintf(msg, sizeof msg,
                      "pagewait checked: concurrent_release: thread %llu found bit 0x%llx of the word at "
                      "%p already clear as its release of it ended (released twice at once)",
                      me, bit, f.word);
      break;
    case violation_kind::bit_cleared_by_hand:
      std::snprintf(msg, sizeof msg,
                    "pagewait checked: bit_cleared_by_hand: %zu waiter(s) queued on bit 0x%llx of the word "
                    "at %p, whose %s is clear: changed without pagewait (release bits with unlock_bit or "
                    "clear_bit_and_wake), so they are never woken (found by thread %llu, %s)",
                    f.waiters, bit, f.word, f.other ? "waiters bit" : "bit", me, f.doing);
      break;
    case violation_kind::word_overwritten:
      std::snprintf(msg, sizeof msg,
                    "pagewait checked: word_overwritten: %zu waiter(s) queued on bit 0x%llx of the word at "
                    "%p, whose bit and waiters bit are both clear: the object was freed and its memory "
                    "reused, or the word assigned, while they waited (found by thread %llu, %s)",
                    f.waiters, bit, f.word, me, f.doing);
      break;
    case violation_kind::word_freed:
      std::snprintf(msg, sizeof msg,
                    "pagewait checked: word_freed: %zu waiter(s) queued on bit 0x%llx of the word at %p, "
                    "whose memory is %s: the object was destroyed while they waited (found by thread "
                    "%llu, %s)",
                    f.waiters, bit, f.word, f.other ? "unmapped" : "freed", me, f.doing);
      break;
  }
  violation v{
      f.kind,
      f.word,
      f.bit,
      checked_thread_id(),
      f.kind == violation_kind::word_freed || f.kind == violation_kind::bit_cleared_by_hand ? 0 : f.other,
      f.waiters,
      msg};
  violation_handler h = the_handler.load(std::memory_order_acquire);
  (h ? h : default_handler)(v);
}

// Whether the word's memory can be read. A queued waiter's word is alive in a correct program
// (its bit is set); the waiter's poll asks first, so that a program that freed it gets a report
// rather than a fault. 0: readable; 1: unmapped; 2: freed (AddressSanitizer's poison).
int probe(const void* word, std::size_t size) noexcept {
#if PAGEWAIT_ASAN
  if (__asan_region_is_poisoned(const_cast<void*>(word), size)) return 2;
#endif
  // process_vm_readv on this process fails with EFAULT where a load would fault. Where the call
  // is not allowed (seccomp, old kernels) the load is made without the probe.
  unsigned char buf[8];
  iovec local{buf, size};
  iovec remote{const_cast<void*>(word), size};
  if (::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) < 0 && errno == EFAULT) return 1;
  return 0;
}

// Whether a designated waker of (word, bit) has not raced yet: the lock waiters of (word, bit)
// may then be queued with the waiters bit (and the bit) clear.
bool designation_in_flight(const void* word, std::uint64_t bit) {
  shard& s = shard_of(word);
  std::lock_guard<std::mutex> g(s.m);
  if (s.designated_overflow) return true;
  for (const auto& d : s.designated)
    if (d.count && d.word == word && d.bit == bit) return true;
  return false;
}

// The queue check, bucket lock held, `v` the word's value. While any waiter of the word is
// queued, its waiters bit is set (wait_table.hpp, [I4]). A queued wait_bit_clear waiter also
// has its bit set: every release that clears the bit claims all of them in the hold in which it
// clears it. A queued lock waiter may legitimately see its bit clear: an unlock wakes only the
// first lock waiter to race and leaves the others queued, for the next unlock. So a lock bit
// cleared by hand is found only through the waiters bit or a wait_bit_clear waiter (or as an
// unlock of a bit nobody holds). The first bit found in breach is reported, with the number of
// its waiters. Lock waiters behind a designated waker of their (word, bit) may see the waiters
// bit clear too (CONTRACT §3.4), until its race sets it again: not a breach.
template <class W>
finding scan(bucket<native_policy>& b, const void* word, W v, const char* doing) {
  finding f;
  const bool wb = (v & waiters_bit<W>) != 0;
  for (waiter_node<native_policy>* n = b.head.get(); n; n = n->next.get()) {
    if (n->kind == node_kind::bookmark || n->word.get() != word) continue;
    // CONTRACT §3.4: a lock waiter behind a designated waker of its (word, bit), whose race sets
    // the waiters bit again. The race takes no bucket lock: one made after `v` was read leaves
    // the table with the waiters bit set, so after the table the word is read again (nothing can
    // clear that bit while this bucket lock is held; a designation begins only under it).
    if (!wb && !f.any && n->kind == node_kind::exclusive &&
        (designation_in_flight(word, n->bit) ||
         (static_cast<const std::atomic<W>*>(word)->load(std::memory_order_relaxed) & waiters_bit<W>)))
      continue;
    const bool waiters = wb;
    const bool bit = n->kind == node_kind::exclusive || (v & W(n->bit)) != 0;
    if (f.any) {
      if (n->bit == f.bit) ++f.waiters;
      continue;
    }
    if (waiters && bit) continue;
    f.any = true;
    f.word = word;
    f.bit = n->bit;
    f.waiters = 1;
    f.doing = doing;
    if (!waiters && !(v & W(n->bit))) {
      f.kind = violation_kind::word_overwritten;
    } else {
      f.kind = violation_kind::bit_cleared_by_hand;
      f.other = waiters ? 0 : 1;  // which one is clear: 0 the bit, 1 the waiters bit
    }
  }
  return f;
}

// The queue check at the start of an operation on a word the caller says is alive.
template <class W>
void inspect(std::atomic<W>& word, const char* doing) {
  bucket<native_policy>& b = native_policy::table().bucket_for(&word);
  native_policy::lock(b.lock);
  const finding f = scan(b, &word, word.load(std::memory_order_relaxed), doing);
  native_policy::unlock(b.lock);
  report(f);
}

// This thread's findings from inside the core (bucket lock held), reported by checked_flush.
thread_local finding pending;
// The release entry taken out under the bucket lock, freed by checked_flush once the lock is
// dropped: no memory is freed under a bucket lock.
thread_local std::unordered_map<key, std::uint64_t, key_hash>::node_type pending_node;
// Set when recording an owner or a release ran out of memory: from then on a missing entry
// proves nothing, and unlocks of bits without an owner are not reported.
std::atomic<bool> records_lost{false};

}  // namespace

template <class W>
void native_policy::checked_queued(const std::atomic<W>* word, bucket<native_policy>& b) noexcept {
  finding f;
  if (const int p = probe(word, sizeof(W))) {
    f.any = true;
    f.kind = violation_kind::word_freed;
    f.word = word;
    f.other = p == 1;
    f.doing = "while waiting";
    // Which bit: this waiter's is among the word's queued ones; count them all under the first.
    for (waiter_node<native_policy>* n = b.head.get(); n; n = n->next.get()) {
      if (n->kind == node_kind::bookmark || n->word.get() != word) continue;
      if (!f.bit) f.bit = n->bit;
      if (n->bit == f.bit) ++f.waiters;
    }
  } else {
    f = scan(b, word, word->load(std::memory_order_relaxed), "while waiting");
  }
  if (f.any && !pending.any) pending = f;
}

template <class W>
void native_policy::checked_release_final(const std::atomic<W>& word, W bit) noexcept {
  // The word is alive: this release's bit is set, unless another release of it ran meanwhile.
  if (!(word.load(std::memory_order_relaxed) & bit) && !pending.any) {
    pending.any = true;
    pending.kind = violation_kind::concurrent_release;
    pending.word = &word;
    pending.bit = bit;
    pending.other = 0;
  }
  shard& s = shard_of(&word);
  std::lock_guard<std::mutex> g(s.m);
  auto it = s.releasing.find(key_of(&word, bit));
  if (it != s.releasing.end() && it->second == checked_thread_id()) pending_node = s.releasing.extract(it);
}

void native_policy::checked_designated(const void* word, std::uint64_t bit, bool begin) noexcept {
  shard& s = shard_of(word);
  std::lock_guard<std::mutex> g(s.m);
  shard::designation* free_entry = nullptr;
  for (auto& d : s.designated) {
    if (d.count && d.word == word && d.bit == bit) {
      d.count += begin ? 1u : unsigned(-1);
      return;
    }
    if (!d.count && !free_entry) free_entry = &d;
  }
  if (!begin) {
    --s.designated_overflow;  // its begin found the table full
  } else if (free_entry) {
    *free_entry = {word, bit, 1};
  } else {
    ++s.designated_overflow;
  }
}

void native_policy::checked_flush() noexcept {
  pending_node = {};
  if (!pending.any) return;
  const finding f = pending;
  pending = finding{};
  report(f);
}

template void native_policy::checked_queued(const std::atomic<std::uint32_t>*,
                                            bucket<native_policy>&) noexcept;
template void native_policy::checked_queued(const std::atomic<std::uint64_t>*,
                                            bucket<native_policy>&) noexcept;
template void native_policy::checked_release_final(const std::atomic<std::uint32_t>&, std::uint32_t) noexcept;
template void native_policy::checked_release_final(const std::atomic<std::uint64_t>&, std::uint64_t) noexcept;

namespace checked {

template <word_type W>
bool lock(std::atomic<W>& word, W bit, lock_how how, const deadline& dl, const std::stop_token* stop) {
  const char* doing = how == lock_how::try_once ? "try-locks" : "locks";
  inspect(word, doing);
  const std::uint64_t me = checked_thread_id();
  shard& s = shard_of(&word);
  finding f;
  {
    std::lock_guard<std::mutex> g(s.m);
    auto it = s.owners.find(key_of(&word, bit));
    if (it != s.owners.end() && it->second == me) {
      // A stale entry (the object was destroyed while locked, and its memory is a new word
      // now) has the bit clear: forget it.
      if (word.load(std::memory_order_relaxed) & bit)
        f = {true, violation_kind::relock, &word, bit, me, 0, doing};
      else
        s.owners.erase(it);
    }
  }
  report(f);
  const bool ok = shipped<W>::try_lock(word, bit) ||
                  (how == lock_how::block && shipped<W>::lock_slow(word, bit, dl, stop));
  if (ok) {
    // The bit is held now: nothing may throw past this point (it would leave it held by nobody).
    try {
      std::lock_guard<std::mutex> g(s.m);
      s.owners[key_of(&word, bit)] = me;
    } catch (...) {
      records_lost.store(true, std::memory_order_relaxed);
    }
  }
  return ok;
}

template <word_type W>
void release(std::atomic<W>& word, W bit, bool event) {
  const char* doing = event ? "clears (clear_bit_and_wake)" : "unlocks";
  const std::uint64_t me = checked_thread_id();
  const key k = key_of(&word, bit);
  shard& s = shard_of(&word);
  // Registered first, before anything that can block (the bucket lock below), so that two
  // releases that overlap anywhere find each other.
  finding f;
  try {
    std::lock_guard<std::mutex> g(s.m);
    auto [it, fresh] = s.releasing.try_emplace(k, me);
    if (!fresh) f = {true, violation_kind::concurrent_release, &word, bit, it->second, 0, doing};
  } catch (...) {
    records_lost.store(true, std::memory_order_relaxed);  // out of memory: this release goes unchecked
  }
  report(f);
  auto unregister = [&] {
    std::lock_guard<std::mutex> g(s.m);
    auto it = s.releasing.find(k);
    if (it != s.releasing.end() && it->second == me) s.releasing.erase(it);
  };
  inspect(word, doing);
  if (!(word.load(std::memory_order_relaxed) & bit)) {
    unregister();
    throw_not_set(bit);  // as unchecked: usage_error, the word unchanged
  }
  f = {};
  {
    std::lock_guard<std::mutex> g(s.m);
    auto it = s.owners.find(k);
    if (it == s.owners.end()) {
      // An event bit has no owner; an unlock of a bit nobody locked is a violation.
      if (!event && !records_lost.load(std::memory_order_relaxed))
        f = {true, violation_kind::unlock_not_owner, &word, bit, 0, 0, doing};
    } else {
      if (it->second != me && it->second != disowned)
        f = {true, violation_kind::unlock_not_owner, &word, bit, it->second, 0, doing};
      s.owners.erase(it);  // before the release: the bit may be re-locked the instant it clears
    }
  }
  report(f);
  // Every checked release takes the slow path (called directly: a set waiters bit is not
  // needed, and another bit's release could clear one meanwhile), so that it ends under the
  // bucket lock, where the core calls checked_release_final before its last touch. Waiters
  // arriving meanwhile serialize with it on the bucket lock, as with any slow release.
  shipped<W>::release_slow(word, bit, event ? release_kind::event : release_kind::unlock);
}

template <word_type W>
void before_wait(std::atomic<W>& word, W bit, bool unbounded) {
  inspect(word, "waits for");
  if (!unbounded) return;  // a bounded wait for one's own bit returns false: defined, not a hang
  const std::uint64_t me = checked_thread_id();
  shard& s = shard_of(&word);
  finding f;
  {
    std::lock_guard<std::mutex> g(s.m);
    auto it = s.owners.find(key_of(&word, bit));
    if (it != s.owners.end() && it->second == me && (word.load(std::memory_order_relaxed) & bit))
      f = {true, violation_kind::relock, &word, bit, me, 0, "waits for the clear of"};
  }
  report(f);
}

template <word_type W>
void disown(std::atomic<W>& word, W bit) {
  const std::uint64_t me = checked_thread_id();
  shard& s = shard_of(&word);
  finding f;
  {
    std::lock_guard<std::mutex> g(s.m);
    auto it = s.owners.find(key_of(&word, bit));
    if (it != s.owners.end() && it->second == me && (word.load(std::memory_order_relaxed) & bit))
      it->second = disowned;
    else
      f = {true,
           violation_kind::unlock_not_owner,
           &word,
           bit,
           it == s.owners.end() || it->second == disowned ? 0 : it->second,
           0,
           "disowns"};
  }
  report(f);
}

template <word_type W>
void acquired_async(std::atomic<W>& word, W bit) noexcept {
  try {
    shard& s = shard_of(&word);
    std::lock_guard<std::mutex> g(s.m);
    s.owners[key_of(&word, bit)] = disowned;
  } catch (...) {
    records_lost.store(true, std::memory_order_relaxed);  // out of memory: unlocks go unchecked
  }
}

#define PAGEWAIT_CHECKED_INSTANTIATE(W)                                                         \
  template bool lock<W>(std::atomic<W>&, W, lock_how, const deadline&, const std::stop_token*); \
  template void release<W>(std::atomic<W>&, W, bool);                                           \
  template void before_wait<W>(std::atomic<W>&, W, bool);                                       \
  template void disown<W>(std::atomic<W>&, W);                                                  \
  template void acquired_async<W>(std::atomic<W>&, W) noexcept;
PAGEWAIT_CHECKED_INSTANTIATE(std::uint32_t)
PAGEWAIT_CHECKED_INSTANTIATE(std::uint64_t)
#undef PAGEWAIT_CHECKED_INSTANTIATE

}  // namespace checked

void checked_at_fork(fork_phase ph) noexcept {
  shard* all = shards().s;
  if (ph == fork_phase::prepare) {
    for (std::size_t i = 0; i < shard_count; ++i) all[i].m.lock();
    return;
  }
  for (std::size_t i = 0; i < shard_count; ++i) {
    // The child's one thread was forking, not releasing: every release in progress belonged to
    // a thread the child does not have. Held bits stay held by their owners (pagewait.hpp).
    // Nor racing: the designated wakers in flight were other threads, whose waits the child
    // does not have either (nor their queues: the table starts empty).
    if (ph == fork_phase::child) {
      all[i].releasing.clear();
      for (auto& d : all[i].designated) d = {};
      all[i].designated_overflow = 0;
    }
    all[i].m.unlock();
  }
}

#else  // !PAGEWAIT_CHECKED

void checked_at_fork(fork_phase) noexcept {}

#endif

}  // namespace detail
}  // namespace pagewait
