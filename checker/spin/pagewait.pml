/*
 * pagewait.pml -- a Promela model of pagewait's release protocols, checked by spin (issue 3).
 *
 * It follows include/pagewait/detail/core.hpp and detail/wait_table.hpp function by function
 * (release, release_slow with visit_match, lock_slow, wait_clear_slow, sleep/park, the bucket's
 * FIFO queue, arrive/release_record joining, unpark after unlock) so that a reviewer can put the
 * two side by side. It backs the C++ model checker (checker/, which runs the real core.hpp); it
 * does not replace it.
 *
 * Protocol, one of (cf. SPEC section 4):
 *   -DPROTO_ATOMIC_CLEAR     the seed (what the library ships)
 *   -DPROTO_CLEAR_THEN_WAKE  Linux v5.9 before the Nov 2020 fix
 *   -DPROTO_PINNED           clear-then-wake with the caller's reference around clear+wake
 *   -DPROTO_XOR_WAITERS      one xor clears the bit and reports the waiters bit; pinned
 * Scenario, one of (cf. SPEC section 5):
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
 * Knobs: -DNT=n threads, -DITER=n (SCEN_LOCK), -DCHUNK=n node visits per lock hold (the C++
 * P::chunk_visits, 64 natively; 1 or 2 here so that every walk spans holds).
 * Deliberately broken variants (the driver expects spin to find a lost wake-up in each):
 *   -DBROKEN_LATE_CLEAR  the clearing step happens in a later lock hold than the one in which
 *                        the walk reached its end (SPEC section 4: "loses wake-ups").
 *   -DBROKEN_NO_JOIN     arrivals for (word, bit) during a multi-hold walk are queued behind the
 *                        end marker instead of joining the release_record.
 *   -DBROKEN_HANDOFF_CLEARS  a hand-off also clears the bit (the driver expects two owners).
 * Reachability probes (the driver expects each to fire, to show the passing runs are not
 * vacuous): -DPROBE_SPAN, -DPROBE_JOIN, -DPROBE_HANDOFF, -DPROBE_REQUEUE, -DPROBE_FREE.
 *
 * Properties:
 *   - touch after free: every access to the word asserts !freed (SPEC I1);
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
 *   - at most one release_record for (word, bit) is registered at a time; an unpark never
 *     lands on a parker that already holds a token (no double claim).
 *
 * What is abstracted away:
 *   - the hash table is one bucket, holding one word; all waiters wait on the same bit B (the
 *     other-bit and other-word branches of the walk -- keep_waiters for another bit, bookmarks
 *     of other words -- are modeled only as far as the records' other_bit_arrived flag, which
 *     the old protocols use since their record has bit 0);
 *   - deadlines and stop tokens (sleep's unlink-on-timeout, `abandoned`, token_abandoned): every
 *     park waits for its token; the C++ checker's timeout-race scenario covers them;
 *   - fairness counters and clocks: whether the first exclusive waiter has earned a hand-off
 *     (lost >= max_lost_races, or now >= handoff_at) is a nondeterministic choice of the
 *     releaser, which covers both rules and every value of them;
 *   - lock_slow's spin phase is at most one iteration (load, try_lock); P::spin_limit is a count;
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

#if !defined(SCEN_WRITEBACK) && !defined(SCEN_LOCK) && !defined(SCEN_WALK) && !defined(SCEN_REWRITE)
#error "choose a scenario: -DSCEN_WRITEBACK, -DSCEN_LOCK, -DSCEN_WALK or -DSCEN_REWRITE"
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
bool alive[NN];       /* the node's stack frame exists */
byte parker[NT];      /* one immortal parker per thread: its token word */

/* release_record of thread p (at most one each): registered?, bit, joined list, other bit */
bool rreg[NT];
byte rbit[NT], rjh[NT], rjt[NT];
bool rother[NT];

/* ghosts */
byte csince;          /* bit p: B was cleared since thread p's queueing RMW saw it set */
byte owners;          /* threads owning the lock bit */
byte inq;             /* waiter nodes (not bookmarks) in the bucket queue */
bool reached_join, reached_span, reached_requeue, reached_handoff, reached_free;  /* probes */

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

#define LOCALS \
  byte old, v, tk, n, cur, visits, wvisits, q0, wh, wt, requeue, i, r, j, t1, t2, pk; \
  bool ok, got, queued, decided, handoff, exwoken, keepw, spans, earned, done; byte step

/* Dead locals are zeroed when an operation ends, so that stale values do not split states. */
#define RESET_LOCALS \
  atomic { old = 0; v = 0; tk = 0; n = 0; cur = 0; visits = 0; wvisits = 0; q0 = 0; wh = 0; \
           wt = 0; requeue = 0; i = 0; r = 0; j = 0; t1 = 0; t2 = 0; pk = 0; ok = 0; got = 0; \
           queued = 0; decided = 0; handoff = 0; exwoken = 0; keepw = 0; spans = 0; earned = 0; \
           done = 0; step = 0 }

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
  :: nkind[x] != BOOKMARK -> inq++
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
  :: nkind[x] != BOOKMARK -> inq--
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
     nstate[x] = CLAIMED;
     ntoken[x] = (nkind[x] == SHARED -> TCLEARED : TRETRY)
  :: else ->
     push_back(x);
     nstate[x] = QUEUED
  fi
}

/* walk_state::append / claim */
inline wappend(first, last) {
  prv[first] = NIL;
  if
  :: wt != NIL -> nxt[wt] = first
  :: else -> wh = first
  fi;
  wt = last;
  nxt[last] = NIL
}

inline claim(x, tok) {
  unlink(x);
  nstate[x] = CLAIMED;
  ntoken[x] = tok;
  wappend(x, x)
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
/* The release walk (core::visit_match, core::release_slow)                                 */

/* One node of the walk whose key is (word, bit). Lock held. */
inline visit_match(x, kind) {
  done = false;
  if
  :: kind == EVENT ->
     claim(x, (nkind[x] == SHARED -> TCLEARED : TRETRY)); done = true
  :: else ->
     if
     :: !decided ->
        decided = true;
        /* earned_handoff(n): lost races or time; nondeterministic here */
        if
        :: nkind[x] == EXCL -> if :: earned = true :: earned = false fi
        :: else -> earned = false
        fi;
        if
        :: earned ->
#if !ATOMIC_CLEAR
           /* v5.9's hand-off: the waker takes the bit for the waiter after the clear */
           atomic { TOUCH; old = word; word = word | B };
           if
           :: (old & B) -> keepw = true; exwoken = true; done = true
           :: else -> skip
           fi;
#endif
           if
           :: !done -> claim(x, THANDOFF); handoff = true; done = true   /* [I9] */
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
}

inline release_slow(kind) {
  decided = false; handoff = false; exwoken = false; keepw = false;
  wh = NIL; wt = NIL; spans = false;
  atomic {
    rbit[me] = (ATOMIC_CLEAR -> B : 0);   /* the old protocols register with bit 0 */
    rjh[me] = NIL; rjt[me] = NIL; rother[me] = false;
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
          cur = nxt[MN(me)];
          unlink(MN(me));
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
                      push_back(EN(me)); rreg[me] = true; spans = true
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
    requeue = NIL;
    if
    :: spans ->
       rreg[me] = false;
       unlink(EN(me));
       if
       :: rother[me] -> keepw = true
       :: else -> skip
       fi;
       if
       :: rjh[me] != NIL && handoff -> requeue = rjh[me]; keepw = true
       :: rjh[me] != NIL && !handoff -> wappend(rjh[me], rjt[me])
       :: else -> skip
       fi
    :: else -> skip
    fi
  };
#ifdef BROKEN_LATE_CLEAR
  /* BROKEN: the clear happens in a later hold than the one that reached the end. */
  blk = false;
  lock_bucket();
#endif
#if ATOMIC_CLEAR
  if
  :: !handoff ->
     /* [I1][I2][I3] the clearing step: the release's last access to the word */
     atomic { TOUCH; assert(word & B); word = word & ~(B | (keepw -> 0 : WB)); csince = 255 }
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
  /* Joined waiters of a release that handed off go back to the queue, a chunk per hold. */
  if
  :: requeue != NIL ->
#ifdef PROBE_REQUEUE
     reached_requeue = true; assert(!reached_requeue);
#endif
     do
     :: atomic {
          i = 0;
          do
          :: requeue != NIL && i < CHUNK -> n = requeue; requeue = nxt[n]; arrive(n); i++
          :: else -> break
          od
        };
        if
        :: requeue == NIL -> break
        :: else -> blk = false; lock_bucket()
        fi
     od;
     atomic { TOUCH; word = word | WB }
  :: else -> skip
  fi;
  blk = false;
  /* [I1] From here on the word is not touched. Unpark the claimed waiters, reading each
     node's link, token and parker before its unpark. */
  do
  :: wh == NIL -> break
  :: else ->
     /* One step: the node cannot go before its own unpark, and nobody else writes it. */
     atomic {
       assert(alive[wh]); n = nxt[wh]; tk = ntoken[wh]; pk = OWNER(wh);
       assert(parker[pk] == TNONE); parker[pk] = parker[pk] | tk;   /* unpark */
       wh = n
     }
  od
}

/* The owner leaves the critical section in the first step of its unlock. */
#define DISOWN(kind) if :: kind == UNLOCK -> owners-- :: else -> skip fi

/* core::release: unlock_bit (kind UNLOCK) or clear_bit_and_wake (kind EVENT). */
inline release(kind) {
#if ATOMIC_CLEAR
  atomic { DISOWN(kind); TOUCH; old = word };
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
  od
#else
  atomic { DISOWN(kind); TOUCH; old = word };
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
}

/* ---------------------------------------------------------------------------------------- */
/* Waiters (core::lock_slow, core::wait_clear_slow, core::sleep without deadline/stop)      */

/* sleep(): park until the token arrives */
inline park() { atomic { parker[me] != TNONE -> tk = parker[me] } }

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
           I3_CHECK;                             /* [I3] cleared after we queued */
           atomic {
             TOUCH; old = word; word = word | B;
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

proctype locker(byte me) {
  LOCALS;
  byte it;
  nkind[WN(me)] = EXCL;
  do
  :: it < ITER ->
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
/* [I4] While any waiter node is queued in the bucket, the word's waiters bit is set. Blocks
   forever when the invariant holds, hence the end label. */
active proctype i4_monitor() {
end:
  atomic { (!freed && inq > 0 && !(word & WB)) -> assert(!(!freed && inq > 0 && !(word & WB))) }
}
#endif

init {
  byte p;
  atomic {
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
#elif defined(SCEN_LOCK)
    word = 0;
    refs = 100;   /* never freed */
    p = 0;
    do
    :: p < NT -> run locker(p); p++
    :: else -> break
    od
#endif
  }
}
