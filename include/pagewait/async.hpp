// <pagewait/async.hpp> — wait for a bit to clear without blocking a thread.
//
// The kernel's io_uring reads do not block on a locked page: they queue an entry whose wake
// function re-queues the request when the page is unlocked. async_wait is that, for a bit of your
// own word: it queues a node in pagewait's wait table, and the release that clears the bit calls
// you back. Blocking waiters (wait_bit_clear, lock_bit) and asynchronous ones share every bit and
// every release; an asynchronous waiter is served exactly as a thread in wait_bit_clear would be.
//
//   void on_clear(pagewait::async_wait<std::uint32_t>& w, pagewait::async_result r) noexcept {
//     if (r == pagewait::async_result::cleared) my_loop_post(w.user_data());  // resume it there
//   }
//   pagewait::async_wait<std::uint32_t> w(&on_clear, &my_request);
//   if (w.start_wait_clear(page.flags, PG_WRITEBACK) == pagewait::async_start::done)
//     ...  // the bit was clear: no callback will come
//
// Contract
//   * start_wait_clear never blocks. `done`: the bit was clear when it looked (with the acquire
//     of wait_bit_clear); nothing was queued and no callback comes. `pending`: exactly one
//     callback follows, unless cancel() returns true first.
//   * The callback gets `cleared` after a clear that happened after the start began ("woken means
//     cleared": it is not called for a clear that had already happened, nor while a lock bit is
//     handed from owner to owner without clearing), and everything the releasing thread wrote
//     before that clear is visible to it. Once queued, the waiter never reads the word again:
//     the word's object may be freed the moment the bit clears (the DROP wait of
//     wait_bit_clear), before or while the callback runs.
//   * cancel() never blocks. True: the wait was withdrawn before any release claimed it; no
//     callback will come, and the waiter may be started again or destroyed at once. False: too
//     late (or not pending): the callback will run, or has run, exactly once. Its result is the
//     truth: `cleared`, or `cancelled` when the cancel still took effect (the bit had been handed
//     off from owner to owner while the waiter was claimed, so it was not queued again).
//   * Where the callback runs: on the thread of the release that clears the bit, inside its
//     unlock_bit or clear_bit_and_wake call, after that release has made its last access to the
//     word and to every waiter node, and with no pagewait lock held. A release made inside a
//     callback does not recurse: its callbacks run after the current one returns, on the same
//     thread, before the outermost release returns. So a callback must be short and must not
//     block: it should hand the work to where it belongs (post to an event loop, resume a task
//     on its executor). It must not wait for anything the releasing thread may hold (a mutex
//     held around the unlock, another callback's effect): that deadlocks, as it would in any
//     callback run by a notifier.
//   * Lifetime: the waiter object must stay alive from a pending start until its callback has
//     begun, or until cancel() returned true. The callback may destroy it (the library does not
//     touch it once the call has begun), or start it again. Do not destroy it while another
//     thread may be inside cancel() on it. Destroying a pending waiter first tries cancel(); if
//     that is too late, the program is aborted with a message (its callback is due and would run
//     on a dead object).
//   * Bad input: a `bit` that is not one bit, or is the waiters bit, throws std::invalid_argument;
//     starting a waiter that is pending throws pagewait::usage_error. Either way nothing is
//     queued and the word is not touched.
//   * fork(): waits pending in the parent are dropped from the child's copy of the wait table, as
//     blocking waits are; in the child their callbacks never run.
//   * ThreadSanitizer: a start publishes what was written before it to the callback, and the
//     callback's own accesses are checked (it runs outside pagewait's ignore region).
//   * Cost: start is one load when the bit is clear; else a bucket lock and an RMW, as a blocking
//     wait before it sleeps. No allocation, no system call, no thread: the node is in the waiter.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "pagewait/detail/async_sink.hpp"
#include "pagewait/detail/tsan.hpp"
#include "pagewait/pagewait.hpp"

namespace pagewait {

enum class async_start : std::uint8_t {
  done,     // the bit was clear: nothing queued, no callback
  pending,  // queued: exactly one callback follows, unless cancel() returns true
};

enum class async_result : std::uint8_t {
  cleared,    // a release cleared the bit after the start began
  cancelled,  // cancel() took effect after a release had claimed the waiter (see above)
};

namespace detail {
[[noreturn]] void async_destroyed_pending(const void* waiter) noexcept;
[[noreturn]] void async_started_pending(const void* waiter);
}  // namespace detail

template <word_type W>
class async_wait : private detail::async_sink {
 public:
  using callback = void (*)(async_wait& self, async_result result) noexcept;

  // `cb` is called once per pending start (above); `user_data` is yours, for the callback.
  explicit async_wait(callback cb, void* user_data = nullptr) : cb_(cb), user_(user_data) {
    if (!cb) throw std::invalid_argument("pagewait: async_wait needs a callback");
    this->complete = &async_wait::on_complete;
  }
  async_wait(const async_wait&) = delete;
  async_wait& operator=(const async_wait&) = delete;
  ~async_wait() {
    if (pending_.load(std::memory_order_acquire) && !cancel()) detail::async_destroyed_pending(this);
  }

  // Waits for `bit` of `word` to clear. Never blocks; see the contract above.
  async_start start_wait_clear(std::atomic<W>& word, std::type_identity_t<W> bit) {
    detail::check_bit(bit);
    if (pending_.load(std::memory_order_relaxed)) detail::async_started_pending(this);
    detail::tsan::async_publish(this);
    detail::tsan::acquiring t(&word);
    // Set before the node becomes visible: a release may complete it on another thread at once.
    pending_.store(true, std::memory_order_relaxed);
    if (detail::shipped<W>::start_wait_clear_async(word, W(bit), node_, this)) {
      pending_.store(false, std::memory_order_relaxed);
      t.waited(true);
      return async_start::done;
    }
    t.waited(false);
    return async_start::pending;
  }

  // Withdraws a pending wait if no release has claimed it yet (see the contract above).
  bool cancel() noexcept {
    if (!pending_.load(std::memory_order_acquire)) return false;
    if (!detail::shipped<W>::cancel_async(node_)) return false;
    pending_.store(false, std::memory_order_release);
    return true;
  }

  // Whether a start is pending: true from a pending start until its callback begins or cancel()
  // returns true. Only a hint while other threads may complete it.
  bool pending() const noexcept { return pending_.load(std::memory_order_acquire); }
  void* user_data() const noexcept { return user_; }

 private:
  static void on_complete(detail::async_sink* s, std::uint32_t token) noexcept {
    auto* self = static_cast<async_wait*>(s);
    detail::tsan::async_callback scope(self);
    const callback cb = self->cb_;
    // Cleared before the call, which may destroy the waiter or start it again.
    self->pending_.store(false, std::memory_order_release);
    cb(*self, token == detail::token_cleared ? async_result::cleared : async_result::cancelled);
  }

  detail::waiter_node<detail::native_policy> node_;
  callback cb_;
  void* user_;
  std::atomic<bool> pending_{false};
};

}  // namespace pagewait
