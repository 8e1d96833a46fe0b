// src/wait_table.cpp — the native wait table, its bucket lock, and fork().
#include "pagewait/detail/wait_table.hpp"

#include <pthread.h>

#include <atomic>
#include <thread>

#include "at_fork.hpp"
#include "pagewait/detail/native_policy.hpp"

namespace pagewait::detail {

void word_lock::lock_slow() noexcept {
  // Spin a little: the lock is held for at most chunk_visits node visits.
  for (int i = 0; i < 100; ++i) {
    std::uint32_t c = w_.value.load(std::memory_order_relaxed);
    if (c == 0 && w_.value.compare_exchange_weak(c, 1, std::memory_order_acquire, std::memory_order_relaxed))
      return;
    native_policy::cpu_relax();
  }
  // Drepper's futex mutex: mark "held with sleepers" and sleep until we take it.
  while (w_.value.exchange(2, std::memory_order_acquire) != 0) w_.wait(2, deadline::never());
}

namespace {
// Created on first contention, outside any bucket lock; never freed, so that threads still
// running after main returns can use it. Installed by a CAS rather than as a function-local
// static: a fork() while another thread constructs it must not leave the child a static's
// guard held by a thread it does not have.
std::atomic<wait_table<native_policy>*> the_table{nullptr};

// fork() (CONTRACT §2; the manual in pagewait.hpp): the child has one thread, the one that forked. Every
// waiter queued in the table and every release in progress belonged to another thread of the parent (the
// forker was calling fork, not waiting or walking), so the child drops them all: it empties each queue in
// use, forgets the releases registered in it and frees its lock, which may have been held by a thread that
// does not exist in the child. The queues may be mid-update; nothing is read from them, and their nodes were
// on the other threads' stacks, which nobody will free or use. Buckets not in use are only read, so that the
// child does not copy the table's pages (with futexes; the portable parking form writes every bucket's lock).
// What stays: every word as the parent left it, bits held by the parent's threads included.
void fork_prepare() noexcept {
  checked_at_fork(fork_phase::prepare);
  settings_at_fork(fork_phase::prepare);
  parker_pool_at_fork(fork_phase::prepare);
}
void fork_parent() noexcept {
  parker_pool_at_fork(fork_phase::parent);
  settings_at_fork(fork_phase::parent);
  checked_at_fork(fork_phase::parent);
}
void fork_child() noexcept {
  if (wait_table<native_policy>* t = the_table.load(std::memory_order_acquire)) {
    for (std::size_t i = 0; i < t->size(); ++i) {
      bucket<native_policy>& b = t->at(i);
      // The portable parking form's lock also has a mutex, which a parent thread may hold while
      // the lock word reads free (waking a sleeper in unlock): reset every bucket there.
      const bool lock_clean = PAGEWAIT_HAVE_FUTEX && b.lock.free_after_fork();
      if (!b.head.get() && !b.releases.get() && lock_clean) continue;
      b.lock.reset_after_fork();
      b.head.set(nullptr);
      b.tail.set(nullptr);
      b.releases.set(nullptr);
    }
  }
  parker_pool_at_fork(fork_phase::child);
  settings_at_fork(fork_phase::child);
  checked_at_fork(fork_phase::child);
  async_at_fork(fork_phase::child);
}
// Registered when the library is loaded (this file holds the table, so every program that can
// queue a waiter links it). glibc removes the handlers if a shared library is unloaded.
[[maybe_unused]] const bool fork_handlers = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
}  // namespace

wait_table<native_policy>& native_policy::table() noexcept {
  if (wait_table<native_policy>* t = the_table.load(std::memory_order_acquire)) [[likely]]
    return *t;
  auto* fresh = new wait_table<native_policy>(
      wait_table<native_policy>::size_for_machine(std::thread::hardware_concurrency()));
  wait_table<native_policy>* expected = nullptr;
  if (the_table.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
    return *fresh;
  delete fresh;  // another thread installed one first
  return *expected;
}

}  // namespace pagewait::detail
