// checker/model.hpp — the model runtime: a runtime policy for detail::core whose every operation
// is a step of a logical thread under the checker's scheduler.
//
// The checker instantiates the shipped core, detail::core<model_policy, R, W>, from
// include/pagewait/detail/core.hpp; nothing of the protocol is copied here. This file supplies
// what the core asks of a policy (native_policy.hpp lists it):
//
//   synchronisation operations   word atomics (load, test_and_set, fetch_or/and/xor, CAS),
//                                bucket lock/unlock, parker prepare/park/unpark, clock reads.
//                                Each is a *branch point*: the thread stops before it and the
//                                scheduler chooses who performs the next one.
//   plain accesses               node fields (P::cell), walk visits (P::visit), node death
//                                (P::retire_node). Checked at every access, never branched on.
//
// Why branching on synchronisation operations only is enough: node fields are plain memory in
// the native build, so any two conflicting accesses to one of them must be ordered by
// happens-before through the synchronisation operations, or the native program has a data
// race. A happens-before race detector (vector clocks) runs on every field access; in a
// race-free execution the value every plain read returns is fixed by the order of the
// synchronisation operations, so interleaving plain accesses finer would reach no new state.
// (This is the DRF-SC argument; a race, should one occur, is itself reported as a violation.)
//
// Memory model: the search assumes sequential consistency — every word atomic takes effect in
// one global order. The memory orders the core passes are used only to compute happens-before
// for the race detector and for the "clear visible to the woken waiter" check, not to produce
// weaker behaviours; weak orderings are covered by TSan runs of the native tests and by the
// comments at each ordering in core.hpp (see docs/CHECKER.md).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <new>
#include <stop_token>
#include <string>
#include <type_traits>
#include <vector>

#include "fiber.hpp"
#include "pagewait/detail/deadline.hpp"
#include "pagewait/detail/parker.hpp"
#include "pagewait/detail/wait_table.hpp"
#include "pagewait/fairness.hpp"

namespace pagewait::check {

// Six for a scenario's threads and one for the probe that checks the state at quiescence.
inline constexpr int max_threads = 7;
inline constexpr int max_slots = 4;
using vclock = std::array<std::uint32_t, max_threads>;

// What a thread stopped at a branch point is about to do, for the scheduler's "enabled" test.
enum class pending : std::uint8_t {
  start,      // not started yet
  run,        // an operation that can always proceed
  lock,       // bucket lock: enabled while the lock is free
  park,       // enabled once a token arrived; a timed park is always enabled (it may time out)
  alloc,      // take a freed object slot: enabled once the slot is free (memory reuse)
  bit_clear,  // a user step that needs the bit clear first (starting writeback): enabled then
  quiescent,  // the quiescence probe: enabled once every other thread has returned
  kill,       // the killer: enabled while the victim may die (see kill_victim), or has returned
  gone        // the recoverer: enabled once the victim has died or returned
};

struct model_lock {
  int owner = -1;
  unsigned visits = 0;  // walk visits in the current hold [I7]
  vclock vc{};
};

struct model_parker {
  int thread = -1;
  std::uint32_t token = 0;
  vclock vc{};       // the unparkers' clocks: park's acquire joins them
  vclock prep_vc{};  // the preparer's clock (prepare is a release store, for a rebuild's look)
  void prepare();
  std::uint32_t park(const detail::deadline& dl, const std::stop_token* stop);
  void unpark(std::uint32_t token);
};

// An asynchronous waiter's sink (pagewait/async.hpp on the model). `actor` is the scenario thread
// that started the wait (the table view names the node by it). The completion is the scenario's
// callback, run on the thread whose release delivered the token, as the native one is: queued by
// deliver (P::complete), run by P::run_completions. The runtime checks [C1] (no completion under
// a bucket lock) and "exactly once" (never twice, never after cancel withdrew the wait).
struct model_async_sink {
  int actor = -1;
  std::function<void(std::uint32_t)> callback;
  model_async_sink* next_done = nullptr;
  std::uint32_t token = 0;
  unsigned completions = 0;
  bool pending = false;    // its start returned "pending" (the scenario says so)
  bool withdrawn = false;  // cancel_async returned true
};

// Checker state of one node field: liveness and the race detector's last write and reads.
struct cell_meta {
  static constexpr std::uint32_t live_magic = 0x4c495645u, dead_magic = 0x44454144u;
  std::uint32_t magic = live_magic;
  int wthread = -1;
  std::uint32_t wclock = 0;
  vclock reads{};
};

// An object of the scenario: a slot of the model heap, in one of its lives.
struct obj {
  int slot = -1;
  std::uint32_t gen = 0;
};

// One step of an execution, for the counterexample trace.
struct step_record {
  int thread = -1;
  const char* op = "";
  int slot = -1;  // the word's object slot, -1 if the step is not on a word
  std::uint32_t gen = 0;
  bool on_word = false;
  std::uint64_t arg = 0, before = 0, after = 0;
  std::int64_t n = -1;  // a number the step reports (token, visits), -1 if none
  const char* note = nullptr;
};

// One node of the wait table as the checker sees it (raw, unchecked reads).
struct node_info {
  const void* node = nullptr;
  int thread = -1;  // -1 for a bookmark
  const void* word = nullptr;
  std::uint64_t bit = 0;
  bool bookmark = false;
  bool exclusive = false;
  bool queued = false;         // in a bucket queue (else in a release's joined list)
  bool state_claimed = false;  // the node's `state` field says claimed
  bool state_queued = false;   // ... says queued (neither: idle, in no list)
};
inline constexpr std::size_t max_nodes = 32;  // nodes of one execution's table at once, bookmarks too

// The checker's view of the wait table, to check invariants about the queue. Implemented for
// each policy by table_view_for<P> (the node type depends on P).
struct table_view {
  virtual ~table_view() = default;
  virtual bool linked(const void* node) const = 0;                     // in a queue or a joined list
  virtual void queued_words(std::vector<const void*>& out) const = 0;  // words of queued waiters
  virtual void waiters_for(const void* word, std::uint64_t bit, std::vector<int>& threads) const = 0;
  virtual bool idle() const = 0;  // no node queued, no release registered
  // Every node queued or joined, in queue order; at most `cap` (returns how many there are).
  virtual std::size_t nodes(node_info* out, std::size_t cap) const = 0;
  // The first exclusive waiter queued for (word, bit), in queue order, whatever shared waiters
  // are ahead of it: its thread (-1 if none), and whether it has earned a hand-off at `now`.
  virtual int first_exclusive(const void* word, std::uint64_t bit, std::chrono::steady_clock::time_point now,
                              bool& earned) const = 0;
};

class chooser;

struct violation {
  bool found = false;
  std::string what;
  int thread = -1;
};

class runtime {
 public:
  // ---- configuration, set by a scenario's setup before each execution ----
  unsigned chunk_visits = 64;
  fairness_settings fair{1, std::chrono::milliseconds(1)};
  unsigned max_steps = 4000;
  std::vector<std::string> bit_names;  // bit i's name for traces ("" if unnamed)
  bool trace_on = true;

  // ---- scenario construction ----
  void reset();
  obj new_object(const char* name, std::uint64_t value, bool wide, int refs);
  // `at_quiescence`: the thread starts only once every other thread has returned (the probe).
  int add_thread(std::string name, std::function<void()> body, bool at_quiescence = false);
  // Setup: `thread` owns lock bit `bit` of `o` from the start (the word's value has it set).
  void hold_at_start(obj o, std::uint64_t bit, int thread) {
    slots_[std::size_t(o.slot)].owner[std::size_t(__builtin_ctzll(bit))] = thread;
  }
  void set_table(std::unique_ptr<table_view> v) { view_ = std::move(v); }

  // ---- one execution ----
  // Runs every thread to completion under `c`'s choices. Returns the violation, if any.
  const violation& run(chooser& c);
  const std::vector<step_record>& trace() const { return trace_; }
  unsigned steps() const { return steps_; }
  std::size_t thread_count() const { return threads_.size(); }
  const std::string& thread_name(int t) const { return threads_[std::size_t(t)].name; }
  std::string slot_name(int slot, std::uint32_t gen) const;
  std::string describe_word(std::uint64_t v, bool wide) const;
  bool slot_wide(int slot) const { return slots_[std::size_t(slot)].wide; }

  // ---- called on a logical thread: synchronisation operations (branch points) ----
  int begin_word(const void* w, const char* op);  // stops, then checks the access is to a live object
  void end_word(int slot, const char* op, std::memory_order mo, bool writes, std::uint64_t arg,
                std::uint64_t before, std::uint64_t after);
  void lock(model_lock& l);
  void unlock(model_lock& l);
  void parker_prepare(model_parker& p);
  std::uint32_t parker_park(model_parker& p, const detail::deadline& dl);
  void parker_unpark(model_parker& p, std::uint32_t token);
  // A scenario's event loop waking its thread with a completion's result: an unpark that is not
  // the protocol's (what the release granted was checked when it delivered the token).
  void loop_wake(model_parker& p, std::uint32_t token);
  std::chrono::steady_clock::time_point now();
  model_parker& current_parker() { return threads_[std::size_t(cur_)].parker; }
  // A violation found by a policy's own checks (the offset-shaped policy's domain rules).
  [[noreturn]] void violate(const char* what);

  // ---- deaths (issue 12: a process killed while it waits; docs/CHECKER.md, "Deaths") ----
  // A scenario names one thread its victim. The killer thread's one step kills it, at any point
  // the search chooses while the victim's wait scope is open (from the moment its node and
  // parker are set up in its slot until its wait returns) and it holds no bucket lock, or does
  // nothing if the victim has returned: a killed thread never runs again, its node stays in its
  // slot. The recoverer then finishes its wait (core::finish_dead_wait), as a live process does.
  int victim = -1;
  void kill_victim();
  // The recoverer: blocks until the victim has died (true) or returned (false). Its death is seen
  // as a process's death is, through the kernel: what the victim did happens-before what follows.
  bool victim_gone();
  // The recoverer: reads a dead waiter's parker (a step; acquire, as a park's load), and blocks
  // until a token is there.
  std::uint32_t read_token(model_parker& p);
  void await_token(model_parker& p);
  // The policy's wait scope opens (after the node and the parker are set up) and closes.
  void wait_scope_open(bool open) { me().in_wait_scope = open; }
  // A release made for a dead waiter (core::finish_dead_wait; P::dead_release_begin/end): the
  // lock handed to it, or won for it in its race, is released by the recoverer, as an unlock.
  void dead_release_begin(const void* word, std::uint64_t bit, bool unlock = true);
  void dead_release_end();
  // A victim that may die holding a bucket lock (a scenario sets kill_anywhere): also while its
  // release scope is open, and while it holds a bucket lock, except between its release's
  // decision and its clearing step (`decided_window`), where a recoverer cannot tell whether the
  // bit was cleared and leaves it set, as held by the dead (CONTRACT 3.12): not checked here.
  bool kill_anywhere = false;
  void release_scope_open(bool open) { me().in_release_scope = open; }
  void release_decided(bool clears) { me().decided_window = clears; }
  void release_cleared() { me().decided_window = false; }
  // The recoverer takes over the bucket lock the dead victim holds (core::rebuild follows).
  void take_over(model_lock& l);
  // A rebuild's look at a slot (P::each_waiter): what its wait scope's opening published, then
  // the parker's token, with the clock of whoever set it or cleared it (acquire). A step.
  std::uint32_t read_parker(model_parker& p, const vclock& opened);
  bool is_dead(int t) const { return threads_[std::size_t(t)].dead; }
  const vclock& my_clock() { return me().vc; }
  // Asynchronous waiters' completions: queued on the delivering thread, run after its deliver.
  void async_queue(model_async_sink& s, std::uint32_t token);
  // deliver reached an asynchronous node with the release's token: what the release granted is
  // checked as for a thread it unparks, and until async_settled the thread acts for the waiter
  // (a lock waiter's race, core::race_async: its touches of the word are not the releaser's).
  void async_delivered(model_async_sink& s, std::uint32_t token);
  void async_settled() { me().acting_for = -1; }
  void async_run();
  // A sink that lives until the execution ends (so that a late second completion, or one after
  // a withdrawing cancel, is still counted when its actor has returned), checked at the end.
  model_async_sink& new_sink() { return sinks_.emplace_back(); }

  // ---- plain accesses (checked, not branched on) ----
  void cell_init(cell_meta& m);
  void cell_read(const cell_meta& m);
  void cell_write(cell_meta& m);
  // Marks the cell dead. Out of line on purpose: a store to a member in a destructor is dead to
  // the optimizer (the object's lifetime ends), and GCC removes it (-flifetime-dse), which hid
  // every later touch of a destroyed node from the liveness check; only the race detector, when
  // the touch came from another thread, still saw it.
  void cell_retire(cell_meta& m);
  void visit(const void* node);
  void retire_node(const void* p);

  // ---- scenario steps (user code around the core) ----
  template <class W>
  std::atomic<W>& word(obj o) {
    if constexpr (sizeof(W) == 4)
      return slots_[std::size_t(o.slot)].w32;
    else
      return slots_[std::size_t(o.slot)].w64;
  }
  void set_target(obj o) { threads_[std::size_t(cur_)].target = o; }
  obj alloc(int slot, std::uint64_t value);  // waits for the slot to be free
  void get(obj o);                           // take a reference (the pin)
  void put(obj o);                           // drop one; the last frees the object
  void start_bit(obj o, std::uint64_t bit);  // waits for the bit clear, then sets it (writeback)
  struct wait_start {
    obj o;
    std::uint64_t bit;
    bool clear_at_start;
    std::size_t clears;
  };
  wait_start begin_wait(obj o, std::uint64_t bit);
  void end_wait(const wait_start& s, bool returned_true);
  void acquired(obj o, std::uint64_t bit);  // a lock call returned true
  void lock_failed();                       // a timed lock call returned false
  // An asynchronous waiter's cancel came too late (a release had claimed it): as for a deadline
  // that passed while claimed, it must never be queued again (checked at every bucket unlock).
  void cancel_too_late() { me().must_not_requeue = true; }
  void locking(obj o, bool timed);  // a lock call begins
  void releasing(obj o, std::uint64_t bit);
  // A release (unlock or clear-and-wake) of (o, bit) begins and ends, for the checks of its
  // walk and its wake-ups below. `decides`: an unlock of the shipped protocol, whose hand-off
  // decisions are checked (the old protocols clear before they walk and may lose a hand-off).
  void begin_release(obj o, std::uint64_t bit, bool unlock, bool decides);
  void end_release();
  // [I6] An unlock that begins while the first exclusive waiter queued for the bit has earned a
  // hand-off must hand the bit to it, not clear it, whatever shared waiters are queued ahead.
  // `earned_waiter` is taken before the release (the thread, or -1 when no untimed earned
  // waiter is first: a timed one may leave before the walk reaches it); `check_handoff` after.
  struct handoff_due {
    int thread = -1;
    std::size_t clears = 0;
  };
  handoff_due earned_waiter(obj o, std::uint64_t bit);
  void check_handoff(const handoff_due& d, obj o, std::uint64_t bit);
  // [I6] for every lock waiter the unlock reaches, queued or joined: with max_lost_races 0
  // every lock waiter has earned a hand-off from its first queueing, so an unlock of the shipped
  // protocol must never wake one with token_retry (checked at the unpark). Set around an unlock.
  void unlock_must_hand_off(bool on) { me().all_earned_unlock = on; }
  // core: a walk that found its bucket reset (core::reset) starts again, from the head of the
  // queue, where it has put back what it had claimed.
  void walk_restarted();
  // core: the designated waker (CONTRACT 3.4). An unlock that woke `node`'s waiter to race made it
  // the designated waker of (word, bit) and cleared the waiters bit, though lock waiters of
  // (word, bit) stay queued: the [I4] check lets those (and only those) be queued with it clear
  // until the waiter's race (`begin` false) sets it again. Keyed by node: a recoverer may finish
  // the race of a waiter that died after making it.
  void designated(const void* word, std::uint64_t bit, const void* node, bool begin);
  // [I1] directly, for a protocol that claims it without a pin (atomic-clear): between these
  // two calls, once the release's atomic step has cleared the bit (or a hand-off token has been
  // delivered), any further access to the word by the releaser is a violation, whether or not
  // the schedule frees the object.
  void begin_last_touch_check(obj o, std::uint64_t bit);
  void end_last_touch_check();
  struct waiter_snapshot {  // fixed-size: it lives on a fiber that may be abandoned
    std::size_t count = 0;
    std::array<int, max_threads> threads{};
    std::array<std::uint32_t, max_threads> waits{};
    // Races lost in its lock call: a lock waiter woken to race that lost and queued again is a
    // new queueing (with a pinning protocol the release is still running until it drops its pin).
    std::array<unsigned, max_threads> retries{};
  };
  waiter_snapshot snapshot_waiters(obj o, std::uint64_t bit);
  void check_woken(const waiter_snapshot& s, obj o, std::uint64_t bit);
  // [I4] "the next release clears it": once every thread has returned, a release on each live
  // word whose waiters bit is still set must clear it (nobody waits any more). The objects to
  // probe, for the scenario's last thread (enabled once every other thread has returned).
  std::size_t live_objects(std::array<obj, max_slots>& out) const;
  bool table_idle() const { return view_->idle(); }
  void check_waiters_bit_clear(obj o);

  // Reports msg_ as the violation and abandons the calling fiber.
  [[noreturn]] void fail();
  std::string msg_;
  std::chrono::steady_clock::time_point clock() const { return clock_; }
  int current() const { return cur_; }

 private:
  struct clear_event {
    std::uint64_t bit;
    int thread;
    std::uint32_t clock;
  };
  struct slot {
    std::atomic<std::uint32_t> w32{0};
    std::atomic<std::uint64_t> w64{0};
    const char* name = "";
    bool wide = false;
    bool live = false;
    bool used = false;
    std::uint32_t gen = 0;
    int refs = 0;
    vclock rel{};
    std::vector<clear_event> clears;
    std::array<int, 64> owner{};
    unsigned calls_ended = 0;  // waits and lock calls on this object that returned
  };
  struct thread {
    std::string name;
    std::function<void()> body;
    std::unique_ptr<fiber> fib;
    bool finished = false;
    bool dead = false;              // killed (kill_victim): finished, never resumed
    bool in_wait_scope = false;     // its wait scope is open (the victim may die now)
    bool in_release_scope = false;  // its release scope is open (kill_anywhere: it may die now)
    bool decided_window = false;    // its release has decided and not made its clearing step
    pending what = pending::start;
    const void* on = nullptr;
    std::uint64_t bit = 0;
    bool timed = false;
    detail::deadline dl{};
    vclock vc{};
    model_parker parker;
    model_async_sink* done_head = nullptr;  // completions queued by its releases, not yet run
    model_async_sink* done_tail = nullptr;
    bool done_running = false;
    obj target;
    model_lock* held = nullptr;
    std::uint32_t waits = 0;  // completed waits (shared and exclusive)
    int rel_slot = -1;        // begin_last_touch_check: the word being released
    std::uint64_t rel_bit = 0;
    bool rel_done = false;           // its atomic step has happened
    bool timed_lock = false;         // its current or last lock call has a deadline
    bool all_earned_unlock = false;  // in an unlock that must hand off to any lock waiter it wakes
    int acting_for = -1;             // racing for an asynchronous lock waiter's actor (deliver)

    // Its current wait or lock call (independent of the core's own bookkeeping).
    int call_slot = -1;  // the object it waits on or locks, -1 between calls
    bool in_lock = false;
    unsigned retries = 0;  // lock call: token_retry received (each one a race lost, or the last, won)
    std::chrono::steady_clock::time_point lock_start{}, first_park{};
    bool parked = false;            // lock call: has parked (so it had queued) at `first_park`
    bool deadline_fired = false;    // a timed park of this call returned without a token
    bool must_not_requeue = false;  // ... and it then parked untimed: a release held it claimed
    bool joiner = false;            // its node was last seen joined to a release (not queued)

    // Its current release (begin_release .. end_release).
    bool releasing = false;
    bool rel_unlock = false, rel_decides = false;
    std::uint64_t rel_obj_bit = 0;
    bool rel_snap = false;  // the queue as it stood at the release's first bucket lock
    std::size_t rel_nodes_n = 0;
    std::array<const void*, max_nodes> rel_nodes{};
    unsigned rel_calls_ended = 0;  // the object's calls_ended when it began
    unsigned handoffs = 0, queued_retries = 0, cleared_tokens = 0;
    int earned_joiner_raced = -1;  // a joiner that had asked for a hand-off, woken to race
    // Its current wait call (shared): the bit, and the word's clears when it first queued.
    std::uint64_t wait_bit = 0;
    std::size_t first_queued_clears = ~std::size_t(0);
    obj rel_obj;
    bool rel_started = false;    // its first access to the word has happened (taken as its start)
    handoff_due rel_due;         // an unlock: the earned waiter it must hand off to, at its start
    waiter_snapshot rel_queued;  // an event release: who was queued at its start
    // At its last bucket unlock: the waiters bit, and how many other threads were in a call on it.
    bool last_wb = false;
    int last_inside = 0;
    // An unlock: the first lock waiter queued at its start (untimed, else -1), its call and lost
    // races then, and whether it was queued at the unlock's last bucket unlock.
    int rel_first = -1;
    std::uint32_t rel_first_waits = 0;
    unsigned rel_first_retries = 0;
    bool last_first_queued = false;
  };

  std::deque<model_async_sink> sinks_;
  static void thread_entry(void* arg);
  void stop(pending what, const void* on = nullptr, bool timed = false, std::uint64_t bit = 0);
  bool enabled(const thread& t) const;
  std::uint64_t read_word(const slot& s) const { return s.wide ? s.w64.load() : s.w32.load(); }
  void write_word(slot& s, std::uint64_t v) {
    if (s.wide)
      s.w64.store(v);
    else
      s.w32.store(std::uint32_t(v));
  }
  int slot_of(const void* w) const;
  thread& me() { return threads_[std::size_t(cur_)]; }
  void tick() { ++me().vc[std::size_t(cur_)]; }
  void join(const vclock& v) {
    for (int i = 0; i < max_threads; ++i)
      me().vc[std::size_t(i)] = std::max(me().vc[std::size_t(i)], v[std::size_t(i)]);
  }
  bool hb(int t, std::uint32_t c) const {
    return t < 0 || t == cur_ || c <= threads_[std::size_t(cur_)].vc[std::size_t(t)];
  }
  void record(step_record r);
  void check_waiters_bit();
  void check_queue();
  // [I7] The nodes queued now: the only ones the calling release's walk may visit (with the
  // bookmarks of other releases and the nodes that joined a release).
  void snapshot_release_nodes();
  void start_release();
  bool earned_loose(const thread& t) const;
  void check_grant(int to_thread, std::uint32_t token);
  bool earned_strict(const thread& t) const;
  void end_call();
  void check_object(obj o, const char* what);

  std::array<slot, max_slots> slots_;
  std::vector<thread> threads_;
  std::vector<std::unique_ptr<fiber>> fiber_pool_;
  std::unique_ptr<table_view> view_;
  std::vector<step_record> trace_;
  std::vector<const void*> scratch_words_;
  struct designation {
    const void* word = nullptr;
    std::uint64_t bit = 0;
    const void* node = nullptr;
  };
  std::array<designation, max_nodes> designated_{};
  std::size_t designated_n_ = 0;
  std::vector<int> scratch_threads_;
  std::array<node_info, max_nodes> scratch_nodes_{};
  std::array<const void*, max_nodes> joined_ever_{};  // nodes seen joined to a release
  std::size_t joined_ever_n_ = 0;
  violation violation_;
  int cur_ = -1;
  unsigned steps_ = 0;
  std::chrono::steady_clock::time_point clock_{};
};

runtime& rt();

// How the scheduler asks a search strategy for the next thread.
class chooser {
 public:
  virtual ~chooser() = default;
  // `enabled`: the threads that can take a step, ascending. `current`: the thread that took the
  // last step (-1 at the start). `preemptible`: `current` is enabled and switching away from it
  // would be a preemption (it is not about to park).
  virtual int pick(const std::vector<int>& enabled, int current, bool preemptible) = 0;
};

// The offset-shaped policy's representations (issue 12's seam; docs/CHECKER.md, "Offsets").
// Every pointer the table's structures hold is stored as the distance from the field itself to
// its target, as a wait domain mapped at a different address in each process must store it, so
// a structure the core copied bit for bit, or read through a pointer it kept from elsewhere,
// would point somewhere else; and every such field, and its target, must lie in the model's
// domain (model_domain below: the buckets, and each thread's slot with its wait node, its parker
// and its release place holders). A field or target on a thread's stack, or in memory of one
// process only (a thread's own parker, say), is reported: another process could not follow it. Distances
// between 8-byte aligned objects are multiples of 8, so 1 encodes null.
bool in_model_domain(const void* p, std::size_t size);
void set_model_domain(const void* base, std::size_t size);
[[noreturn]] void outside_model_domain(const char* what);

template <class T>
struct offset_ref {
  static constexpr std::int64_t null = 1;
  std::int64_t off = null;
  T* load() const noexcept {
    return off == null ? nullptr
                       : reinterpret_cast<T*>(const_cast<char*>(reinterpret_cast<const char*>(this)) + off);
  }
  void store(T* x) {
    if (!in_model_domain(this, sizeof(*this)))
      outside_model_domain("a link of the wait table is stored outside the domain (on a thread's stack?)");
    if (x && !in_model_domain(x, 1))
      outside_model_domain(
          "a link of the wait table points outside the domain (to a thread's stack, or its own parker?)");
    off = x ? reinterpret_cast<const char*>(x) - reinterpret_cast<const char*>(this) : null;
  }
};

// The link and the key of the offset-shaped policy (detail::link, detail::key). Not copyable:
// a copy's bits would name another place.
template <class T>
struct offset_link {
  offset_ref<T> r;
  offset_link() = default;
  offset_link(const offset_link&) = delete;
  offset_link& operator=(const offset_link&) = delete;
  T* get() const noexcept { return r.load(); }
  void set(T* x) { r.store(x); }
};
// A key names the word by its place, which need not be in the domain's structures (in a real
// domain it is in the mapping's user area; here, in the runtime's object slots): only the key's
// own field must be in the domain.
struct offset_key {
  std::int64_t off = 0;
  bool set_ = false;
  offset_key() = default;
  offset_key(const offset_key&) = delete;
  offset_key& operator=(const offset_key&) = delete;
  const void* get() const noexcept { return set_ ? reinterpret_cast<const char*>(this) + off : nullptr; }
  void set(const void* w) {
    if (!in_model_domain(this, sizeof(*this)))
      outside_model_domain(
          "a waiter's or a release's key is stored outside the domain (on a thread's stack?)");
    set_ = w != nullptr;
    off = reinterpret_cast<const char*>(w) - reinterpret_cast<const char*>(this);
  }
};

template <class P>
struct model_domain;
template <class P>
struct domain_wait_scope;
template <class P>
struct domain_release_scope;

// The model policy. `BrokenWalk` turns on the core's self-test switch (a walk that clears in a
// later lock hold than the one that reached the queue's end); it exists only for the checker's
// self-test, and native policies do not declare it, so it compiles away there. `Offsets`: the
// offset-shaped policy above (atomic-clear only, the protocol a domain runs); without it, the
// structures are the native ones (raw pointers, nodes and place holders on the stacks).
template <bool BrokenWalk, bool Offsets = false>
struct basic_model_policy {
  static constexpr bool selftest_clear_in_later_hold = BrokenWalk;
  static constexpr bool offsets = Offsets;
  // Buckets may be reset (core::reset): the reset rows of the table run only under model
  // policies (the native one is not resettable; a domain's is). With no reset, the walk's epoch
  // check reads a plain field and adds no step: every other cell explores what it did before.
  static constexpr bool resettable = true;
  static void walk_restarted() { rt().walk_restarted(); }
  static void designated_begin(const void* w, std::uint64_t bit, const void* n) {
    rt().designated(w, bit, n, true);
  }
  static void designated_end(const void* w, std::uint64_t bit, const void* n) {
    rt().designated(w, bit, n, false);
  }
  static void dead_release_begin(const void* w, std::uint64_t bit, bool unlock = true) {
    rt().dead_release_begin(w, bit, unlock);
  }
  static void dead_release_end() { rt().dead_release_end(); }
  static void release_decided(bool clears) { rt().release_decided(clears); }
  static void release_cleared() { rt().release_cleared(); }
  // core::rebuild, offsets column only: the nodes of the domain's slots, and whether the thread
  // whose slot holds a release record lives (model_domain below).
  template <class F>
  static void each_waiter(detail::bucket<basic_model_policy>& b, F&& f);
  static detail::claimer_state release_owner(const detail::release_record<basic_model_policy>* r,
                                             std::uint32_t tag);

  template <class W>
  static W load(const std::atomic<W>& w, std::memory_order mo) {
    const int s = rt().begin_word(&w, "load");
    const W v = w.load(std::memory_order_relaxed);
    rt().end_word(s, "load", mo, false, 0, v, v);
    return v;
  }
  template <class W>
  static bool test_and_set(std::atomic<W>& w, W bit, std::memory_order mo) {
    const int s = rt().begin_word(&w, "test_and_set");
    const W v = w.fetch_or(bit, std::memory_order_relaxed);
    rt().end_word(s, "test_and_set", mo, true, bit, v, W(v | bit));
    return (v & bit) != 0;
  }
  template <class W>
  static W fetch_or(std::atomic<W>& w, W x, std::memory_order mo) {
    const int s = rt().begin_word(&w, "fetch_or");
    const W v = w.fetch_or(x, std::memory_order_relaxed);
    rt().end_word(s, "fetch_or", mo, true, x, v, W(v | x));
    return v;
  }
  template <class W>
  static W fetch_and(std::atomic<W>& w, W x, std::memory_order mo) {
    const int s = rt().begin_word(&w, "fetch_and");
    const W v = w.fetch_and(x, std::memory_order_relaxed);
    rt().end_word(s, "fetch_and", mo, true, x, v, W(v & x));
    return v;
  }
  template <class W>
  static W fetch_xor(std::atomic<W>& w, W x, std::memory_order mo) {
    const int s = rt().begin_word(&w, "fetch_xor");
    const W v = w.fetch_xor(x, std::memory_order_relaxed);
    rt().end_word(s, "fetch_xor", mo, true, x, v, W(v ^ x));
    return v;
  }
  // Strong: the model has no spurious failures (a weak CAS failing spuriously only loops).
  template <class W>
  static bool compare_exchange(std::atomic<W>& w, W& expected, W desired, std::memory_order success,
                               std::memory_order failure) {
    const int s = rt().begin_word(&w, "compare_exchange");
    const W v = w.load(std::memory_order_relaxed);
    const bool ok = v == expected;
    if (ok)
      w.store(desired, std::memory_order_relaxed);
    else
      expected = v;
    rt().end_word(s, ok ? "cas" : "cas (fails)", ok ? success : failure, ok, desired, v, ok ? desired : v);
    return ok;
  }

  using bucket_lock = model_lock;
  static void lock(bucket_lock& l) { rt().lock(l); }
  static void unlock(bucket_lock& l) { rt().unlock(l); }

  // A node field: its value (under Offsets, a pointer is stored as an offset_ref) and what the
  // race detector knows of it. peek(): the value without a check, for the table view only.
  template <class T>
  struct plain_ref {
    T v;
    T load() const noexcept { return v; }
    void store(T x) noexcept { v = x; }
  };
  template <class T>
  struct cell {
    using ref = std::conditional_t<Offsets && std::is_pointer_v<T>, offset_ref<std::remove_pointer_t<T>>,
                                   plain_ref<T>>;
    ref v;
    mutable cell_meta m;
    cell(T x) {  // NOLINT: brace-initialised like the native cell
      v.store(x);
      rt().cell_init(m);
    }
    cell(const cell&) = delete;
    cell& operator=(const cell&) = delete;
    ~cell() { rt().cell_retire(m); }
    T get() const {
      rt().cell_read(m);
      return v.load();
    }
    void set(T x) {
      rt().cell_write(m);
      v.store(x);
    }
    T peek() const noexcept { return v.load(); }
  };
  template <class T>
  using link = std::conditional_t<Offsets, offset_link<T>, detail::raw_link<T>>;
  using key = std::conditional_t<Offsets, offset_key, detail::raw_link<const void>>;
  using wait_scope = std::conditional_t<Offsets, domain_wait_scope<basic_model_policy>,
                                        detail::stack_wait_scope<basic_model_policy>>;
  using release_scope = std::conditional_t<Offsets, domain_release_scope<basic_model_policy>,
                                           detail::stack_release_scope<basic_model_policy>>;
  static void retire_node(const void* p, std::size_t) { rt().retire_node(p); }
  static void visit(const void* n) { rt().visit(n); }

  static inline detail::wait_table<basic_model_policy>* table_ = nullptr;
  static inline model_domain<basic_model_policy>* domain_ = nullptr;  // Offsets only
  static model_domain<basic_model_policy>& domain() { return *domain_; }
  static detail::wait_table<basic_model_policy>& table() { return *table_; }

  using parker = model_parker;
  static parker& current_parker() { return rt().current_parker(); }

  using async_sink = model_async_sink;
  static void complete(async_sink* s, std::uint32_t token) { rt().async_queue(*s, token); }
  static void run_completions() { rt().async_run(); }
  static void async_delivered(async_sink* s, std::uint32_t token) { rt().async_delivered(*s, token); }
  static void async_settled(async_sink*) { rt().async_settled(); }

  static std::chrono::steady_clock::time_point now() { return rt().now(); }

  // Not constexpr: a scenario shrinks the chunk so that a walk spans several holds.
  static inline unsigned chunk_visits = 64;
  static constexpr unsigned spin_limit = 1;  // one spin: the path is explored, cheaply
  static constexpr unsigned spin_pause_cap = 1;
  static constexpr unsigned spin_yields = 0;  // a yield is a pause to the model: one look is enough
  static void cpu_relax() {}
  static void yield_cpu() {}
  static fairness_settings fairness() { return rt().fair; }

  // Statistics: never on in the model (no clock reads, no new steps).
  static constexpr bool stats_on() { return false; }
  static void stat_wait_done(const void*, std::uint64_t, bool, bool, std::chrono::steady_clock::duration) {}
  static void stat_lost_race(const void*) {}
  static void stat_release_done(const void*, bool) {}
};

using model_policy = basic_model_policy<false>;
using broken_walk_policy = basic_model_policy<true>;
using offset_model_policy = basic_model_policy<false, true>;

// The offset-shaped policy's domain: one slot per thread (a wait node, a release's two place
// holders and its record, each built when its scope opens and destroyed when it closes, as a
// stack's would be: a stale link then reads a retired node, which the cells report), then the
// buckets. A thread that opens a second scope of a kind while one is open is reported: a domain
// has one of each per thread.
template <class P>
struct model_domain {
  using node = detail::waiter_node<P>;
  using record = detail::release_record<P>;
  struct slot {
    bool waiting = false, releasing = false;
    std::uint32_t releases = 0;  // releases begun in it (a record's tag)
    vclock opened{};             // the clock of its wait scope's opening (a domain's `use` store, release)
    model_parker parker;         // the slot's parker, as a real domain's slot holds one
    alignas(node) unsigned char wait[sizeof(node)];
    alignas(node) unsigned char end[sizeof(node)];
    alignas(node) unsigned char mark[sizeof(node)];
    alignas(record) unsigned char rec[sizeof(record)];
  };
  std::array<slot, max_threads> slots;
  alignas(64) unsigned char buckets[4 * sizeof(detail::bucket<P>)];
};

template <class P>
struct domain_wait_scope {
  using node_t = detail::waiter_node<P>;
  typename model_domain<P>::slot& s;
  node_t* n;
  explicit domain_wait_scope(const void*) : s(P::domain().slots[std::size_t(rt().current())]) {
    if (s.waiting)
      outside_model_domain(
          "a thread opened a second wait while one was open: a domain has one node per thread");
    s.waiting = true;
    s.parker.thread = rt().current();
    n = new (s.wait) node_t;
    // As shm_wait_scope: no token of this slot's previous wait is left for a recoverer to act on
    // (the thread's own parker; a release delivers to it only while a node of it is visible).
    s.parker.token = 0;
    s.opened = rt().my_clock();
    rt().wait_scope_open(true);
  }
  domain_wait_scope(const domain_wait_scope&) = delete;
  domain_wait_scope& operator=(const domain_wait_scope&) = delete;
  ~domain_wait_scope() {
    rt().wait_scope_open(false);
    n->~node_t();
    s.waiting = false;
  }
  node_t& node() noexcept { return *n; }
  model_parker& parker() noexcept { return s.parker; }
};

template <class P>
struct domain_release_scope {
  using node = detail::waiter_node<P>;
  using record = detail::release_record<P>;
  typename model_domain<P>::slot& s;
  node* e;
  node* m;
  record* r;
  explicit domain_release_scope(const void*) : s(P::domain().slots[std::size_t(rt().current())]) {
    if (s.releasing)
      outside_model_domain(
          "a thread began a release while its own release was in progress: a domain has one release area per "
          "thread");
    s.releasing = true;
    e = new (s.end) node;
    m = new (s.mark) node;
    r = new (s.rec) record;
    r->tag = ++s.releases;
    rt().release_scope_open(true);
  }
  domain_release_scope(const domain_release_scope&) = delete;
  domain_release_scope& operator=(const domain_release_scope&) = delete;
  ~domain_release_scope() {
    rt().release_scope_open(false);
    r->~record();
    m->~node();
    e->~node();
    s.releasing = false;
  }
  node& end() noexcept { return *e; }
  node& mark() noexcept { return *m; }
  record& rec() noexcept { return *r; }
};

template <bool B, bool O>
template <class F>
void basic_model_policy<B, O>::each_waiter(detail::bucket<basic_model_policy>& b, F&& f) {
  if constexpr (O) {
    using node = detail::waiter_node<basic_model_policy>;
    for (auto& s : domain().slots) {
      if (!s.waiting) continue;
      node* n = std::launder(reinterpret_cast<node*>(s.wait));
      const std::uint32_t t = rt().read_parker(s.parker, s.opened);
      if (!n->word.get() || &table().bucket_for(n->word.get()) != &b) continue;
      // A delivered node's state is its waiter's to change (outside the lock): not read.
      f(*n, t, t ? detail::node_state::idle : n->state.get(), rt().is_dead(s.parker.thread));
    }
  } else {
    (void)b, (void)f;
    std::abort();  // a rebuild finds nodes in a domain's slots: the offsets column only
  }
}

template <bool B, bool O>
detail::claimer_state basic_model_policy<B, O>::release_owner(
    const detail::release_record<basic_model_policy>* r, std::uint32_t tag) {
  if constexpr (O) {
    for (std::size_t i = 0; i < domain().slots.size(); ++i) {
      const auto& s = domain().slots[i];
      if (static_cast<const void*>(s.rec) != r) continue;
      if (!s.releasing || s.releases != tag) return detail::claimer_state::stale;
      return rt().is_dead(int(i)) ? detail::claimer_state::dead : detail::claimer_state::alive;
    }
  }
  std::abort();  // a record outside the domain's slots
}

// The table view for policy P: walks the bucket queues and release records raw (no checks).
template <class P>
struct table_view_for final : table_view {
  using node = detail::waiter_node<P>;
  detail::wait_table<P>* t;
  explicit table_view_for(detail::wait_table<P>* tt) : t(tt) {}
  // The scenario thread behind a node: the waiting thread, or an asynchronous waiter's actor.
  static int actor(const node* n) { return n->async ? n->async->actor : n->parker.get()->thread; }
  template <class F>
  void each(F&& f) const {
    for (std::size_t i = 0; i < t->size(); ++i) {
      detail::bucket<P>& b = t->at(i);
      for (node* n = b.head.get(); n; n = n->next.peek()) f(n, true);
      for (auto* r = b.releases.get(); r; r = r->next.get())
        for (node* n = r->joined_head.get(); n; n = n->next.peek()) f(n, false);
    }
  }
  bool linked(const void* p) const override {
    bool found = false;
    each([&](node* n, bool) { found |= n == p; });
    return found;
  }
  void queued_words(std::vector<const void*>& out) const override {
    each([&](node* n, bool queued) {
      if (queued && n->kind != detail::node_kind::bookmark) out.push_back(n->word.get());
    });
  }
  void waiters_for(const void* word, std::uint64_t bit, std::vector<int>& threads) const override {
    each([&](node* n, bool queued) {
      if (queued && n->kind != detail::node_kind::bookmark && n->word.get() == word && n->bit == bit)
        threads.push_back(actor(n));
    });
  }
  int first_exclusive(const void* word, std::uint64_t bit, std::chrono::steady_clock::time_point now,
                      bool& earned) const override {
    for (std::size_t i = 0; i < t->size(); ++i)
      for (node* n = t->at(i).head.get(); n; n = n->next.peek())
        if (n->kind == detail::node_kind::exclusive && n->word.get() == word && n->bit == bit) {
          earned = n->wants_handoff || now >= n->handoff_at;
          return actor(n);
        }
    return -1;
  }
  std::size_t nodes(node_info* out, std::size_t cap) const override {
    std::size_t k = 0;
    each([&](node* n, bool queued) {
      if (k < cap) {
        node_info& i = out[k];
        i.node = n;
        i.bookmark = n->kind == detail::node_kind::bookmark;
        i.thread = i.bookmark ? -1 : actor(n);
        i.word = n->word.get();
        i.bit = n->bit;
        i.exclusive = n->kind == detail::node_kind::exclusive;
        i.queued = queued;
        i.state_claimed = n->state.peek() == detail::node_state::claimed;
        i.state_queued = n->state.peek() == detail::node_state::queued;
      }
      ++k;
    });
    return k;
  }
  bool idle() const override {
    for (std::size_t i = 0; i < t->size(); ++i)
      if (t->at(i).head.get() || t->at(i).releases.get()) return false;
    return true;
  }
};

// Installs a fresh table for P (one execution).
template <class P>
void install_table(runtime& r, unsigned buckets, unsigned chunk) {
  static std::unique_ptr<detail::wait_table<P>> owned;
  if constexpr (P::offsets) {
    // A fresh domain per execution: the table's buckets in it, every slot free.
    static std::unique_ptr<model_domain<P>> dom;
    owned.reset();
    dom = std::make_unique<model_domain<P>>();
    set_model_domain(dom.get(), sizeof(model_domain<P>));
    P::domain_ = dom.get();
    if (detail::wait_table<P>::bytes_for(buckets) > sizeof(dom->buckets)) std::abort();
    owned = std::make_unique<detail::wait_table<P>>(buckets, dom->buckets);
  } else {
    owned = std::make_unique<detail::wait_table<P>>(buckets);
  }
  P::table_ = owned.get();
  P::chunk_visits = chunk;
  r.chunk_visits = chunk;
  r.set_table(std::make_unique<table_view_for<P>>(owned.get()));
}

// The pin of the `pinned` and `xor-waiters` protocols: a reference on the object.
struct model_pin {
  obj o;
  void get() { rt().get(o); }
  void put() { rt().put(o); }
};

}  // namespace pagewait::check
