/* Built against pagewait by tests/consumer/run.cmake, as a C11 program (pagewait/shm.h): a C
 * project enables CXX too, so that CMake links with the C++ driver (the library is C++); with
 * pkg-config, the C++ driver links it. Exits 0 if the C interface works: a domain in this
 * process's memory, a lock, a wait, and the refusals of a bad bit and of an unset bit. */
#include <pagewait/shm.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  size_t bytes = 0;
  if (pw_domain_bytes_needed(4096, NULL, &bytes) != PW_OK) return 1;
  bytes = (bytes + 63) / 64 * 64;
  void *base = aligned_alloc(64, bytes);
  pw_domain *d = NULL;
  if (!base || pw_domain_create(base, bytes, NULL, &d) != PW_OK) return 2;
  uint32_t *word = pw_domain_user_area(d);
  const int ok = pw_lock_bit32(d, word, 1u) == PW_OK && pw_try_lock_bit32(d, word, 1u) == PW_BUSY &&
                 pw_unlock_bit32(d, word, 1u) == PW_OK && pw_unlock_bit32(d, word, 1u) == PW_ENOTSET &&
                 pw_lock_bit32(d, word, 3u) == PW_EINVAL && pw_wait_bit_clear32(d, word, 2u) == PW_OK &&
                 __atomic_load_n(word, __ATOMIC_ACQUIRE) == 0;
  pw_domain_detach(d);
  free(base);
  printf("consumer (C): %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 3;
}
