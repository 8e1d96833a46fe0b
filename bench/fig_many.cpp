// bench/fig_many.cpp — figure 7: many objects, one lock each.
//
// For each peer, `count` objects (10 million; 500 000 with --quick) are constructed in one
// anonymous mapping, then swept twice in address order with lock+unlock on each, one thread.
// Reported: the object's size, the resident memory the objects added (RSS after the sweep
// minus RSS before the mapping), and ns per lock+unlock of the faster sweep. pagewait's
// object is the user's 4-byte word (8 for the pinning protocols, which carry the reference
// count their pin takes); pagewait's wait table is allocated once, whatever the count.
// The naive futex lock is left out: it makes a system call per unlock (~1 µs each).
#include <sys/mman.h>

#include <new>

#include "common.hpp"
#include "peers.hpp"

namespace pwbench {
namespace {

template <class Peer>
json many(std::size_t count) {
  using object = typename Peer::object;
  const std::size_t bytes = count * sizeof(object);
  const std::uint64_t rss0 = resident_bytes();
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  madvise(mem, bytes, MADV_NOHUGEPAGE);  // every peer pays the same 4 KiB pages
  auto* objs = static_cast<object*>(mem);
  const auto c0 = clock_type::now();
  for (std::size_t i = 0; i < count; ++i) new (&objs[i]) object();
  const double construct_s = seconds_since(c0);
  double best = 1e300;
  for (int pass = 0; pass < 2; ++pass) {
    const auto t0 = clock_type::now();
    for (std::size_t i = 0; i < count; ++i) {
      Peer::lock(objs[i]);
      Peer::unlock(objs[i]);
    }
    best = std::min(best, seconds_since(t0));
  }
  const std::uint64_t rss1 = resident_bytes();
  for (std::size_t i = 0; i < count; ++i) objs[i].~object();
  munmap(mem, bytes);
  return {{"peer", std::string(Peer::name)},
          {"objects", count},
          {"object_bytes", sizeof(object)},
          {"resident_bytes", rss1 > rss0 ? rss1 - rss0 : 0},
          {"construct_ns_per_object", construct_s * 1e9 / double(count)},
          {"ns_per_lock_unlock", best * 1e9 / double(count)}};
}

json run_many(const run_options& o) {
  const auto count = std::size_t((o.quick ? 500'000 : 10'000'000) * o.scale);
  using peers = std::tuple<pw_atomic_clear, pw_pinned, pw_xor_waiters, pw_clear_then_wake, std_mutex_peer,
                           absl_mutex_peer, atomic_wait_peer, tas_spin_peer>;
  json rows = json::array();
  for_each_peer<peers>([&]<class Peer>() { rows.push_back(many<Peer>(count)); });
  return {{"rows", rows},
          {"objects", count},
          {"omitted", {{"naive futex bit", "a system call per unlock: ~1 µs per object"}}},
          {"wait_table_bytes",
           pagewait::wait_table_size() * sizeof(pagewait::detail::bucket<pagewait::detail::native_policy>)}};
}

figure_registrar reg{
    {"many", "fig 7: lock/unlock sweep over many objects: time and resident memory", &run_many}};

}  // namespace
}  // namespace pwbench
