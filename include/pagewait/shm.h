/* pagewait/shm.h — wait domains (pagewait/shm.hpp) from C: status codes instead of exceptions.
 *
 * For programs written in C whose processes share words in a MAP_SHARED mapping (a buffer pool's
 * state words, as PostgreSQL keeps them): the same domain, the same operations, the same
 * protocol and guarantees as the C++ interface (docs/SHARED.md is the manual), reached through
 * out-of-line functions. Each call costs a function call on top of what the C++ inline fast path
 * does (one atomic RMW on the word, nothing in the domain touched, when uncontended).
 *
 *   void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
 *   pw_domain *d;
 *   int rc = pw_domain_create(base, size, NULL, &d);     // once; the others pw_domain_attach
 *   if (rc != PW_OK) fprintf(stderr, "%s\n", pw_strerror(rc));
 *   uint32_t *state = pw_domain_user_area(d);            // the words live here
 *   pw_lock_bit32(d, &state[7], 1u);  ...  pw_unlock_bit32(d, &state[7], 1u);
 *
 * The words: a uint32_t or uint64_t in the domain's user area, naturally aligned, that every
 * process reads and writes only atomically (C11 atomics, the __atomic builtins, or a wrapper
 * such as PostgreSQL's pg_atomic_uint32 around one). The library accesses it as a lock-free
 * std::atomic of the same size and alignment.
 *
 * Every function returns PW_OK (0) on success, a positive status for an outcome that is not an
 * error (PW_BUSY, PW_TIMEDOUT), or a negative error code. An error is returned before the word
 * or the memory is changed, as the C++ interface throws before it. Timeouts are relative, in
 * nanoseconds of the steady clock (CLOCK_MONOTONIC); 0 or less tries once without sleeping.
 */
#ifndef PAGEWAIT_SHM_H
#define PAGEWAIT_SHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum pw_status {
  PW_OK = 0,
  PW_BUSY = 1,     /* pw_try_lock_bit*: the bit was set; nothing changed */
  PW_TIMEDOUT = 2, /* a timed lock or wait: the deadline passed first */

  /* The errors of pagewait::shm::errc, negated. */
  PW_EBADMAGIC = -1,     /* attach: the memory was never formatted by create */
  PW_ELAYOUT = -2,       /* attach: formatted by a pagewait with another layout version */
  PW_EABI = -3,          /* attach: another build's structure sizes */
  PW_ENOTREADY = -4,     /* attach: create has not finished formatting it */
  PW_ETOOSMALL = -5,     /* create/attach: the memory cannot hold the domain */
  PW_EMISALIGNED = -6,   /* create/attach: base is not 64-byte aligned */
  PW_EBADOPTIONS = -7,   /* create, bytes_needed: buckets, slots or release reserve out of range */
  PW_EOUTSIDE = -8,      /* the word is not (whole and aligned) in the domain's user area */
  PW_ENOSLOTS = -9,      /* a wait or lock that would sleep found every slot taken */
  PW_EUNSUPPORTED = -10, /* this build has no shared futexes */
  PW_EOVERLAPS = -11,    /* create/attach: the memory overlaps a domain this process attached */
  PW_ETOOMANY = -12,     /* create/attach: this process has 64 domains attached already */
  PW_EPIDNS = -13,       /* attach: the domain was created in another PID namespace; recover: this
                            process was forked into another one after its parent attached */

  PW_EINVAL = -20,  /* a null pointer, or a bit that is not exactly one bit or is the waiters bit */
  PW_ENOTSET = -21, /* unlock or clear of a bit that is not set */
  PW_ENOMEM = -22,  /* create/attach: out of memory for the process's handle */
  PW_EFAIL = -23    /* an unexpected failure of the system (the C++ interface threw something else) */
};

typedef struct pw_domain pw_domain; /* this process's handle on one domain */

typedef struct pw_domain_options {
  uint32_t buckets;         /* wait-table buckets, rounded up to a power of two, 1..65536 */
  uint32_t slots;           /* slow operations in progress at once, all processes, 2..65536 */
  uint32_t release_reserve; /* of the slots, kept for releases, 1..slots-1 */
} pw_domain_options;

/* The defaults (those of pagewait::shm::options). */
void pw_domain_options_init(pw_domain_options* o);

/* The bytes a domain needs with a user area of user_bytes (o: NULL for the defaults). Returns
 * PW_OK and sets *bytes, or PW_EBADOPTIONS, or PW_EINVAL (bytes is NULL, or the total would not
 * fit in a size_t); *bytes is left as it was on an error. */
int pw_domain_bytes_needed(size_t user_bytes, const pw_domain_options* o, size_t* bytes);

/* Formats [base, base + size) as a new domain and attaches this process to it (*out: the handle).
 * o: NULL for the defaults. */
int pw_domain_create(void* base, size_t size, const pw_domain_options* o, pw_domain** out);
/* Attaches this process to the domain create formatted there (mapped here at any address). */
int pw_domain_attach(void* base, size_t size, pw_domain** out);
/* Detaches and frees the handle (NULL: nothing). No thread of this process may be in an
 * operation on the domain. The memory and the other processes' handles are untouched. */
void pw_domain_detach(pw_domain* d);

void* pw_domain_user_area(const pw_domain* d);
size_t pw_domain_user_size(const pw_domain* d);

/* What pw_domain_recover did (pagewait::shm::recovery_report; docs/SHARED.md, "When a process
 * dies"). */
typedef struct pw_recovery_report {
  size_t dead_slots;         /* slots whose thread had died (its process was killed) */
  size_t waits_finished;     /* dead waits taken out of the table, their slots freed */
  size_t locks_passed_on;    /* of them: locks handed to a dead waiter, released for it */
  size_t waits_pending;      /* dead waits left for a later call (a release holds the node, or its
                              * bucket lock stayed busy) */
  size_t releases_finished;  /* releases killed in progress: finished for them */
  size_t releases_pending;   /* dead releases left for a later call (bucket lock busy) */
  size_t buckets_taken_over; /* bucket locks a dead thread held: taken over, bucket rebuilt */
} pw_recovery_report;

/* Finishes what processes that died left: their waits, their releases, the bucket locks they held
 * (sleeping waiters do it on their own every 100 ms, and timed waits when they give up). out: NULL, or where
 * the report goes. PW_OK, PW_EINVAL (d is NULL), PW_ENOTSET (a lock handed to a dead waiter was found clear:
 * changed by somebody not holding it), PW_EPIDNS (this process is in another PID namespace than the domain:
 * it cannot tell who died). */
int pw_domain_recover(pw_domain* d, pw_recovery_report* out);

/* The slots that threads of process pid hold in the domain (shm::domain::slots_held_by): once pid
 * has died, 0 means every wait and release it was in is finished, so what it held beside its
 * waits may be dropped. PW_OK, PW_EINVAL (d or out NULL, or pid not a process id: *out
 * untouched), PW_EPIDNS. */
int pw_domain_slots_held_by(const pw_domain* d, int pid, size_t* out);

/* A short description of a status, never NULL. */
const char* pw_strerror(int status);

/* The operations (pagewait/pagewait.hpp's, as members of the domain in shm.hpp). */
int pw_try_lock_bit32(pw_domain* d, uint32_t* word, uint32_t bit); /* PW_OK, PW_BUSY */
int pw_lock_bit32(pw_domain* d, uint32_t* word, uint32_t bit);     /* PW_OK */
int pw_lock_bit32_timed(pw_domain* d, uint32_t* word, uint32_t bit,
                        int64_t timeout_ns); /* PW_OK, PW_TIMEDOUT */
int pw_unlock_bit32(pw_domain* d, uint32_t* word, uint32_t bit);
int pw_clear_bit_and_wake32(pw_domain* d, uint32_t* word, uint32_t bit);
int pw_wait_bit_clear32(pw_domain* d, uint32_t* word, uint32_t bit);
int pw_wait_bit_clear32_timed(pw_domain* d, uint32_t* word, uint32_t bit, int64_t timeout_ns);

int pw_try_lock_bit64(pw_domain* d, uint64_t* word, uint64_t bit);
int pw_lock_bit64(pw_domain* d, uint64_t* word, uint64_t bit);
int pw_lock_bit64_timed(pw_domain* d, uint64_t* word, uint64_t bit, int64_t timeout_ns);
int pw_unlock_bit64(pw_domain* d, uint64_t* word, uint64_t bit);
int pw_clear_bit_and_wake64(pw_domain* d, uint64_t* word, uint64_t bit);
int pw_wait_bit_clear64(pw_domain* d, uint64_t* word, uint64_t bit);
int pw_wait_bit_clear64_timed(pw_domain* d, uint64_t* word, uint64_t bit, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* PAGEWAIT_SHM_H */
