// bench/micro.cpp — Google Benchmark: figures 1 and 2.
//
//   fig1/<peer>       uncontended lock + unlock, one thread, one object
//   fig1/two-RMW floor  what any bit lock with one RMW each way costs at least: a `lock bts` and
//                     a load + `lock cmpxchg` on one word, nothing else (no waiting, no waiters bit)
//   fig2/<peer>       event: set the bit (a user's fetch_or), release it with no waiter
//   fig2/set-only     the set alone followed by a plain store of the old value: subtracting it
//                     from fig2/<peer> leaves the release's own cost
// Peers that cannot do a figure are absent from it (the driver says so in the table).
#include <benchmark/benchmark.h>

#include "peers.hpp"

namespace pwbench {
namespace {

template <class Peer>
void bm_uncontended(benchmark::State& state) {
  typename Peer::object o;
  for (auto _ : state) {
    Peer::lock(o);
    Peer::unlock(o);
  }
  benchmark::DoNotOptimize(&o);
}

template <class Peer>
void bm_event(benchmark::State& state) {
  typename Peer::object o;
  for (auto _ : state) {
    Peer::set_event(o);
    Peer::release_event(o);
  }
  benchmark::DoNotOptimize(&o);
}

void bm_floor(benchmark::State& state) {
  std::atomic<std::uint32_t> word{0};
  for (auto _ : state) {
    (void)pagewait::detail::native_policy::test_and_set(word, LOCK, std::memory_order_acquire);
    std::uint32_t v = word.load(std::memory_order_relaxed);
    while (!word.compare_exchange_weak(v, v & ~LOCK, std::memory_order_release, std::memory_order_relaxed)) {
    }
  }
  benchmark::DoNotOptimize(&word);
}

void bm_set_only(benchmark::State& state) {
  std::atomic<std::uint32_t> word{0};
  for (auto _ : state) {
    word.fetch_or(EVENT, std::memory_order_relaxed);
    word.store(0, std::memory_order_release);
  }
  benchmark::DoNotOptimize(&word);
}

struct registrar {
  registrar() {
    for_each_peer<all_peers>([]<class Peer>() {
      benchmark::RegisterBenchmark(("fig1/" + std::string(Peer::name)).c_str(), &bm_uncontended<Peer>);
    });
    benchmark::RegisterBenchmark("fig1/two-RMW floor", &bm_floor);
    for_each_peer<all_peers>([]<class Peer>() {
      if constexpr (Peer::has_event)
        benchmark::RegisterBenchmark(("fig2/" + std::string(Peer::name)).c_str(), &bm_event<Peer>);
    });
    benchmark::RegisterBenchmark("fig2/set-only", &bm_set_only);
  }
} reg;

}  // namespace
}  // namespace pwbench

int main(int argc, char** argv) {
  pwbench::prepare_process();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
