// <pagewait/async.hpp> — wait for a bit to clear, or lock it, without blocking a thread.
//
// The kernel's io_uring reads do not block on a locked page: they queue an entry whose wake
// function re-queues the request when the page is unlocked. async_wait is that, for a bit of your
// own word: it queues a node in pagewait's wait table, and the release that clears the bit (or
// hands you the lock) calls you back. Blocking waiters (wait_bit_clear, lock_bit) and
// asynchronous ones share every bit and every release; an asynchronous waiter is served exactly
// as a thread in wait_bit_clear or lock_bit would be, with the same fairness (a lock waiter that
// loses races earns a hand-off, CONTRACT §3.6).
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
//   * cancel() never blocks. True: the wait was withdrawn before any release claimed it, or a
//     release had claimed it but its callback was still queued behind the one now running on
//     this thread (a callback that cancels or destroys another waiter; a lock that callback
//     would have reported is unlocked on the waiter's behalf); no callback will come,
//     and the waiter may be started again or destroyed at once. False: too
//     late (or not pending, or another thread's cancel() withdrew it first): the callback will
//     run, or has run, exactly once, unless that other cancel() returned true. cancel() may be
//     called from several threads at once; at most one returns true. A cancel() that runs while
//     the start is still setting the waiter up returns false: the start decides (it queues, or
//     returns `done`, and then no callback comes); such a cancel may still take effect later as
//     a `cancelled` result, if a hand-off's re-queue meets the waiter. Its result is the
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
//     begun, or until cancel() returned true. The callback may run on another thread before
//     start_wait_clear has even returned `pending` (start does not touch the waiter once it is
//     queued). The callback may destroy the waiter (the library does not touch it once the call
//     has begun), or start it again. Another thread must not destroy it while it may be inside
//     cancel() on it, nor on seeing pending() turn false (the callback may still be running): let
//     the callback tell it. A cancel() from another thread must not race a start of the same
//     waiter (a restart in its callback included): it could withdraw the new wait. Destroying a
//     pending waiter first tries cancel(); if that is too late (a release on another thread has
//     claimed it and its callback is due), the program is aborted with a message.
//   * Bad input: a `bit` that is not one bit, or is the waiters bit, throws std::invalid_argument;
//     starting a waiter that is pending throws pagewait::usage_error. Either way nothing is
//     queued and the word is not touched.
//   * fork(): the child's wait table starts empty, as for blocking waits: a wait pending in the
//     parent is in no queue of the child and its callback never runs there (also when fork() is
//     called from inside a callback: the completions still queued behind it stay in the parent).
//     In the child, cancel() on such a waiter returns true (and destroying it is fine); it can
//     then be started again.
//   * ThreadSanitizer: a start publishes what was written before it to the callback, and the
//     callback's own accesses are checked (it runs outside pagewait's ignore region).
//   * Locks (start_lock): `done` means the start's own RMW took the bit. `pending` means exactly
//     one callback, unless cancel() returns true: `locked` (the waiter owns the bit: an unlock
//     handed it off, or woke it to race for the bit and it won) or `cancelled` (a cancel() came
//     too late to withdraw the wait, and the race was lost, so the wait ended without the lock).
//     The race runs on the thread of the release that woke the waiter, inside that release,
//     after its last touch of the word as a release and before it returns, so no other work of
//     that thread (a callback that unlocks and locks again) can overtake it. A lost race counts
//     toward the waiter's hand-off (CONTRACT §3.6) and queues it again, silently: no callback for
//     it. A grant is never dropped: a cancel() that finds the waiter claimed by another thread's
//     release returns false (the callback follows); a cancel() from a callback that runs before
//     the waiter's own on the same thread takes the waiter's callback off the list and returns
//     true, and if that callback would have said `locked`, it unlocks the bit on the waiter's
//     behalf (an unlock nested in the running callback). Owning the bit, you unlock it with
//     unlock_bit, from any thread. The race touches the word: as with lock_bit, the word must stay
//     alive while a lock wait on it is pending (unlike a wait for a clear, which never reads it
//     once queued).
//   * Cost: start is one load when the bit is clear (one `lock bts` when the lock is free); else a
//     bucket lock and an RMW, as a blocking wait before it sleeps. No allocation, no system call,
//     no thread: the node is in the waiter. A lock waiter woken to race costs the releasing thread
//     one RMW on the word (two and a bucket lock if it loses and queues again).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <type_traits>

#include "pagewait/detail/async_sink.hpp"
#include "pagewait/detail/deadline.hpp"
#include "pagewait/detail/tsan.hpp"
#include "pagewait/pagewait.hpp"

namespace pagewait {

enum class async_start : std::uint8_t {
  done,     // the bit was clear: nothing queued, no callback
  pending,  // queued: exactly one callback follows, unless cancel() returns true
};

enum class async_result : std::uint8_t {
  cleared,    // start_wait_clear: a release cleared the bit after the start began
  cancelled,  // cancel() took effect after a release had claimed the waiter (see above)
  locked,     // start_lock: the waiter owns the bit (handed off, or taken for it); unlock it
};

namespace detail {
[[noreturn]] void async_destroyed_pending(const void* waiter) noexcept;
[[noreturn]] void async_timer_destroyed_firing(const void* awaitable) noexcept;
[[noreturn]] void async_started_pending(const void* waiter);
}  // namespace detail

namespace detail {
// async_wait over any instantiation of the core whose policy delivers to detail::async_sink (the
// native policy and those derived from it, such as the demo's, which has a wait table of its
// own). Users take pagewait::async_wait<W>, on the library's own core and table.
template <word_type W, class Core>
class basic_async_wait : private detail::async_sink {
 public:
  using callback = void (*)(basic_async_wait& self, async_result result) noexcept;

  // `cb` is called once per pending start (above); `user_data` is yours, for the callback.
  explicit basic_async_wait(callback cb, void* user_data = nullptr) : cb_(cb), user_(user_data) {
    if (!cb) throw std::invalid_argument("pagewait: async_wait needs a callback");
    this->complete = &basic_async_wait::on_complete;
  }
  basic_async_wait(const basic_async_wait&) = delete;
  basic_async_wait& operator=(const basic_async_wait&) = delete;
  ~basic_async_wait() {
    if (state_.load(std::memory_order_acquire) == pending_state && !cancel())
      detail::async_destroyed_pending(this);
  }

  // Waits for `bit` of `word` to clear. Never blocks; see the contract above.
  async_start start_wait_clear(std::atomic<W>& word, std::type_identity_t<W> bit) {
    return start(word, W(bit), false);
  }

  // Locks `bit` of `word`. Never blocks. `done`: the bit was free and is now yours (one atomic
  // RMW, as lock_bit's fast path); no callback comes. `pending`: exactly one callback follows,
  // unless cancel() returns true first, with `locked` (the bit is yours: it was handed to you,
  // or taken for you, on the thread that runs the callback) or `cancelled` (a cancel() that came
  // too late to withdraw the wait still kept it from taking the lock). Either way, unlock_bit the
  // bit when done with it, as after lock_bit; a `locked` callback that cannot use the lock must
  // still unlock it.
  async_start start_lock(std::atomic<W>& word, std::type_identity_t<W> bit) {
    return start(word, W(bit), true);
  }

  // Withdraws a pending wait if no release has claimed it yet (see the contract above).
  bool cancel() noexcept {
    if (state_.load(std::memory_order_acquire) != pending_state) return false;
    // The start's store of `pending` runs in its TSan ignore region: this pairs with the start's
    // async_publish instead, so that TSan orders the waiter's fields before what follows.
    detail::tsan::async_acquire(this);
    if (fork_generation_ != detail::async_fork_generation()) {
      // Started before a fork(), and this is the child: its table started empty, so the wait is
      // in no queue and no release will complete it. Nothing to unlink; of racing cancels, the
      // one whose exchange finds it pending withdraws it.
      std::uint8_t expected = pending_state;
      return state_.compare_exchange_strong(expected, idle, std::memory_order_acq_rel);
    }
    // Claimed already, its completion may still be queued on this very thread (this is a
    // callback that runs before it): taken off that list, it will not be called.
    std::uint32_t token = 0;
    bool withdrawn;
    {
      [[maybe_unused]] detail::tsan::ignoring quiet;
      withdrawn = Core::cancel_async(node_) || detail::async_unqueue_completion(this, &token);
    }
    if (!withdrawn) return false;
    std::atomic<W>& word = *static_cast<std::atomic<W>*>(const_cast<void*>(node_.word.get()));
    const W bit = W(node_.bit);
    state_.store(idle, std::memory_order_release);
    // A lock the release handed to this waiter (or that it won) must not be dropped: released on
    // its behalf, a release nested in the running callback (its own callbacks run after it). The
    // waiter never owned it as far as its user can tell. The word is alive: the bit is held. Last,
    // after the waiter's own state: the waiter may live in the object the bit guards.
    if (token == detail::token_handoff) {
      [[maybe_unused]] detail::tsan::ignoring quiet;
      Core::release(word, bit, detail::release_kind::unlock);
    }
    return true;
  }

  // Whether a start is pending: true from a pending start until its callback begins or cancel()
  // returns true. Only a hint while other threads may complete it: another thread must not take
  // `false` here as leave to destroy the waiter (the callback may still be running); let the
  // callback tell it.
  bool pending() const noexcept { return state_.load(std::memory_order_acquire) == pending_state; }
  void* user_data() const noexcept { return user_; }

 private:
  enum : std::uint8_t { idle, starting, pending_state };

  async_start start(std::atomic<W>& word, W bit, bool lock) {
    detail::check_bit(bit);
    // `starting` keeps a concurrent cancel() away while the node is set up (it returns false:
    // the start decides), and a second start out (it throws).
    std::uint8_t expected = idle;
    if (!state_.compare_exchange_strong(expected, starting, std::memory_order_acquire))
      detail::async_started_pending(this);
    Core::prepare_async(node_, word, bit, this, lock);
    fork_generation_ = detail::async_fork_generation();
    detail::tsan::async_publish(this);
    detail::tsan::acquiring t(&word);
    // Pending before the node becomes visible: a release may complete it on another thread at
    // once, and its completion sets idle. Release: a cancel() that sees `pending` sees the node
    // set up.
    state_.store(pending_state, std::memory_order_release);
    if (lock ? Core::start_lock_async(word, bit, node_) : Core::start_wait_clear_async(word, bit, node_)) {
      state_.store(idle, std::memory_order_release);
      if (lock) {
        if constexpr (checked_build && std::is_same_v<Core, shipped<W>>)
          detail::checked::acquired_async(word, bit);
        t.locked(true);
      } else {
        t.waited(true);
      }
      return async_start::done;
    }
    // Not a touch of the waiter from here on: its callback may already have run and freed it.
    t.waited(false);
    return async_start::pending;
  }

  static void on_complete(detail::async_sink* s, std::uint32_t token) noexcept {
    auto* self = static_cast<basic_async_wait*>(s);
    detail::tsan::async_callback scope(self);
    const callback cb = self->cb_;
    async_result r = async_result::cancelled;
    if (token == detail::token_cleared) r = async_result::cleared;
    if (token == detail::token_handoff) {
      r = async_result::locked;
      if constexpr (checked_build && std::is_same_v<Core, shipped<W>>)
        detail::checked::acquired_async(
            *static_cast<std::atomic<W>*>(const_cast<void*>(self->node_.word.get())), W(self->node_.bit));
      // The new owner's acquire on the word, as after lock_bit: it owns the bit, so the word is
      // alive.
      detail::tsan::async_acquire(self->node_.word.get());
    }
    // Idle before the call, which may destroy the waiter or start it again.
    self->state_.store(idle, std::memory_order_release);
    cb(*self, r);
  }

  typename Core::node node_;
  callback cb_;
  void* user_;
  unsigned fork_generation_ = 0;
  std::atomic<std::uint8_t> state_{idle};
};
}  // namespace detail

template <word_type W>
using async_wait = detail::basic_async_wait<W, detail::shipped<W>>;

// ---------------------------------------------------------------------------------------------
// Coroutines.
//
//   bool ok = co_await pagewait::wait_bit_clear_async(page.flags, PG_WRITEBACK, loop);
//   bool ok = co_await pagewait::wait_bit_clear_async(page.flags, PG_WRITEBACK, loop, stop_token);
//   const bool owner = co_await pagewait::lock_bit_async(page.flags, PG_LOCKED, loop[, stop_token]);
//   if (owner) {
//     ...  // the coroutine owns the bit
//     pagewait::unlock_bit(page.flags, PG_LOCKED);
//   }
//   // With a timeout (false once it passes first), on a scheduler that also keeps timers:
//   const bool got = co_await pagewait::try_lock_bit_async_for(page.flags, PG_LOCKED, loop, 5ms);
//
// (Bind the result first, as above: GCC 12 miscompiles a co_await that suspends inside an `if`
// condition, with any awaitable, and the coroutine crashes when it is resumed. Clang 14 does not.)
//
// Suspends until the bit is clear (or, for lock_bit_async, is the coroutine's), then resumes the
// coroutine through `loop.post(handle)`: never inline on the releasing thread (a coroutine resumed
// there would run on a thread that is not its own, inside another thread's unlock_bit or
// clear_bit_and_wake), unless you pass pagewait::resume_inline as the scheduler.
// wait_bit_clear_async returns true once the bit was cleared (as wait_bit_clear: after a clear that
// happened after the co_await began, or at once if it was clear); lock_bit_async returns true once
// the coroutine owns the bit (as lock_bit: taken at once, handed off, or taken after a release).
// Both return false if `stop` was requested first: nothing was granted. A bit found clear (or taken
// at once) wins over a stop already requested. No suspension at all when the bit is clear (free):
// one load (one `lock bts`). The scheduler is anything with `void post(std::coroutine_handle<>)
// noexcept` that may be called from any thread and runs the handle later (an event loop's queue, an
// executor).
//
// A lock granted to a suspended coroutine is held until the scheduler resumes it: the loop's
// latency is part of the critical section, and a thread of that loop must not block in lock_bit
// on a bit it may have granted to one of its own coroutines (that coroutine cannot run: a
// deadlock, as locking a mutex twice on one thread).
//
// Destroying a coroutine suspended here (handle.destroy()) is allowed only while no release, no
// stop request and no timer can be completing its wait at the same time (the usual case: it is
// suspended on a bit nobody is about to clear, its stop source is not being triggered, and its
// timer fires only on the thread that destroys it, an event loop's). Its wait is then cancelled and
// its timer disarmed. If a release has already claimed it, or its timer has been taken to fire, its
// resumption is due and the program aborts with a message (as for a pending async_wait); a release,
// a stop or a timer racing the destroy is undefined. Destroying one whose resumption was posted but
// has not run is fine (a loop shutting down). A timed awaitable's destruction calls the scheduler's
// disarm_timer: the scheduler must outlive it. The bit argument is checked when the awaitable is
// made (std::invalid_argument), before the word is touched.
//
// post() runs inside the release that completes the wait (and inside request_stop() for a stop),
// on that thread, which may be the loop's own thread (a coroutine that clears the bit another
// coroutine waits for): post() must not block, and must not take a lock the loop holds while it
// resumes coroutines.
template <class S>
concept async_scheduler = requires(S& s, std::coroutine_handle<> h) {
  { s.post(h) }
  noexcept;
};

// Resumes the coroutine at once, inside post(): on the thread and in the call that decided the
// wait (the release that cleared or handed off the bit, after its last touch of the word and of
// every waiter node and with no pagewait lock held; or a request_stop()). An
// explicit opt-in: the coroutine then runs as a callback does (see the contract above), so until
// its next suspension it must not block and must not wait for anything the deciding thread may
// hold. Not a timed scheduler.
struct resume_inline {
  void post(std::coroutine_handle<> h) noexcept { h.resume(); }
};

// A timed wait's deadline, as the scheduler sees it: a node owned by the awaitable, armed by it
// with the scheduler's arm_timer(t, at) and withdrawn with disarm_timer(t). `slot` is the
// scheduler's (a heap index, a link); the library never reads it.
class async_timer {
 public:
  // The scheduler calls this once, at or after the deadline, unless disarm_timer(*this) returned
  // true first. The timer may be freed during the call: do not touch it after fire() has begun.
  void fire() noexcept { fire_(*this); }
  std::chrono::steady_clock::time_point deadline() const noexcept { return at_; }
  void* slot = nullptr;

 protected:
  using fire_fn = void (*)(async_timer&) noexcept;
  explicit async_timer(fire_fn f) noexcept : fire_(f) {}
  ~async_timer() = default;
  async_timer(const async_timer&) = delete;
  async_timer& operator=(const async_timer&) = delete;
  fire_fn fire_;
  std::chrono::steady_clock::time_point at_{};
};

// A scheduler that can also watch deadlines (for the _for / _until forms below):
//   arm_timer(t, at): call t.fire() once, at or after `at`, from any thread (typically the
//     loop's), with no lock held that disarm_timer takes (or from inside arm_timer, if the time
//     has already come).
//   disarm_timer(t): true if fire() has not been called and now never will be; false if it has
//     been called (it may still be running, or be the caller: a disarm from inside fire() is
//     false). May be called from any thread, inside a release or a fire(): must not block.
// Each timer is armed at most once per co_await, and disarmed at most once.
template <class S>
concept async_timed_scheduler = async_scheduler<S> &&
    requires(S& s, async_timer& t, std::chrono::steady_clock::time_point at) {
  { s.arm_timer(t, at) }
  noexcept;
  { s.disarm_timer(t) }
  noexcept->std::same_as<bool>;
};

namespace detail {
struct no_timer {};

// The awaitable behind wait_bit_clear_async (Lock = false) and lock_bit_async (Lock = true), and
// with Timed = true their _for / _until forms.
//
// Who resumes the coroutine: three parties must each be finished with the awaitable first, and
// the last one resumes it. The suspending side (await_suspend, until it has armed the timer and
// registered the stop callback), the decision (the wait's callback, or a stop or timer whose
// cancel() withdrew the wait), and, when a timer was armed, the timer (a successful disarm_timer,
// or the end of fire()). Two exchanges settle it: `state_` between the suspending side and the
// decision; the second of those two disarms the timer, and if that fails (fire() has begun),
// `timer_state_` between it and fire(). Nobody waits for anybody, and a fire() that runs late
// never touches a frame that has been resumed: the frame is not resumed before fire() is done.
template <word_type W, async_scheduler S, bool Lock, class Core = shipped<W>, bool Timed = false>
class [[nodiscard]] bit_awaitable {
 public:
  bit_awaitable(std::atomic<W>& word, W bit, S& sched, std::stop_token stop = {}) requires(!Timed)
      : word_(word),
        bit_((detail::check_bit(bit), bit)),
        sched_(sched),
        stop_(std::move(stop)),
        wait_(&on_done, this) {}
  bit_awaitable(std::atomic<W>& word, W bit, S& sched, deadline at, std::stop_token stop = {}) requires Timed
      : word_(word),
        bit_((detail::check_bit(bit), bit)),
        sched_(sched),
        stop_(std::move(stop)),
        wait_(&on_done, this),
        at_(at) {}
  bit_awaitable(const bit_awaitable&) = delete;
  bit_awaitable& operator=(const bit_awaitable&) = delete;
  ~bit_awaitable() {
    // A coroutine destroyed while suspended here (see the contract) with its timer armed and
    // not settled: the timer must not fire into the freed frame. If it has been taken to fire
    // (disarm fails), a timer is racing the destroy, or its fire() is still to resume the frame:
    // said, and stopped. (A timer already settled by the decision, or whose fire() is done, is
    // not disarmed again: the scheduler disarms each timer at most once.)
    if constexpr (Timed) {
      if (timer_.armed && timer_state_.load(std::memory_order_acquire) != fire_done &&
          !sched_.disarm_timer(timer_))
        detail::async_timer_destroyed_firing(this);
    }
  }

  // Awaited once. (A second co_await of the same awaitable starts its waiter again: if the first
  // wait is still pending that throws usage_error inside await_suspend, which is noexcept, and
  // ends the program with that message.)
  bool await_ready() noexcept {
    state_.store(running, std::memory_order_relaxed);
    detail::tsan::acquiring t(&word_);
    if constexpr (Lock) {
      ok_ = t.locked(Core::try_lock(word_, bit_));
      // The coroutine owns it, wherever it is resumed later: any thread may unlock it.
      if constexpr (checked_build && std::is_same_v<Core, shipped<W>>)
        if (ok_) detail::checked::acquired_async(word_, bit_);
    } else {
      ok_ = t.waited(!(word_.load(std::memory_order_acquire) & bit_));
    }
    if (ok_ || stop_.stop_requested()) return true;
    // A deadline already past: one try, as the blocking timed forms; nothing queued.
    if constexpr (Timed)
      if (!at_.is_never() && deadline::clock::now() >= at_.at) return true;
    return false;
  }

  bool await_suspend(std::coroutine_handle<> h) noexcept {
    h_ = h;
    if ((Lock ? wait_.start_lock(word_, bit_) : wait_.start_wait_clear(word_, bit_)) == async_start::done) {
      ok_ = true;
      return false;
    }
    // The callback may have run already, on another thread; it cannot have resumed us: it
    // posts only once `state_` says we are suspended (below), so the frame is ours until then.
    // The timer and the stop callback are set up only now that the wait is queued, so that
    // whichever fires finds a wait to cancel. Registering the stop callback and request_stop()
    // are read-modify-writes of one stop state, so one of them comes first: a stop requested
    // before runs on_stop here, inline, and finds the wait to cancel; one requested after runs it
    // on the requesting thread. (Registered before the start, a stop landing in between could
    // find nothing to cancel, and a second look after the start would need sequentially
    // consistent fences on both sides not to miss it.) The timer is armed before the exchange
    // below: the decision, if it comes second, sees it armed and disarms it.
    if constexpr (Timed) {
      if (!at_.is_never()) {
        timer_state_.store(timer_armed, std::memory_order_relaxed);
        timer_.arm(this, at_.at);
        sched_.arm_timer(timer_, at_.at);
      }
    }
    if (stop_.stop_possible()) stop_cb_.emplace(stop_, on_stop{this});
    if (state_.exchange(suspended, std::memory_order_acq_rel) != done) return true;
    // The decision came first: this side is the second of the two.
    return !timer_settled();
  }

  bool await_resume() noexcept {
    // Waits for a stop callback running on another thread (std::stop_callback's destructor
    // does): it may still be inside cancel() on our waiter. (A timer needs nothing here: the
    // coroutine is not resumed before its fire() is done; from here on it is settled.)
    stop_cb_.reset();
    if constexpr (Timed) timer_.armed = false;
    return ok_;
  }

 private:
  enum : std::uint8_t { running, suspended, done };
  enum : std::uint8_t { timer_armed, settling, fire_done };
  struct on_stop {
    bit_awaitable* self;
    void operator()() const noexcept {
      if (self->wait_.cancel()) self->finish(false);
    }
  };
  struct timer_node : async_timer {
    timer_node() noexcept : async_timer(&bit_awaitable::on_fire) {}
    void arm(bit_awaitable* owner, deadline::clock::time_point at) noexcept {
      self = owner;
      at_ = at;
      armed = true;
    }
    bit_awaitable* self = nullptr;
    bool armed = false;
  };
  // `cancelled` when a stop came too late to withdraw the wait but kept it from the lock;
  // `cleared` or `locked` otherwise.
  static void on_done(basic_async_wait<W, Core>& w, async_result r) noexcept {
    static_cast<bit_awaitable*>(w.user_data())->finish(r != async_result::cancelled);
  }
  // The wait is decided (by its callback, or by a stop or timer that withdrew it). Whoever of
  // this and await_suspend comes second settles the timer and, if that is the last party,
  // resumes the coroutine: await_suspend by not suspending, this by posting. After the post
  // nothing here is touched: the coroutine may run and end at once.
  void finish(bool ok) noexcept {
    ok_ = ok;
    S& sched = sched_;
    const std::coroutine_handle<> h = h_;
    if (state_.exchange(done, std::memory_order_acq_rel) == suspended && timer_settled()) sched.post(h);
  }
  // Called once, by the second of await_suspend and the decision: true if the timer is out of
  // the way (none armed, or disarmed before it fired, or its fire() is done), so the caller
  // resumes the coroutine; false if a fire() is still running, which then resumes it at its end.
  bool timer_settled() noexcept {
    if constexpr (Timed) {
      if (!timer_.armed) return true;
      if (sched_.disarm_timer(timer_)) {
        timer_.armed = false;  // settled: a destroy before the resumption must not disarm again
        return true;
      }
      // fire() has begun (this may be inside it). Of this and the end of fire(), the second
      // resumes.
      if (timer_state_.exchange(settling, std::memory_order_acq_rel) != fire_done) return false;
      // fire() is done, and the frame is still ours. (Not written when the exchange found the
      // timer armed: fire() may then resume, and free, the frame at any moment.)
      timer_.armed = false;
      return true;
    } else {
      return true;
    }
  }
  static void on_fire(async_timer& t) noexcept {
    bit_awaitable* self = static_cast<timer_node&>(t).self;
    // A timeout is a cancel: it withdraws the wait if no release has claimed it (the wait then
    // ends with false), else the release's result stands. Either way the decision's finish()
    // cannot resume the coroutine before the exchange below: its timer_settled() fails to
    // disarm (fire() has begun) and leaves the resumption to whichever exchange comes second.
    if (self->wait_.cancel()) self->finish(false);
    S& sched = self->sched_;
    const std::coroutine_handle<> h = self->h_;
    if (self->timer_state_.exchange(fire_done, std::memory_order_acq_rel) == settling) sched.post(h);
  }

  std::atomic<W>& word_;
  W bit_;
  S& sched_;
  std::stop_token stop_;
  std::coroutine_handle<> h_{};
  bool ok_ = false;
  std::atomic<std::uint8_t> state_{running};
  std::atomic<std::uint8_t> timer_state_{timer_armed};
  basic_async_wait<W, Core> wait_;
  [[no_unique_address]] std::conditional_t<Timed, deadline, no_timer> at_{};
  [[no_unique_address]] std::conditional_t<Timed, timer_node, no_timer> timer_{};
  // After wait_, so destroyed before it: a stop callback still running on another thread is
  // waited for before the waiter it cancels goes.
  std::optional<std::stop_callback<on_stop>> stop_cb_;
};
}  // namespace detail

template <word_type W, async_scheduler S>
using bit_clear_awaitable = detail::bit_awaitable<W, S, false>;
template <word_type W, async_scheduler S>
using bit_lock_awaitable = detail::bit_awaitable<W, S, true>;
template <word_type W, async_timed_scheduler S>
using timed_bit_clear_awaitable = detail::bit_awaitable<W, S, false, detail::shipped<W>, true>;
template <word_type W, async_timed_scheduler S>
using timed_bit_lock_awaitable = detail::bit_awaitable<W, S, true, detail::shipped<W>, true>;

template <word_type W, async_scheduler S>
bit_clear_awaitable<W, S> wait_bit_clear_async(std::atomic<W>& word, std::type_identity_t<W> bit, S& sched,
                                               std::stop_token stop = {}) {
  return bit_clear_awaitable<W, S>(word, W(bit), sched, std::move(stop));
}

template <word_type W, async_scheduler S>
bit_lock_awaitable<W, S> lock_bit_async(std::atomic<W>& word, std::type_identity_t<W> bit, S& sched,
                                        std::stop_token stop = {}) {
  return bit_lock_awaitable<W, S>(word, W(bit), sched, std::move(stop));
}

// Timed forms: as above, but the result is also false once the deadline passes first (nothing
// granted). The timeout rules are the blocking forms' ("Timeouts" in <pagewait/pagewait.hpp>):
// a duration or a time point on any clock; one that is already past makes one try and does not
// suspend; a NaN throws std::invalid_argument before the word is touched; one beyond the clock's
// horizon never fires (no timer is armed). A timeout is a cancel() of the wait: a release that
// had already claimed it wins (a lock handed over as the deadline passed is the coroutine's).
template <word_type W, async_timed_scheduler S, class Clock, class Duration>
timed_bit_clear_awaitable<W, S> wait_bit_clear_async_until(
    std::atomic<W>& word, std::type_identity_t<W> bit, S& sched,
    const std::chrono::time_point<Clock, Duration>& abs, std::stop_token stop = {}) {
  return timed_bit_clear_awaitable<W, S>(word, W(bit), sched, detail::deadline::until(abs), std::move(stop));
}

template <word_type W, async_timed_scheduler S, class Rep, class Period>
timed_bit_clear_awaitable<W, S> wait_bit_clear_async_for(std::atomic<W>& word, std::type_identity_t<W> bit,
                                                         S& sched,
                                                         const std::chrono::duration<Rep, Period>& rel,
                                                         std::stop_token stop = {}) {
  return timed_bit_clear_awaitable<W, S>(word, W(bit), sched, detail::deadline::after(rel), std::move(stop));
}

template <word_type W, async_timed_scheduler S, class Clock, class Duration>
timed_bit_lock_awaitable<W, S> try_lock_bit_async_until(std::atomic<W>& word, std::type_identity_t<W> bit,
                                                        S& sched,
                                                        const std::chrono::time_point<Clock, Duration>& abs,
                                                        std::stop_token stop = {}) {
  return timed_bit_lock_awaitable<W, S>(word, W(bit), sched, detail::deadline::until(abs), std::move(stop));
}

template <word_type W, async_timed_scheduler S, class Rep, class Period>
timed_bit_lock_awaitable<W, S> try_lock_bit_async_for(std::atomic<W>& word, std::type_identity_t<W> bit,
                                                      S& sched, const std::chrono::duration<Rep, Period>& rel,
                                                      std::stop_token stop = {}) {
  return timed_bit_lock_awaitable<W, S>(word, W(bit), sched, detail::deadline::after(rel), std::move(stop));
}

}  // namespace pagewait
