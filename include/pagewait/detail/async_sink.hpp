// pagewait/detail/async_sink.hpp — where a release delivers the token of an asynchronous waiter.
//
// A blocking waiter has a thread behind its node, and a release wakes it through its parker. An
// asynchronous waiter (pagewait/async.hpp) has no thread: its node points at a sink, and the
// release hands the token to the sink instead, after its final bucket unlock (core::deliver).
// The sink's function is the user's completion, so the core never calls it directly: it queues
// the sink on the calling thread's completion list (complete), and the list is run once the
// release has finished with every node (run_completions). That gives two guarantees by
// construction: no user code runs under a bucket lock or inside a walk [C1], and a completion
// that releases another bit does not recurse: the outermost run on the thread runs the
// completions that release causes, in order, after the one that caused them.
#pragma once

#include <cstdint>

namespace pagewait::detail {

struct async_sink {
  // The completion: called once per pending start, with the token the release decided (or
  // token_abandoned). Everything it needs is passed in or read from the sink by the callee: the
  // library does not touch the sink after the call begins, so the callee may destroy it.
  void (*complete)(async_sink* self, std::uint32_t token) noexcept = nullptr;
  // The calling thread's completion list (below): a sink is on at most one list at a time,
  // between its release's deliver and the call.
  async_sink* next_done = nullptr;
  std::uint32_t token = 0;
};

// Queues `s` with `token` on this thread's completion list (core::deliver, for each async node).
void async_queue_completion(async_sink* s, std::uint32_t token) noexcept;
// Runs this thread's completion list, unless a run is already in progress further up this
// thread's stack (a completion that released a bit): that outer run takes the new entries. Each
// entry is popped before it is called, so a callee that destroys its sink leaves no dangling
// link behind it.
void async_run_completions() noexcept;
// Takes `s` off this thread's completion list, if it is there (a completion that runs earlier in
// the same list cancels or destroys a waiter whose completion is queued behind it). Returns
// whether it was there (then its completion will not be called), and its token in `*token`: a
// lock waiter's token_handoff means it owns the bit, which the caller must then release on its
// behalf, or no one ever will.
bool async_unqueue_completion(async_sink* s, std::uint32_t* token) noexcept;
// Bumped in the child of every fork(): the child's wait table starts empty, so a wait started in
// the parent is neither queued nor due in the child (src/wait_table.cpp, fork_child).
unsigned async_fork_generation() noexcept;

}  // namespace pagewait::detail
