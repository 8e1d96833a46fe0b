// tests/shm_test_util.hpp — helpers shared by the wait-domain tests (shm_test, shm_recovery_test):
// a memfd that can be mapped several times, each mapping at its own address (what another process
// sees), and a typed place in a domain's user area.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <stdexcept>
#include <utility>
#include <vector>

#include "pagewait/shm.hpp"

namespace pwtest {

// A memfd of `size` bytes; map() maps it again, at an address of the kernel's choosing.
struct shared_file {  // not copyable: it owns the descriptor and the mappings
  int fd = -1;
  std::size_t size;
  std::vector<std::pair<void*, std::size_t>> maps;
  explicit shared_file(std::size_t n) : size(n) {
    fd = memfd_create("pagewait-shm-test", 0);
    if (fd < 0 || ftruncate(fd, off_t(n)) != 0) throw std::runtime_error("memfd");
  }
  void* map() {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    maps.emplace_back(p, size);
    return p;
  }
  shared_file(const shared_file&) = delete;
  shared_file& operator=(const shared_file&) = delete;
  ~shared_file() {
    for (auto& [p, n] : maps) munmap(p, n);
    close(fd);
  }
};

// The object of type T at `offset` bytes into the domain's user area.
template <class T>
T& at(const pagewait::shm::domain& d, std::size_t offset) {
  return *reinterpret_cast<T*>(static_cast<char*>(d.user_area()) + offset);
}

}  // namespace pwtest
