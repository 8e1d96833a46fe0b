// src/parker.cpp — per-thread parkers (detail/parker.hpp).
#include "pagewait/detail/parker.hpp"

#include <mutex>
#include <optional>

#include "at_fork.hpp"

namespace pagewait::detail {

std::atomic<bool> native_parker::counting{false};
std::atomic<std::uint64_t> native_parker::wake_calls{0};
std::atomic<std::uint64_t> native_parker::sleeps{0};

namespace {
// The parking loop of both parkers; `Shared`: the futex is keyed for other processes too.
template <bool Shared>
std::uint32_t park_on(sleep_word& word, const deadline& dl, const std::stop_token* stop) noexcept {
  // The stop callback runs in the requesting thread: it flags the parker and wakes it. It is
  // destroyed (and, if running, waited for) before park returns, so it never flags a later
  // wait; prepare() clears the flag before the next node becomes visible in any case.
  struct interrupt {
    sleep_word* w;
    void operator()() const noexcept {
      w->value.fetch_or(interrupted_flag, std::memory_order_relaxed);
      if constexpr (Shared)
        w->wake_one_shared();
      else
        w->wake_one();
    }
  };
  std::optional<std::stop_callback<interrupt>> on_stop;
  if (stop && stop->stop_possible()) on_stop.emplace(*stop, interrupt{&word});
  for (;;) {
    // Acquire pairs with the releaser's fetch_or(token, release) in unpark().
    std::uint32_t v = word.value.load(std::memory_order_acquire);
    if (v & token_mask) return v & token_mask;
    if (stop && (v & interrupted_flag)) return token_none;
    if (!dl.is_never() && std::chrono::steady_clock::now() >= dl.at) return token_none;
    if (!(v & sleeping_flag)) {
      // Say that we sleep, unless a token (or a stop) arrived since the load: then look again.
      if (!word.value.compare_exchange_weak(v, v | sleeping_flag, std::memory_order_relaxed)) continue;
      v |= sleeping_flag;
    }
    if constexpr (Shared)
      shm_parker::count_sleep(&word);  // in the domain's statistics, not the process's
    else if (native_parker::counting.load(std::memory_order_relaxed))
      native_parker::sleeps.fetch_add(1, std::memory_order_relaxed);
    if constexpr (Shared)
      word.wait_shared(v, dl);  // spurious returns are fine: re-check
    else
      word.wait(v, dl);
  }
}
}  // namespace

std::uint32_t native_parker::park(const deadline& dl, const std::stop_token* stop) noexcept {
  return park_on<false>(word, dl, stop);
}
std::uint32_t shm_parker::park(const deadline& dl, const std::stop_token* stop) noexcept {
  // In slices of recovery_poll: between them, with no token, the domain may recover dead
  // processes' waits (recover_poll). A token that arrives meanwhile is seen by the next slice's
  // first load; a stop request is kept in the word (interrupted_flag) and seen there too.
  for (;;) {
    const deadline poll = deadline::after(recovery_poll);
    const bool polling = dl.is_never() || poll.at < dl.at;
    const std::uint32_t t = park_on<true>(word, polling ? poll : dl, stop);
    if (t != token_none || (stop && stop->stop_requested())) return t;
    recover_poll(this, !polling);
    // At the caller's deadline: a waiter that only ever waits for less than a poll (a loop of
    // short timed locks) recovers too, once before it gives up. What the recovery passed on may
    // have come to this very waiter meanwhile.
    if (!polling) return word.value.load(std::memory_order_acquire) & token_mask;
  }
}

namespace {
// Parkers are immortal: a thread's parker returns to this pool when the thread exits.
struct parker_pool {
  std::mutex m;
  native_parker* free = nullptr;

  native_parker* get() {
    std::lock_guard<std::mutex> g(m);
    if (native_parker* p = free) {
      free = p->next_free;
      return p;
    }
    return new native_parker;  // never deleted, by design
  }
  void put(native_parker* p) {
    std::lock_guard<std::mutex> g(m);
    p->next_free = free;
    free = p;
  }
  // A parker that must never be handed out again (see current()): kept reachable, not reused.
  native_parker* make_unpooled() {
    native_parker* p = new native_parker;
    std::lock_guard<std::mutex> g(m);
    p->next_free = unpooled;
    unpooled = p;
    return p;
  }
  native_parker* unpooled = nullptr;
};

// Immortal too (threads may exit after main): constant-initialized, never destroyed. Not a
// function-local static allocated on first use: a TSan build of a program linked with this
// library uninstrumented sees neither the guard's check nor the pool's construction, only the
// allocation (as a write) and the std::mutex calls (intercepted), and reported them as a race
// between two threads' first contended waits.
union immortal_pool {
  parker_pool pool;
  constexpr immortal_pool() : pool() {}
  ~immortal_pool() {}
};
constinit immortal_pool the_pool;

parker_pool& pool() { return the_pool.pool; }

// The calling thread's parker. Plain (trivially destructible) thread-locals, so they stay
// readable while the thread's other thread-local objects are destroyed: a user's thread-local
// destructor may still lock or wait (say, a per-thread cache that returns pages under a bit
// lock). `parker_return` gives the parker back to the pool when the thread exits; it is built
// at the thread's first contended wait, so it is destroyed before any thread-local built
// earlier. From then on `gone` is set, and a wait in a later destructor gets a parker of its
// own that is never pooled: handing it the pooled one would let another thread park on it too,
// and the two would steal each other's tokens (a lost wake-up, or two owners).
thread_local native_parker* mine = nullptr;
thread_local bool gone = false;

struct parker_return {
  ~parker_return() {
    pool().put(mine);
    mine = nullptr;
    gone = true;
  }
};
}  // namespace

// The pool's lock is held across fork(), so the child never inherits it held. The parkers of
// the parent's other threads stay owned in the child: those threads do not exist there, and
// their parkers are simply never used again (immortal memory, as always).
void parker_pool_at_fork(fork_phase ph) noexcept {
  if (ph == fork_phase::prepare) {
    pool().m.lock();
    return;
  }
  pool().m.unlock();
  if (ph != fork_phase::child) return;
  // The forking thread keeps its parker; the pooled ones go to the child's new threads. A thread
  // of the parent may have been unparking any of them (a late wake lands on a pooled parker;
  // the portable form locks the parker's mutex to wake): start them afresh. The pool's list is
  // consistent: its mutex was held across the fork.
  if (mine) mine->word.reset_after_fork();
  for (native_parker* p = pool().free; p; p = p->next_free) p->word.reset_after_fork();
}

native_parker& native_parker::current() noexcept {
  if (native_parker* p = mine) [[likely]]
    return *p;
  if (gone) {
    mine = pool().make_unpooled();  // immortal like every parker; one per thread that gets here
    return *mine;
  }
  mine = pool().get();
  thread_local parker_return r;
  (void)r;
  return *mine;
}

}  // namespace pagewait::detail
