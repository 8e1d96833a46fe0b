// bench/fig_bufferpool.cpp — figure 8: the workload pagewait exists for, a buffer pool.
//
// A pool of `pages` pages (2^20 in a full run), each with a lock bit and an I/O-in-progress bit
// in its header. Threads access pages drawn from a Zipf distribution (theta 0.99, hot pages
// scattered over the pool by a fixed permutation), each access:
//   lock the page;
//   if an I/O is in progress on it: unlock, wait for the I/O to end, start again;
//   if it is not resident (a miss): set I/O, unlock, "read" for io_us µs (busy: a fast device
//     polled), mark it resident, clear I/O and wake its waiters, start again;
//   else short work under the lock; one access in 256 evicts the page (the next one misses);
//   unlock.
// Hot pages are evicted and re-read all the time, so their accessors meet both the lock and an
// I/O in progress: the point of the figure is the I/O waits, for which the peers need a condition
// variable (std::mutex), a conditional wait (absl::Mutex::Await) or a second waiting mechanism.
// Reported per peer and thread count: accesses per second (median of the runs, with every run),
// p99 access latency (one access in 16 timed, from its first lock call to its unlock), and the
// bytes of the page header.
#include <absl/synchronization/mutex.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <pagewait/pagewait.hpp>
#include <thread>

#include "common.hpp"
#include "peers.hpp"

namespace pwbench {
namespace {

constexpr std::uint32_t PG_LOCK = 1u << 0;
constexpr std::uint32_t PG_IO = 1u << 1;
constexpr std::uint32_t PG_VALID = 1u << 2;

struct config {
  std::size_t pages;
  unsigned io_us;
};

// A fast device's read: busy for `us` microseconds (a sleep would take the timer slack, ~50 µs).
void do_io(unsigned us) {
  const auto until = clock_type::now() + std::chrono::microseconds(us);
  while (clock_type::now() < until) cpu_relax();
}

void short_work() { spin_work(20); }

struct rng {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
};

// Zipf(theta) over ranks 0..n-1 by inversion of the cumulative distribution (a binary search in
// a table built once per pool size); a rank becomes a page by a fixed odd multiplier mod 2^k.
class zipf {
 public:
  zipf(std::size_t n, double theta) : n_(n), cdf_(n) {
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += 1.0 / std::pow(double(i + 1), theta);
    double acc = 0;
    for (std::size_t i = 0; i < n; ++i) {
      acc += 1.0 / std::pow(double(i + 1), theta) / sum;
      cdf_[i] = float(acc);
    }
    cdf_[n - 1] = 1.0f;
  }
  std::size_t page(rng& r) const {
    const float u = float(r.uniform());
    const std::size_t rank = std::size_t(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    return (std::min(rank, n_ - 1) * 0x9E3779B97F4A7C15ull) & (n_ - 1);
  }

 private:
  std::size_t n_;
  std::vector<float> cdf_;
};

// ---- the peers: each a page header type and an access

struct pw_pool {
  static constexpr const char* name = "pagewait (atomic-clear)";
  using header = std::atomic<std::uint32_t>;
  static void access(header& w, unsigned io_us, rng& r) {
    for (;;) {
      pagewait::lock_bit(w, PG_LOCK);
      const std::uint32_t v = w.load(std::memory_order_relaxed);
      if (v & PG_IO) {
        pagewait::unlock_bit(w, PG_LOCK);
        pagewait::wait_bit_clear(w, PG_IO);
        continue;
      }
      if (!(v & PG_VALID)) {
        w.fetch_or(PG_IO, std::memory_order_relaxed);
        pagewait::unlock_bit(w, PG_LOCK);
        do_io(io_us);
        w.fetch_or(PG_VALID, std::memory_order_relaxed);
        pagewait::clear_bit_and_wake(w, PG_IO);  // release: the page's contents are published
        continue;
      }
      short_work();
      if ((r.next() & 255) == 0) w.fetch_and(~PG_VALID, std::memory_order_relaxed);
      pagewait::unlock_bit(w, PG_LOCK);
      return;
    }
  }
};

struct std_pool {
  static constexpr const char* name = "std::mutex + condition_variable";
  struct header {
    std::mutex m;
    std::condition_variable cv;
    std::uint32_t flags = 0;
  };
  static void access(header& h, unsigned io_us, rng& r) {
    std::unique_lock<std::mutex> g(h.m);
    for (;;) {
      while (h.flags & PG_IO) h.cv.wait(g);
      if (!(h.flags & PG_VALID)) {
        h.flags |= PG_IO;
        g.unlock();
        do_io(io_us);
        g.lock();
        h.flags = (h.flags & ~PG_IO) | PG_VALID;
        h.cv.notify_all();
        continue;
      }
      short_work();
      if ((r.next() & 255) == 0) h.flags &= ~PG_VALID;
      return;
    }
  }
};

struct absl_pool {
  static constexpr const char* name = "absl::Mutex + Await";
  struct header {
    absl::Mutex m;
    std::uint32_t flags = 0;
  };
  static bool no_io(std::uint32_t* flags) { return !(*flags & PG_IO); }
  static void access(header& h, unsigned io_us, rng& r) {
    h.m.Lock();
    for (;;) {
      h.m.Await(absl::Condition(&no_io, &h.flags));
      if (!(h.flags & PG_VALID)) {
        h.flags |= PG_IO;
        h.m.Unlock();
        do_io(io_us);
        h.m.Lock();
        h.flags = (h.flags & ~PG_IO) | PG_VALID;  // the unlock below (or Await's) wakes the awaiters
        continue;
      }
      short_work();
      if ((r.next() & 255) == 0) h.flags &= ~PG_VALID;
      h.m.Unlock();
      return;
    }
  }
};

struct atomic_wait_pool {
  static constexpr const char* name = "atomic::wait word";
  using header = std::atomic<std::uint32_t>;
  static void access(header& w, unsigned io_us, rng& r) {
    for (;;) {
      std::uint32_t v = w.fetch_or(PG_LOCK, std::memory_order_acquire);
      if (v & PG_LOCK) {
        w.wait(v | PG_LOCK, std::memory_order_relaxed);
        continue;
      }
      v = w.load(std::memory_order_relaxed);
      if (v & PG_IO) {
        w.fetch_and(~PG_LOCK, std::memory_order_release);
        w.notify_all();
        for (v = w.load(std::memory_order_acquire); v & PG_IO; v = w.load(std::memory_order_acquire))
          w.wait(v, std::memory_order_acquire);
        continue;
      }
      if (!(v & PG_VALID)) {
        w.fetch_xor(PG_IO | PG_LOCK, std::memory_order_release);  // set I/O, drop the lock
        w.notify_all();
        do_io(io_us);
        w.fetch_xor(PG_IO | PG_VALID, std::memory_order_release);  // resident, I/O over
        w.notify_all();
        continue;
      }
      short_work();
      if ((r.next() & 255) == 0) w.fetch_and(~PG_VALID, std::memory_order_relaxed);
      w.fetch_and(~PG_LOCK, std::memory_order_release);
      w.notify_all();
      return;
    }
  }
};

template <class Pool>
json run_point(typename Pool::header* pool, const zipf& z, const config& c, unsigned threads, double seconds,
               unsigned seed) {
  struct alignas(64) result {
    std::uint64_t accesses = 0;
    std::vector<double> lat;
  };
  std::vector<result> res(threads);
  std::atomic<bool> go{false}, stop{false};
  std::atomic<unsigned> ready{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      rng r{0x9E3779B97F4A7C15ull * (t + 1) + seed};
      result& me = res[t];
      me.lat.reserve(1 << 16);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::size_t p = z.page(r);
        if ((n & 15) == 0) {
          const auto a = clock_type::now();
          Pool::access(pool[p], c.io_us, r);
          me.lat.push_back(ns_between(a, clock_type::now()));
        } else {
          Pool::access(pool[p], c.io_us, r);
        }
        ++n;
      }
      me.accesses = n;
    });
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = clock_type::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  const double elapsed = seconds_since(t0);
  for (auto& t : ts) t.join();
  std::uint64_t total = 0;
  std::vector<double> lat;
  for (auto& r : res) {
    total += r.accesses;
    lat.insert(lat.end(), r.lat.begin(), r.lat.end());
  }
  return {{"ops_per_s", double(total) / elapsed},
          {"p99_ns", percentile(lat, 99)},
          {"p50_ns", percentile(lat, 50)}};
}

template <class Pool>
std::unique_ptr<typename Pool::header[]> make_pool(std::size_t pages) {
  return std::make_unique<typename Pool::header[]>(pages);
}

// Every page resident, unlocked, no I/O: the state every run starts from, for every peer. A pool
// kept from run to run instead would carry its own history into the next run: a peer that had
// made more accesses would have read more of the cold tail of the distribution, miss less, and
// run faster still (and its p99, which one miss in a hundred accesses decides, would fall off a
// cliff). Reset so, the misses come from the evictions alone, at the same rate for every peer.
void make_resident(std::atomic<std::uint32_t>& w) { w.store(PG_VALID, std::memory_order_relaxed); }
void make_resident(std_pool::header& h) { h.flags = PG_VALID; }
void make_resident(absl_pool::header& h) { h.flags = PG_VALID; }
template <class Header>
void make_all_resident(Header* pool, std::size_t pages) {
  for (std::size_t i = 0; i < pages; ++i) make_resident(pool[i]);
}

json run_bufferpool(const run_options& o) {
  const config c{o.quick ? std::size_t(1) << 16 : std::size_t(1) << 20, 3};
  const std::vector<unsigned> thread_counts =
      o.quick ? std::vector<unsigned>{1, 4} : std::vector<unsigned>{1, 2, 4, 8, 16};
  const unsigned reps = o.quick ? 1 : 5;
  const double seconds = (o.quick ? 0.05 : 0.3) * o.scale;
  const zipf z(c.pages, 0.99);
  // One pool per peer, every page made resident before each run (make_all_resident): a warm
  // server's pool, whose misses come from the evictions.
  auto pw = make_pool<pw_pool>(c.pages);
  auto sm = make_pool<std_pool>(c.pages);
  auto ab = make_pool<absl_pool>(c.pages);
  auto aw = make_pool<atomic_wait_pool>(c.pages);
  const auto fresh = [&](auto& pool) {
    make_all_resident(pool.get(), c.pages);
    return pool.get();
  };
  json rows = json::array();
  for (unsigned t : thread_counts) {
    std::vector<json> runs[4];
    for (unsigned r = 0; r < reps; ++r) {
      runs[0].push_back(run_point<pw_pool>(fresh(pw), z, c, t, seconds, r));
      runs[1].push_back(run_point<std_pool>(fresh(sm), z, c, t, seconds, r));
      runs[2].push_back(run_point<absl_pool>(fresh(ab), z, c, t, seconds, r));
      runs[3].push_back(run_point<atomic_wait_pool>(fresh(aw), z, c, t, seconds, r));
    }
    const char* names[] = {pw_pool::name, std_pool::name, absl_pool::name, atomic_wait_pool::name};
    const std::size_t bytes[] = {sizeof(pw_pool::header), sizeof(std_pool::header), sizeof(absl_pool::header),
                                 sizeof(atomic_wait_pool::header)};
    for (int i = 0; i < 4; ++i) {
      std::vector<double> ops, p99;
      for (const json& j : runs[i]) {
        ops.push_back(j["ops_per_s"].get<double>());
        p99.push_back(j["p99_ns"].get<double>());
      }
      std::vector<double> samples = ops;  // in run order, for the spread of ratios
      rows.push_back({{"peer", names[i]},
                      {"threads", t},
                      {"ops_per_s", percentile(ops, 50)},
                      {"samples", samples},
                      {"p99_ns", percentile(p99, 50)},
                      {"bytes_per_page", bytes[i]}});
    }
  }
  return {{"rows", rows},
          {"pages", c.pages},
          {"io_us", c.io_us},
          {"theta", 0.99},
          {"reps", reps},
          {"seconds_per_point", seconds},
          {"hardware_threads", std::thread::hardware_concurrency()}};
}

figure_registrar reg{{"bufferpool",
                      "fig 8: a buffer pool with lock and I/O bits, zipfian accesses, 1-16 threads",
                      &run_bufferpool}};

}  // namespace
}  // namespace pwbench
