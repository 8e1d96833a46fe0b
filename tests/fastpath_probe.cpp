// tests/fastpath_probe.cpp — the uncontended paths of the public API, compiled as the user's
// code would be, one function each. Never run: tests/check_fastpath.py disassembles the object
// and checks that each function's path from its entry to its first `ret` is the fast path of
// CONTRACT §3.8 — exactly one locked (atomic RMW) instruction, no call, no syscall, no fence, and,
// for the lock operations, no loop. The bit is a run-time argument, as in real use.
#include <atomic>
#include <cstdint>
#include <pagewait/pagewait.hpp>
#include <pagewait/shm.hpp>

#define PROBE extern "C" [[gnu::noinline]]

PROBE bool pw_probe_try_lock_bit_u32(std::atomic<std::uint32_t>& w, std::uint32_t bit) {
  return pagewait::try_lock_bit(w, bit);
}
PROBE bool pw_probe_try_lock_bit_u64(std::atomic<std::uint64_t>& w, std::uint64_t bit) {
  return pagewait::try_lock_bit(w, bit);
}
PROBE void pw_probe_lock_bit_u32(std::atomic<std::uint32_t>& w, std::uint32_t bit) {
  pagewait::lock_bit(w, bit);
}
PROBE void pw_probe_lock_bit_u64(std::atomic<std::uint64_t>& w, std::uint64_t bit) {
  pagewait::lock_bit(w, bit);
}
PROBE void pw_probe_unlock_bit_u32(std::atomic<std::uint32_t>& w, std::uint32_t bit) {
  pagewait::unlock_bit(w, bit);
}
PROBE void pw_probe_unlock_bit_u64(std::atomic<std::uint64_t>& w, std::uint64_t bit) {
  pagewait::unlock_bit(w, bit);
}
PROBE void pw_probe_clear_bit_and_wake_u32(std::atomic<std::uint32_t>& w, std::uint32_t bit) {
  pagewait::clear_bit_and_wake(w, bit);
}
PROBE void pw_probe_clear_bit_and_wake_u64(std::atomic<std::uint64_t>& w, std::uint64_t bit) {
  pagewait::clear_bit_and_wake(w, bit);
}
// A compile-time bit, as most users write it.
PROBE void pw_probe_lock_bit_const_u32(std::atomic<std::uint32_t>& w) { pagewait::lock_bit(w, 1u << 3); }
PROBE void pw_probe_unlock_bit_const_u64(std::atomic<std::uint64_t>& w) {
  pagewait::unlock_bit(w, std::uint64_t(1) << 40);
}

// A word in a wait domain (pagewait/shm.hpp): the same single RMW; the domain's bounds check of
// the word reads the handle, never the shared memory.
PROBE bool pw_probe_shm_try_lock_bit_u32(pagewait::shm::domain& d, std::atomic<std::uint32_t>& w,
                                         std::uint32_t bit) {
  return d.try_lock_bit(w, bit);
}
PROBE void pw_probe_shm_lock_bit_u64(pagewait::shm::domain& d, std::atomic<std::uint64_t>& w,
                                     std::uint64_t bit) {
  d.lock_bit(w, bit);
}
PROBE void pw_probe_shm_unlock_bit_u32(pagewait::shm::domain& d, std::atomic<std::uint32_t>& w,
                                       std::uint32_t bit) {
  d.unlock_bit(w, bit);
}
PROBE void pw_probe_shm_clear_bit_and_wake_u64(pagewait::shm::domain& d, std::atomic<std::uint64_t>& w,
                                               std::uint64_t bit) {
  d.clear_bit_and_wake(w, bit);
}
