// demo/pagecache/workload.cpp — the threads of the demo and the final data check.
#include "workload.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <coroutine>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "event_loop.hpp"
#include "page_cache.hpp"
#include "pagewait/async.hpp"

namespace pagewait::demo {
namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t max_wait_samples = std::size_t(1) << 20;

double percentile_us(std::vector<std::uint32_t>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * double(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k] / 1000.0;
}

void compute_percentiles(run_result& r) {
  r.wait_p50_us = percentile_us(r.wait_samples_ns, 0.50);
  r.wait_p99_us = percentile_us(r.wait_samples_ns, 0.99);
}

// Counters the controlling thread reads while the run is going (progress, stop at first
// touch). Each is written by its one owner thread only, hence a load and a store, no RMW.
struct alignas(64) live_counters {
  std::atomic<std::uint64_t> ops{0}, writebacks{0}, touched{0}, reused{0};
  static void bump(std::atomic<std::uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

struct worker {
  live_counters live;
  wait_counters wc;
  std::uint64_t rmws = 0, bucket_locks = 0, writeback_waits = 0, bad_reads = 0;
  std::vector<std::uint32_t> wait_ns;  // waits for writeback, capped
  std::uint64_t rng;

  explicit worker(std::uint64_t seed) : rng(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {  // xorshift64*
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
  }
  void record_wait(clock_type::duration d) {
    ++writeback_waits;
    if (wait_ns.size() < max_wait_samples)
      wait_ns.push_back(static_cast<std::uint32_t>(std::min<long long>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(), 0xffffffffll)));
  }
};

// The scratch file: created new (never an existing file), zero-filled, removed at the end.
class scratch_file {
 public:
  scratch_file(const std::string& path, std::uint64_t bytes) {
    if (path.empty()) {
      const char* dir = std::getenv("TMPDIR");
      std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/pagewait-demo-XXXXXX";
      fd_ = mkstemp(tmpl.data());
      if (fd_ < 0)
        throw std::runtime_error("cannot create a temporary file in " + tmpl + ": " + std::strerror(errno));
      path_ = tmpl;
    } else {
      fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd_ < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
      path_ = path;
    }
    if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
      const int e = errno;
      close(fd_);
      unlink(path_.c_str());
      throw std::runtime_error("cannot size " + path_ + ": " + std::strerror(e));
    }
  }
  ~scratch_file() {
    close(fd_);
    unlink(path_.c_str());
  }
  scratch_file(const scratch_file&) = delete;
  scratch_file& operator=(const scratch_file&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A coroutine that starts at once and destroys itself at its end (the loop owns nothing).
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::abort(); }
  };
};

template <release_protocol R>
class workload {
 public:
  workload(const run_config& cfg, int fd)
      : cfg_(cfg),
        pool_(fd, cfg.frames, cfg.file_pages),
        cache_(pool_, cfg.wait_timeout, cfg.widen),
        last_version_(std::make_unique<std::atomic<std::uint64_t>[]>(cfg.file_pages)) {}

  run_result run() {
    run_result r;
    r.protocol = R;
    const unsigned n = std::max(cfg_.threads, 4u);
    r.writeback_threads = std::max(1u, n / 4);
    r.truncators = std::max(1u, n / 4);
    r.writers = std::max(1u, (n - r.writeback_threads - r.truncators) / 2);
    r.readers = n - r.writeback_threads - r.truncators - r.writers;

    std::vector<std::unique_ptr<worker>> ws;
    std::vector<std::thread> ts;
    auto spawn = [&](unsigned count, void (workload::*body)(worker&)) {
      for (unsigned i = 0; i < count; ++i) {
        ws.push_back(std::make_unique<worker>(ws.size() + 1));
        ts.emplace_back([this, body, w = ws.back().get()] {
          while (!go_.load(std::memory_order_acquire)) std::this_thread::yield();
          (this->*body)(*w);
        });
      }
    };
    spawn(r.writers, &workload::writer);
    spawn(r.readers, &workload::reader);
    spawn(r.writeback_threads, &workload::writeback);
    spawn(r.truncators, &workload::truncator);
    // The asynchronous readers: one more thread, the loop, and its coroutines.
    std::unique_ptr<event_loop> loop;
    worker async_w(0xA5);
    std::atomic<bool> loop_done{false};
    std::thread loop_thread;
    if (cfg_.async_readers) {
      loop = std::make_unique<event_loop>(cfg_.async_uring);
      loop_thread = std::thread([&] {
        while (!go_.load(std::memory_order_acquire)) std::this_thread::yield();
        for (unsigned i = 0; i < cfg_.async_readers; ++i) async_reader(*loop, async_w);
        loop->run([&] { return async_finished_ == cfg_.async_readers; });
        loop_done.store(true, std::memory_order_release);
      });
    }

    const auto start = clock_type::now();
    go_.store(true, std::memory_order_release);
    const auto limit = std::chrono::duration_cast<clock_type::duration>(cfg_.duration);
    auto last_progress = start;
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const auto now = clock_type::now();
      if (now - start >= limit) break;
      if (cfg_.stop_at_first_touch) {
        std::uint64_t touched = 0;
        for (auto& w : ws) touched += w->live.touched.load(std::memory_order_relaxed);
        if (touched) break;
      }
      if (cfg_.progress && now - last_progress >= std::chrono::milliseconds(50)) {
        last_progress = now;
        cfg_.progress(std::chrono::duration<double>(now - start) / cfg_.duration);
      }
    }
    stop_.store(true, std::memory_order_relaxed);
    const auto end = clock_type::now();
    if (loop) {
      // Every thread stops within its current page op and releases what it holds: a coroutine
      // still suspended on a page lock 5 s from now was not woken. It is stopped, and counted if
      // the bit is clear (a grant handed to it and lost would leave the bit set: the threads
      // that want that page then time out and count lost wake-ups, and the join waits on them).
      const auto limit_at = clock_type::now() + std::chrono::seconds(5);
      while (!loop_done.load(std::memory_order_acquire) && clock_type::now() < limit_at)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      async_abort_.request_stop();
    }
    for (auto& t : ts) t.join();
    r.seconds = std::chrono::duration<double>(end - start).count();
    if (loop) {
      loop_thread.join();
      r.async_coroutines = cfg_.async_readers;
      for (unsigned i = r.writers; i < r.writers + r.readers; ++i)
        r.reader_ops += ws[i]->live.ops.load(std::memory_order_relaxed);
      r.async_ops = async_w.live.ops.load(std::memory_order_relaxed);
      r.bad_reads += async_w.bad_reads;
      r.lost_wakeups += async_w.wc.lost_wakeups;
      r.wait_timeouts += async_w.wc.timeouts;
      r.async_timers_fired = loop->timers_fired();
      r.async_reads = loop->reads();
      r.async_max_in_flight = loop->max_in_flight();
      r.async_mean_in_flight = loop->mean_in_flight();
      r.async_lock_waits = async_lock_waits_;
      r.async_loop_wakeups = loop->wakeups();
      r.async_io = loop->uring() ? "io_uring" : loop->fallback_reason();
    }

    std::vector<std::uint32_t> waits;
    for (auto& w : ws) {
      r.page_ops += w->live.ops.load(std::memory_order_relaxed);
      r.writebacks += w->live.writebacks.load(std::memory_order_relaxed);
      r.touched_after_free += w->live.touched.load(std::memory_order_relaxed);
      r.touched_after_reuse += w->live.reused.load(std::memory_order_relaxed);
      r.end_rmws += w->rmws;
      r.end_bucket_locks += w->bucket_locks;
      r.writeback_waits += w->writeback_waits;
      r.lost_wakeups += w->wc.lost_wakeups;
      r.woken_early += w->wc.woken_early;
      r.wait_timeouts += w->wc.timeouts;
      r.bad_reads += w->bad_reads;
      waits.insert(waits.end(), w->wait_ns.begin(), w->wait_ns.end());
    }
    r.wait_samples_ns = std::move(waits);
    compute_percentiles(r);
    verify(r);
    return r;
  }

 private:
  // A locked page `index`, read in from the file if it was not cached, with a reference; or
  // null if it was truncated under us or no frame is free.
  frame* get_locked(std::uint64_t index, worker& w) {
    bool created = false;
    frame* f = pool_.find_or_create(index, created);
    if (!f) return nullptr;
    if (created) {
      // Not cached, so the file holds its last version: truncation writes dirty pages before
      // it removes them, and waits for writeback to end.
      if (!pool_.read_page(f) ||
          !page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed)))
        ++w.bad_reads;
      f->flags.fetch_or(PG_UPTODATE, std::memory_order_relaxed);
      return f;
    }
    cache_.lock_page(f, w.wc);
    if (!f->mapped) {
      cache_.unlock_page(f);
      pool_.put(f);
      return nullptr;
    }
    return f;
  }

  void wait_writeback(frame* f, worker& w) {
    if (!(f->flags.load(std::memory_order_acquire) & PG_WRITEBACK)) return;
    const auto t0 = clock_type::now();
    if (cache_.wait_writeback(f, w.wc)) w.record_wait(clock_type::now() - t0);
  }

  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

  // An asynchronous reader: the reader below, on the loop thread, never blocking it. A page it
  // brings in is read through the loop (io_uring); a page another holds locked is waited for with
  // co_await on the page lock, in the page cache's own wait table (the same core and table as the
  // threads': an asynchronous lock waiter is served as a thread in lock_page is).
  detached async_reader(event_loop& loop, worker& w) {
    using core = typename page_cache<R>::core;
    // Timed, as the threads' lock_page: a lost wake-up shows as a count, not as a stuck reader.
    using lock_awaitable = detail::bit_awaitable<std::uint32_t, event_loop, true, core, /*Timed=*/true>;
    while (!stopping()) {
      const std::uint64_t index = w.next() % cfg_.file_pages;
      bool created = false;
      frame* f = pool_.find_or_create(index, created);
      if (!f) {
        co_await loop.yield();  // no frame free: let the others run
        continue;
      }
      if (created) {
        // Locked by find_or_create: threads and coroutines that want the page wait for this read.
        const int n = co_await loop.read(pool_.fd(), f->data, unsigned(page_size), off_t(index * page_size));
        if (n != int(page_size) ||
            !page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed)))
          ++w.bad_reads;
        f->flags.fetch_or(PG_UPTODATE, std::memory_order_relaxed);
      } else {
        // A try first, only to count the waits that must suspend (the awaitable tries too).
        bool owner = core::try_lock(f->flags, PG_LOCKED);
        if (!owner) ++async_lock_waits_;
        while (!owner) {
          // Bound first: GCC 12 miscompiles a co_await that suspends in an if condition.
          owner =
              co_await lock_awaitable(f->flags, PG_LOCKED, loop, detail::deadline::after(cfg_.wait_timeout),
                                      async_abort_.get_token());
          if (owner) break;
          // Timed out (as lock_page: retried; counted as lost if the bit was clear), or stopped
          // 5 s after the run ended: the lock was never granted.
          const bool stopped = async_abort_.stop_requested();
          if (!(f->flags.load(std::memory_order_relaxed) & PG_LOCKED))
            ++w.wc.lost_wakeups;
          else if (!stopped)
            ++w.wc.timeouts;
          if (stopped) break;
        }
        if (!owner) {
          pool_.put(f);
          break;
        }
        if (!f->mapped) {
          cache_.unlock_page(f);
          pool_.put(f);
          continue;
        }
      }
      if (!page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed))) ++w.bad_reads;
      cache_.unlock_page(f);
      pool_.put(f);
      live_counters::bump(w.live.ops);
    }
    ++async_finished_;
  }

  void writer(worker& w) {
    while (!stopping()) {
      const std::uint64_t index = w.next() % cfg_.file_pages;
      frame* f = get_locked(index, w);
      if (!f) {
        std::this_thread::yield();
        continue;
      }
      wait_writeback(f, w);  // stable pages: the data being written must not change
      const std::uint64_t v = last_version_[index].load(std::memory_order_relaxed) + 1;
      fill_page(f->data, index, v);
      last_version_[index].store(v, std::memory_order_relaxed);
      f->flags.fetch_or(PG_DIRTY, std::memory_order_relaxed);
      cache_.unlock_page(f);
      pool_.put(f);
      live_counters::bump(w.live.ops);
    }
  }

  void reader(worker& w) {
    while (!stopping()) {
      const std::uint64_t index = w.next() % cfg_.file_pages;
      frame* f = get_locked(index, w);
      if (!f) {
        std::this_thread::yield();
        continue;
      }
      if (!page_is(f->data, index, last_version_[index].load(std::memory_order_relaxed))) ++w.bad_reads;
      cache_.unlock_page(f);
      pool_.put(f);
      live_counters::bump(w.live.ops);
    }
  }

  void writeback(worker& w) {
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // --widen means microseconds, not 50 more
    unsigned misses = 0;
    while (!stopping()) {
      const unsigned slot = static_cast<unsigned>(w.next() % pool_.frames());
      frame* f = pool_.get_if_mapped(pool_.frame_at(slot), PG_DIRTY);
      if (!f) {
        if (++misses % 64 == 0) std::this_thread::yield();
        continue;
      }
      cache_.lock_page(f, w.wc);
      if (!f->mapped || (f->flags.load(std::memory_order_relaxed) & (PG_DIRTY | PG_WRITEBACK)) != PG_DIRTY) {
        cache_.unlock_page(f);
        pool_.put(f);
        continue;
      }
      cache_.start_writeback(f);
      cache_.unlock_page(f);
      hint_.store(slot, std::memory_order_relaxed);
      // Writeback holds no reference from here on (PG_writeback carries none): the frame stays
      // alive only because truncation waits for WRITEBACK to clear.
      pool_.put(f);
      pool_.write_page(f);
      const auto rep = cache_.end_writeback(f);
      w.rmws += rep.rmws;
      w.bucket_locks += rep.bucket_locks;
      if (rep.touched_after_free) live_counters::bump(w.live.touched);
      if (rep.touched_after_reuse) live_counters::bump(w.live.reused);
      live_counters::bump(w.live.writebacks);
    }
  }

  void truncator(worker& w) {
    while (!stopping()) {
      // Mostly the page whose writeback began last: truncation racing with writeback is the
      // scenario of the 2020 bug report (a random page rarely is in writeback).
      const std::uint64_t r = w.next();
      const unsigned slot =
          (r & 3) ? hint_.load(std::memory_order_relaxed) : static_cast<unsigned>((r >> 2) % pool_.frames());
      frame* f = pool_.get_if_mapped(pool_.frame_at(slot), 0);
      if (!f) {
        std::this_thread::yield();
        continue;
      }
      cache_.lock_page(f, w.wc);
      if (!f->mapped) {
        cache_.unlock_page(f);
        pool_.put(f);
        continue;
      }
      wait_writeback(f, w);
      if (f->flags.load(std::memory_order_relaxed) & PG_DIRTY) {
        // Under the page lock: a reader that brings the page back in waits for this write.
        if (!cfg_.truncate_drops_dirty_data) pool_.write_page(f);
        f->flags.fetch_and(~PG_DIRTY, std::memory_order_relaxed);
      }
      f->flags.fetch_and(~PG_UPTODATE, std::memory_order_relaxed);
      pool_.remove(f);
      cache_.unlock_page(f);
      pool_.put(f);  // usually the last reference: the frame is free and reused from now on
      live_counters::bump(w.live.ops);
    }
  }

  // All threads have stopped, so every writeback has ended. Write what is dirty, then read
  // the whole file back: each page must hold the last version written to it.
  void verify(run_result& r) {
    for (unsigned i = 0; i < pool_.frames(); ++i) {
      frame& f = pool_.frame_at(i);
      if (!f.mapped) continue;
      if (f.flags.load(std::memory_order_relaxed) & (PG_LOCKED | PG_WRITEBACK)) ++r.pages_wrong;
      if (f.flags.load(std::memory_order_relaxed) & PG_DIRTY) {
        pool_.write_page(&f);
        f.flags.fetch_and(~PG_DIRTY, std::memory_order_relaxed);
      }
    }
    alignas(64) unsigned char buf[page_size];
    for (std::uint64_t i = 0; i < cfg_.file_pages; ++i) {
      ++r.pages_checked;
      const off_t off = static_cast<off_t>(i * page_size);
      if (pread(pool_.fd(), buf, page_size, off) != static_cast<ssize_t>(page_size) ||
          !page_is(buf, i, last_version_[i].load(std::memory_order_relaxed)))
        ++r.pages_wrong;
    }
    r.bad_frees = pool_.bad_frees();
    r.io_errors = pool_.io_errors();
    r.data_ok = r.pages_wrong == 0 && r.bad_reads == 0 && r.bad_frees == 0 && r.io_errors == 0;
  }

  const run_config& cfg_;
  page_pool pool_;
  page_cache<R> cache_;
  // The last version written to each page (0: never written). Changed by writers holding the
  // page lock; what the file must hold once the page leaves the cache.
  std::unique_ptr<std::atomic<std::uint64_t>[]> last_version_;
  std::atomic<unsigned> hint_{0};  // the frame whose writeback began last
  std::atomic<bool> go_{false};
  std::atomic<bool> stop_{false};
  // The asynchronous readers' (loop thread only, but for the stop source).
  unsigned async_finished_ = 0;
  std::uint64_t async_lock_waits_ = 0;
  std::stop_source async_abort_;
};

template <release_protocol R>
run_result run_with(const run_config& cfg, int fd) {
  workload<R> w(cfg, fd);
  return w.run();
}

}  // namespace

void run_result::add(const run_result& o) {
  seconds += o.seconds;
  page_ops += o.page_ops;
  writebacks += o.writebacks;
  touched_after_free += o.touched_after_free;
  touched_after_reuse += o.touched_after_reuse;
  end_rmws += o.end_rmws;
  end_bucket_locks += o.end_bucket_locks;
  writeback_waits += o.writeback_waits;
  lost_wakeups += o.lost_wakeups;
  woken_early += o.woken_early;
  wait_timeouts += o.wait_timeouts;
  bad_reads += o.bad_reads;
  bad_frees += o.bad_frees;
  io_errors += o.io_errors;
  pages_checked += o.pages_checked;
  pages_wrong += o.pages_wrong;
  data_ok = data_ok && o.data_ok;
  async_coroutines = std::max(async_coroutines, o.async_coroutines);
  async_ops += o.async_ops;
  reader_ops += o.reader_ops;
  async_reads += o.async_reads;
  async_lock_waits += o.async_lock_waits;
  async_loop_wakeups += o.async_loop_wakeups;
  async_timers_fired += o.async_timers_fired;
  async_max_in_flight = std::max(async_max_in_flight, o.async_max_in_flight);
  // Weighted by time (`seconds` already includes o's).
  async_mean_in_flight =
      seconds > 0
          ? (async_mean_in_flight * (seconds - o.seconds) + o.async_mean_in_flight * o.seconds) / seconds
          : o.async_mean_in_flight;
  if (async_io.empty()) async_io = o.async_io;
  const std::size_t room = max_wait_samples - std::min(max_wait_samples, wait_samples_ns.size());
  wait_samples_ns.insert(
      wait_samples_ns.end(), o.wait_samples_ns.begin(),
      o.wait_samples_ns.begin() + static_cast<std::ptrdiff_t>(std::min(room, o.wait_samples_ns.size())));
  compute_percentiles(*this);
}

run_result run_demo(const run_config& cfg) {
  if (cfg.frames == 0 || cfg.file_pages < cfg.frames)
    throw std::invalid_argument("demo: need 0 < frames <= file pages");
  scratch_file file(cfg.file, cfg.file_pages * page_size);
  switch (cfg.protocol) {
    case release_protocol::clear_then_wake:
      return run_with<release_protocol::clear_then_wake>(cfg, file.fd());
    case release_protocol::pinned:
      return run_with<release_protocol::pinned>(cfg, file.fd());
    case release_protocol::xor_waiters:
      return run_with<release_protocol::xor_waiters>(cfg, file.fd());
    case release_protocol::atomic_clear:
      return run_with<release_protocol::atomic_clear>(cfg, file.fd());
  }
  throw std::invalid_argument("demo: unknown protocol");
}

}  // namespace pagewait::demo
