// demo/pagecache/page_cache.hpp — a small page cache over one file, on pagewait's page bits.
//
// A fixed pool of frames caches pages of one file. A frame goes back on the free list the
// moment its last reference is dropped, and the free list is LIFO, so the next page brought in
// gets the frame freed last: reuse is immediate, as in the kernel's per-CPU page lists.
//
// References: the mapping holds one for each page it contains; each lookup takes one. Writeback
// holds none while the write is in flight (as in the kernel: PG_writeback carries no reference),
// which is safe only because truncation waits for writeback before it drops the mapping's.
// What this leaves open is the end of writeback itself: once it has cleared WRITEBACK,
// truncation may free the frame and it may be handed out again while the releasing thread is
// still in its wake-up. Only protocols that pin the page, or that never touch it after the
// clear, are safe there.
//
// Page flags (pagewait bits of the frame's word):
//   LOCKED     lock bit: held to change data, flags or the mapping of a page
//   WRITEBACK  event bit: set (with LOCKED held) when the write to the file begins, released
//              through the selected protocol when it ends; data does not change while it is set
//   DIRTY      data differs from the file; set by writers, cleared when writeback begins
//   UPTODATE   data was read from the file (or written); cleared on removal
// The protocol operations (lock, unlock, end of writeback, wait for writeback) all go through
// detail::core<demo_policy, R, std::uint32_t>: page_cache<R> below. In process mode (`pagewait demo
// --processes`) the pool lives in a shared mapping and they go through a wait domain instead:
// shm_page_cache below, the shipped protocol (atomic-clear) as any user of pagewait/shm.hpp has it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "demo_policy.hpp"
#include "pagewait/detail/core.hpp"
#include "pagewait/detail/deadline.hpp"
#include "pagewait/protocol.hpp"
#include "pagewait/shm.hpp"

namespace pagewait::demo {

inline constexpr std::uint32_t PG_LOCKED = 1u << 0;
inline constexpr std::uint32_t PG_WRITEBACK = 1u << 1;
inline constexpr std::uint32_t PG_DIRTY = 1u << 2;
inline constexpr std::uint32_t PG_UPTODATE = 1u << 3;

inline constexpr std::size_t page_size = 4096;
inline constexpr std::uint32_t no_frame = ~std::uint32_t{0};

// Nothing in a frame or in the pool's state is a pointer: in process mode they live in a mapping
// that each process may see at its own address (the demo's children inherit one address, but the
// layout does not rely on it).
struct frame {
  std::atomic<std::uint32_t> flags{0};
  std::atomic<std::uint32_t> refs{0};
  // Even while the frame holds a page, odd while it is free: incremented (release) when it is
  // freed and when it is handed out again (demo_policy's detector reads it).
  std::atomic<std::uint64_t> generation{0};
  // The page index in the file, and whether the page is in the mapping. Written only with the
  // mapping lock held (and, for removal, the page lock too); read under either.
  std::uint64_t index = 0;
  bool mapped = false;
  std::uint32_t next_free = no_frame;  // mapping lock: the next free frame's number
  // Changed only with LOCKED held and WRITEBACK clear; read by writeback while WRITEBACK is set.
  alignas(64) unsigned char data[page_size];
};

// The page contents the demo writes: version v of page i. Version 0 is all zeros (a file never
// written). Every byte depends on (i, v), so a stale or misplaced page never passes for another.
void fill_page(unsigned char* data, std::uint64_t index, std::uint64_t version) noexcept;
bool page_is(const unsigned char* data, std::uint64_t index, std::uint64_t version) noexcept;

// What the pool keeps beside its frames and its mapping (the page index -> frame table).
struct pool_state {
  // Process mode: the mapping lock is bit 0 of this word, taken through the wait domain (the
  // kernel's i_pages lock and zone lock). Threads: unused (a std::mutex in the pool).
  std::atomic<std::uint32_t> mapping_lock{0};
  std::uint32_t free_head = no_frame;  // mapping lock: LIFO free list of frame numbers
  std::atomic<std::uint64_t> bad_frees{0};
  std::atomic<std::uint64_t> io_errors{0};
};

// The frames, the mapping, the free list and the file. Nothing here knows the page-bit protocol.
// The state, the mapping and the frames live in one block: this process's memory (threads), or
// a region of a wait domain's user area that processes share.
class page_pool {
 public:
  // In this process's memory; the mapping lock is a std::mutex.
  page_pool(int fd, unsigned frames, std::uint64_t file_pages);
  // Formats `area` (shared_bytes(frames, file_pages) bytes, 64-byte aligned, inside d's user area)
  // as the pool; the mapping lock is a bit of a word there, locked through d. A process forked
  // after this uses its copy of this object over the same memory.
  page_pool(int fd, unsigned frames, std::uint64_t file_pages, shm::domain& d, void* area);
  static std::size_t shared_bytes(unsigned frames, std::uint64_t file_pages);
  ~page_pool();
  page_pool(const page_pool&) = delete;
  page_pool& operator=(const page_pool&) = delete;

  unsigned frames() const noexcept { return nframes_; }
  std::uint64_t file_pages() const noexcept { return file_pages_; }
  frame& frame_at(unsigned i) noexcept { return frames_[i]; }

  // Looks page `index` up and takes a reference. Null if not cached.
  frame* find_get(std::uint64_t index);
  // Takes a reference on the page in frame `f` if it is mapped and has all of `need` set (a
  // scan by frame, as writeback and truncation do). Null otherwise.
  frame* get_if_mapped(frame& f, std::uint32_t need);
  // Looks page `index` up, or brings a free frame in for it, mapped, with LOCKED set and not
  // UPTODATE (the caller reads it in, then unlocks). Takes a reference either way. Returns null
  // if the page is absent and no frame is free.
  frame* find_or_create(std::uint64_t index, bool& created);
  // Removes a page from the mapping; caller holds its lock and a reference. Drops the
  // mapping's reference.
  void remove(frame* f);
  void get(frame* f) noexcept { f->refs.fetch_add(1, std::memory_order_relaxed); }
  // Drops a reference; the last one frees the frame at once.
  void put(frame* f);

  // The file.
  bool write_page(const frame* f);
  bool read_page(frame* f);
  int fd() const noexcept { return fd_; }

  // Frames freed with LOCKED, WRITEBACK or DIRTY still set: never expected (the demo's
  // BUG_ON(PageWriteback) counterpart on the freeing side).
  std::uint64_t bad_frees() const noexcept { return state_->bad_frees.load(std::memory_order_relaxed); }
  std::uint64_t io_errors() const noexcept { return state_->io_errors.load(std::memory_order_relaxed); }

 private:
  // The mapping and the free list (the kernel's i_pages lock and zone lock).
  class mapping_guard {
   public:
    explicit mapping_guard(page_pool& p);
    ~mapping_guard();
    mapping_guard(const mapping_guard&) = delete;
    mapping_guard& operator=(const mapping_guard&) = delete;

   private:
    page_pool& p_;
  };
  void format(void* area);

  int fd_;
  unsigned nframes_;
  std::uint64_t file_pages_;
  void* owned_ = nullptr;          // the block, when it is this process's memory
  shm::domain* domain_ = nullptr;  // process mode
  std::mutex mutex_;               // threads: the mapping lock
  pool_state* state_ = nullptr;
  std::uint32_t* map_ = nullptr;  // page index -> frame number + 1 (0: not cached)
  frame* frames_ = nullptr;
};

// What a waiting thread observed, beyond the wait itself.
struct wait_counters {
  std::uint64_t lost_wakeups = 0;  // timed out, and the bit it waited for was clear
  std::uint64_t woken_early = 0;   // woken from a wait for WRITEBACK while it was still set
  std::uint64_t timeouts = 0;      // timed out with the bit still set (a slow holder): retried
  std::uint64_t lock_waits = 0;    // page locks found held by another: waited for (slow path)
};

// Waits are bounded: a lost wake-up must show as a count, not as a hung demo. A wait that
// times out with its bit clear was not woken by the release that cleared it; one that times
// out with the bit set is retried. (A timed-out waiter leaves the queue before it looks at
// the bit, so a release just after that instant could make a slow holder look like a lost
// wake-up; with a timeout of a second that needs a holder stalled for a second.)
// `timed_lock()` is one bounded slow lock of the page: true if it got the lock.
template <class TimedLock>
void lock_page_bounded(frame* f, wait_counters& wc, TimedLock timed_lock) {
  for (;;) {
    if (timed_lock()) return;
    if (f->flags.load(std::memory_order_relaxed) & PG_LOCKED)
      ++wc.timeouts;
    else
      ++wc.lost_wakeups;
  }
}

// With the page locked (so no new writeback can begin): returns once WRITEBACK is clear,
// having counted what it saw. The kernel's `while (folio_test_writeback) folio_wait_bit`: a
// wait may return while the bit is set again only if a late wake-up from the frame's
// previous life reached it (clear_then_wake), since we hold the lock. `timed_wait()` is one
// bounded wait for WRITEBACK to clear: true if it was woken. Returns whether it had to wait.
template <class TimedWait>
bool wait_writeback_bounded(frame* f, wait_counters& wc, TimedWait timed_wait) {
  if (!(f->flags.load(std::memory_order_acquire) & PG_WRITEBACK)) return false;
  for (;;) {
    const bool woken = timed_wait();
    const bool still_set = f->flags.load(std::memory_order_acquire) & PG_WRITEBACK;
    if (!still_set) {
      if (!woken) ++wc.lost_wakeups;
      return true;
    }
    if (woken)
      ++wc.woken_early;
    else
      ++wc.timeouts;
  }
}

// Start writeback of a locked, dirty page: the caller then unlocks, drops its reference and
// writes. The data cannot change until the end of writeback.
inline void start_writeback(frame* f) {
  f->flags.fetch_or(PG_WRITEBACK, std::memory_order_relaxed);
  f->flags.fetch_and(~PG_DIRTY, std::memory_order_relaxed);
}

// What one end of writeback did, as far as the cache could observe it.
struct end_report {
  bool touched_after_free = false;
  bool touched_after_reuse = false;
  unsigned rmws = 0;
  unsigned bucket_locks = 0;
};

// The protocol operations on pages, for one release protocol R.
template <release_protocol R>
class page_cache {
 public:
  using core = detail::core<demo_policy, R, std::uint32_t>;
  static constexpr bool observes_releases = true;  // end_report is measured (demo_policy)

  page_cache(page_pool& pool, std::chrono::nanoseconds wait_timeout, std::chrono::nanoseconds widen)
      : pool_(pool), wait_timeout_(wait_timeout), widen_(widen) {}

  page_pool& pool() noexcept { return pool_; }

  void lock_page(frame* f, wait_counters& wc) {
    if (core::try_lock(f->flags, PG_LOCKED)) return;
    ++wc.lock_waits;
    lock_page_bounded(f, wc, [&] {
      return core::lock_slow(f->flags, PG_LOCKED, detail::deadline::after(wait_timeout_), nullptr);
    });
  }
  void unlock_page(frame* f) { core::release(f->flags, PG_LOCKED, detail::release_kind::unlock); }

  bool wait_writeback(frame* f, wait_counters& wc) {
    return wait_writeback_bounded(f, wc, [&] {
      return core::wait_clear(f->flags, PG_WRITEBACK, detail::deadline::after(wait_timeout_), nullptr);
    });
  }

  // End writeback of a page the caller holds no reference to, through protocol R. The pin is
  // the extra reference of the pinned protocols (the kernel's folio_get/folio_put around
  // folio_end_writeback); core::release calls it only for pinned and xor_waiters.
  end_report end_writeback(frame* f) {
    struct frame_pin {
      page_pool* pool;
      frame* f;
      void get() {
        note_page_rmw();
        pool->get(f);
      }
      void put() {
        note_page_rmw();
        pool->put(f);  // may free the frame: it is the release's last touch of the page
      }
    };
    release_context ctx;
    ctx.word = &f->flags;
    ctx.generation = &f->generation;
    ctx.generation_at_start = f->generation.load(std::memory_order_relaxed);  // live: WRITEBACK is set
    ctx.clearing_bit = PG_WRITEBACK;
    ctx.widen = R == release_protocol::atomic_clear ? std::chrono::nanoseconds(0) : widen_;
    current_release = &ctx;
    core::release(f->flags, PG_WRITEBACK, detail::release_kind::event, frame_pin{&pool_, f});
    current_release = nullptr;
    // The same delay for every protocol, so that throughput stays comparable: where the
    // protocol has a window between clear and wake-up it fell inside it; atomic_clear has none,
    // so it falls here, after the release, when nothing of the page is touched any more.
    if (!ctx.widened && widen_.count() > 0) widen_sleep(widen_);
    return {ctx.touched_after_free, ctx.touched_after_reuse, ctx.rmws, ctx.bucket_locks};
  }

 private:
  page_pool& pool_;
  std::chrono::nanoseconds wait_timeout_;
  std::chrono::nanoseconds widen_;
};

// The same operations in process mode, on frames in a wait domain's user area, through the
// domain (pagewait/shm.hpp): the shipped protocol, atomic-clear, as any user of a domain has it.
// Nothing here observes a release (demo_policy's detector is one process's per-thread hook), so
// end_report stays empty: what process mode shows is the workload and its data check across
// processes.
class shm_page_cache {
 public:
  static constexpr bool observes_releases = false;

  shm_page_cache(page_pool& pool, shm::domain& d, std::chrono::nanoseconds wait_timeout)
      : pool_(pool), d_(d), wait_timeout_(wait_timeout) {}

  page_pool& pool() noexcept { return pool_; }

  void lock_page(frame* f, wait_counters& wc) {
    if (d_.try_lock_bit(f->flags, PG_LOCKED)) return;
    ++wc.lock_waits;  // held by another process: each has one thread
    lock_page_bounded(f, wc, [&] { return d_.try_lock_bit_for(f->flags, PG_LOCKED, wait_timeout_); });
  }
  void unlock_page(frame* f) { d_.unlock_bit(f->flags, PG_LOCKED); }
  bool wait_writeback(frame* f, wait_counters& wc) {
    return wait_writeback_bounded(
        f, wc, [&] { return d_.wait_bit_clear_for(f->flags, PG_WRITEBACK, wait_timeout_); });
  }
  // The page is not touched after the clear, whatever happens to the frame next (CONTRACT §3.1).
  end_report end_writeback(frame* f) {
    d_.clear_bit_and_wake(f->flags, PG_WRITEBACK);
    return {};
  }

 private:
  page_pool& pool_;
  shm::domain& d_;
  std::chrono::nanoseconds wait_timeout_;
};

}  // namespace pagewait::demo
