// src/async.cpp — the per-thread completion list of asynchronous waits (detail/async_sink.hpp).
#include "pagewait/async.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "at_fork.hpp"
#include "pagewait/detail/async_sink.hpp"

namespace pagewait::detail {
namespace {

// Plain, trivially destructible thread-local: no guard, no destructor order at thread exit. A
// release always runs the list it filled before it returns, so a thread never exits with entries.
struct completion_list {
  async_sink* head = nullptr;
  async_sink* tail = nullptr;
  bool running = false;
};
constinit thread_local completion_list done_list;

}  // namespace

void async_queue_completion(async_sink* s, std::uint32_t token) noexcept {
  completion_list& l = done_list;
  s->token = token;
  s->next_done = nullptr;
  if (l.tail)
    l.tail->next_done = s;
  else
    l.head = s;
  l.tail = s;
}

void async_run_completions() noexcept {
  completion_list& l = done_list;
  if (l.running) return;  // a completion further up this stack released a bit: it runs these
  l.running = true;
  while (async_sink* s = l.head) {
    // Pop first: the callee may destroy `s`, or start it again and have it queued anew by a
    // release it makes, so nothing may point at it once it is called.
    l.head = s->next_done;
    if (!l.head) l.tail = nullptr;
    const std::uint32_t token = s->token;
    s->complete(s, token);
  }
  l.running = false;
}

bool async_unqueue_completion(async_sink* s, std::uint32_t* token) noexcept {
  completion_list& l = done_list;
  async_sink* prev = nullptr;
  for (async_sink* x = l.head; x; prev = x, x = x->next_done) {
    if (x != s) continue;
    *token = x->token;
    (prev ? prev->next_done : l.head) = x->next_done;
    if (l.tail == x) l.tail = prev;
    return true;
  }
  return false;
}

namespace {
std::atomic<unsigned> fork_generation{0};
}
unsigned async_fork_generation() noexcept { return fork_generation.load(std::memory_order_relaxed); }
void async_at_fork(fork_phase phase) noexcept {
  if (phase != fork_phase::child) return;
  fork_generation.fetch_add(1, std::memory_order_relaxed);
  // fork() called from inside a callback: the completions queued behind it belong to the
  // parent's release; the child runs none of them (its waiters' cancel() returns true there).
  completion_list& l = done_list;
  l.head = l.tail = nullptr;
}

void async_destroyed_pending(const void* waiter) noexcept {
  std::fprintf(
      stderr,
      "pagewait: fatal: async_wait at %p destroyed while pending, and too late to cancel: a release has "
      "claimed it and its callback is due\n",
      waiter);
  std::abort();
}

void async_timer_destroyed_firing(const void* awaitable) noexcept {
  std::fprintf(
      stderr,
      "pagewait: fatal: a timed co_await at %p destroyed while its timer was firing (or its resumption "
      "was due from that timer): destroy a suspended coroutine only where its timer cannot fire at the "
      "same time\n",
      awaitable);
  std::abort();
}

void async_started_pending(const void* waiter) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", waiter);
  throw usage_error(std::string("pagewait: async_wait at ") + buf + " started while a wait is pending on it");
}

}  // namespace pagewait::detail
