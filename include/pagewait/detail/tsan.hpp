// pagewait/detail/tsan.hpp — what ThreadSanitizer is told about pagewait's synchronization.
//
// The problem. The slow paths (a contended lock, a release that finds waiters, a wait that
// sleeps) are compiled into the library, usually without -fsanitize=thread. TSan sees only what
// is instrumented: in a user's TSan build, the inline fast paths' atomics on the word, and none of
// the library's hand-offs, bucket locks or futex wake-ups. It then reports data that a pagewait
// lock or event orders as racing (a new owner's read after a hand-off, a woken waiter's read of
// what the releaser wrote), and reports the word's own accesses as racing with a free that
// "release is the last touch" allows (another waiter's load of the word before it slept).
//
// The annotations. Compiled only into a translation unit built with TSan (GCC's
// __SANITIZE_THREAD__, clang's __has_feature(thread_sanitizer)); elsewhere everything below is
// an empty inline function and the fast paths stay one atomic RMW (tests/fastpath_probe.cpp).
//   * Every pagewait operation on a word runs in a TSan ignore region (__tsan_mutex_pre_signal /
//     post_signal, which do nothing else): pagewait's own loads and RMWs of the word, in the user's
//     code and in the library, are neither checked nor counted as synchronization. Only the
//     edges below are, which is what the manual ("Memory ordering") promises.
//   * Before a release (unlock_bit, clear_bit_and_wake, the Lockable unlocks): __tsan_release on
//     the word's address and on the word's wait slot (below), before the release's first access to
//     the word, since the object may be freed the instant the release lands. No annotation reads
//     the word, and none runs after the release's last touch but the end of the ignore region,
//     which touches nothing.
//   * After a lock that succeeds (any form, fast, slow, by hand-off, timed): __tsan_acquire on the
//     word's address. The owner keeps the object alive, so the address still names it.
//   * After a wait_bit_clear that returns true: __tsan_acquire on the word's wait slot. Not on the
//     word: a waiter holds no reference, another waiter may already have freed the object (TSan
//     forgets what was released on freed memory), and the waiter may still read what the releaser
//     wrote elsewhere.
// A wait slot is one of wait_slot_count bytes in the library, picked by a hash of the word's
// address: never freed, so a release made before a free is still there for a waiter that returns
// after it. Two words whose slots collide see each other's releases in their waits (a race
// between data they guard may go unreported); with 16384 slots that is rare, and it is coarser
// than the word itself only for waits.
//
// Bit locks: one synchronization object per word, not per bit. A word holds several lock bits
// and events; TSan's mutex annotations key a mutex by address and track one owner per address,
// so annotating bit_lock as a mutex on the word's address would make two threads holding two
// different bits of one word "double lock" it. Plain acquire/release on the word's address gives
// what the fast paths' atomics give TSan anyway (every change to the word is an RMW, so in the
// C++ model any later acquire RMW on the word synchronizes with any earlier release RMW): a
// release of one bit orders a later lock of another bit of the same word. pagewait::mutex (one
// lock per word, private) is annotated as a mutex instead (mutex_locking below): TSan then reports
// lock-order inversions, unlocks of an unlocked mutex, destruction while locked, and names the
// held mutexes in race reports.
//
// When the library itself is built with TSan (the repository's tsan preset, or a TSan project
// that builds pagewait with add_subdirectory), TSan sees everything and the annotations stand
// aside at run time (library_tsan_instrumented, defined in src/pagewait.cpp), so that TSan keeps
// checking the library's own code. PAGEWAIT_TSAN_ANNOTATIONS overrides: define it to 1 to annotate
// even then (pagewait::mutex known as a mutex, pagewait's internals unchecked), to 0 to never.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_THREAD__)
#define PAGEWAIT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PAGEWAIT_TSAN 1
#endif
#endif
#ifndef PAGEWAIT_TSAN
#define PAGEWAIT_TSAN 0
#endif

#if PAGEWAIT_TSAN && (!defined(PAGEWAIT_TSAN_ANNOTATIONS) || PAGEWAIT_TSAN_ANNOTATIONS)
#define PAGEWAIT_TSAN_ANNOTATE 1
#else
#define PAGEWAIT_TSAN_ANNOTATE 0
#endif

#if PAGEWAIT_TSAN_ANNOTATE
// The TSan runtime's public interface (compiler-rt's <sanitizer/tsan_interface.h>), declared here
// so that no sanitizer header is needed; the declarations are identical, so both may be seen.
extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_mutex_create(void* addr, unsigned flags);
void __tsan_mutex_destroy(void* addr, unsigned flags);
void __tsan_mutex_pre_lock(void* addr, unsigned flags);
void __tsan_mutex_post_lock(void* addr, unsigned flags, int recursion);
int __tsan_mutex_pre_unlock(void* addr, unsigned flags);
void __tsan_mutex_post_unlock(void* addr, unsigned flags);
void __tsan_mutex_pre_signal(void* addr, unsigned flags);
void __tsan_mutex_post_signal(void* addr, unsigned flags);
}
#endif

namespace pagewait::detail {

// Defined in the library: whether its own code was compiled with TSan.
extern const bool library_tsan_instrumented;
// The wait slots (see above): wait_slot_count bytes in the library, never accessed, only used as
// addresses. Index = the top bits of a Fibonacci hash of the word's address.
inline constexpr unsigned wait_slot_bits = 14;
inline constexpr std::size_t wait_slot_count = std::size_t(1) << wait_slot_bits;
extern unsigned char tsan_wait_slots[wait_slot_count];

namespace tsan {

#if PAGEWAIT_TSAN_ANNOTATE

inline bool active() noexcept {
#if defined(PAGEWAIT_TSAN_ANNOTATIONS)
  return true;
#else
  return !library_tsan_instrumented;
#endif
}

inline void* addr(const void* word) noexcept { return const_cast<void*>(word); }

inline void* wait_slot(const void* word) noexcept {
  const auto a = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(word));
  return &tsan_wait_slots[(a * 0x9E3779B97F4A7C15ull) >> (64 - wait_slot_bits)];
}

// An ignore region: memory accesses and synchronization of this thread are not seen by TSan
// until quiet_end (the runtime's pre_signal/post_signal do exactly that and nothing else, and do
// not look at the address: none is passed, so that none can be looked at after a last touch).
// `quiet_depth` counts the regions this thread has open through these headers (one variable for
// the whole program), so that async_callback below ends only a region that is really open.
inline thread_local unsigned quiet_depth = 0;
inline void quiet_begin() noexcept {
  __tsan_mutex_pre_signal(nullptr, 0);
  ++quiet_depth;
}
inline void quiet_end() noexcept {
  --quiet_depth;
  __tsan_mutex_post_signal(nullptr, 0);
}

// A lock or a wait on `word`: pagewait's accesses are ignored from construction to locked() or
// waited(), which then acquire if the operation succeeded. The destructor ends the ignore region
// if an exception left the operation instead.
class acquiring {
 public:
  explicit acquiring(const void* word) noexcept : word_(word), open_(active()) {
    if (open_) quiet_begin();
  }
  acquiring(const acquiring&) = delete;
  acquiring& operator=(const acquiring&) = delete;
  ~acquiring() {
    if (open_) quiet_end();
  }
  // A lock that returned ok: acquire on the word (the owner keeps it alive).
  bool locked(bool ok) noexcept {
    if (close() && ok) __tsan_acquire(addr(word_));
    return ok;
  }
  // A wait that returned ok: acquire on the word's wait slot (the word may be gone).
  bool waited(bool ok) noexcept {
    if (close() && ok) __tsan_acquire(wait_slot(word_));
    return ok;
  }

 private:
  bool close() noexcept {
    if (!open_) return false;
    quiet_end();
    open_ = false;
    return true;
  }
  const void* word_;
  bool open_;
};

// A release of a bit of `word`: the happens-before edge is published first, on the word and on its
// wait slot, then pagewait's accesses are ignored until the end of the scope. Nothing here touches
// the word, before or after: the release's own RMW is its last touch.
class releasing {
 public:
  explicit releasing(const void* word) noexcept : on_(active()) {
    if (!on_) return;
    __tsan_release(addr(word));
    __tsan_release(wait_slot(word));
    quiet_begin();
  }
  releasing(const releasing&) = delete;
  releasing& operator=(const releasing&) = delete;
  ~releasing() {
    if (on_) quiet_end();
  }

 private:
  bool on_;
};

// An asynchronous waiter (pagewait/async.hpp). Its start publishes the waiter object (what the
// caller wrote before starting) before the library, which TSan does not see, can pass it to
// another thread; its completion acquires that, and runs the callback outside the ignore region
// of the release that delivers it (a completion runs inside unlock_bit or clear_bit_and_wake, on
// the releasing thread), so that the callback's own accesses and synchronisation are checked.
inline void async_publish(const void* waiter) noexcept {
  if (active()) __tsan_release(addr(waiter));
}
inline void async_acquire(const void* waiter) noexcept {
  if (active()) __tsan_acquire(addr(waiter));
}
class async_callback {
 public:
  // Only a region opened by these headers is closed (a release compiled without the annotations
  // opened none); the acquire is made either way.
  explicit async_callback(const void* waiter) noexcept : on_(active() && quiet_depth > 0) {
    if (on_) quiet_end();
    if (active()) __tsan_acquire(addr(waiter));
  }
  async_callback(const async_callback&) = delete;
  async_callback& operator=(const async_callback&) = delete;
  ~async_callback() {
    if (on_) quiet_begin();
  }

 private:
  bool on_;
};

// pagewait's own accesses in an operation that neither acquires nor releases (cancelling an
// asynchronous wait: inline code of the library that walks the bucket queue) are ignored.
class ignoring {
 public:
  ignoring() noexcept : on_(active()) {
    if (on_) quiet_begin();
  }
  ignoring(const ignoring&) = delete;
  ignoring& operator=(const ignoring&) = delete;
  ~ignoring() {
    if (on_) quiet_end();
  }

 private:
  bool on_;
};

// pagewait::mutex as a TSan mutex, keyed by its word's address. try = a try_lock or a timed lock,
// which cannot deadlock: TSan skips its lock-order check before them.
inline constexpr unsigned mutex_not_static = 1u << 8;       // __tsan_mutex_not_static
inline constexpr unsigned mutex_try_lock = 1u << 4;         // __tsan_mutex_try_lock
inline constexpr unsigned mutex_try_lock_failed = 1u << 5;  // __tsan_mutex_try_lock_failed

// A mutex that is not constant-initialized (not a global): destruction is then reported if it
// is locked, and forgets the mutex. Globals are never "destroyed" for TSan: their destructor does
// nothing, and threads may still lock them while the program exits.
inline void mutex_create(const void* m) noexcept {
  if (active()) __tsan_mutex_create(addr(m), mutex_not_static);
}
inline void mutex_destroy(const void* m) noexcept {
  if (active()) __tsan_mutex_destroy(addr(m), mutex_not_static);
}

class mutex_locking {
 public:
  mutex_locking(const void* m, bool try_lock) noexcept
      : m_(m), flags_(try_lock ? mutex_try_lock : 0u), open_(active()) {
    if (open_) __tsan_mutex_pre_lock(addr(m_), flags_);
  }
  mutex_locking(const mutex_locking&) = delete;
  mutex_locking& operator=(const mutex_locking&) = delete;
  ~mutex_locking() {
    if (open_) __tsan_mutex_post_lock(addr(m_), flags_ | mutex_try_lock_failed, 0);  // unwinding
  }
  bool done(bool ok) noexcept {
    if (open_) {
      __tsan_mutex_post_lock(addr(m_), ok ? flags_ : flags_ | mutex_try_lock_failed, 0);
      open_ = false;
    }
    return ok;
  }

 private:
  const void* m_;
  unsigned flags_;
  bool open_;
};

// pre_unlock (the release, and the ownership check) comes before the unlock's first access to
// the word; post_unlock only ends the ignore region and does not look at the mutex.
class mutex_unlocking {
 public:
  // pre_unlock opens the same kind of ignore region as quiet_begin: counted in quiet_depth too.
  explicit mutex_unlocking(const void* m) noexcept : m_(m), on_(active()) {
    if (!on_) return;
    __tsan_mutex_pre_unlock(addr(m_), 0);
    ++quiet_depth;
  }
  mutex_unlocking(const mutex_unlocking&) = delete;
  mutex_unlocking& operator=(const mutex_unlocking&) = delete;
  ~mutex_unlocking() {
    if (!on_) return;
    --quiet_depth;
    __tsan_mutex_post_unlock(addr(m_), 0);
  }

 private:
  const void* m_;
  bool on_;
};

#else  // no annotations: nothing, and nothing for the optimizer to remove but empty calls

class acquiring {
 public:
  explicit constexpr acquiring(const void*) noexcept {}
  constexpr bool locked(bool ok) noexcept { return ok; }
  constexpr bool waited(bool ok) noexcept { return ok; }
};
class releasing {
 public:
  explicit constexpr releasing(const void*) noexcept {}
};
inline void async_publish(const void*) noexcept {}
inline void async_acquire(const void*) noexcept {}
class async_callback {
 public:
  explicit constexpr async_callback(const void*) noexcept {}
};
class ignoring {
 public:
  constexpr ignoring() noexcept {}
};
inline void mutex_create(const void*) noexcept {}
inline void mutex_destroy(const void*) noexcept {}
class mutex_locking {
 public:
  constexpr mutex_locking(const void*, bool) noexcept {}
  constexpr bool done(bool ok) noexcept { return ok; }
};
class mutex_unlocking {
 public:
  explicit constexpr mutex_unlocking(const void*) noexcept {}
};

#endif

}  // namespace tsan
}  // namespace pagewait::detail
