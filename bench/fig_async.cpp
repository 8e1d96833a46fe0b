// bench/fig_async.cpp — figure 9: one release waking N waiters that have no thread.
//
// The same measurement as figure 5 (one clear_bit_and_wake, N waiters all queued before it), for
// the asynchronous forms of pagewait/async.hpp against threads:
//   * N coroutines on one event-loop thread, in co_await wait_bit_clear_async; the release's
//     completions post their handles to the loop, which resumes them;
//   * N async_wait callbacks that only note the time (the release runs them itself);
//   * N threads in pagewait::wait_bit_clear, and N threads in std::atomic::wait (the reference).
// Reported per N and row, over interleaved repetitions: the release call's own time, and the
// total until the last waiter ran (its continuation: the coroutine after co_await, the callback,
// the thread after its wait), as median and range; the ratio to std::atomic::wait is per run.
// Then the lock hand-off latency of the asynchronous locks against threads (below).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <deque>
#include <exception>
#include <mutex>
#include <pagewait/async.hpp>
#include <pagewait/pagewait.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common.hpp"
#include "peers.hpp"
#include "wake_all.hpp"

namespace pwbench {
namespace {

constexpr std::uint32_t EV = 1u << 3;

struct sample {
  double release_ns;
  double total_ns;
};

std::int64_t now_ns() { return clock_type::now().time_since_epoch().count(); }

// ---- coroutines on one loop

class loop {
 public:
  loop() : thread_([this] { run(); }) {}
  ~loop() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void post(std::coroutine_handle<> h) noexcept {
    bool wake;
    {
      std::lock_guard<std::mutex> g(m_);
      wake = q_.empty();
      q_.push_back(h);
    }
    if (wake) cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> g(m_);
    for (;;) {
      cv_.wait(g, [&] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;
      std::deque<std::coroutine_handle<>> batch;
      batch.swap(q_);
      g.unlock();
      for (auto h : batch) h.resume();
      g.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::coroutine_handle<>> q_;
  bool stop_ = false;
  std::thread thread_;
};

struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

struct co_state {
  std::atomic<std::uint32_t> word{EV};
  std::atomic<unsigned> done{0};
  std::int64_t last = 0;  // the loop thread only
};

detached co_waiter(co_state& s, loop& l) {
  co_await pagewait::wait_bit_clear_async(s.word, EV, l);
  s.last = std::max(s.last, now_ns());
  s.done.fetch_add(1, std::memory_order_release);
}

// Starts the N coroutines on the loop thread itself (a coroutine that starts them), so that each
// suspends there, as in an event loop.
detached co_spawner(unsigned n, co_state& s, loop& l, std::atomic<bool>& spawned) {
  struct to_loop {
    loop& l;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) const noexcept { l.post(h); }
    void await_resume() const noexcept {}
  };
  co_await to_loop{l};
  for (unsigned i = 0; i < n; ++i) co_waiter(s, l);
  spawned.store(true, std::memory_order_release);
}

sample coroutines(unsigned n, loop& l) {
  co_state s;
  std::atomic<bool> spawned{false};
  co_spawner(n, s, l, spawned);
  while (!spawned.load(std::memory_order_acquire)) std::this_thread::yield();
  const auto t0 = clock_type::now();
  pagewait::clear_bit_and_wake(s.word, EV);
  const auto t1 = clock_type::now();
  while (s.done.load(std::memory_order_acquire) < n) std::this_thread::yield();
  return {ns_between(t0, t1), double(s.last - t0.time_since_epoch().count())};
}

// ---- callbacks

struct cb_slot {
  std::int64_t woke = 0;
};
void note_time(pagewait::async_wait<std::uint32_t>& w, pagewait::async_result) noexcept {
  static_cast<cb_slot*>(w.user_data())->woke = now_ns();
}

sample callbacks(unsigned n) {
  std::atomic<std::uint32_t> word{EV};
  std::vector<cb_slot> slots(n);
  std::vector<std::unique_ptr<pagewait::async_wait<std::uint32_t>>> ws;
  ws.reserve(n);
  for (unsigned i = 0; i < n; ++i) {
    ws.push_back(std::make_unique<pagewait::async_wait<std::uint32_t>>(&note_time, &slots[i]));
    if (ws.back()->start_wait_clear(word, EV) != pagewait::async_start::pending)
      throw std::runtime_error("fig async: a callback waiter did not queue");
  }
  const auto t0 = clock_type::now();
  pagewait::clear_bit_and_wake(word, EV);
  const auto t1 = clock_type::now();
  std::int64_t last = 0;
  for (const cb_slot& s : slots) last = std::max(last, s.woke);
  return {ns_between(t0, t1), double(last - t0.time_since_epoch().count())};
}

// ---- lock hand-off latency: a thread unlocks a bit one waiter waits for (queued, asleep for
// 2 ms); the time until the waiter runs as the owner. The waiter: a coroutine in co_await
// lock_bit_async (resumed on the loop thread), an async_wait::start_lock callback (run by the
// unlock itself), a thread in lock_bit, and, as the reference, a thread in std::mutex::lock.

constexpr std::uint32_t LK = 1u << 4;
constexpr std::uint32_t WB32 = pagewait::waiters_bit<std::uint32_t>;

detached co_locker(std::atomic<std::uint32_t>& w, loop& l, std::atomic<std::int64_t>& got) {
  // Bound first: GCC 12 miscompiles a co_await that suspends in an if condition.
  const bool owned = co_await pagewait::lock_bit_async(w, LK, l);
  if (!owned) std::terminate();
  got.store(now_ns(), std::memory_order_release);
  pagewait::unlock_bit(w, LK);
}

void wait_queued(const std::atomic<std::uint32_t>& w) {
  while (!(w.load(std::memory_order_acquire) & WB32)) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

double handoff_coroutine(loop& l) {
  std::atomic<std::uint32_t> w{0};
  std::atomic<std::int64_t> got{0};
  pagewait::lock_bit(w, LK);
  co_locker(w, l, got);  // suspends here, queued: the bit is held
  wait_queued(w);
  const std::int64_t t0 = now_ns();
  pagewait::unlock_bit(w, LK);
  while (!got.load(std::memory_order_acquire)) std::this_thread::yield();
  while (w.load(std::memory_order_acquire) & LK) std::this_thread::yield();  // its unlock
  return double(got.load() - t0);
}

struct cb_lock {
  std::atomic<std::uint32_t>* w;
  std::atomic<std::int64_t> got{0};
};
void locked_note_time(pagewait::async_wait<std::uint32_t>& a, pagewait::async_result r) noexcept {
  auto* c = static_cast<cb_lock*>(a.user_data());
  if (r != pagewait::async_result::locked) std::terminate();
  c->got.store(now_ns(), std::memory_order_release);
  pagewait::unlock_bit(*c->w, LK);
}

double handoff_callback() {
  std::atomic<std::uint32_t> w{0};
  cb_lock c{&w};
  pagewait::lock_bit(w, LK);
  pagewait::async_wait<std::uint32_t> a(&locked_note_time, &c);
  if (a.start_lock(w, LK) != pagewait::async_start::pending)
    throw std::runtime_error("fig async: not queued");
  wait_queued(w);
  const std::int64_t t0 = now_ns();
  pagewait::unlock_bit(w, LK);  // runs the callback before it returns
  return double(c.got.load(std::memory_order_acquire) - t0);
}

double handoff_thread() {
  std::atomic<std::uint32_t> w{0};
  std::atomic<std::int64_t> got{0};
  pagewait::lock_bit(w, LK);
  std::thread t([&] {
    pagewait::lock_bit(w, LK);
    got.store(now_ns(), std::memory_order_release);
    pagewait::unlock_bit(w, LK);
  });
  wait_queued(w);
  const std::int64_t t0 = now_ns();
  pagewait::unlock_bit(w, LK);
  t.join();
  return double(got.load() - t0);
}

double handoff_std_mutex() {
  std::mutex m;
  std::atomic<std::int64_t> got{0};
  m.lock();
  std::atomic<bool> started{false};
  std::thread t([&] {
    started.store(true, std::memory_order_release);
    m.lock();
    got.store(now_ns(), std::memory_order_release);
    m.unlock();
  });
  while (!started.load(std::memory_order_acquire)) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // asleep in the futex by now
  const std::int64_t t0 = now_ns();
  m.unlock();
  t.join();
  return double(got.load() - t0);
}

// ---- threads: figure 5's measurement (wake_all.hpp), for the thread rows

sample threads_of(const json& j) { return {j["release_ns"].get<double>(), j["total_ns"].get<double>()}; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

json run_async(const run_options& o) {
  std::vector<unsigned> ns = {1, 10, 100, 1000};
  if (o.quick) ns = {1, 10, 100};
  const unsigned reps = o.quick ? 3 : std::max(5u, unsigned(5 * o.scale));
  const char* names[] = {"pagewait co_await (1 loop thread)", "pagewait async_wait callbacks",
                         "pagewait wait_bit_clear (threads)", "atomic::wait (threads)"};
  loop l;
  json rows = json::array();
  for (unsigned n : ns) {
    std::vector<std::vector<double>> rel(4), tot(4), ratio(4);
    for (unsigned r = 0; r < reps; ++r) {
      // Interleaved: one of each per repetition, so that a noisy moment hits them alike.
      const sample s[4] = {coroutines(n, l), callbacks(n), threads_of(wake_all<pw_atomic_clear>(n)),
                           threads_of(wake_all<atomic_wait_peer>(n))};
      for (int k = 0; k < 4; ++k) {
        rel[k].push_back(s[k].release_ns);
        tot[k].push_back(s[k].total_ns);
        ratio[k].push_back(s[k].total_ns / s[3].total_ns);
      }
    }
    for (int k = 0; k < 4; ++k)
      rows.push_back({{"peer", names[k]},
                      {"waiters", n},
                      {"runs", reps},
                      {"release_ns", median(rel[k])},
                      {"total_ns", median(tot[k])},
                      {"total_ns_min", *std::min_element(tot[k].begin(), tot[k].end())},
                      {"total_ns_max", *std::max_element(tot[k].begin(), tot[k].end())},
                      {"total_vs_atomic_wait", median(ratio[k])},
                      {"total_vs_atomic_wait_min", *std::min_element(ratio[k].begin(), ratio[k].end())},
                      {"total_vs_atomic_wait_max", *std::max_element(ratio[k].begin(), ratio[k].end())}});
  }
  // Lock hand-off latency, interleaved, against std::mutex per repetition.
  const unsigned hreps = o.quick ? 5 : std::max(21u, unsigned(21 * o.scale));
  const char* hnames[] = {"pagewait co_await lock_bit_async (1 loop thread)",
                          "pagewait async_wait::start_lock callback", "pagewait lock_bit (thread)",
                          "std::mutex (thread)"};
  std::vector<std::vector<double>> lat(4), lratio(4);
  for (unsigned r = 0; r < hreps; ++r) {
    const double x[4] = {handoff_coroutine(l), handoff_callback(), handoff_thread(), handoff_std_mutex()};
    for (int k = 0; k < 4; ++k) {
      lat[k].push_back(x[k]);
      lratio[k].push_back(x[k] / x[3]);
    }
  }
  json hrows = json::array();
  for (int k = 0; k < 4; ++k)
    hrows.push_back({{"peer", hnames[k]},
                     {"runs", hreps},
                     {"latency_ns", median(lat[k])},
                     {"latency_ns_min", *std::min_element(lat[k].begin(), lat[k].end())},
                     {"latency_ns_max", *std::max_element(lat[k].begin(), lat[k].end())},
                     {"vs_std_mutex", median(lratio[k])},
                     {"vs_std_mutex_min", *std::min_element(lratio[k].begin(), lratio[k].end())},
                     {"vs_std_mutex_max", *std::max_element(lratio[k].begin(), lratio[k].end())}});
  return {{"rows", rows}, {"handoff", hrows}};
}

figure_registrar reg{{"async",
                      "fig 9: one release waking N coroutines, callbacks or threads; lock hand-off latency",
                      &run_async}};

}  // namespace
}  // namespace pwbench
