// tests/fastpath_bad_probe.cpp — deliberately wrong fast paths, one per rule of
// tests/check_fastpath.py. The checker must reject every one of them (ctest runs it with
// --expect-fail): the self-test that shows the fast-path check can fail.
#include <atomic>
#include <cstdint>

#define PROBE extern "C" [[gnu::noinline]]

using word = std::atomic<std::uint32_t>;

[[gnu::noinline]] void pw_bad_slow(word& w, std::uint32_t bit) { w.fetch_or(bit); }

// A lock taken with a CAS loop: one locked instruction per try, but a loop.
PROBE void pw_probe_lock_bit_cas_loop(word& w, std::uint32_t bit) {
  std::uint32_t old = w.load(std::memory_order_relaxed);
  while (!(old & bit))
    if (w.compare_exchange_weak(old, old | bit, std::memory_order_acquire, std::memory_order_relaxed)) return;
  pw_bad_slow(w, bit);
}

// Two atomic RMWs (and no loop, so that only the count rule can catch it).
PROBE void pw_probe_try_lock_bit_two_rmws(word& w, std::uint32_t bit) {
  w.fetch_add(bit, std::memory_order_acquire);
  w.fetch_sub(bit >> 1, std::memory_order_relaxed);
}

// No atomic RMW at all (a plain store: not a lock).
PROBE void pw_probe_lock_bit_plain_store(word& w, std::uint32_t bit) {
  w.store(w.load(std::memory_order_relaxed) | bit, std::memory_order_relaxed);
}

// A fence beside the RMW.
PROBE void pw_probe_unlock_bit_fence(word& w, std::uint32_t bit) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  w.fetch_and(~bit, std::memory_order_release);
}

// A call on every path (the table looked up even when uncontended).
PROBE void pw_probe_clear_bit_and_wake_calls(word& w, std::uint32_t bit) {
  pw_bad_slow(w, 0);
  w.fetch_and(~bit, std::memory_order_release);
}
