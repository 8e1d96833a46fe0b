// tests/shm_peer.cpp — a process that attaches to a wait domain it did not create or inherit:
// shm_test forks and execs it with the domain's memfd (mapped here at an address of this
// process's own choosing). Exit status 0: its part went as expected.
//
//   shm_peer <fd> <size> wait <offset> <bit>          wait (up to 20 s) for the bit to clear
//   shm_peer <fd> <size> count <offset> <bit> <n>     n times: lock, increment the 64-bit counter
//                                                     right after the word, unlock
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "pagewait/shm.hpp"

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: shm_peer <fd> <size> wait|count <offset> <bit> [n]\n");
    return 2;
  }
  const int fd = std::atoi(argv[1]);
  const std::size_t size = std::strtoull(argv[2], nullptr, 10);
  const std::size_t offset = std::strtoull(argv[4], nullptr, 10);
  const auto bit = std::uint32_t(std::strtoul(argv[5], nullptr, 10));
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return 3;
  try {
    pagewait::shm::domain d = pagewait::shm::domain::attach(base, size);
    auto* p = static_cast<char*>(d.user_area()) + offset;
    auto& word = *reinterpret_cast<std::atomic<std::uint32_t>*>(p);
    if (std::strcmp(argv[3], "wait") == 0)
      return d.wait_bit_clear_for(word, bit, std::chrono::seconds(20)) ? 0 : 1;
    if (std::strcmp(argv[3], "count") == 0 && argc == 7) {
      auto& counter = *reinterpret_cast<std::uint64_t*>(p + 8);
      for (long i = std::atol(argv[6]); i > 0; --i) {
        d.lock_bit(word, bit);
        counter = counter + 1;  // plain: the lock orders it, across processes
        d.unlock_bit(word, bit);
      }
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shm_peer: %s\n", e.what());
    return 4;
  }
  return 2;
}
