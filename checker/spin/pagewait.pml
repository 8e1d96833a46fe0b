/*
 * pagewait.pml -- a Promela model of pagewait's release protocols, checked by spin (issue 3).
 *
 * It follows include/pagewait/detail/core.hpp and detail/wait_table.hpp function by function
 * (release, release_slow with visit_match, lock_slow, wait_clear_slow, sleep/park, the bucket's
 * FIFO queue, arrive/release_record joining, unpark after unlock) so that a reviewer can put the
 * two side by side. It backs the C++ model checker (checker/, which runs the real core.hpp); it
 * does not replace it.
 *
 * Protocol, one of (cf. CONTRACT section 4):
 *   -DPROTO_ATOMIC_CLEAR     the seed (what the library ships)
 *   -DPROTO_CLEAR_THEN_WAKE  Linux v5.9 before the Nov 2020 fix
 *   -DPROTO_PINNED           clear-then-wake with the caller's reference around clear+wake
 *   -DPROTO_XOR_WAITERS      one xor clears the bit and reports the waiters bit; pinned
 * Scenario, one of (cf. CONTRACT section 5):
 *   -DSCEN_WRITEBACK   an ender clears the event bit B (clear_bit_and_wake); a truncating waiter
 *                      waits for B clear and then drops its reference; a DROP waiter drops its
 *                      reference once queued. The last reference frees the object. The ender
 *                      holds no reference (writeback holds none).       [no touch after free]
 *   -DSCEN_LOCK        NT threads lock_bit/unlock_bit B ITER times each.  [one owner, hand-off]
 *   -DSCEN_WALK        an ender clears B while NT-1 shared waiters queue and arrive during the
 *                      chunked walk.                                       [bookmark/end/join]
 *   -DSCEN_REWRITE     the Jan 2021 race (KERNEL.md): an ender clears B, a rewriter sets B again
 *                      (writeback restarts) and ends it again; a shared waiter must not be woken
 *                      into the second writeback by the first one's late wake-up.  [woken=cleared]
 *   -DSCEN_FAIR        (handoff-past-reader) T0 locks/unlocks B twice (a barger between), T1
 *                      waits for B clear (a reader of the lock bit), T2 locks/unlocks once and may
 *                      queue behind T1; T3.. (NT > 3) more readers.  [earned hand-off honoured]
 * Knobs: -DNT=n threads, -DITER=n (SCEN_LOCK), -DCHUNK=n node visits per lock hold (the C++
 * P::chunk_visits, 64 natively; 1 or 2 here so that every walk spans holds), -DSTRICT_FAIR
 * (max_lost_races 0: every lock waiter asks for, and has earned, a hand-off).
 * Deliberately broken variants, one per property (the driver expects each to fail it):
 *   -DBROKEN_SPLIT_CLEAR     the clearing step as two RMWs, B then WB: touch after free.
 *   -DBROKEN_READ_AFTER_UNPARK  the releaser reads a node's link after its unpark: node lifetime.
 *   -DBROKEN_LATE_CLEAR      the clearing step happens in a later lock hold than the one in which
 *                            the walk reached its end (CONTRACT section 4: "loses wake-ups"): lost.
 *   -DBROKEN_NO_JOIN         arrivals for (word, bit) during a multi-hold walk are queued behind
 *                            the end marker instead of joining the release_record: lost, or I4
 *                            first with the monitor on.
 *   -DBROKEN_HANDOFF_WAKES_SHARED  a hand-off leaves the shared waiters it dequeued in the wake
 *                            list: woken means cleared.
 *   -DBROKEN_HANDOFF_CLEARS  a hand-off also clears the bit: one owner.
 *   -DBROKEN_RESTART_FROM_HEAD  the walk resumes from the queue's head after each hold: bounded
 *                            walk.
 *   -DBROKEN_LATE_UNREGISTER the release record is removed after the unparks: one release per
 *                            (word, bit) (with pan -E; else the lost wake-up it also causes).
 *   -DBROKEN_FIRST_DECIDES   the rule before the fairness fix: the first waiter decides, shared
 *                            or not: an earned hand-off lost behind a reader.
 *   -DBROKEN_NO_JOINER_HANDOFF  no hand-off to an earned joiner when the walk met no lock waiter
 *                            queued: with -DSTRICT_FAIR, a joiner is woken to race.
 *   -DBROKEN_DESIG_NO_WB     a designated waker's race does not set WB again: lock waiters stay
 *                            queued with WB clear (I4), and sleep for good.
 *   -DBROKEN_DESIG_PAST_EARNED  a waker is designated past a queued lock waiter that has earned its
 *                            hand-off: the fast unlocks before its race clear the bit (fair).
 * -DNO_DESIGNATED: no designated waker (lock waiters queued behind the one woken keep WB set).
 * Reachability probes (the driver expects each to fire, to show the passing runs are not
 * vacuous): -DPROBE_SPAN, -DPROBE_JOIN, -DPROBE_HANDOFF, -DPROBE_REQUEUE, -DPROBE_FREE,
 * -DPROBE_OVERTAKE (a hand-off past a dequeued reader), -DPROBE_REQUEUE_BOTH (one re-queue of
 * dequeued readers and joined arrivals), -DPROBE_JOINER_HANDOFF (a hand-off to a joiner),
 * -DPROBE_DESIG (an unlock makes the lock waiter it wakes the designated waker).
 *
 * Properties:
 *   - touch after free: every access to the word asserts !freed (CONTRACT I1);
 *   - node lifetime: the releaser reads a claimed node only while its waiter is still inside
 *     the wait (alive[]), i.e. before that node's unpark;
 *   - one owner: owners == 1 inside the critical section (I5); a hand-off arrives with B set;
 *   - woken means cleared: a shared waiter's token, or an exclusive waiter's token_retry, comes
 *     only after a clear of B that followed its queueing RMW (ghost bit mask `csince`) (I3);
 *   - no lost wake-up: every process must terminate; there are NO end labels in the threads,
 *     so a thread left parked (or stuck on the bucket lock) when nothing else can move is an
 *     "invalid end state" (I2). Only the I4 monitor carries an `end` label;
 *   - the waiters bit is conservative: a monitor asserts that WB is set whenever a waiter node
 *     is in the bucket queue (I4; -DNO_I4 drops it);
 *   - bounded walk: a walk visits no more waiter nodes than were queued when it began (I7);
 *   - at most one release_record for (word, bit) is registered at a time (checked as a release
 *     registers and as a waiter arrives); an unpark never lands on a parker that already holds
 *     a token (no double claim);
 *   - an earned hand-off is honoured (I6): an unlock that begins while the first exclusive
 *     waiter queued (past any shared ones) has earned a hand-off hands the bit to it. Checked
 *     for atomic-clear; the old protocols clear before they walk, so a barger can take the bit
 *     first (-DCHECK_FAIR_OLD checks them too, -DNO_FAIR checks nobody). With -DSTRICT_FAIR,
 *     also: no lock waiter, queued or joined, is ever woken to race (token_retry).
 *
 * What is abstracted away:
 *   - the hash table is one bucket, holding one word; all waiters wait on the same bit B (the
 *     other-bit and other-word branches of the walk -- keep_waiters for another bit, bookmarks
 *     of other words -- are modeled only as far as the records' other_bit_arrived flag, which
 *     the old protocols use since their record has bit 0);
 *   - deadlines and stop tokens (sleep's unlink-on-timeout, `abandoned`, token_abandoned): every
 *     park waits for its token; the C++ checker's timeout-race scenario covers them;
 *   - fairness counters and clocks: whether a waiter has earned a hand-off (lost >=
 *     max_lost_races, or now >= handoff_at) is a per-waiter ghost (nearned), chosen
 *     nondeterministically when first needed in each queueing (by the walk, or by the fairness
 *     check as an unlock begins) and then kept: every value the C++ can read (see
 *     earned_handoff);
 *   - lock_slow's spin phase is at most one iteration (load, try_lock); P::spin_limit is a count;
 *   - sleep()'s abandoned path (token_abandoned in the re-queue after a hand-off): no deadlines;
 *   - memory orders: spin is sequentially consistent, so acquire/release pairing is NOT checked
 *     here (the C++ checker and the native tests carry that);
 *   - the bucket lock is a test-and-set flag; a parker is one token cell per thread (immortal,
 *     as in parker.hpp); futex syscalls, spurious wake-ups and the parker pool are not modeled;
 *   - throw_not_set (releasing a clear bit) is an assertion: no scenario does it;
 *   - atomicity: each lock hold is split into steps at every access to the word, to a parker or
 *     to node liveness; the accesses of a hold to lock-protected data (queue links, records,
 *     node state/token) are grouped with them. Those accesses commute with every other thread's
 *     steps while the lock is held, so the grouping loses no behaviour (Lipton reduction).
 *
 * Results: see README.md (states stored and seconds per run, produced by run_spin.py).
 */

/* ---------------------------------------------------------------------------------------- */
/* Configuration                                                                            */

#if defined(PROTO_ATOMIC_CLEAR)
#define ATOMIC_CLEAR 1
#define PINS 0
#define XOR 0
#elif defined(PROTO_CLEAR_THEN_WAKE)
#define ATOMIC_CLEAR 0
#define PINS 0
#define XOR 0
#elif defined(PROTO_PINNED)
#define ATOMIC_CLEAR 0
#define PINS 1
#define XOR 0
#elif defined(PROTO_XOR_WAITERS)
#define ATOMIC_CLEAR 0
#define PINS 1
#define XOR 1
#else
#error "choose a protocol: -DPROTO_ATOMIC_CLEAR, -DPROTO_CLEAR_THEN_WAKE, -DPROTO_PINNED or -DPROTO_XOR_WAITERS"
#endif

#if !defined(SCEN_WRITEBACK) && !defined(SCEN_LOCK) && !defined(SCEN_WALK) && !defined(SCEN_REWRITE) \
    && !defined(SCEN_FAIR)
#error "choose a scenario: -DSCEN_WRITEBACK, -DSCEN_LOCK, -DSCEN_WALK, -DSCEN_REWRITE or -DSCEN_FAIR"
#endif

#ifndef NT
#if defined(SCEN_WALK)
#define NT 4
#elif defined(SCEN_REWRITE)
#define NT 3
#else
#define NT 3
#endif
#endif
#ifndef ITER
#define ITER 2
#endif
#ifndef CHUNK
#define CHUNK 1
#endif

/* The word: one user bit and the waiters bit (the top bit of a byte). */
#define B   1
#define WB  128

/* Node ids: 0 is nullptr. Thread p owns its waiter node and the two bookmarks of its release. */
#define NIL 0
#define WN(p) (1 + 3 * (p))   /* lock_slow / wait_clear_slow: `node n` */
#define EN(p) (2 + 3 * (p))   /* release_slow: `node end` */
#define MN(p) (3 + 3 * (p))   /* release_slow: `node mark` */
#define OWNER(n) (((n) - 1) / 3)
#define NN (1 + 3 * NT)
#define NOREC 255

/* node_kind, node_state, unpark tokens, release_kind: as in wait_table.hpp / parker.hpp. */
#define SHARED   0
#define EXCL     1
#define BOOKMARK 2
#define QUEUED  0
#define CLAIMED 1
#define TNONE    0
#define TCLEARED 1
#define TRETRY   2
#define THANDOFF 3
#define UNLOCK 0
#define EVENT  1
/* earned_handoff(n), chosen when first needed (ghost, see earned_handoff) */
#define EUNK 0
#define ENO  1
#define EYES 2

/* Waiter roles in SCEN_WRITEBACK / SCEN_WALK. */
#define PLAIN    0   /* wait_bit_clear, holds no reference that matters (the object is never freed) */
#define FREEING  1   /* truncation: wait for B clear, then drop its reference (frees if last) */
#define DROPPER  2   /* the kernel's DROP wait: drops its reference once queued */

/* ---------------------------------------------------------------------------------------- */
/* Shared state                                                                             */

byte word;            /* the user's std::atomic<W> */
bool freed;           /* the object holding the word is gone */
byte refs;            /* its reference count (SCEN_WRITEBACK) */

bool blk;             /* the bucket lock */
byte head, tail;      /* the bucket's FIFO queue */
byte nxt[NN], prv[NN];
byte nstate[NN], ntoken[NN], nkind[NN];
byte nearned[NN];     /* EUNK / ENO / EYES: has the waiter earned a hand-off (ghost choice) */
bool alive[NN];       /* the node's stack frame exists */
byte parker[NT];      /* one immortal parker per thread: its token word */

/* release_record of thread p (at most one each): registered?, bit, joined list, other bit */
bool rreg[NT];
byte rbit[NT], rjh[NT], rjt[NT];
byte rfx[NT], rfw[NT];   /* first_exclusive, first_wants_handoff joiner */
bool rother[NT];

/* ghosts */
byte csince;          /* bit p: B was cleared since thread p's queueing RMW saw it set */
byte owners;          /* threads owning the lock bit */
byte inq;             /* waiter nodes (not bookmarks) in the bucket queue */
bool desig[NT];       /* thread p is its word's designated waker and has not raced yet */
byte ndesig;          /* how many are (the I4 monitor lets WB be clear meanwhile, for lock waiters) */
byte inqs;            /* shared waiter nodes in the bucket queue (never behind a designated waker) */
bool reached_join, reached_span, reached_requeue, reached_handoff, reached_free;  /* probes */
bool reached_overtake, reached_requeue_both, reached_joiner_handoff, reached_desig;
bool strict;          /* -DSTRICT_FAIR: max_lost_races 0, every lock waiter has earned a hand-off */

/* Every access to the word, by anybody: the object must still exist [I1]. */
#define TOUCH assert(!freed)
/* [I3] Woken means cleared: B was cleared after this thread's queueing RMW saw it set. */
#ifdef NO_I3
#define I3_CHECK skip
#else
#define I3_CHECK assert(csince & (1 << me))
#endif
/* [I5] One owner: counted in the same step as the RMW (or the token) that grants the bit. */
#define OWN owners++; assert(owners == 1)
/* [I6] An earned hand-off is honoured: checked for atomic-clear (the old protocols clear the bit
   before they walk, so their hand-off can lose to a barger; -DCHECK_FAIR_OLD checks them too). */
#if (ATOMIC_CLEAR || defined(CHECK_FAIR_OLD)) && !defined(NO_FAIR)
#define FAIR 1
#else
#define FAIR 0
#endif

#define LOCALS \
  byte old, v, tk, n, cur, visits, wvisits, q0, wh, wt, rqh, rqt, requeue, r, j, t1, t2, pk; \
  byte ftarget, hto; \
  bool ok, got, queued, decided, handoff, exwoken, keepw, spans, earned, done, moreex; byte step, raced

/* Dead locals are zeroed when an operation ends, so that stale values do not split states. */
#define RESET_LOCALS \
  atomic { old = 0; v = 0; tk = 0; n = 0; cur = 0; visits = 0; wvisits = 0; q0 = 0; wh = 0; \
           wt = 0; rqh = 0; rqt = 0; requeue = 0; r = 0; j = 0; t1 = 0; t2 = 0; pk = 0; \
           ftarget = 0; hto = 0; ok = 0; got = 0; queued = 0; decided = 0; handoff = 0; \
           exwoken = 0; keepw = 0; spans = 0; earned = 0; done = 0; step = 0; moreex = 0; \
           raced = 0 }

/* ---------------------------------------------------------------------------------------- */
/* The bucket: FIFO queue and releases in progress (wait_table.hpp). Bucket lock held.      */

inline push_back(x) {
  nxt[x] = NIL; prv[x] = tail;
  if
  :: tail != NIL -> nxt[tail] = x
  :: else -> head = x
  fi;
  tail = x;
  if
  :: nkind[x] != BOOKMARK -> inq++; inqs = inqs + (nkind[x] == SHARED -> 1 : 0)
  :: else -> skip
  fi
}

/* Inserts x (a bookmark) before pos (pos == NIL: at the tail). */
inline insert_before(pos, x) {
  if
  :: pos == NIL -> push_back(x)
  :: else ->
     t1 = prv[pos]; prv[x] = t1; nxt[x] = pos; prv[pos] = x;
     if
     :: t1 != NIL -> nxt[t1] = x
     :: else -> head = x
     fi;
     assert(nkind[x] == BOOKMARK)
  fi
}

inline unlink(x) {
  t1 = prv[x]; t2 = nxt[x];
  if
  :: t1 != NIL -> nxt[t1] = t2
  :: else -> head = t2
  fi;
  if
  :: t2 != NIL -> prv[t2] = t1
  :: else -> tail = t1
  fi;
  nxt[x] = NIL; prv[x] = NIL;
  if
  :: nkind[x] != BOOKMARK -> inq--; inqs = inqs - (nkind[x] == SHARED -> 1 : 0)
  :: else -> skip
  fi
}

/* bucket::arrive: join the release in progress for (word, bit), else append to the queue. */
inline arrive(x) {
  j = NOREC;
#ifndef BROKEN_NO_JOIN
  r = 0;
  do
  :: r < NT ->
     if
     :: rreg[r] && rbit[r] == B -> assert(j == NOREC); j = r   /* one record per (word, bit) */
     :: rreg[r] && rbit[r] != B -> rother[r] = true
     :: else -> skip
     fi;
     r++
  :: else -> break
  od;
#endif
  if
  :: j != NOREC ->
#ifdef PROBE_JOIN
     reached_join = true; assert(!reached_join);
#endif
     nxt[x] = NIL; prv[x] = rjt[j];
     if
     :: rjt[j] != NIL -> nxt[rjt[j]] = x
     :: else -> rjh[j] = x
     fi;
     rjt[j] = x;
     if
     :: nkind[x] == EXCL ->
        if
        :: rfx[j] == NIL -> rfx[j] = x
        :: else -> skip
        fi;
        if
        :: rfw[j] == NIL ->
           /* n->wants_handoff (lost >= max_lost_races), read here once per queueing: if it
              is set, the waiter has earned a hand-off (ghost, see earned_handoff) */
           if
           :: nearned[x] = EYES; rfw[j] = x
#ifndef STRICT_FAIR
           :: skip   /* not asked; its time bound may still have passed */
#endif
           fi
        :: else -> skip
        fi
     :: else -> skip
     fi;
     nstate[x] = CLAIMED;
     ntoken[x] = (nkind[x] == SHARED -> TCLEARED : TRETRY)
  :: else ->
     push_back(x);
     nstate[x] = QUEUED
  fi
}

/* node_list::append (walk_state's wake and requeue lists) and walk_state::claim */
inline lappend(lh, lt, first, last) {
  prv[first] = NIL;
  if
  :: lt != NIL -> nxt[lt] = first
  :: else -> lh = first
  fi;
  lt = last;
  nxt[last] = NIL
}

/* release_record::unjoin */
inline unjoin(rr, x) {
  t1 = prv[x]; t2 = nxt[x];
  if
  :: t1 != NIL -> nxt[t1] = t2
  :: else -> rjh[rr] = t2
  fi;
  if
  :: t2 != NIL -> prv[t2] = t1
  :: else -> rjt[rr] = t1
  fi;
  nxt[x] = NIL; prv[x] = NIL
}

inline claim(x, tok) {
  unlink(x);
  nstate[x] = CLAIMED;
  ntoken[x] = tok;
  nearned[x] = EUNK;   /* ghost: dead once claimed (the waiter's next queueing chooses afresh) */
  lappend(wh, wt, x, x)
}

/* bucket::add_release. The model also checks here that no other release for (word, bit) is
   registered (one release per (word, bit)); arrive() checks it again as a waiter looks for one. */
inline add_release() {
  r = 0;
  do
  :: r < NT -> assert(!(rreg[r] && rbit[r] == B && rbit[me] == B)); r++
  :: else -> break
  od;
  r = 0;
  rreg[me] = true
}

inline lock_bucket() { atomic { !blk -> blk = true } }

/* ---------------------------------------------------------------------------------------- */
/* Object lifetime                                                                          */

inline put_ref() {
  atomic {
    assert(refs > 0);
    refs--;
    if
    :: refs == 0 ->
#ifdef PROBE_FREE
       reached_free = true; assert(!reached_free);
#endif
       freed = true
    :: else -> skip
    fi
  }
}

/* The pinned protocols' pin.get(): an extra reference, taken while B is still set. */
inline pin_get() { atomic { TOUCH; assert(refs > 0); refs++ } }

/* ---------------------------------------------------------------------------------------- */
/* The release walk (core::earned_handoff, core::visit_match, core::release_slow)           */

/* earned_handoff(n): n->wants_handoff || now >= n->handoff_at. Neither can go from true to false
   while the node waits, and each queueing's value is acted on at most once: by the walk that
   meets the node as the first exclusive waiter, or by the final step for the joiner it picks;
   either claims it (the bit, or a wake-up to race after the clear). Only v5.9's failed hand-off
   reads it and leaves the node queued, and it read true. (wants_handoff alone is also read as a
   lock waiter joins a release: if set, the waiter has earned.) So the value is chosen when first
   needed and kept until the waiter runs: every value the C++ can act on, with no counters and no
   clock. [model] */
inline earned_handoff(x) {
  if
  :: nearned[x] == EUNK ->
     if
     :: nearned[x] = EYES
#ifndef STRICT_FAIR
     :: nearned[x] = ENO
#endif
     fi
  :: else -> skip
  fi;
  earned = (nearned[x] == EYES)
}

/* One node of the walk whose key is (word, bit). Lock held. */
inline visit_match(x, kind) {
#ifndef BROKEN_FIRST_DECIDES
  if
  :: kind == EVENT ->
     claim(x, (nkind[x] == SHARED -> TCLEARED : TRETRY))
  :: kind == UNLOCK && handoff ->
     keepw = true   /* everybody else stays queued behind the new owner */
  :: kind == UNLOCK && !handoff && nkind[x] == SHARED ->
     claim(x, TCLEARED)   /* woken after the clear; until an exclusive waiter decides, provisionally */
  :: kind == UNLOCK && !handoff && nkind[x] == EXCL ->
     done = false;
     if
     :: !decided ->
        decided = true;   /* [I6] the first exclusive waiter decides, past shared ones ahead of it */
        earned_handoff(x);
        if
        :: earned ->
#if !ATOMIC_CLEAR
           /* v5.9's hand-off: the waker takes the bit for the waiter after the clear; the
              shared waiters before it stay claimed (the bit really was cleared) */
           atomic { TOUCH; old = word; word = word | B };
           if
           :: (old & B) -> keepw = true; exwoken = true; done = true
           :: else -> skip
           fi;
#else
           if
           :: wh != NIL ->
              /* [I3] the bit will not clear: the shared waiters claimed so far go back to the
                 queue (the re-queue after the walk), not to their parkers */
#ifdef PROBE_OVERTAKE
              reached_overtake = true; assert(!reached_overtake);
#endif
#ifndef BROKEN_HANDOFF_WAKES_SHARED
              rqh = wh; rqt = wt; wh = NIL; wt = NIL; keepw = true
#else
              skip   /* BROKEN: they stay in the wake list, woken although the bit stays set */
#endif
           :: else -> skip
           fi;
#endif
           if
           :: !done -> claim(x, THANDOFF); handoff = true; hto = x; done = true   /* [I9] */
           :: else -> skip
           fi
        :: else -> skip
        fi
     :: else -> skip
     fi;
     if
     :: done -> skip
     :: !done && !exwoken -> claim(x, TRETRY); exwoken = true; raced = x
#if ATOMIC_CLEAR && !defined(NO_DESIGNATED)
     :: !done && exwoken ->
        /* decided in the final step: a designated waker, or keepw; [I6] not past a waiter that
           has earned its hand-off (it is first once `raced` is out) */
        if
        :: !moreex ->
           earned_handoff(x);
           if
#ifndef BROKEN_DESIG_PAST_EARNED
           :: earned -> keepw = true
#endif
           :: else -> skip
           fi;
           earned = false
        :: else -> skip
        fi;
        moreex = true
#else
     :: !done && exwoken -> keepw = true
#endif
     fi
  fi
#else
  /* BROKEN (the rule before the fairness fix): the *first* waiter for (word, bit) decides; a
     shared waiter ahead of an exclusive one that has earned a hand-off costs it the hand-off. */
  done = false;
  if
  :: kind == EVENT ->
     claim(x, (nkind[x] == SHARED -> TCLEARED : TRETRY)); done = true
  :: else ->
     if
     :: !decided ->
        decided = true;
        if
        :: nkind[x] == EXCL -> earned_handoff(x)
        :: else -> earned = false
        fi;
        if
        :: earned ->
#if !ATOMIC_CLEAR
           atomic { TOUCH; old = word; word = word | B };
           if
           :: (old & B) -> keepw = true; exwoken = true; done = true
           :: else -> skip
           fi;
#endif
           if
           :: !done -> claim(x, THANDOFF); handoff = true; hto = x; done = true
           :: else -> skip
           fi
        :: else -> skip
        fi
     :: else -> skip
     fi
  fi;
  if
  :: done -> skip
  :: !done && handoff -> keepw = true
  :: !done && !handoff && nkind[x] == SHARED -> claim(x, TCLEARED)
  :: !done && !handoff && nkind[x] == EXCL && !exwoken -> claim(x, TRETRY); exwoken = true
  :: !done && !handoff && nkind[x] == EXCL && exwoken -> keepw = true
  fi
#endif
}

inline release_slow(kind) {
  decided = false; handoff = false; exwoken = false; keepw = false; moreex = false; raced = NIL;
  wh = NIL; wt = NIL; rqh = NIL; rqt = NIL; spans = false;
  atomic {
    rbit[me] = (ATOMIC_CLEAR -> B : 0);   /* the old protocols register with bit 0 */
    rjh[me] = NIL; rjt[me] = NIL; rfx[me] = NIL; rfw[me] = NIL; rother[me] = false;
    !blk -> blk = true;
    cur = head; visits = 0; wvisits = 0; q0 = inq
  };
  /* One iteration per lock hold; each hold is one atomic step (see "atomicity" above). */
  step = 0;
  do
  :: step == 1 -> break
  :: else ->
     atomic {
       if
       :: step == 2 ->
          /* Retake the lock. Nodes before the bookmark may have left; the node after it is
             the first one not yet visited. */
          !blk -> blk = true;
#ifndef BROKEN_RESTART_FROM_HEAD
          cur = nxt[MN(me)];
          unlink(MN(me));
#else
          unlink(MN(me));
          cur = head;   /* BROKEN: the walk starts again from the head after each hold */
#endif
          visits = 0;
          step = 0
       :: else -> skip
       fi;
       do
       :: step != 0 -> break
       :: else ->
          if
          :: (spans && cur == EN(me)) || (!spans && cur == NIL) -> step = 1
          :: else ->
             if
             :: handoff && keepw -> step = 1   /* nothing more to learn */
             :: else ->
                if
                :: visits == CHUNK ->
                   /* [I7] Bounded hold: leave a bookmark before the next node, let others in. */
                   if
                   :: !spans ->
#ifdef PROBE_SPAN
                      reached_span = true; assert(!reached_span);
#endif
                      push_back(EN(me)); add_release(); spans = true
                   :: else -> skip
                   fi;
                   insert_before(cur, MN(me));
                   blk = false;
                   step = 2
                :: else ->
                   visits++;
                   n = cur;
                   cur = nxt[n];
                   if
                   :: nkind[n] == BOOKMARK -> skip
                   :: else ->
                      wvisits++;
                      assert(wvisits <= q0);   /* [I7] bounded by the queue as the release began */
                      visit_match(n, kind)
                   fi
                fi
             fi
          fi
       od
     }
  od;

  /* The final step, in the same hold in which the walk reached its end [I2]. */
  atomic {
    if
    :: spans ->
#ifndef BROKEN_LATE_UNREGISTER
       rreg[me] = false;
#endif
       unlink(EN(me));
       if
       :: rother[me] -> keepw = true
       :: else -> skip
       fi;
#if ATOMIC_CLEAR && !defined(BROKEN_NO_JOINER_HANDOFF)
       /* [I6] The walk found no exclusive waiter queued: the first joiner that asked for a
          hand-off, else the first exclusive joiner, gets the lock if it has earned it. */
       if
       :: kind == UNLOCK && !decided ->
          n = (rfw[me] != NIL -> rfw[me] : rfx[me]);
          if
          :: n != NIL ->
             earned_handoff(n);
             if
             :: earned ->
#ifdef PROBE_JOINER_HANDOFF
                reached_joiner_handoff = true; assert(!reached_joiner_handoff);
#endif
                unjoin(me, n);
                rqh = wh; rqt = wt; wh = NIL; wt = NIL;
                if
                :: rqh != NIL -> keepw = true
                :: else -> skip
                fi;
                ntoken[n] = THANDOFF;   /* [I9] */
                lappend(wh, wt, n, n);
                decided = true; handoff = true; hto = n
             :: else -> skip
             fi
          :: else -> skip
          fi;
          n = NIL; earned = false
       :: else -> skip
       fi;
#endif
       rfx[me] = NIL; rfw[me] = NIL;
       if
       :: rjh[me] != NIL && handoff ->
#ifdef PROBE_REQUEUE_BOTH
          if
          :: rqh != NIL -> reached_requeue_both = true; assert(!reached_requeue_both)
          :: else -> skip
          fi;
#endif
          lappend(rqh, rqt, rjh[me], rjt[me]); keepw = true
       :: rjh[me] != NIL && !handoff -> lappend(wh, wt, rjh[me], rjt[me])
       :: else -> skip
       fi
    :: else -> skip
    fi;
    requeue = rqh; rqh = NIL; rqt = NIL
  };
#ifdef BROKEN_LATE_CLEAR
  /* BROKEN: the clear happens in a later hold than the one that reached the end. */
  blk = false;
  lock_bucket();
#endif
#if ATOMIC_CLEAR
  /* [I4] The designated waker: lock waiters stay queued behind the one woken to race and nothing
     else keeps WB; the clearing step clears it, and that waiter's race sets it again. Only for a
     walk that ended in its first hold. (core.hpp, release_walk's final hold) */
  atomic {
    if
    :: moreex && !keepw && !spans && !handoff ->
#ifdef PROBE_DESIG
       reached_desig = true; assert(!reached_desig);
#endif
       desig[(raced - 1) / 3] = true; ndesig++
    :: moreex && !(!keepw && !spans && !handoff) -> keepw = true
    :: else -> skip
    fi
  };
  if
  :: !handoff ->
     /* [I1][I2][I3] the clearing step: the release's last access to the word */
#ifndef BROKEN_SPLIT_CLEAR
     atomic { TOUCH; assert(word & B); word = word & ~(B | (keepw -> 0 : WB)); csince = 255 }
#else
     /* BROKEN: B and WB cleared by two RMWs, B first: the second touches the word after the clear */
     atomic { TOUCH; assert(word & B); word = word & ~B; csince = 255 };
     if
     :: !keepw -> atomic { TOUCH; word = word & ~WB }
     :: else -> skip
     fi
#endif
#ifndef BROKEN_HANDOFF_CLEARS
  :: handoff && !keepw ->
     atomic { TOUCH; word = word & ~WB }   /* [I5] hand-off: only the waiters bit goes */
  :: else -> skip
#else
  :: handoff ->   /* BROKEN: the hand-off clears the bit as well */
     atomic { TOUCH; word = word & ~(B | (keepw -> 0 : WB)) }
#endif
  fi;
#else
  if
  :: !keepw -> atomic { TOUCH; word = word & ~WB }   /* the kernel's late clear of PG_waiters */
  :: else -> skip
  fi;
#endif
  /* After a hand-off, the shared waiters claimed before the decision and then the joined
     arrivals go back to the queue, a chunk per hold: the hold that ended the walk continues its
     budget of visits [I7], and every hold that queues sets WB again [I4]. */
  if
  :: requeue != NIL ->
#ifdef PROBE_REQUEUE
     reached_requeue = true; assert(!reached_requeue);
#endif
     do
     :: atomic {
          do
          :: requeue != NIL && visits < CHUNK -> n = requeue; requeue = nxt[n]; arrive(n); visits++
          :: else -> break
          od;
          TOUCH; word = word | WB
        };
        if
        :: requeue == NIL -> break
        :: else -> blk = false; atomic { !blk -> blk = true; visits = 0 }
        fi
     od
  :: else -> skip
  fi;
  blk = false;
  /* [I1] From here on the word is not touched. Unpark the claimed waiters, reading each
     node's link, token and parker before its unpark. */
  do
  :: wh == NIL -> break
  :: else ->
#ifndef BROKEN_READ_AFTER_UNPARK
     /* One step: the node cannot go before its own unpark, and nobody else writes it. */
     atomic {
       assert(alive[wh]); n = nxt[wh]; tk = ntoken[wh]; pk = OWNER(wh);
       assert(parker[pk] == TNONE); parker[pk] = parker[pk] | tk;   /* unpark */
       wh = n
     }
#else
     /* BROKEN: the node's link is read after its unpark */
     atomic {
       assert(alive[wh]); tk = ntoken[wh]; pk = OWNER(wh);
       assert(parker[pk] == TNONE); parker[pk] = parker[pk] | tk   /* unpark */
     };
     atomic { assert(alive[wh]); n = nxt[wh]; wh = n }
#endif
  od;
#ifdef BROKEN_LATE_UNREGISTER
  /* BROKEN: the release record is removed last, in a hold of its own after the unparks (as a
     scope guard would); meanwhile the bit may be released again by somebody else. */
  if
  :: spans -> lock_bucket(); atomic { rreg[me] = false; blk = false }
  :: else -> skip
  fi
#else
  skip
#endif
}

/* The owner leaves the critical section in the first step of its unlock. */
#define DISOWN(kind) if :: kind == UNLOCK -> owners-- :: else -> skip fi

/* [I6] As an unlock begins: the first exclusive waiter queued (in queue order, past any shared
   ones), if it has earned a hand-off, is the one this unlock must hand the bit to. Ghost. */
inline fair_begin(kind) {
#if FAIR
  ftarget = NIL;
  if
  :: kind == UNLOCK ->
     n = head;
     do
     :: n == NIL -> break
     :: n != NIL && nkind[n] == EXCL ->
        earned_handoff(n);
        if
        :: earned -> ftarget = n
        :: else -> skip
        fi;
        break
     :: else -> n = nxt[n]
     od;
     n = NIL; earned = false
  :: else -> skip
  fi
#else
  skip
#endif
}

/* [I6] ... and as it ends, it has handed the bit to that waiter. */
#if FAIR
#define FAIR_END atomic { assert(ftarget == NIL || hto == ftarget); ftarget = NIL; hto = NIL }
#else
#define FAIR_END hto = NIL
#endif

/* core::release: unlock_bit (kind UNLOCK) or clear_bit_and_wake (kind EVENT). */
inline release(kind) {
#if ATOMIC_CLEAR
  atomic { DISOWN(kind); fair_begin(kind); TOUCH; old = word };
  do
  :: assert(old & B);   /* throw_not_set: never in these scenarios */
     if
     :: (old & WB) -> release_slow(kind); break
     :: else ->
        atomic {
          TOUCH;
          if
          :: word == old -> word = old & ~B; csince = 255; ok = true   /* the last touch [I1] */
          :: else -> old = word; ok = false
          fi
        };
        if
        :: ok -> break
        :: else -> skip
        fi
     fi
  od;
#else
  atomic { DISOWN(kind); fair_begin(kind); TOUCH; old = word };
  assert(old & B);
#if PINS
  pin_get();
#endif
#if XOR
  atomic { TOUCH; old = word; word = word ^ B; csince = 255 };
#else
  atomic { TOUCH; word = word & ~B; csince = 255 };
  atomic { TOUCH; old = word };   /* the touch after the clear that the seed removes */
#endif
  if
  :: (old & WB) -> release_slow(kind)
  :: else -> skip
  fi;
#if PINS
  put_ref();
#endif
#endif
  FAIR_END
}

/* ---------------------------------------------------------------------------------------- */
/* Waiters (core::lock_slow, core::wait_clear_slow, core::sleep without deadline/stop)      */

/* sleep(): park until the token arrives */
inline park() { atomic { parker[me] != TNONE -> tk = parker[me]; nearned[WN(me)] = EUNK } }

inline lock_slow() {
  got = false;
#ifdef SPIN_PHASE
  /* the spin phase, at most one iteration */
  if
  :: skip
  :: atomic { TOUCH; v = word };
     if
     :: !(v & WB) && !(v & B) ->
        atomic {
          TOUCH; old = word; word = word | B;
          if
          :: !(old & B) -> got = true; OWN
          :: else -> skip
          fi
        }
     :: else -> skip
     fi
  fi;
#endif
  if
  :: !got ->
     do
     :: atomic {
          !blk -> blk = true;
          /* (the node and the parker are this thread's until arrive() makes the node visible) */
          alive[WN(me)] = true;
          parker[me] = TNONE;   /* prepare() */
          /* [I2] set WB and try B in one RMW, under the bucket lock */
          TOUCH; old = word; word = word | B | WB;
          if
          :: !(old & B) -> got = true; OWN
          :: else -> arrive(WN(me)); csince = csince & ~(1 << me)
          fi;
          blk = false
        };
        if
        :: got -> break
        :: else -> skip
        fi;
        park();
        if
        :: tk == THANDOFF ->
#ifdef PROBE_HANDOFF
           reached_handoff = true; assert(!reached_handoff);
#endif
           atomic { assert(word & B); OWN; got = true }; break   /* [I5] the bit never cleared */
        :: tk == TRETRY ->
           assert(!strict);                      /* [I6] every unlock hands off when all earned */
           I3_CHECK;                             /* [I3] cleared after we queued */
           atomic {
             TOUCH; old = word;
#ifndef BROKEN_DESIG_NO_WB
             /* retry_rmw: a designated waker sets WB with the same RMW, won or lost [I4][I2] */
             word = word | B | (desig[me] -> WB : 0);
#else
             word = word | B;   /* BROKEN: the designated waker does not set WB again */
#endif
             if
             :: desig[me] -> desig[me] = false; ndesig--
             :: else -> skip
             fi;
             if
             :: !(old & B) -> got = true; OWN
             :: else -> skip                     /* lost the race: queue again */
             fi
           };
           if
           :: got -> break
           :: else -> skip
           fi
        :: else -> assert(false)
        fi
     od;
     alive[WN(me)] = false
  :: else -> skip
  fi
}

/* wait_bit_clear(word, B); `role` says what the thread does with its reference. */
inline wait_clear(role) {
  queued = false;
  atomic { TOUCH; v = word };
  if
  :: (v & B) ->
     alive[WN(me)] = true;
     parker[me] = TNONE;   /* prepare() */
     atomic { !blk -> blk = true; TOUCH; v = word };
     if
     :: !(v & B) -> blk = false
     :: else ->
        atomic {
          TOUCH; v = word; word = word | WB;
          if
          :: (v & B) -> arrive(WN(me)); csince = csince & ~(1 << me); queued = true
          :: else -> skip
          fi;
          blk = false
        }
     fi;
     if
     :: queued ->
        /* [I3][I4] DROP wait: from here on this thread never reads the word */
        if
        :: role == DROPPER -> put_ref()
        :: else -> skip
        fi;
        park();
        assert(tk == TCLEARED);
        I3_CHECK                       /* [I3] woken only after a clear that followed us */
     :: else -> skip
     fi;
     alive[WN(me)] = false
  :: else -> skip
  fi;
  if
  :: role == FREEING || (role == DROPPER && !queued) -> put_ref()
  :: else -> skip
  fi
}

/* ---------------------------------------------------------------------------------------- */
/* Threads                                                                                  */

proctype ender(byte me) {
  LOCALS;
  release(EVENT)   /* clear_bit_and_wake: end of writeback */
}

proctype waiter(byte me; byte role) {
  LOCALS;
  nkind[WN(me)] = SHARED;
  wait_clear(role)
}

/* Writeback starts again once it has ended, and ends again (SCEN_REWRITE). */
proctype rewriter(byte me) {
  LOCALS;
  atomic { TOUCH; !(word & B) -> word = word | B };   /* set_page_writeback, once B is clear */
  release(EVENT)
}

proctype locker(byte me; byte iters) {
  LOCALS;
  byte it;
  nkind[WN(me)] = EXCL;
  do
  :: it < iters ->
     atomic {
       TOUCH; old = word; word = word | B;   /* try_lock: lock bts */
       if
       :: !(old & B) -> OWN
       :: else -> skip
       fi
     };
     if
     :: (old & B) -> lock_slow()
     :: else -> skip
     fi;
     RESET_LOCALS;
     /* the critical section */
     release(UNLOCK);
     RESET_LOCALS;
     it++
  :: else -> break
  od
}

#ifndef NO_I4
/* [I4] While any waiter node is queued in the bucket, the word's waiters bit is set, or (lock
   waiters only) a designated waker has not raced yet. Blocks forever when the invariant holds,
   hence the end label. */
active proctype i4_monitor() {
end:
  atomic { (!freed && (inqs > 0 || (inq > 0 && ndesig == 0)) && !(word & WB)) ->
           assert(!(!freed && (inqs > 0 || (inq > 0 && ndesig == 0)) && !(word & WB))) }
}
#endif

init {
  byte p;
  atomic {
#ifdef STRICT_FAIR
    strict = true;
#endif
    /* bookmarks */
    p = 0;
    do
    :: p < NT -> nkind[EN(p)] = BOOKMARK; nkind[MN(p)] = BOOKMARK; alive[EN(p)] = true; alive[MN(p)] = true; p++
    :: else -> break
    od;
#if defined(SCEN_WRITEBACK)
    /* writeback in progress; T1 ends it; T2 truncates (waits, then drops its reference);
       T3.. wait with DROP. The ender holds no reference. */
    word = B;
    refs = NT - 1;
    run ender(0);
    run waiter(1, FREEING);
    p = 2;
    do
    :: p < NT -> run waiter(p, DROPPER); p++
    :: else -> break
    od
#elif defined(SCEN_WALK)
    word = B;
    refs = 100;   /* never freed */
    run ender(0);
    p = 1;
    do
    :: p < NT -> run waiter(p, PLAIN); p++
    :: else -> break
    od
#elif defined(SCEN_REWRITE)
    word = B;
    refs = 100;   /* never freed */
    run ender(0);
    run rewriter(1);
    p = 2;
    do
    :: p < NT -> run waiter(p, PLAIN); p++
    :: else -> break
    od
#elif defined(SCEN_FAIR)
    /* T0 locks and unlocks twice (between its unlock and its next lock it barges); T1 waits
       for the lock bit to clear (shared, on the lock bit); T2 locks and unlocks once, and may
       queue behind T1. */
    word = 0;
    refs = 100;   /* never freed */
    run locker(0, 2);
    run waiter(1, PLAIN);
    run locker(2, 1);
    p = 3;   /* T3..: more readers of the lock bit, which may join a walk in progress */
    do
    :: p < NT -> run waiter(p, PLAIN); p++
    :: else -> break
    od
#elif defined(SCEN_LOCK)
    word = 0;
    refs = 100;   /* never freed */
    p = 0;
    do
    :: p < NT -> run locker(p, ITER); p++
    :: else -> break
    od
#endif
  }
}
