// pagewait/detail/wait_table.hpp — the hashed table where waiters queue.
//
// A power-of-two array of cache-line-aligned buckets, indexed by a hash of the word's address
// (the kernel's page_wait_table, sized to the machine). Each bucket holds a small lock, a FIFO
// queue of waiter nodes that live on the waiters' stacks, and the list of releases in progress
// that span more than one lock hold. Waiters for different bits of one word, and for different
// words, share buckets: every node carries its (word, bit) key.
//
// Everything here except construction is done by the holder of the bucket lock. The structures
// are templated on the runtime policy P so that the model checker can see each access to a node
// field (P::cell) and each visit of the walk (the native cells are plain fields), and so that a
// policy can choose how a structure refers to another (P::link, P::key, below): a wait domain in
// shared memory, mapped at a different address in each process, needs offsets where one process
// has pointers.
#pragma once

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include "pagewait/detail/parker.hpp"

namespace pagewait::detail {

// How the table's structures refer to each other. Every pointer-valued field below is a link
// (get()/set()), and a node's or a release's key, the word it is for, is a word_key (get()/set()). A
// policy that declares `template <class T> using link` or `using key` chooses the representation;
// the others get raw pointers, which compile to exactly what plain fields do. The core compares
// keys only by get() == the caller's own word address, so a representation whose get() depends
// on where the field lives (self-relative offsets in a shared mapping) works unchanged; what no
// representation allows is copying a link's bits to another place (use get() then set()).
template <class T>
struct raw_link {
  T* p = nullptr;
  T* get() const noexcept { return p; }
  void set(T* x) noexcept { p = x; }
};

template <class P, class T>
struct link_of {
  using type = raw_link<T>;
};
template <class P, class T>
requires requires { typename P::template link<T>; }
struct link_of<P, T> {
  using type = typename P::template link<T>;
};
template <class P, class T>
using link = typename link_of<P, T>::type;

template <class P>
struct word_key_of {
  using type = raw_link<const void>;
};
template <class P>
requires requires { typename P::key; }
struct word_key_of<P> {
  using type = typename P::key;
};
template <class P>
using word_key = typename word_key_of<P>::type;

enum class node_kind : std::uint8_t {
  shared,     // wait_bit_clear: returns once the bit is cleared
  exclusive,  // lock_bit: returns as the owner
  bookmark,   // a release's place holder or end marker; never woken, skipped by other walks
};

enum class node_state : std::uint8_t {
  queued,   // linked in the bucket queue; a timed-out waiter may unlink itself
  claimed,  // taken by a release (dequeued, or joined a release in progress): the releaser
            // will unpark it, and the waiter must wait for that unpark whatever its deadline
  idle,     // in no list, and no release will unpark it: not visible yet, withdrawn by its own
            // waiter, or back with its waiter after a token it has taken. What a recoverer
            // needs to tell apart from `claimed` (core::finish_dead_wait): a node that nobody
            // will deliver to, whose waiter died, is finished at once; a claimed one only once
            // its release has delivered.
};

template <class P>
struct release_record;

// A policy whose buckets may be reset or rebuilt (core::reset, core::rebuild) declares
// `static constexpr bool resettable = true`: a wait domain in shared memory, whose recovery from a
// process that died inside a bucket rebuilds the bucket, and the checker's model policies. For
// every other policy the steps that serve a reset or a rebuild (a walk's epoch check and restart,
// the claim's bookkeeping below) compile away. A reset is made only by the core of the protocol a
// domain runs (atomic-clear), whose records always belong to a release that still holds its bit.
// A resettable policy has no asynchronous waiters (a domain's are blocking): the token_abandoned
// a reset delivers goes to a thread, and it runs no completions.
template <class P>
inline constexpr bool resettable = requires {
  requires P::resettable;
};

// What a rebuild learns of the release a claimed node names (P::release_owner): its scope now
// holds another release (`stale`: that one ended, after delivering to the node), or its thread
// runs, or has died.
enum class claimer_state { stale, alive, dead };

template <class P>
struct waiter_node {
  template <class T>
  using cell = typename P::template cell<T>;

  // Queue links. Read and written only under the bucket lock, except that a releaser reads
  // `next` of a node it claimed before unparking it (never after: the node may be gone).
  cell<waiter_node*> next{nullptr};
  cell<waiter_node*> prev{nullptr};
  cell<node_state> state{node_state::idle};
  // The token the releaser decided under the bucket lock; delivered by unpark after it.
  cell<std::uint32_t> token{0};
  // Set by the node's own thread, under the bucket lock, when its deadline or stop came while
  // a release held it claimed: a release that would re-queue it unparks it instead.
  cell<bool> abandoned{false};
  // Resettable policies only, written with `state` under the bucket lock: the release that
  // claimed the node (its record, in that release's scope), and whether the node joined that
  // release's record on arrival rather than being claimed by its walk. A bucket rebuilt from the
  // slots (core::rebuild) trusts none of its links, and tells by these whose a claimed node is.
  // Stale once the release has delivered (the record may be another release's by then): a
  // rebuild reads them only for a node whose parker holds no token yet.
  // `claim_tag` is the claimer's `tag` when it claimed the node: a record whose release has ended
  // and whose scope holds another release now has another tag (the policy says, P::release_owner).
  cell<release_record<P>*> claimer{nullptr};
  cell<bool> joined{false};
  cell<std::uint32_t> claim_tag{0};

  // The key, immutable while the node is visible. `word` is an identity, never dereferenced
  // by anybody but the node's own thread.
  word_key<P> word;
  std::uint64_t bit = 0;
  node_kind kind = node_kind::shared;
  // The size of the word in bytes, set with the key by a wait (a bucket holds words of both
  // widths): a recoverer finishing the wait of a dead waiter acts on the word through it.
  std::uint8_t width = 0;

  // Fairness, exclusive waiters only: the waiter asks for a direct hand-off once it has lost
  // too many races; the releaser also hands off once `handoff_at` has passed.
  bool wants_handoff = false;
  std::chrono::steady_clock::time_point handoff_at{};
  // The designated waker (CONTRACT §3.4): set by the unlock that woke this lock waiter to race
  // (token_retry) and cleared the waiters bit although other lock waiters of the same bit stay
  // queued. Until this waiter's race sets the waiters bit again, releases of the word are fast and
  // wake nobody. Written under the bucket lock before the unpark, read by the waiter (or its
  // recoverer) after the token, and cleared by that race (core::retry_rmw), which every path of
  // a waiter woken with token_retry makes before it queues again.
  cell<bool> designated{false};
  // The waiter's own bookkeeping across its re-queues: races lost in this wait, and whether it
  // has queued before (handoff_at is set at the first queueing). Touched only while the node is
  // not visible, by whoever runs the wait: its own thread, or, for an asynchronous lock waiter,
  // the thread whose release woke it to race (core::race_async). Cells, so that the checker's
  // race detector sees that hand-over from thread to thread ordered by the bucket lock.
  cell<unsigned> lost{0};
  cell<bool> queued_once{false};

  // Exactly one of the two is set while the node is visible: the parker of the thread that waits
  // (blocking waits), or the sink of an asynchronous waiter, which has no thread behind it
  // (pagewait/async.hpp): a release delivers the token to whichever is set.
  link<P, typename P::parker> parker;
  typename P::async_sink* async = nullptr;

  waiter_node() = default;
  waiter_node(const waiter_node&) = delete;
  waiter_node& operator=(const waiter_node&) = delete;
  // The model checker marks the node's memory dead here, so that a releaser touching it after
  // the waiter returned is caught (the release-is-the-last-touch rule applied to nodes).
  ~waiter_node() { P::retire_node(this, sizeof(*this)); }
};

// Takes n out of the doubly linked list [head, tail] (the bucket queue or a release's joined
// list; bucket lock held).
template <class P>
void unlink_node(link<P, waiter_node<P>>& head, link<P, waiter_node<P>>& tail, waiter_node<P>* n) noexcept {
  waiter_node<P>* p = n->prev.get();
  waiter_node<P>* x = n->next.get();
  if (p)
    p->next.set(x);
  else
    head.set(x);
  if (x)
    x->prev.set(p);
  else
    tail.set(p);
  n->next.set(nullptr);
  n->prev.set(nullptr);
}

// A release that drops the bucket lock between chunks registers itself in its bucket, so that
// waiters arriving for its (word, bit) meanwhile join its list instead of lengthening its walk
// (CONTRACT §3.7), and arrivals for other bits of the word tell it to keep the waiters bit.
template <class P>
struct release_record {
  word_key<P> word;
  std::uint64_t bit = 0;
  link<P, release_record> next;
  // Arrivals for (word, bit), claimed on arrival, in arrival order.
  link<P, waiter_node<P>> joined_head;
  link<P, waiter_node<P>> joined_tail;
  // The first exclusive arrival, and the first that asked for a hand-off (lost too many races):
  // an unlock whose walk found no exclusive waiter queued hands the lock to one of them if it
  // has earned it, rather than waking it to race (bounded unfairness for joiners too).
  link<P, waiter_node<P>> first_exclusive;
  link<P, waiter_node<P>> first_wants_handoff;
  bool other_bit_arrived = false;
  // The size of the word in bytes (a bucket holds words of both widths): a reset sets the word's
  // waiters bit again when it moves the joined waiters to the queue (core::reset).
  std::uint8_t width = 0;
  // Resettable policies: what a recoverer needs to finish the release of a thread that died
  // (core::finish_dead_release, core::rebuild). `event`: clear_bit_and_wake, else unlock_bit.
  // `decided`: set in the release's final hold once its decisions are made, just before its
  // clearing step; until then the release has cleared nothing and handed nothing off (its bit is
  // still set, it has only claimed nodes), so it can be made again from the start. `delivering`:
  // set after its last bucket unlock, before its first delivery. Written by the release's own
  // thread (`decided` under the bucket lock); not reset by clear().
  // `handed_off` (with `decided`): the release hands the lock off, and clears nothing. `cleared`:
  // its clearing step has been made (set right after it, in the same hold). `tag`: which release
  // of its scope this is (the policy sets it when the scope opens: a domain, its slot's
  // generation), for the nodes it claims (waiter_node::claim_tag).
  bool event = false;
  bool handed_off = false;
  std::uint32_t tag = 0;
  typename P::template cell<bool> decided{false};
  typename P::template cell<bool> cleared{false};
  typename P::template cell<bool> delivering{false};

  // Takes n out of the joined list (bucket lock held).
  void unjoin(waiter_node<P>* n) noexcept { unlink_node<P>(joined_head, joined_tail, n); }
  // As it was before it was registered: a release that starts its walk again after a reset of
  // its bucket (core::reset) registers it afresh.
  void clear() noexcept {
    next.set(nullptr);
    joined_head.set(nullptr);
    joined_tail.set(nullptr);
    first_exclusive.set(nullptr);
    first_wants_handoff.set(nullptr);
    other_bit_arrived = false;
  }
};

// Where a waiter's node and a release's place holders live, and which table a word's waiters
// use. By default: the node on the waiting thread's stack, the place holders on the releasing
// thread's stack, each for the length of the wait or the release, and the policy's one table
// (P::table()). A policy may declare `wait_scope` (node(), parker()), `release_scope` (end(), mark(), rec())
// and `table_for(const void* word)` to place them elsewhere: a wait domain in shared memory keeps
// them in a slot of its mapping, taken for the length of the scope, where another process's
// release can reach them, and has a table per domain. A thread has at most one wait scope and
// one release scope open at a time — a wait never starts inside a wait (the thread is parked), a
// release never inside a release (release_slow closes its scope before its completions run user
// code, which may release again), and a release's deliver may race an asynchronous lock waiter
// (race_async), which queues that waiter's own node, never a scope's — so a thread holds at most
// two slots, and only for as long as one operation.
// A scope is opened for one word (the word a domain policy finds its slot by); a wait scope also
// gives the parker the node names (by default the thread's own, P::current_parker()).
template <class P>
struct stack_wait_scope {
  waiter_node<P> n;
  explicit stack_wait_scope(const void*) noexcept {}
  waiter_node<P>& node() noexcept { return n; }
  typename P::parker& parker() noexcept { return P::current_parker(); }
};
template <class P>
struct stack_release_scope {
  explicit stack_release_scope(const void*) noexcept {}
  waiter_node<P> end_, mark_;
  release_record<P> rec_;
  waiter_node<P>& end() noexcept { return end_; }
  waiter_node<P>& mark() noexcept { return mark_; }
  release_record<P>& rec() noexcept { return rec_; }
};
template <class P>
struct scopes_of {
  using wait = stack_wait_scope<P>;
  using release = stack_release_scope<P>;
};
template <class P>
requires requires {
  typename P::wait_scope;
  typename P::release_scope;
}
struct scopes_of<P> {
  using wait = typename P::wait_scope;
  using release = typename P::release_scope;
};

template <class P>
struct alignas(64) bucket {
  using node = waiter_node<P>;

  typename P::bucket_lock lock;
  link<P, node> head;
  link<P, node> tail;
  link<P, release_record<P>> releases;
  // Bumped by every reset of the bucket (core::reset): a release that dropped the lock between
  // chunks finds it changed when it takes the lock again, and then knows that its place holders
  // and its record are in no list any more.
  typename P::template cell<std::uint32_t> epoch{0};

  // --- the FIFO queue (bucket lock held) ---
  void push_back(node* n) noexcept {
    node* t = tail.get();
    n->next.set(nullptr);
    n->prev.set(t);
    if (t)
      t->next.set(n);
    else
      head.set(n);
    tail.set(n);
  }
  // Inserts n before pos (pos == nullptr: at the tail).
  void insert_before(node* pos, node* n) noexcept {
    if (!pos) return push_back(n);
    node* p = pos->prev.get();
    n->prev.set(p);
    n->next.set(pos);
    pos->prev.set(n);
    if (p)
      p->next.set(n);
    else
      head.set(n);
  }
  void unlink(node* n) noexcept { unlink_node<P>(head, tail, n); }

  // --- releases in progress (bucket lock held) ---
  void add_release(release_record<P>* r) noexcept {
    r->next.set(releases.get());
    releases.set(r);
  }
  void remove_release(release_record<P>* r) noexcept {
    release_record<P>* prev = nullptr;
    for (release_record<P>* x = releases.get(); x; prev = x, x = x->next.get())
      if (x == r) {
        (prev ? prev->next : releases).set(r->next.get());
        return;
      }
  }

  // A waiter becomes visible: it joins the release in progress for its (word, bit), if there
  // is one, else it is appended to the queue. Returns the state it now has.
  node_state arrive(node* n) noexcept {
    release_record<P>* join = nullptr;
    for (release_record<P>* r = releases.get(); r; r = r->next.get()) {
      if (r->word.get() != n->word.get()) continue;
      if (r->bit == n->bit)
        join = r;
      else
        r->other_bit_arrived = true;
    }
    if (join) {
      node* t = join->joined_tail.get();
      n->next.set(nullptr);
      n->prev.set(t);
      if (t)
        t->next.set(n);
      else
        join->joined_head.set(n);
      join->joined_tail.set(n);
      if (n->kind == node_kind::exclusive) {
        if (!join->first_exclusive.get()) join->first_exclusive.set(n);
        if (n->wants_handoff && !join->first_wants_handoff.get()) join->first_wants_handoff.set(n);
      }
      if constexpr (resettable<P>) {
        n->claimer.set(join);  // before `state`: a holder that dies between them leaves it queued
        n->joined.set(true);
        n->claim_tag.set(join->tag);
      }
      n->state.set(node_state::claimed);
      // Its fate is known now if the release clears: woken after the clear. (If the release
      // hands the lock off instead, it re-queues the node and this token is never delivered.)
      n->token.set(n->kind == node_kind::shared ? token_cleared : token_retry);
      return node_state::claimed;
    }
    push_back(n);
    n->state.set(node_state::queued);
    return node_state::queued;
  }
};

// The table: allocated once, never resized, never freed while the program runs. Its buckets are
// its own, or (the second constructor) placed in storage the caller provides and keeps, as a
// wait domain in a shared mapping must (and the model checker's offset-shaped policy does).
template <class P>
class wait_table {
 public:
  explicit wait_table(std::size_t buckets)
      : shift_(compute_shift(buckets)),
        size_(std::size_t(1) << (64 - shift_)),
        owned_(std::make_unique<bucket<P>[]>(size_)),
        buckets_(owned_.get()) {}
  // `storage`: at least bytes_for(buckets) bytes, aligned to alignof(bucket<P>); the buckets are
  // constructed there (unless `construct` is false: another table, in another process, did) and
  // never destroyed by the table.
  wait_table(std::size_t buckets, void* storage, bool construct = true)
      : shift_(compute_shift(buckets)),
        size_(std::size_t(1) << (64 - shift_)),
        buckets_(construct ? place(storage, size_) : static_cast<bucket<P>*>(storage)) {}
  static std::size_t bytes_for(std::size_t buckets) noexcept {
    return std::bit_ceil(buckets ? buckets : 1) * sizeof(bucket<P>);
  }

  std::size_t size() const noexcept { return size_; }

  bucket<P>& bucket_for(const void* word) noexcept { return buckets_[index_of(word)]; }
  bucket<P>& at(std::size_t i) noexcept { return buckets_[i]; }

  // Fibonacci hashing of the address: the multiply spreads nearby words (objects in one
  // array) over the buckets; the top bits are the best mixed.
  std::size_t index_of(const void* word) const noexcept {
    return index_of_key(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(word)));
  }
  // The same for another key of the word: a domain hashes the word's offset in its mapping,
  // which is the same in every process.
  std::size_t index_of_key(std::uint64_t a) const noexcept {
    return shift_ == 64 ? 0 : static_cast<std::size_t>((a * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  // The native table's size: at least the kernel's 256 buckets, and 64 per hardware thread
  // beyond that (the kernel's fixed 256 was reported as a source of collision contention), up
  // to 64 Ki buckets (4 MiB).
  static std::size_t size_for_machine(unsigned hardware_threads) noexcept {
    std::size_t n = std::bit_ceil(std::size_t(hardware_threads ? hardware_threads : 1) * 64);
    if (n < 256) n = 256;
    if (n > 65536) n = 65536;
    return n;
  }

 private:
  static unsigned compute_shift(std::size_t buckets) noexcept {
    const std::size_t n = std::bit_ceil(buckets ? buckets : 1);
    return 64 - static_cast<unsigned>(std::countr_zero(n));
  }
  static bucket<P>* place(void* storage, std::size_t n) {
    auto* b = static_cast<bucket<P>*>(storage);
    for (std::size_t i = 0; i < n; ++i) new (b + i) bucket<P>;
    return b;
  }
  unsigned shift_;
  std::size_t size_;
  std::unique_ptr<bucket<P>[]> owned_;
  bucket<P>* buckets_;
};

}  // namespace pagewait::detail
