/* tests/shm_c_test.c — pagewait/shm.h from C (compiled as C11): every status this build can
 * return (all but PW_EUNSUPPORTED, PW_ENOMEM and PW_EFAIL, which need another build or a failing
 * system), each error leaving the word as it was, and a waiter, a releaser and two lockers in
 * two processes, the child attaching through a mapping of its own. Exit status 0: all passed. */
#define _GNU_SOURCE
#include <pagewait/shm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                        \
    }                                                                    \
  } while (0)
#define CHECK_RC(call, want)                                                                       \
  do {                                                                                             \
    const int rc_ = (call);                                                                        \
    if (rc_ != (want)) {                                                                           \
      fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n", __FILE__, __LINE__, #call, rc_, \
              pw_strerror(rc_), (want));                                                           \
      ++failures;                                                                                  \
    }                                                                                              \
  } while (0)

static uint32_t load32(const uint32_t* w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }
static uint64_t load64(const uint64_t* w) { return __atomic_load_n(w, __ATOMIC_ACQUIRE); }

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

enum { LOCKED = 1u, WRITEBACK = 2u };

/* The user area, as both processes see it. */
struct shared {
  uint32_t word32;
  uint32_t child_ready;
  uint64_t word64;
  uint64_t counter; /* changed only with LOCKED of word64 held */
};

static const long rounds = 20000;

static void lock_rounds(pw_domain* d, struct shared* s) {
  for (long i = 0; i < rounds; ++i) {
    CHECK_RC(pw_lock_bit64(d, &s->word64, (uint64_t)LOCKED), PW_OK);
    s->counter = s->counter + 1;
    CHECK_RC(pw_unlock_bit64(d, &s->word64, (uint64_t)LOCKED), PW_OK);
  }
}

/* The child: detaches the handle and unmaps the mapping it inherited, maps the memfd again (at
 * another address) and attaches there, as an unrelated process would. */
static int child(int fd, size_t size, pw_domain* inherited, void* inherited_base) {
  failures = 0; /* its own count, not the parent's copy */
  pw_domain_detach(inherited);
  munmap(inherited_base, size);
  void* base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return 10;
  pw_domain* d;
  CHECK_RC(pw_domain_attach(base, size, &d), PW_OK);
  if (failures) return 11;
  struct shared* s = pw_domain_user_area(d);
  __atomic_store_n(&s->child_ready, 1u, __ATOMIC_RELEASE);
  /* The parent holds WRITEBACK until it sees child_ready, waits a little, then clears it. */
  CHECK_RC(pw_wait_bit_clear32_timed(d, &s->word32, WRITEBACK, 20000000000LL), PW_OK);
  CHECK((load32(&s->word32) & WRITEBACK) == 0);
  lock_rounds(d, s);
  pw_domain_detach(d);
  munmap(base, size);
  return failures ? 12 : 0;
}

/* A waiter that holds the only wait slot of a small domain (below). */
struct slot_holder {
  pw_domain* d;
  uint32_t* word;
  int rc;
};
static void* hold_slot(void* arg) {
  struct slot_holder* h = arg;
  h->rc = pw_wait_bit_clear32_timed(h->d, h->word, WRITEBACK, 20000000000LL);
  return NULL;
}

/* The statuses a small domain shows: the header's refusals, slots running out, too many
 * domains in one process. */
static void small_domains(void) {
  pw_domain_options o = {16, 2, 1}; /* one slot for waits, one kept for releases */
  size_t one = 0;
  CHECK_RC(pw_domain_bytes_needed(64, &o, &one), PW_OK);
  one = (one + 4095) / 4096 * 4096;
  enum { many = 70 };
  char* area = mmap(NULL, one * many, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) {
    CHECK(!"mmap");
    return;
  }
  pw_domain* d = NULL;
  CHECK_RC(pw_domain_create(area, one, &o, &d), PW_OK);
  pw_domain_detach(d);
  /* The header: layout version at 8, ABI fingerprint at 12, state at 16. */
  uint32_t *version = (uint32_t*)(area + 8), *abi = (uint32_t*)(area + 12), *state = (uint32_t*)(area + 16);
  *version += 1;
  CHECK_RC(pw_domain_attach(area, one, &d), PW_ELAYOUT);
  *version -= 1;
  *abi ^= 1u;
  CHECK_RC(pw_domain_attach(area, one, &d), PW_EABI);
  *abi ^= 1u;
  const uint32_t ready = *state;
  *state = 1u; /* "formatting" */
  CHECK_RC(pw_domain_attach(area, one, &d), PW_ENOTREADY);
  *state = ready;
  /* The creator's PID namespace, at 72 (0 where /proc does not tell it: no check then). */
  uint64_t* ns = (uint64_t*)(area + 72);
  if (*ns) {
    *ns += 1;
    CHECK_RC(pw_domain_attach(area, one, &d), PW_EPIDNS);
    *ns -= 1;
  }
  CHECK_RC(pw_domain_attach(area, one, &d), PW_OK);

  /* Slots: a thread's wait holds the only wait slot; another wait that must sleep is refused,
   * and its word is left as it was. A release still gets the reserved slot. */
  uint32_t *a = pw_domain_user_area(d), *b = a + 1;
  *a = WRITEBACK;
  *b = WRITEBACK;
  struct slot_holder h = {d, a, 99};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, hold_slot, &h) == 0);
  for (int i = 0; i < 20000 && !(load32(a) & 0x80000000u); ++i) sleep_ms(1);
  CHECK(load32(a) & 0x80000000u); /* queued: its slot is taken */
  CHECK_RC(pw_wait_bit_clear32_timed(d, b, WRITEBACK, 1000000000LL), PW_ENOSLOTS);
  CHECK(load32(b) == WRITEBACK);
  CHECK_RC(pw_clear_bit_and_wake32(d, a, WRITEBACK), PW_OK);
  pthread_join(t, NULL);
  CHECK_RC(h.rc, PW_OK);

  /* A process killed while it waits holds its slot until a recovery frees it. */
  pw_recovery_report rep;
  memset(&rep, 0xff, sizeof rep);
  CHECK_RC(pw_domain_recover(d, &rep), PW_OK);
  CHECK(rep.dead_slots == 0 && rep.waits_finished == 0 && rep.releases_finished == 0 &&
        rep.releases_pending == 0 && rep.buckets_taken_over == 0);
  CHECK_RC(pw_domain_recover(NULL, &rep), PW_EINVAL);
  *a = WRITEBACK;
  const pid_t victim = fork();
  if (victim == 0) _exit(pw_wait_bit_clear32(d, a, WRITEBACK) == PW_OK ? 0 : 1); /* killed first */
  for (int i = 0; i < 20000 && !(load32(a) & 0x80000000u); ++i) sleep_ms(1);
  sleep_ms(20);
  kill(victim, SIGKILL);
  int status = 0;
  waitpid(victim, &status, 0);
  CHECK(WIFSIGNALED(status));
  /* 10 s, though refused at once: a wait whose deadline passes before it would sleep needs no slot. */
  CHECK_RC(pw_wait_bit_clear32_timed(d, b, WRITEBACK, 10000000000LL), PW_ENOSLOTS);
  size_t held = 99;
  CHECK_RC(pw_domain_slots_held_by(d, victim, &held), PW_OK);
  CHECK(held == 1); /* dead, its wait not finished yet */
  CHECK_RC(pw_domain_recover(d, &rep), PW_OK);
  CHECK(rep.dead_slots == 1 && rep.waits_finished == 1 && rep.locks_passed_on == 0);
  CHECK_RC(pw_domain_slots_held_by(d, victim, &held), PW_OK);
  CHECK(held == 0);
  held = 99;
  CHECK_RC(pw_domain_slots_held_by(d, 0, &held), PW_EINVAL);
  CHECK_RC(pw_domain_slots_held_by(NULL, victim, &held), PW_EINVAL);
  CHECK(held == 99);
  CHECK_RC(pw_domain_slots_held_by(d, victim, NULL), PW_EINVAL);
  CHECK_RC(pw_wait_bit_clear32_timed(d, b, WRITEBACK, 1000000LL), PW_TIMEDOUT); /* a slot again */
  CHECK_RC(pw_clear_bit_and_wake32(d, a, WRITEBACK), PW_OK);
  pw_domain_detach(d);

  /* At most 64 domains attached in one process (the test's other one included). */
  pw_domain* ds[many] = {0};
  int n = 0, rc = PW_OK;
  for (; n < many; ++n) {
    rc = pw_domain_create(area + (size_t)n * one, one, &o, &ds[n]);
    if (rc != PW_OK) break;
  }
  CHECK_RC(rc, PW_ETOOMANY);
  CHECK(n >= 60 && n <= 64);
  for (int i = 0; i < n; ++i) pw_domain_detach(ds[i]);
  munmap(area, one * many);
}

int main(void) {
  /* Options and sizes. */
  pw_domain_options o;
  pw_domain_options_init(&o);
  CHECK(o.buckets == 256 && o.slots == 256 && o.release_reserve == 8);
  size_t bytes = 0;
  CHECK_RC(pw_domain_bytes_needed(sizeof(struct shared), &o, &bytes), PW_OK);
  CHECK(bytes > sizeof(struct shared));
  pw_domain_options bad = o;
  bad.release_reserve = bad.slots;
  size_t unchanged = 12345;
  CHECK_RC(pw_domain_bytes_needed(64, &bad, &unchanged), PW_EBADOPTIONS);
  CHECK(unchanged == 12345);
  CHECK_RC(pw_domain_bytes_needed(64, NULL, NULL), PW_EINVAL);
  CHECK_RC(pw_domain_bytes_needed((size_t)-1, NULL, &unchanged), PW_EINVAL);
  CHECK(unchanged == 12345);

  const int fd = memfd_create("pagewait-c-test", 0);
  if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0) {
    perror("memfd");
    return 2;
  }
  char* base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    perror("mmap");
    return 2;
  }

  /* Refusals of create and attach; nothing is written to the memory. */
  pw_domain* d = (pw_domain*)1;
  CHECK_RC(pw_domain_attach(base, bytes, &d), PW_EBADMAGIC);
  CHECK(d == NULL);
  CHECK_RC(pw_domain_create(base + 8, bytes - 64, NULL, &d), PW_EMISALIGNED);
  CHECK_RC(pw_domain_create(base, 4096, NULL, &d), PW_ETOOSMALL);
  CHECK_RC(pw_domain_create(base, bytes, &bad, &d), PW_EBADOPTIONS);
  CHECK_RC(pw_domain_create(base, bytes, NULL, NULL), PW_EINVAL);
  for (size_t i = 0; i < bytes; ++i)
    if (base[i] != 0) {
      CHECK(!"a refused create wrote to the memory");
      break;
    }

  CHECK_RC(pw_domain_create(base, bytes, &o, &d), PW_OK);
  CHECK(d != NULL);
  if (!d) return 1;
  pw_domain* again = NULL;
  CHECK_RC(pw_domain_create(base, bytes, &o, &again), PW_EOVERLAPS);
  CHECK_RC(pw_domain_attach(base, bytes, &again), PW_EOVERLAPS);
  CHECK(again == NULL);
  struct shared* s = pw_domain_user_area(d);
  CHECK((char*)s > base && pw_domain_user_size(d) >= sizeof(struct shared));

  /* The operations, one process. */
  CHECK_RC(pw_try_lock_bit32(d, &s->word32, LOCKED), PW_OK);
  CHECK_RC(pw_try_lock_bit32(d, &s->word32, LOCKED), PW_BUSY);
  CHECK_RC(pw_lock_bit32_timed(d, &s->word32, LOCKED, 1000000), PW_TIMEDOUT);
  CHECK_RC(pw_lock_bit32_timed(d, &s->word32, LOCKED, 0), PW_TIMEDOUT);
  CHECK_RC(pw_lock_bit32_timed(d, &s->word32, LOCKED, -5), PW_TIMEDOUT);
  CHECK_RC(pw_unlock_bit32(d, &s->word32, LOCKED), PW_OK);
  CHECK(load32(&s->word32) == 0);
  CHECK_RC(pw_lock_bit32(d, &s->word32, LOCKED), PW_OK);
  CHECK_RC(pw_unlock_bit32(d, &s->word32, LOCKED), PW_OK);
  CHECK_RC(pw_lock_bit32_timed(d, &s->word32, LOCKED, 1000000), PW_OK);
  CHECK_RC(pw_unlock_bit32(d, &s->word32, LOCKED), PW_OK);
  CHECK_RC(pw_wait_bit_clear32(d, &s->word32, WRITEBACK), PW_OK);
  CHECK_RC(pw_wait_bit_clear32_timed(d, &s->word32, WRITEBACK, 0), PW_OK);
  __atomic_fetch_or(&s->word32, WRITEBACK, __ATOMIC_RELAXED);
  CHECK_RC(pw_wait_bit_clear32_timed(d, &s->word32, WRITEBACK, 1000000), PW_TIMEDOUT);
  CHECK_RC(pw_clear_bit_and_wake32(d, &s->word32, WRITEBACK), PW_OK);
  CHECK(load32(&s->word32) == 0);
  CHECK_RC(pw_try_lock_bit64(d, &s->word64, (uint64_t)1 << 40), PW_OK);
  CHECK_RC(pw_lock_bit64_timed(d, &s->word64, (uint64_t)1 << 40, 1000), PW_TIMEDOUT);
  CHECK_RC(pw_unlock_bit64(d, &s->word64, (uint64_t)1 << 40), PW_OK);
  CHECK(load64(&s->word64) == 0);

  /* Errors: each leaves the word as it was. */
  s->word32 = LOCKED;
  CHECK_RC(pw_unlock_bit32(d, &s->word32, WRITEBACK), PW_ENOTSET);
  CHECK_RC(pw_clear_bit_and_wake32(d, &s->word32, WRITEBACK), PW_ENOTSET);
  CHECK_RC(pw_try_lock_bit32(d, &s->word32, 0), PW_EINVAL);
  CHECK_RC(pw_lock_bit32(d, &s->word32, 3u), PW_EINVAL);
  CHECK_RC(pw_unlock_bit32(d, &s->word32, 0x80000000u), PW_EINVAL); /* the waiters bit */
  CHECK_RC(pw_wait_bit_clear64(d, &s->word64, (uint64_t)1 << 63), PW_EINVAL);
  CHECK_RC(pw_lock_bit32(d, NULL, LOCKED), PW_EINVAL);
  CHECK_RC(pw_lock_bit32(NULL, &s->word32, LOCKED), PW_EINVAL);
  CHECK(load32(&s->word32) == LOCKED);
  uint32_t outside = 0;
  CHECK_RC(pw_lock_bit32(d, &outside, LOCKED), PW_EOUTSIDE);
  CHECK_RC(pw_clear_bit_and_wake32(d, (uint32_t*)(base + 64), LOCKED), PW_EOUTSIDE); /* the header */
  CHECK_RC(pw_wait_bit_clear32(d, (uint32_t*)((char*)&s->word32 + 1), LOCKED), PW_EOUTSIDE);
  CHECK_RC(pw_lock_bit64(d, (uint64_t*)((char*)&s->word64 + 4), LOCKED), PW_EOUTSIDE); /* 4 of 8 */
  CHECK(outside == 0 && load32(&s->word32) == LOCKED);
  s->word32 = 0;

  /* A null base is refused, not written through. */
  pw_domain* none = (pw_domain*)1;
  CHECK_RC(pw_domain_create(NULL, bytes, NULL, &none), PW_EINVAL);
  CHECK_RC(pw_domain_attach(NULL, bytes, &none), PW_EINVAL);
  CHECK(none == NULL);

  small_domains();

  /* Strings for every status. */
  for (int c = -25; c <= 3; ++c) CHECK(pw_strerror(c) != NULL && pw_strerror(c)[0] != '\0');
  CHECK(strcmp(pw_strerror(PW_ENOTSET), "the bit to release is not set") == 0);

  /* Two processes: the child waits for WRITEBACK, then both lock LOCKED of word64 in turn. */
  __atomic_fetch_or(&s->word32, WRITEBACK, __ATOMIC_RELAXED);
  fflush(NULL);
  const pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 2;
  }
  if (pid == 0) _exit(child(fd, bytes, d, base));
  for (int i = 0; i < 20000 && !__atomic_load_n(&s->child_ready, __ATOMIC_ACQUIRE); ++i) sleep_ms(1);
  CHECK(__atomic_load_n(&s->child_ready, __ATOMIC_ACQUIRE) == 1u);
  sleep_ms(20); /* the child is most likely asleep in its wait by now */
  CHECK_RC(pw_clear_bit_and_wake32(d, &s->word32, WRITEBACK), PW_OK);
  lock_rounds(d, s);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    perror("waitpid");
    return 2;
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(s->counter == 2 * (uint64_t)rounds);
  CHECK(load64(&s->word64) == 0 || load64(&s->word64) == ((uint64_t)1 << 63)); /* maybe a stale waiters bit */

  pw_domain_detach(d);
  pw_domain_detach(NULL);
  munmap(base, bytes);
  close(fd);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
