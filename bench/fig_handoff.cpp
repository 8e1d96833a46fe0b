// bench/fig_handoff.cpp — figure 4: hand-off latency between two threads.
//
// A holds the lock; B calls lock() and goes to sleep in it (A waits ~50 µs to let it); A reads
// the clock and unlocks; B, once lock() returns, reads the clock: the difference is the time
// from a release to the sleeping waiter owning the lock. The reference is the floor for any
// sleeping lock: a bare futex ping-pong in the same harness (the release is a store and one
// FUTEX_WAKE; the waiter's wait is one FUTEX_WAIT). The TAS spinlock's waiter spins instead of
// sleeping: its row is the cache-line transfer, not a wake-up. Between rounds both threads
// sleep (std::atomic::wait), so that neither holds a CPU the other needs. This machine is a
// VM (kvm-clock, Firecracker): a wake-up across vCPUs costs the host's delivery of the
// interrupt, which swings between ~2 µs and ~50 µs with the host's load, alike for every
// sleeping peer; hence peers in interleaved blocks and ratios of the same run.
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "common.hpp"
#include "peers.hpp"

namespace pwbench {
namespace {

// The floor: a binary semaphore on one futex word, whose release always wakes.
struct bare_futex_peer {
  static constexpr std::string_view name = "bare futex ping-pong";
  struct object {
    std::atomic<std::uint32_t> word{1};  // 1: free
  };
  static void lock(object& o) {
    while (!o.word.exchange(0, std::memory_order_acquire)) futex_wait(&o.word, 0);
  }
  static void unlock(object& o) {
    o.word.store(1, std::memory_order_release);
    futex_wake(&o.word, 1);
  }
};

// Returns how many of the rounds released a B that was not seen asleep (wait_until_asleep).
template <class Peer>
unsigned handoff(unsigned samples, std::vector<double>& lat) {
  typename Peer::object o;
  std::atomic<unsigned> phase{0};  // 2k+1: B may lock; 2k+2: B is done with round k
  std::atomic<bool> b_going{false};
  std::atomic<std::int64_t> t0_ns{0};
  std::atomic<long> b_tid{0};
  unsigned not_asleep = 0;
  std::thread b([&] {
    b_tid.store(long(syscall(SYS_gettid)));
    b_tid.notify_one();
    for (unsigned k = 0; k < samples; ++k) {
      for (unsigned v; (v = phase.load(std::memory_order_acquire)) != 2 * k + 1;) phase.wait(v);
      b_going.store(true);
      Peer::lock(o);
      const auto t1 = clock_type::now().time_since_epoch().count();
      lat.push_back(double(t1 - t0_ns.load(std::memory_order_relaxed)));
      Peer::unlock(o);
      b_going.store(false);
      phase.store(2 * k + 2, std::memory_order_release);
      phase.notify_one();
    }
  });
  b_tid.wait(0);
  const std::string b_stat = "/proc/self/task/" + std::to_string(b_tid.load()) + "/stat";
  for (unsigned k = 0; k < samples; ++k) {
    Peer::lock(o);
    phase.store(2 * k + 1, std::memory_order_release);
    phase.notify_one();
    while (!b_going.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    // B is in lock() and asleep in the kernel (a spinlock's B never is: limited).
    if (!wait_until_asleep(b_stat, std::chrono::microseconds(200))) ++not_asleep;
    t0_ns.store(clock_type::now().time_since_epoch().count(), std::memory_order_relaxed);
    Peer::unlock(o);
    // Sleep, not spin, until B is done: on 2 cores, a spinning A would compete with the B it
    // just woke for a CPU.
    for (unsigned v; (v = phase.load(std::memory_order_acquire)) != 2 * k + 2;) phase.wait(v);
  }
  b.join();
  return not_asleep;
}

json run_handoff(const run_options& o) {
  // Peers take turns in blocks, so that a change in the machine's load weighs on all alike.
  const unsigned samples = unsigned((o.quick ? 300 : 3000) * o.scale) + 10;
  const unsigned blocks = o.quick ? 2 : 10;
  std::vector<std::string> names;
  std::vector<std::vector<double>> lat, block_p50;  // every sample; each block's median
  std::vector<unsigned> not_asleep;
  for (unsigned blk = 0; blk < blocks; ++blk) {
    std::size_t i = 0;
    auto one = [&]<class Peer>() {
      if (blk == 0) {
        names.emplace_back(Peer::name);
        lat.emplace_back();
        block_p50.emplace_back();
        not_asleep.push_back(0);
      }
      std::vector<double> here;
      not_asleep[i] += handoff<Peer>(samples / blocks, here);
      block_p50[i].push_back(percentile(here, 50));
      lat[i].insert(lat[i].end(), here.begin(), here.end());
      ++i;
    };
    one.template operator()<bare_futex_peer>();
    for_each_peer<all_peers>(one);
  }
  json rows = json::array();
  for (std::size_t i = 0; i < names.size(); ++i)
    rows.push_back({{"peer", names[i]},
                    {"samples", lat[i].size()},
                    {"p50_ns", percentile(lat[i], 50)},
                    {"p90_ns", percentile(lat[i], 90)},
                    {"p99_ns", percentile(lat[i], 99)},
                    {"block_p50_ns", block_p50[i]},
                    {"not_seen_asleep", not_asleep[i]}});
  return {{"rows", rows}, {"reference", std::string(bare_futex_peer::name)}, {"blocks", blocks}};
}

figure_registrar reg{
    {"handoff", "fig 4: release-to-owner latency, sleeping waiter (p50, p99)", &run_handoff}};

}  // namespace
}  // namespace pwbench
