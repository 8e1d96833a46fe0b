// checker/model.cpp — the model runtime (model.hpp): scheduler, lifetimes and invariant checks.
#include "model.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "pagewait/bits.hpp"

namespace pagewait::check {

namespace {
runtime g_runtime;

bool acquires(std::memory_order mo) {
  return mo == std::memory_order_acquire || mo == std::memory_order_acq_rel ||
         mo == std::memory_order_seq_cst || mo == std::memory_order_consume;
}
bool releases(std::memory_order mo) {
  return mo == std::memory_order_release || mo == std::memory_order_acq_rel ||
         mo == std::memory_order_seq_cst;
}
std::uint64_t waiters_mask(bool wide) {
  return wide ? waiters_bit<std::uint64_t> : waiters_bit<std::uint32_t>;
}
}  // namespace

runtime& rt() { return g_runtime; }

// ------------------------------------------------------------------------------------------
// Construction.

void runtime::reset() {
  for (slot& s : slots_) {
    s.w32.store(0);
    s.w64.store(0);
    s.name = "";
    s.wide = s.live = s.used = false;
    s.gen = 0;
    s.refs = 0;
    s.rel = {};
    s.clears.clear();
    s.owner.fill(-1);
    s.calls_ended = 0;
  }
  joined_ever_n_ = 0;
  designated_n_ = 0;
  victim = -1;
  sinks_.clear();
  for (thread& t : threads_) fiber_pool_.push_back(std::move(t.fib));
  threads_.clear();
  trace_.clear();
  violation_ = {};
  cur_ = -1;
  steps_ = 0;
  clock_ = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  view_.reset();
}

obj runtime::new_object(const char* name, std::uint64_t value, bool wide, int refs) {
  for (int i = 0; i < max_slots; ++i) {
    slot& s = slots_[std::size_t(i)];
    if (s.used) continue;
    s.used = s.live = true;
    s.name = name;
    s.wide = wide;
    s.refs = refs;
    s.gen = 1;
    write_word(s, value);
    return {i, s.gen};
  }
  std::abort();
}

int runtime::add_thread(std::string name, std::function<void()> body, bool at_quiescence) {
  if (threads_.size() == max_threads) std::abort();
  thread t;
  t.name = std::move(name);
  t.body = std::move(body);
  if (!fiber_pool_.empty()) {
    t.fib = std::move(fiber_pool_.back());
    fiber_pool_.pop_back();
  } else {
    t.fib = std::make_unique<fiber>();
  }
  const int id = int(threads_.size());
  t.parker.thread = id;
  t.vc[std::size_t(id)] = 1;
  if (at_quiescence) t.what = pending::quiescent;
  threads_.push_back(std::move(t));
  return id;
}

std::string runtime::slot_name(int s, std::uint32_t gen) const {
  std::string n = slots_[std::size_t(s)].name;
  if (gen > 1) {
    // Appended piecewise: `"#" + std::to_string(gen)` trips GCC 12's -Wrestrict false positive
    // inside std::string at -O3.
    n += '#';
    n += std::to_string(gen);
  }
  return n;
}

std::string runtime::describe_word(std::uint64_t v, bool wide) const {
  char hex[32];
  std::snprintf(hex, sizeof hex, wide ? "0x%016llx" : "0x%08llx", static_cast<unsigned long long>(v));
  std::string s = hex;
  std::string names;
  if (v & waiters_mask(wide)) names += "waiters";
  for (std::size_t i = 0; i < 63; ++i)
    if ((v >> i) & 1u) {
      if ((std::uint64_t(1) << i) == waiters_mask(wide)) continue;
      if (!names.empty()) names += ",";
      names += i < bit_names.size() && !bit_names[i].empty() ? bit_names[i] : "bit" + std::to_string(i);
    }
  return s + " {" + names + "}";
}

// ------------------------------------------------------------------------------------------
// The scheduler.

void runtime::thread_entry(void* arg) {
  auto* t = static_cast<thread*>(arg);
  bool threw = false;
  try {
    t->body();
  } catch (const std::exception& e) {
    // A usage error thrown by the core (say, unlocking a bit that is not set: a thread that
    // believed it owned the lock) is the schedule's violation, reported with its trace.
    g_runtime.msg_ = std::string("the core threw: ") + e.what();
    threw = true;
  }
  if (threw) g_runtime.fail();
  t->finished = true;
}

bool runtime::enabled(const thread& t) const {
  if (t.finished) return false;
  switch (t.what) {
    case pending::start:
    case pending::run:
      return true;
    case pending::lock:
      return static_cast<const model_lock*>(t.on)->owner < 0;
    case pending::park:
      return t.timed || static_cast<const model_parker*>(t.on)->token != 0;
    case pending::alloc:
      return !static_cast<const slot*>(t.on)->live;
    case pending::bit_clear: {
      const slot& s = *static_cast<const slot*>(t.on);
      return !s.live || !(read_word(s) & t.bit);
    }
    case pending::quiescent:
      for (const thread& o : threads_)
        if (&o != &t && !o.finished) return false;
      return true;
    case pending::kill: {
      const thread& v = threads_[std::size_t(victim)];
      if (v.finished) return true;
      if (!kill_anywhere) return v.in_wait_scope && !v.held;
      return (v.in_wait_scope || v.in_release_scope) && !v.decided_window;
    }
    case pending::gone:
      return threads_[std::size_t(victim)].finished;
  }
  return false;
}

const violation& runtime::run(chooser& c) {
  for (thread& t : threads_) t.fib->start(&runtime::thread_entry, &t);
  std::vector<int> en;
  for (;;) {
    en.clear();
    bool all_done = true;
    for (std::size_t i = 0; i < threads_.size(); ++i) {
      if (!threads_[i].finished) all_done = false;
      if (enabled(threads_[i])) en.push_back(int(i));
    }
    if (all_done) {
      if (!view_->idle()) {
        violation_ = {true,
                      "every thread returned, but the wait table still holds a node or a release record", -1};
      }
      // Exactly once, counted at the end (a completion may come after its actor returned): every
      // pending asynchronous start got one completion, or was withdrawn by a cancel, not both.
      for (const model_async_sink& k : sinks_)
        if (!k.pending && k.completions) {
          violation_ = {
              true, "a completion for an asynchronous start that returned done (no callback may come)", -1};
          break;
        } else if (k.pending && k.completions + (k.withdrawn ? 1u : 0u) != 1) {
          violation_ = {true,
                        "an asynchronous start got " + std::to_string(k.completions) + " completion(s)" +
                            (k.withdrawn ? " after a cancel withdrew it" : "") +
                            " (exactly one, or none if withdrawn)",
                        -1};
          break;
        }
      break;
    }
    if (en.empty()) {
      // [I2] Nobody can run and somebody has not returned: a lost wake-up (or a lock leak).
      std::string who;
      for (const thread& t : threads_)
        if (!t.finished) {
          if (!who.empty()) who += ", ";
          who += t.name + (t.what == pending::park ? " (parked, no token)" : " (blocked)");
        }
      violation_ = {true, "lost wake-up: every live thread is blocked and none can run: " + who, -1};
      break;
    }
    if (steps_ >= max_steps) {
      violation_ = {
          true,
          "step bound exceeded (" + std::to_string(max_steps) + " steps): a walk or a loop does not end", -1};
      break;
    }
    const bool cur_enabled = cur_ >= 0 && std::find(en.begin(), en.end(), cur_) != en.end();
    const bool preemptible = cur_enabled && threads_[std::size_t(cur_)].what != pending::park;
    cur_ = c.pick(en, cur_, preemptible);
    ++steps_;
    threads_[std::size_t(cur_)].what = pending::run;
    threads_[std::size_t(cur_)].fib->resume();
    if (violation_.found) break;
  }
  return violation_;
}

// Stops the current thread before a synchronisation operation; returns when the scheduler
// picks it again, the operation then being enabled.
void runtime::stop(pending what, const void* on, bool timed, std::uint64_t bit) {
  thread& t = me();
  t.what = what;
  t.on = on;
  t.timed = timed;
  t.bit = bit;
  t.fib->suspend();
}

// The message is built in msg_ by the caller, in a statement of its own: this fiber is
// abandoned, so a temporary of the calling expression would never be destroyed (a leak).
void runtime::violate(const char* what) {
  msg_ = what;
  fail();
}

namespace {
const char* domain_base = nullptr;
std::size_t domain_size = 0;
}  // namespace

void set_model_domain(const void* base, std::size_t size) {
  domain_base = static_cast<const char*>(base);
  domain_size = size;
}

bool in_model_domain(const void* p, std::size_t size) {  // NOLINT(readability-*)
  const char* c = static_cast<const char*>(p);
  return domain_base && c >= domain_base && c + size <= domain_base + domain_size;
}

void outside_model_domain(const char* what) { rt().violate(what); }

void runtime::fail() {
  violation_ = {true, msg_, cur_};
  me().fib->suspend(true);  // abandoned: never resumed
  std::abort();
}

void runtime::record(step_record r) {
  if (!trace_on) return;
  r.thread = cur_;
  trace_.push_back(r);
}

// ------------------------------------------------------------------------------------------
// Words.

int runtime::slot_of(const void* w) const {
  for (int i = 0; i < max_slots; ++i) {
    const slot& s = slots_[std::size_t(i)];
    if (s.used && (w == &s.w32 || w == &s.w64)) return i;
  }
  return -1;
}

void runtime::check_object(obj o, const char* what) {
  const slot& s = slots_[std::size_t(o.slot)];
  if (!s.live || s.gen != o.gen) {
    step_record r;  // the access is not performed; the trace shows it was attempted
    r.op = what;
    r.slot = o.slot;
    r.gen = o.gen;
    r.note = s.live ? "ATTEMPTED on memory freed and reused" : "ATTEMPTED on freed memory";
    record(r);
  }
  if (!s.live) {
    msg_ = std::string("touch of a freed object: ") + what + " on " + slot_name(o.slot, o.gen) +
           " after it was freed (CONTRACT 3.1: release is the last touch)";
    fail();
  }
  if (s.gen != o.gen) {
    msg_ = std::string("touch of a freed object: ") + what + " on " + slot_name(o.slot, o.gen) +
           " after it was freed and its memory reused as " + slot_name(o.slot, s.gen) + " (CONTRACT 3.1)";
    fail();
  }
}

int runtime::begin_word(const void* w, const char* op) {
  stop(pending::run);
  const int s = slot_of(w);
  if (s < 0) {
    msg_ = "access to a word that belongs to no object";
    fail();
  }
  const obj t = me().target;
  check_object(t.slot == s ? t : obj{s, slots_[std::size_t(s)].gen}, op);
  if (me().releasing && !me().rel_started) start_release();
  // A lock waiter's race, run by deliver on this thread (core::race_async), is the waiter's access.
  if (me().rel_slot == s && me().rel_done && me().acting_for < 0) {
    step_record r;
    r.op = op;
    r.slot = s;
    r.gen = slots_[std::size_t(s)].gen;
    r.note = "ATTEMPTED after the release's atomic step";
    record(r);
    msg_ = std::string("touch after release: ") + op + " on " + slot_name(s, r.gen) +
           " by its releaser after the atomic step that cleared the bit or handed it off (CONTRACT 3.1)";
    fail();
  }
  return s;
}

void runtime::end_word(int si, const char* op, std::memory_order mo, bool writes, std::uint64_t arg,
                       std::uint64_t before, std::uint64_t after) {
  slot& s = slots_[std::size_t(si)];
  if (me().rel_slot == si && (before & me().rel_bit) && !(after & me().rel_bit)) me().rel_done = true;
  // Happens-before as C++ defines it for one location: an acquire joins the release sequence's
  // clocks; a release RMW adds its own; a relaxed RMW continues the sequence unchanged.
  if (acquires(mo)) join(s.rel);
  if (writes && releases(mo))
    for (int i = 0; i < max_threads; ++i)
      s.rel[std::size_t(i)] = std::max(s.rel[std::size_t(i)], me().vc[std::size_t(i)]);
  tick();
  {
    // [I2][I3] A shared waiter's queueing (its own RMW that leaves the waiters bit set while its
    // bit is set) comes at most once after any clear of its bit: one that queues again although
    // its bit was cleared since it first queued went back to sleep on a bit set again — the clear
    // did not wake it (the 2024 XFS starvation). From the review of the first reset (which sent
    // queued waiters back to read their bit again).
    thread& t = me();
    if (t.call_slot == si && !t.in_lock && !t.releasing && writes && (after & waiters_mask(s.wide)) &&
        (before & t.wait_bit)) {
      if (t.first_queued_clears == ~std::size_t(0)) {
        t.first_queued_clears = s.clears.size();
      } else {
        for (std::size_t i = t.first_queued_clears; i < s.clears.size(); ++i)
          if (s.clears[i].bit == t.wait_bit) {
            msg_ =
                t.name +
                " queues again although its bit was cleared after it first queued: it went back to sleep on "
                "a bit set again, and the clear did not wake it (CONTRACT 3.2, 3.3)";
            fail();
          }
      }
    }
  }
  if (const std::uint64_t cleared = before & ~after & ~waiters_mask(s.wide))
    for (std::uint64_t b = cleared; b; b &= b - 1)
      s.clears.push_back({b & -b, cur_, me().vc[std::size_t(cur_)] - 1});
  step_record r;
  r.op = op;
  r.slot = si;
  r.gen = s.gen;
  r.on_word = true;
  r.arg = arg;
  r.before = before;
  r.after = after;
  r.note = mo == std::memory_order_relaxed   ? "relaxed"
           : mo == std::memory_order_acquire ? "acquire"
           : mo == std::memory_order_release ? "release"
           : mo == std::memory_order_acq_rel ? "acq_rel"
                                             : "seq_cst";
  record(r);
}

// [I4] While a waiter is queued for a word, the word's waiters bit is set. Checked whenever a
// bucket lock is released (inside a hold the core may be between the two steps).
void runtime::check_waiters_bit() {
  // runtime-owned: no heap memory on a fiber that may be abandoned
  const std::size_t n =
      std::min(view_->nodes(scratch_nodes_.data(), scratch_nodes_.size()), scratch_nodes_.size());
  for (std::size_t k = 0; k < n; ++k) {
    const node_info& q = scratch_nodes_[k];
    if (q.bookmark || !q.queued) continue;
    const int si = slot_of(q.word);
    if (si < 0 || !slots_[std::size_t(si)].live) continue;  // a DROP waiter's object may be gone
    const slot& s = slots_[std::size_t(si)];
    if (read_word(s) & waiters_mask(s.wide)) continue;
    // CONTRACT 3.4: a lock waiter of (word, bit) behind a designated waker of (word, bit), whose
    // race sets the waiters bit again. Nobody else may be queued with it clear.
    bool designated = false;
    for (std::size_t i = 0; i < designated_n_; ++i)
      designated |= q.exclusive && designated_[i].word == q.word && designated_[i].bit == q.bit;
    if (designated) continue;
    msg_ = "waiters bit clear on " + slot_name(si, s.gen) + " while a waiter is queued for it (CONTRACT 3.4)";
    fail();
  }
}

// ------------------------------------------------------------------------------------------
// Bucket lock, parkers, clock.

void runtime::lock(model_lock& l) {
  stop(pending::lock, &l);
  l.owner = cur_;
  l.visits = 0;
  me().held = &l;
  if (me().releasing && !me().rel_snap) {
    // [I7] The queue as the release's walk first sees it: the walk may visit only these nodes
    // (and bookmarks of other releases): waiters that queue later are behind its end marker.
    me().rel_snap = true;
    snapshot_release_nodes();
  }
  join(l.vc);
  tick();
  step_record r;
  r.op = "bucket lock";
  record(r);
}

void runtime::snapshot_release_nodes() {
  thread& t = me();
  const std::size_t n = view_->nodes(scratch_nodes_.data(), scratch_nodes_.size());
  t.rel_nodes_n = 0;
  for (std::size_t i = 0; i < std::min(n, scratch_nodes_.size()); ++i)
    if (scratch_nodes_[i].queued) t.rel_nodes[t.rel_nodes_n++] = scratch_nodes_[i].node;
  if (n > scratch_nodes_.size()) t.rel_nodes_n = max_nodes + 1;  // too many to check: skip
}

void runtime::kill_victim() {
  stop(pending::kill);
  thread& v = threads_[std::size_t(victim)];
  step_record r;
  r.op = "kill";
  if (v.finished) {
    r.note = "the victim has returned: nothing to kill";
  } else {
    v.finished = v.dead = true;  // never resumed: its fiber stays where it stopped
    r.note = v.name.c_str();
  }
  tick();
  record(r);
}

bool runtime::victim_gone() {
  stop(pending::gone);
  const thread& v = threads_[std::size_t(victim)];
  if (v.dead) join(v.vc);
  tick();
  step_record r;
  r.op = v.dead ? "finds the victim dead" : "finds the victim returned";
  record(r);
  return v.dead;
}

std::uint32_t runtime::read_token(model_parker& p) {
  stop(pending::run);
  const std::uint32_t t = p.token & detail::token_mask;
  if (t) join(p.vc);
  tick();
  step_record r;
  r.op = "reads the dead waiter's parker";
  r.n = t;
  record(r);
  return t;
}

void runtime::await_token(model_parker& p) {
  stop(pending::park, &p, false);
  join(p.vc);
  tick();
  step_record r;
  r.op = "a token came for the dead waiter";
  record(r);
}

void runtime::dead_release_begin(const void* word, std::uint64_t bit, bool unlock) {
  const int si = slot_of(word);
  slot& s = slots_[std::size_t(si)];
  const obj o{si, s.gen};
  set_target(o);
  const int pos = __builtin_ctzll(bit);
  if (!(read_word(s) & bit)) {
    msg_ = "a recoverer releases, for a dead thread, a bit that is clear (CONTRACT 3.12)";
    fail();
  }
  if (s.owner[std::size_t(pos)] >= 0) {
    msg_ = "two owners: a recoverer releases, for a dead thread, the lock bit " +
           threads_[std::size_t(s.owner[std::size_t(pos)])].name + " holds (CONTRACT 3.5, 3.12)";
    fail();
  }
  begin_last_touch_check(o, bit);
  begin_release(o, bit, unlock, unlock);
}

void runtime::take_over(model_lock& l) {
  stop(pending::run);
  if (l.owner != victim || !threads_[std::size_t(victim)].dead) {
    msg_ = "a bucket lock taken over from a thread that is not a dead holder of it (CONTRACT 3.12)";
    fail();
  }
  threads_[std::size_t(victim)].held = nullptr;
  l.owner = cur_;
  l.visits = 0;
  me().held = &l;
  join(l.vc);
  tick();
  step_record r;
  r.op = "bucket lock taken over from the dead";
  record(r);
}

std::uint32_t runtime::read_parker(model_parker& p, const vclock& opened) {
  stop(pending::run);
  join(opened);
  const std::uint32_t t = p.token & detail::token_mask;
  join(t ? p.vc : p.prep_vc);
  tick();
  step_record r;
  r.op = "rebuild reads a slot's parker";
  r.n = t;
  record(r);
  return t;
}

void runtime::dead_release_end() {
  end_release();
  end_last_touch_check();
}

void runtime::designated(const void* word, std::uint64_t bit, const void* node, bool begin) {
  std::size_t i = 0;
  while (i < designated_n_ && designated_[i].node != node) ++i;
  if (begin) {
    if (i < designated_n_ || designated_n_ == designated_.size()) {
      msg_ = "a node made a designated waker twice before its race";
      fail();
    }
    designated_[designated_n_++] = {word, bit, node};
  } else if (i < designated_n_) {
    designated_[i] = designated_[--designated_n_];
  }
  step_record r;
  r.op = begin ? "designated waker chosen" : "designated waker raced";
  record(r);
}

void runtime::walk_restarted() {
  thread& t = me();
  if (!t.held) {
    msg_ = "a walk restarted without holding the bucket lock";
    fail();
  }
  // [I7] A restarted walk serves the queue as it stands now: take the snapshot again.
  if (t.releasing) snapshot_release_nodes();
  step_record r;
  r.op = "walk restarts (its bucket was reset)";
  record(r);
}

void runtime::unlock(model_lock& l) {
  stop(pending::run);
  if (l.owner != cur_) {
    msg_ = "bucket unlock by a thread that does not hold it";
    fail();
  }
  step_record r;
  r.op = "bucket unlock";
  r.n = l.visits;
  r.note = "visits in this hold";
  l.owner = -1;
  me().held = nullptr;
  l.vc = me().vc;
  tick();
  record(r);
  check_waiters_bit();
  check_queue();
  if (me().releasing && me().rel_obj.slot >= 0) {
    thread& t = me();
    const slot& s = slots_[std::size_t(t.rel_obj.slot)];
    t.last_wb = (read_word(s) & waiters_mask(s.wide)) != 0;
    t.last_inside = 0;
    for (const thread& o : threads_)
      if (&o != &t && o.call_slot == t.rel_obj.slot) ++t.last_inside;
    if (t.rel_first >= 0) {
      scratch_threads_.clear();
      view_->waiters_for(s.wide ? static_cast<const void*>(&s.w64) : &s.w32, t.rel_obj_bit, scratch_threads_);
      t.last_first_queued =
          std::find(scratch_threads_.begin(), scratch_threads_.end(), t.rel_first) != scratch_threads_.end();
    }
  }
}

// The queue's structure, and what its nodes' threads know, at every bucket unlock:
// - a queued node is in state `queued`, a joined one in `claimed` (a node queued while claimed
//   could not leave the queue at its deadline);
// - [I6, DESIGN.md item 3] a waiter whose deadline passed while a release held it claimed is
//   never queued again: it waits only for that release to let it go.
// It also records which lock waiters are joined to a release rather than queued.
void runtime::check_queue() {
  const std::size_t n = std::min(view_->nodes(scratch_nodes_.data(), scratch_nodes_.size()), max_nodes);
  for (std::size_t i = 0; i < n; ++i) {
    const node_info& x = scratch_nodes_[i];
    if (x.bookmark) continue;
    thread& t = threads_[std::size_t(x.thread)];
    if (x.queued ? !x.state_queued : !x.state_claimed) {
      msg_ = t.name + "'s node is " + (x.queued ? "queued" : "joined to a release") + " in state " +
             (x.state_claimed  ? "claimed"
              : x.state_queued ? "queued"
                               : "idle") +
             ": " +
             (x.queued ? "at its deadline it would wait for a release that will never come for it"
                       : "a release could not tell it from a queued one") +
             " (CONTRACT 3.2)";
      fail();
    }
    if (x.queued && t.must_not_requeue) {
      msg_ = t.name +
             " is queued again after its deadline passed (or its cancel came) while a release held it: it "
             "waits past its deadline for a later release (CONTRACT 3.6, 3.10; DESIGN.md item 3 bounds that "
             "wait by the walk that held it)";
      fail();
    }
    t.joiner = !x.queued;
    if (!x.queued) {
      bool seen = false;
      for (std::size_t j = 0; j < joined_ever_n_; ++j) seen |= joined_ever_[j] == x.node;
      if (!seen && joined_ever_n_ < joined_ever_.size()) joined_ever_[joined_ever_n_++] = x.node;
    }
  }
}

void runtime::visit(const void* node) {
  if (!node) {
    msg_ =
        "the release walk ran off the end of the list it walks (a null node): its end marker is not in that "
        "list (a stale place holder followed?)";
    fail();
  }
  model_lock* l = me().held;
  if (!l) {
    msg_ = "a release walk visited a node without holding the bucket lock";
    fail();
  }
  // [I7] A release visits only the nodes queued when it began (and those that joined it, which
  // its re-queue visits): never a waiter that queued behind its end marker.
  const thread& t = me();
  if (t.releasing && t.rel_snap && t.rel_nodes_n <= max_nodes) {
    bool known = false;
    for (std::size_t i = 0; i < t.rel_nodes_n; ++i) known |= t.rel_nodes[i] == node;
    for (std::size_t i = 0; i < joined_ever_n_; ++i) known |= joined_ever_[i] == node;
    if (!known) {
      const std::size_t n = std::min(view_->nodes(scratch_nodes_.data(), scratch_nodes_.size()), max_nodes);
      for (std::size_t i = 0; i < n; ++i)
        if (scratch_nodes_[i].node == node) {
          known = scratch_nodes_[i].bookmark;  // another release's place holder
          if (!known) {
            msg_ = "the release walk visited " + threads_[std::size_t(scratch_nodes_[i].thread)].name +
                   "'s node, which queued after the release began: a walk ends at the tail as it stood "
                   "when the release began (CONTRACT 3.7)";
            fail();
          }
        }
    }
  }
  if (++l->visits > chunk_visits) {
    msg_ = "bucket lock held for " + std::to_string(l->visits) + " walk visits, more than the chunk bound " +
           std::to_string(chunk_visits) + " (CONTRACT 3.7)";
    fail();
  }
}

void runtime::async_delivered(model_async_sink& s, std::uint32_t token) {
  // What the release grants is checked as it delivers, as for a thread it unparks; a lock waiter
  // woken to race counts the race as a blocking one counts it when its park returns.
  check_grant(s.actor, token);
  if (token == detail::token_retry && threads_[std::size_t(s.actor)].in_lock)
    ++threads_[std::size_t(s.actor)].retries;
  if (token == detail::token_handoff && me().rel_slot >= 0) me().rel_done = true;  // the hand-off's step
  me().acting_for = s.actor;
}

void runtime::async_queue(model_async_sink& s, std::uint32_t token) {
  thread& t = me();
  s.token = token;
  s.next_done = nullptr;
  if (t.done_tail)
    t.done_tail->next_done = &s;
  else
    t.done_head = &s;
  t.done_tail = &s;
}

void runtime::async_run() {
  thread& t = me();
  if (t.done_running) return;
  t.done_running = true;
  while (model_async_sink* s = t.done_head) {
    t.done_head = s->next_done;
    if (!t.done_head) t.done_tail = nullptr;
    if (t.held) {
      msg_ = "an asynchronous waiter's completion ran under a bucket lock (C1: user code never runs there)";
      fail();
    }
    if (s->withdrawn) {
      msg_ =
          "a completion came for an asynchronous wait that cancel had withdrawn (no callback after a cancel "
          "that returned true)";
      fail();
    }
    if (++s->completions > 1) {
      msg_ = "a second completion for one asynchronous start (exactly one callback per pending start)";
      fail();
    }
    step_record r;
    r.op = "async completion";
    r.n = std::int64_t(s->token);
    r.note = "token";
    record(r);
    const std::uint32_t token = s->token;
    s->callback(token);  // may destroy the node: nothing of it is read after this
  }
  me().done_running = false;
}

void model_parker::prepare() { rt().parker_prepare(*this); }
std::uint32_t model_parker::park(const detail::deadline& dl, const std::stop_token*) {
  return rt().parker_park(*this, dl);
}
void model_parker::unpark(std::uint32_t t) { rt().parker_unpark(*this, t); }

void runtime::parker_prepare(model_parker& p) {
  stop(pending::run);
  p.token = 0;
  p.prep_vc = me().vc;
  tick();
  step_record r;
  r.op = "parker prepare";
  record(r);
}

std::uint32_t runtime::parker_park(model_parker& p, const detail::deadline& dl) {
  {
    thread& t = me();
    if (t.in_lock && !t.parked) {
      t.parked = true;  // it queued before this park: the time bound runs from no later than now
      t.first_park = clock_;
    }
    if (t.deadline_fired && dl.is_never()) t.must_not_requeue = true;
  }
  stop(pending::park, &p, !dl.is_never());
  step_record r;
  r.op = "park returns";
  const std::uint32_t t = p.token & detail::token_mask;
  if (t != 0) {
    join(p.vc);  // acquire: pairs with the unparker's release
    r.n = t;
    r.note = "token";
    if (t == detail::token_retry && me().in_lock) ++me().retries;
  } else {
    // A timed park with no token: its deadline fires now. Time jumps to the deadline.
    clock_ = std::max(clock_, dl.at);
    r.note = "deadline passed";
    if (me().call_slot >= 0) me().deadline_fired = true;
  }
  tick();
  record(r);
  return t;
}

void runtime::loop_wake(model_parker& p, std::uint32_t token) {
  stop(pending::run);
  p.token |= token;
  for (int i = 0; i < max_threads; ++i)
    p.vc[std::size_t(i)] = std::max(p.vc[std::size_t(i)], me().vc[std::size_t(i)]);
  tick();
  step_record r;
  r.op = "loop wakes";
  r.n = token;
  r.note = threads_[std::size_t(p.thread)].name.c_str();
  record(r);
}

void runtime::parker_unpark(model_parker& p, std::uint32_t token) {
  stop(pending::run);
  check_grant(p.thread, token);
  p.token |= token;
  if (token == detail::token_handoff && me().rel_slot >= 0) me().rel_done = true;  // the hand-off's step
  for (int i = 0; i < max_threads; ++i)
    p.vc[std::size_t(i)] = std::max(p.vc[std::size_t(i)], me().vc[std::size_t(i)]);
  tick();
  step_record r;
  r.op = "unpark";
  r.n = token;
  r.note = threads_[std::size_t(p.thread)].name.c_str();
  record(r);
}

// What a release grants the waiter of thread `to_thread` (a blocking waiter's own thread, or an
// asynchronous waiter's actor), checked as the token is delivered.
void runtime::check_grant(int to_thread, std::uint32_t token) {
  if (token == detail::token_retry && me().all_earned_unlock) {
    msg_ = "earned hand-off lost: the unlock woke " + threads_[std::size_t(to_thread)].name +
           " to race for the lock bit, though every lock waiter has earned a hand-off (max_lost_races 0; "
           "CONTRACT 3.6)";
    fail();
  }
  thread& me_ = me();
  const thread& to = threads_[std::size_t(to_thread)];
  if (me_.releasing && me_.rel_decides) {
    // [I5][I6][I9] What one unlock grants: at most one hand-off, and then nobody woken to race
    // nor woken as if the bit cleared; at most one queued lock waiter woken to race (joiners
    // are all woken to race when it clears, DESIGN.md item 2); a hand-off only to a waiter that
    // has earned it (counted here from what it lived through, not read from its node). And [I4]:
    // a hand-off drops the waiters bit when no other waiter of the word is left: checked when,
    // at its last bucket unlock, no thread but the new owner was in a call on the word and no
    // call on the word had ended since it began (a waiter its walk saw may have left since, by
    // timeout or through another release: then the bit is rightly kept, conservatively).
    const char* bad = nullptr;
    if (token == detail::token_handoff) {
      ++me_.handoffs;
      if (me_.handoffs > 1)
        bad = "handed the lock to a second waiter (two owners)";
      else if (me_.queued_retries || me_.cleared_tokens)
        bad = "handed the lock off after waking a waiter as if it cleared the bit";
      else if (me_.rel_first >= 0 && me_.rel_first != to_thread && me_.last_first_queued &&
               threads_[std::size_t(me_.rel_first)].waits == me_.rel_first_waits &&
               threads_[std::size_t(me_.rel_first)].retries == me_.rel_first_retries)
        bad =
            "handed the lock past the first lock waiter queued when it began, which its walk must have met "
            "and which is queued still (the first lock waiter decides)";
      else if (!earned_loose(to))
        bad =
            "handed the lock to a waiter that had not earned a hand-off (too few lost races, too short a "
            "wait)";
      else if (me_.last_wb && me_.last_inside <= 1 &&
               slots_[std::size_t(me_.rel_obj.slot)].calls_ended == me_.rel_calls_ended)
        bad =
            "handed the lock off leaving the waiters bit set, though nobody else waited on the word "
            "(CONTRACT 3.4: a release that finds no other waiter clears it)";
    } else if (token == detail::token_retry || token == detail::token_cleared) {
      if (me_.handoffs) bad = "woke a waiter as if the bit cleared after handing the lock off";
      if (token == detail::token_cleared) ++me_.cleared_tokens;
      if (token == detail::token_retry && !to.joiner && ++me_.queued_retries > 1)
        bad = "woke a second queued lock waiter to race for the bit (only the first one races)";
      if (token == detail::token_retry && to.joiner && to.in_lock && to.retries >= fair.max_lost_races &&
          me_.earned_joiner_raced < 0)
        me_.earned_joiner_raced = to_thread;
    }
    if (bad) {
      msg_ = std::string("unlock ") + bad + ": " + to.name + " (CONTRACT 3.6)";
      fail();
    }
  }
}

std::chrono::steady_clock::time_point runtime::now() {
  stop(pending::run);
  step_record r;
  r.op = "clock read";
  record(r);
  return clock_;
}

// ------------------------------------------------------------------------------------------
// Node fields: liveness and the race detector.

void runtime::cell_retire(cell_meta& m) { m.magic = cell_meta::dead_magic; }

void runtime::cell_init(cell_meta& m) {
  m.magic = cell_meta::live_magic;
  m.wthread = cur_;
  m.wclock = cur_ >= 0 ? me().vc[std::size_t(cur_)] : 0;
  m.reads = {};
}

void runtime::cell_read(const cell_meta& m) {
  if (m.magic != cell_meta::live_magic) {
    msg_ =
        "read of a waiter node's field after the node was destroyed (its thread returned, or an asynchronous "
        "waiter's completion freed it)";
    fail();
  }
  if (!hb(m.wthread, m.wclock)) {
    msg_ = "data race: a waiter node's field is read unordered with its last write";
    fail();
  }
  const_cast<cell_meta&>(m).reads[std::size_t(cur_)] = me().vc[std::size_t(cur_)];
}

void runtime::cell_write(cell_meta& m) {
  if (m.magic != cell_meta::live_magic) {
    msg_ =
        "write to a waiter node's field after the node was destroyed (its thread returned, or an "
        "asynchronous waiter's completion freed it)";
    fail();
  }
  if (!hb(m.wthread, m.wclock)) {
    msg_ = "data race: two unordered writes to a waiter node's field";
    fail();
  }
  for (int i = 0; i < max_threads; ++i)
    if (i != cur_ && m.reads[std::size_t(i)] > me().vc[std::size_t(i)]) {
      msg_ = "data race: a waiter node's field is written unordered with a read";
      fail();
    }
  m.wthread = cur_;
  m.wclock = me().vc[std::size_t(cur_)];
}

void runtime::retire_node(const void* p) {
  if (view_->linked(p)) {
    msg_ = "a waiter node is still linked in the wait table after its thread returned";
    fail();
  }
}

// ------------------------------------------------------------------------------------------
// Scenario steps.

obj runtime::alloc(int si, std::uint64_t value) {
  stop(pending::alloc, &slots_[std::size_t(si)]);
  slot& s = slots_[std::size_t(si)];
  s.live = true;
  ++s.gen;
  s.refs = 1;
  s.rel = {};
  s.clears.clear();
  s.owner.fill(-1);
  const std::uint64_t before = read_word(s);
  write_word(s, value);
  tick();
  step_record r;
  r.op = "allocate (reuse the freed memory)";
  r.slot = si;
  r.gen = s.gen;
  r.on_word = true;
  r.before = before;
  r.after = value;
  record(r);
  return {si, s.gen};
}

void runtime::get(obj o) {
  stop(pending::run);
  check_object(o, "get (pin)");
  ++slots_[std::size_t(o.slot)].refs;
  tick();
  step_record r;
  r.op = "get reference";
  r.slot = o.slot;
  r.gen = o.gen;
  r.n = slots_[std::size_t(o.slot)].refs;
  r.note = "refs";
  record(r);
}

void runtime::put(obj o) {
  stop(pending::run);
  check_object(o, "put");
  slot& s = slots_[std::size_t(o.slot)];
  step_record r;
  r.slot = o.slot;
  r.gen = o.gen;
  if (--s.refs == 0) {
    s.live = false;
    r.op = "put reference: last one, FREE the object";
  } else {
    r.op = "put reference";
    r.n = s.refs;
    r.note = "refs";
  }
  tick();
  record(r);
}

void runtime::start_bit(obj o, std::uint64_t bit) {
  stop(pending::bit_clear, &slots_[std::size_t(o.slot)], false, bit);
  check_object(o, "start writeback");
  slot& s = slots_[std::size_t(o.slot)];
  const std::uint64_t before = read_word(s);
  write_word(s, before | bit);
  tick();
  step_record r;
  r.op = "set bit (start writeback again)";
  r.slot = o.slot;
  r.gen = o.gen;
  r.on_word = true;
  r.arg = bit;
  r.before = before;
  r.after = before | bit;
  record(r);
}

runtime::wait_start runtime::begin_wait(obj o, std::uint64_t bit) {
  const slot& s = slots_[std::size_t(o.slot)];
  thread& t = me();
  t.call_slot = o.slot;
  t.in_lock = false;
  t.deadline_fired = t.must_not_requeue = t.joiner = false;
  t.wait_bit = bit;
  t.first_queued_clears = ~std::size_t(0);
  return {o, bit, !(read_word(s) & bit), s.clears.size()};
}

void runtime::locking(obj o, bool timed) {
  thread& t = me();
  t.timed_lock = timed;
  t.call_slot = o.slot;
  t.in_lock = true;
  t.retries = 0;
  t.lock_start = clock_;
  t.parked = t.deadline_fired = t.must_not_requeue = t.joiner = false;
}

void runtime::end_call() {
  thread& t = me();
  if (t.call_slot >= 0) ++slots_[std::size_t(t.call_slot)].calls_ended;
  t.call_slot = -1;
  t.in_lock = false;
}

// [I6] Earned, counted by the checker from what the waiter lived through: races lost in this
// lock call (each token_retry it got while it still waits was a race it lost), or time since
// it began. `loose` measures time from the call's start, before it queued: a hand-off not
// earned even so is certainly unearned. `strict` measures from its first park, after it
// queued: a waiter earned even so has certainly earned it. The core's own clock reading lies
// between the two.
bool runtime::earned_loose(const thread& t) const {
  return t.in_lock && (t.retries >= fair.max_lost_races || clock_ - t.lock_start >= fair.max_wait);
}
bool runtime::earned_strict(const thread& t) const {
  return t.in_lock &&
         (t.retries >= fair.max_lost_races || (t.parked && clock_ - t.first_park >= fair.max_wait));
}

// [I3] Woken means cleared: a waiter that returns true saw the bit clear when it began, or a
// clear of the bit happened after it began to wait and happens-before its return.
void runtime::end_wait(const wait_start& w, bool ok) {
  ++me().waits;
  end_call();
  const slot& s = slots_[std::size_t(w.o.slot)];
  if (!ok || w.clear_at_start) return;
  if (s.gen != w.o.gen) return;  // not the scenarios' case: waiters hold a reference
  bool cleared = false, visible = false;
  for (std::size_t i = w.clears; i < s.clears.size(); ++i)
    if (s.clears[i].bit == w.bit) {
      cleared = true;
      visible |= hb(s.clears[i].thread, s.clears[i].clock);
    }
  if (!cleared) {
    msg_ = "woken into a set bit: the wait returned, but no clear of " + describe_word(w.bit, s.wide) +
           " happened since it began; the bit is still set from before it waited (CONTRACT 3.3)";
    fail();
  }
  if (!visible) {
    msg_ =
        "woken by the wrong release: the wait returned, and the bit was cleared since it began, but no such "
        "clear "
        "happens-before the return; what woke it was a release of the bit as it was before it waited "
        "(CONTRACT "
        "3.3)";
    fail();
  }
}

void runtime::acquired(obj o, std::uint64_t bit) {
  ++me().waits;
  end_call();
  slot& s = slots_[std::size_t(o.slot)];
  const int pos = __builtin_ctzll(bit);
  if (!(read_word(s) & bit)) {
    msg_ = "lock returned, but the lock bit is clear: not the owner (CONTRACT 3.3, 3.5)";
    fail();
  }
  if (s.owner[std::size_t(pos)] >= 0) {
    msg_ = "two owners: " + me().name + " acquired the lock bit held by " +
           threads_[std::size_t(s.owner[std::size_t(pos)])].name + " (CONTRACT 3.5)";
    fail();
  }
  s.owner[std::size_t(pos)] = cur_;
}

void runtime::begin_last_touch_check(obj o, std::uint64_t bit) {
  me().rel_slot = o.slot;
  me().rel_bit = bit;
  me().rel_done = false;
}

void runtime::end_last_touch_check() { me().rel_slot = -1; }

void runtime::lock_failed() {
  ++me().waits;
  end_call();
}

void runtime::begin_release(obj o, std::uint64_t bit, bool unlock, bool decides) {
  thread& t = me();
  t.releasing = true;
  t.rel_unlock = unlock;
  t.rel_decides = decides;
  t.rel_obj_bit = bit;
  t.rel_obj = o;
  t.rel_started = false;
  t.rel_due = {};
  t.rel_queued = {};
  t.rel_snap = false;
  t.rel_nodes_n = 0;
  t.rel_calls_ended = slots_[std::size_t(o.slot)].calls_ended;
  t.handoffs = t.queued_retries = t.cleared_tokens = 0;
  t.earned_joiner_raced = -1;
  t.last_wb = false;
  t.last_inside = 0;
  t.rel_first = -1;
  t.last_first_queued = false;
}

// [I6] for joiners: an unlock whose walk found no lock waiter queued (it woke none to race and
// handed off to none) and cleared the bit must not have woken a joiner that had asked for a
// hand-off (lost max_lost_races races): the first such joiner gets the lock.
// A release begins with its first access to the word: what is queued then is what it must
// serve. (Taken there, after the scheduler's choice, not when the user's call is entered: that
// would be the end of the thread's previous step, before other threads could queue.)
void runtime::start_release() {
  thread& t = me();
  t.rel_started = true;
  if (t.rel_decides) {
    t.rel_due = earned_waiter(t.rel_obj, t.rel_obj_bit);
    const slot& s = slots_[std::size_t(t.rel_obj.slot)];
    bool node_says = false;
    const int f = view_->first_exclusive(s.wide ? static_cast<const void*>(&s.w64) : &s.w32, t.rel_obj_bit,
                                         clock_, node_says);
    t.rel_first = f >= 0 && !threads_[std::size_t(f)].timed_lock ? f : -1;
    if (t.rel_first >= 0) {
      t.rel_first_waits = threads_[std::size_t(f)].waits;
      t.rel_first_retries = threads_[std::size_t(f)].retries;
    }
  }
  if (!t.rel_unlock) t.rel_queued = snapshot_waiters(t.rel_obj, t.rel_obj_bit);
}

void runtime::end_release() {
  thread& t = me();
  t.releasing = false;
  if (t.rel_started) {
    if (!t.rel_unlock) check_woken(t.rel_queued, t.rel_obj, t.rel_obj_bit);
    if (t.rel_decides) check_handoff(t.rel_due, t.rel_obj, t.rel_obj_bit);
  }
  if (t.rel_decides && t.earned_joiner_raced >= 0 && t.handoffs == 0 && t.queued_retries == 0) {
    msg_ = "earned hand-off lost: the unlock found no lock waiter queued and cleared the bit, but " +
           threads_[std::size_t(t.earned_joiner_raced)].name +
           ", which joined it having lost its races, was woken to race instead of being handed the lock "
           "(CONTRACT 3.6)";
    fail();
  }
}

std::size_t runtime::live_objects(std::array<obj, max_slots>& out) const {
  std::size_t n = 0;
  for (int i = 0; i < max_slots; ++i) {
    const slot& s = slots_[std::size_t(i)];
    if (s.used && s.live) out[n++] = obj{i, s.gen};
  }
  return n;
}

void runtime::check_waiters_bit_clear(obj o) {
  const slot& s = slots_[std::size_t(o.slot)];
  if (read_word(s) & waiters_mask(s.wide)) {
    msg_ =
        "the waiters bit of " + slot_name(o.slot, o.gen) +
        " stays set after a release, though nobody waits any more (CONTRACT 3.4: the next release clears it)";
    fail();
  }
}

void runtime::releasing(obj o, std::uint64_t bit) {
  slot& s = slots_[std::size_t(o.slot)];
  const int pos = __builtin_ctzll(bit);
  if (s.owner[std::size_t(pos)] != cur_) {
    msg_ = "unlock by a thread that is not the owner";
    fail();
  }
  s.owner[std::size_t(pos)] = -1;
}

runtime::handoff_due runtime::earned_waiter(obj o, std::uint64_t bit) {
  slot& s = slots_[std::size_t(o.slot)];
  bool node_says = false;  // the node's own fields: not trusted (a mutant may corrupt them)
  const int t =
      view_->first_exclusive(s.wide ? static_cast<const void*>(&s.w64) : &s.w32, bit, clock_, node_says);
  handoff_due d;
  if (t >= 0 && earned_strict(threads_[std::size_t(t)]) && !threads_[std::size_t(t)].timed_lock) d.thread = t;
  d.clears = s.clears.size();
  return d;
}

void runtime::check_handoff(const handoff_due& d, obj o, std::uint64_t bit) {
  // A waiter that died is owed nothing: its recoverer may take its node out of the queue at any
  // moment, as a timed waiter may leave at its deadline (a hand-off the walk made to it is
  // checked at its unpark, and passed on by the recoverer's own unlock, checked here too).
  if (d.thread < 0 || threads_[std::size_t(d.thread)].dead) return;
  const slot& s = slots_[std::size_t(o.slot)];
  for (std::size_t i = d.clears; i < s.clears.size(); ++i)
    if (s.clears[i].bit == bit && s.clears[i].thread == cur_) {
      msg_ = "earned hand-off lost: " + threads_[std::size_t(d.thread)].name +
             " was the first lock waiter queued for " + describe_word(bit, s.wide) +
             " and had earned a hand-off when the unlock began, but the unlock cleared the bit instead "
             "(CONTRACT 3.6)";
      fail();
    }
}

runtime::waiter_snapshot runtime::snapshot_waiters(obj o, std::uint64_t bit) {
  waiter_snapshot w;
  slot& s = slots_[std::size_t(o.slot)];
  scratch_threads_.clear();
  view_->waiters_for(s.wide ? static_cast<const void*>(&s.w64) : &s.w32, bit, scratch_threads_);
  for (int t : scratch_threads_) {
    w.threads[w.count] = t;
    w.retries[w.count] = threads_[std::size_t(t)].retries;
    w.waits[w.count++] = threads_[std::size_t(t)].waits;
  }
  return w;
}

// [I2], and no starvation: every waiter queued for (word, bit) when an event release began has
// been dequeued (by it or by a concurrent release; it will be unparked) when that release
// returns. A waiter never needs a second clear.
void runtime::check_woken(const waiter_snapshot& w, obj o, std::uint64_t bit) {
  const waiter_snapshot still = snapshot_waiters(o, bit);
  for (std::size_t i = 0; i < w.count; ++i)
    for (std::size_t j = 0; j < still.count; ++j)
      if (w.threads[i] == still.threads[j] && w.waits[i] == still.waits[j] &&
          w.retries[i] == still.retries[j]) {
        msg_ =
            "the release of " + describe_word(bit, slots_[std::size_t(o.slot)].wide) + " returned leaving " +
            threads_[std::size_t(w.threads[i])].name +
            " queued, though it queued before the release began (CONTRACT 3.2: it would need a later clear)";
        fail();
      }
}

}  // namespace pagewait::check
