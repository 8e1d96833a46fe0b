// pagewait/detail/parker.hpp — how a native thread sleeps until a releaser hands it a token.
//
// Each thread has one parker for its whole life, and parkers are never freed: a thread that
// exits returns its parker to a pool for the next thread. That is what lets a releaser finish
// its unpark (the futex wake after the store) after the waiter has already seen the token,
// returned, and even exited: the memory it touches is a parker, never the waiter's stack node,
// and a parker is always valid memory. A late wake lands on a parker that may be parked again
// for another wait; parking treats every wake as possibly spurious, so that is harmless.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stop_token>

#include "pagewait/detail/deadline.hpp"
#include "pagewait/detail/futex.hpp"

namespace pagewait::detail {

// What an unpark means (parking_lot's named tokens rather than booleans).
enum unpark_token : std::uint32_t {
  token_none = 0,       // still parked
  token_cleared = 1,    // the bit was cleared after you queued (shared waiter: you are done)
  token_retry = 2,      // the bit was cleared; exclusive waiter: race for it
  token_handoff = 3,    // the lock was handed to you: you own it, the bit never cleared
  token_abandoned = 4,  // your deadline or stop was honoured by the release that held you
};
inline constexpr std::uint32_t token_mask = 7;
// Set by a stop request's callback; never by a releaser.
inline constexpr std::uint32_t interrupted_flag = 1u << 31;
// Set by the parked thread, with a CAS from a value without a token, just before it sleeps in
// the kernel: an unpark that finds it clear needs no wake system call (the thread has not gone
// to sleep, and will see the token before it does).
inline constexpr std::uint32_t sleeping_flag = 1u << 30;

struct alignas(64) native_parker {
  sleep_word word;
  native_parker* next_free = nullptr;  // pool link, used only while the parker is unowned

  // The owning thread, before it makes its waiter node visible.
  void prepare() noexcept { word.value.store(token_none, std::memory_order_relaxed); }

  // The owning thread: sleep until a token arrives, the deadline passes, or stop is
  // requested. Returns the token, or token_none on deadline/stop. The load-acquire pairs with
  // the fetch_or-release in unpark(): everything the releaser did before it, including the
  // clear of the bit, happens-before the return. It does not spin: measured on 1-16 threads, a
  // spin here (200 and 1000 pauses) lifted long critical sections (0.2-0.3x to 0.7-0.8x the best
  // peer) but sank short ones (2 threads: 2.3x to 0.4x) on a 2-core machine, where a spinning
  // waiter takes the core the holder needs.
  std::uint32_t park(const deadline& dl, const std::stop_token* stop) noexcept;

  // Any thread: deliver the token. The fetch_or is the releaser's last access to anything the
  // waiter owns; the wake after it touches only this immortal parker, and is made only if the
  // waiter had said it was going to sleep. Either the waiter's CAS that sets sleeping_flag
  // precedes this fetch_or (then `old` has the flag, and we wake it: its futex wait either has
  // begun, or will find the word changed and return), or it follows it (then the CAS fails on
  // the token, and the waiter sees the token without sleeping). Returns whether it woke.
  bool unpark(std::uint32_t token) noexcept {
    const std::uint32_t old = word.value.fetch_or(token, std::memory_order_release);
    if (!(old & sleeping_flag)) return false;
    if (counting.load(std::memory_order_relaxed)) wake_calls.fetch_add(1, std::memory_order_relaxed);
    word.wake_one();
    return true;
  }

  // Process-wide counts of wake system calls made by unpark and of sleeps (futex waits) entered
  // by park, while `counting` is on (pagewait/stats.hpp turns it on with the statistics).
  static std::atomic<bool> counting;
  static std::atomic<std::uint64_t> wake_calls;
  static std::atomic<std::uint64_t> sleeps;

  // The calling thread's parker (allocated on first use, pooled at thread exit).
  static native_parker& current() noexcept;
};

// A parker in a wait domain's slot (pagewait/shm.hpp): native_parker's protocol on a futex
// shared between processes, so that a releaser in another process can hand over the token and
// wake the sleeper. Not per thread but per slot: a slow operation on a domain takes a free slot
// for its length, and the slot's next operation prepare()s the parker before its node becomes
// visible, as a pooled native parker is prepared by its next thread. It lives as long as the
// mapping, so a late wake (the releaser's futex call after the token it stored) lands on memory
// that is still a parker, and parking treats every wake as possibly spurious.
struct alignas(64) shm_parker {
  sleep_word word;
  // Release (a plain store on x86): a rebuild that reads no token here (acquire) also sees what
  // the waiter wrote to its node before, such as `idle` after a lost race (core::rebuild).
  void prepare() noexcept { word.value.store(token_none, std::memory_order_release); }
  std::uint32_t park(const deadline& dl, const std::stop_token* stop) noexcept;
  bool unpark(std::uint32_t token) noexcept {  // as native_parker::unpark
    const std::uint32_t old = word.value.fetch_or(token, std::memory_order_release);
    if (!(old & sleeping_flag)) return false;
    count_wake(this);
    word.wake_one_shared();
    return true;
  }
  // The domain's statistics (src/shm.cpp): a wake call made for, and a sleep entered by, the
  // parker at `p`, counted in the domain that holds it if that domain is counting.
  static void count_wake(const void* p) noexcept;
  static void count_sleep(const void* p) noexcept;
  // A parked waiter of a domain wakes every `recovery_poll` (with no token it parks again) and
  // lets the domain that holds the parker at `p` finish the waits of processes that died
  // (shm::domain::recover, src/shm.cpp), which that domain does at most once per period, whoever
  // asks. A dead waiter may have been handed a lock meant to pass on to this very waiter: nobody
  // else would ever wake it.
  // At a timed wait's deadline (`at_deadline`), the recovery waits for no busy bucket lock.
  static constexpr std::chrono::milliseconds recovery_poll{100};
  static void recover_poll(const void* p, bool at_deadline) noexcept;
};

}  // namespace pagewait::detail
