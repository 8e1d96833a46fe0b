// demo/pagecache/event_loop.hpp — one thread, many coroutines: the demo's asynchronous readers.
//
// The kernel's io_uring buffered reads do not block a thread on a locked page; the demo's
// asynchronous readers do the same in user space. One loop thread runs every reader coroutine;
// a coroutine suspends on a page read (an io_uring read, so many reads are in flight at once)
// or on a page bit (pagewait's lock_bit_async / wait_bit_clear_async), and the loop resumes it
// when the read completes or when the release that grants the bit posts it back here.
//
// post() may be called from any thread (the releasing thread of a pagewait release posts the
// coroutine it completed). It queues the handle under a mutex and wakes the loop only if the loop
// said, under that mutex, that it is about to sleep: so a post costs a system call only when the
// loop is idle. The loop sleeps in io_uring_wait_cqe, with a read of an eventfd always armed, so
// that a post's write to the eventfd wakes it; without io_uring (liburing absent at build time,
// or io_uring_queue_init refused at run time, as in some containers) it sleeps on a condition
// variable and reads pages with pread, on the loop thread, and says so.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <pagewait/async.hpp>
#include <string>

namespace pagewait::demo {

class event_loop {
 public:
  // `want_uring`: use io_uring if it can be had.
  explicit event_loop(bool want_uring);
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  // Whether page reads go through io_uring; if not, why (for the demo's report).
  bool uring() const noexcept { return ring_ != nullptr; }
  const std::string& fallback_reason() const noexcept { return why_not_; }

  // Resumes `h` on the loop thread, later. Any thread; never blocks for long (a mutex held for a
  // push); never runs `h` inline.
  void post(std::coroutine_handle<> h) noexcept;

  // Timers, for pagewait's timed awaitables (pagewait::async_timed_scheduler): the loop fires
  // `t` at or after `at`, on the loop thread, unless disarm_timer(t) returned true first. Any
  // thread; disarm_timer runs inside releases, so both only take the mutex for a map update.
  void arm_timer(pagewait::async_timer& t, std::chrono::steady_clock::time_point at) noexcept;
  bool disarm_timer(pagewait::async_timer& t) noexcept;

  // co_await loop.read(fd, buf, len, off): the bytes read, or -errno.
  struct read_op {
    event_loop& loop;
    int fd;
    void* buf;
    unsigned len;
    off_t off;
    int result = 0;
    std::coroutine_handle<> h{};
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> c) noexcept;
    int await_resume() const noexcept { return result; }
  };
  read_op read(int fd, void* buf, unsigned len, off_t off) { return read_op{*this, fd, buf, len, off}; }

  // co_await loop.yield(): resumes after the other ready coroutines.
  struct yield_op {
    event_loop& loop;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> c) noexcept { loop.post(c); }
    void await_resume() const noexcept {}
  };
  yield_op yield() { return yield_op{*this}; }

  // Runs until `finished()` is true with no read in flight and nothing posted. On the calling
  // thread, which becomes the loop thread.
  void run(const std::function<bool()>& finished);

  // Figures of the run (read after run() returns). Reads in flight are counted when the loop
  // hands its submissions to the kernel (io_uring_submit); the mean is over the loop's rounds
  // that had a read in flight.
  std::uint64_t reads() const noexcept { return reads_; }
  unsigned max_in_flight() const noexcept { return max_in_flight_; }
  double mean_in_flight() const noexcept {
    return samples_ ? double(in_flight_sum_) / double(samples_) : 0.0;
  }
  std::uint64_t wakeups() const noexcept { return wakeups_; }  // posts that had to wake the loop
  std::uint64_t timers_fired() const noexcept { return fired_; }

 private:
  void submit_read(read_op* op) noexcept;
  void arm_eventfd() noexcept;
  void submit() noexcept;
  // Sleeps until a completion, a post's eventfd write, or `until` (a timer's deadline).
  void wait_for_completion(std::chrono::steady_clock::time_point until) noexcept;
  void reap();
  void fire_due();
  void wake() noexcept;  // wakes the loop, which had said it sleeps (m_ not held)

  struct ring;  // io_uring state, when available (event_loop.cpp)
  ring* ring_ = nullptr;
  std::string why_not_;
  int eventfd_ = -1;
  std::uint64_t eventfd_buf_ = 0;

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::coroutine_handle<>> posted_;
  std::multimap<std::chrono::steady_clock::time_point, pagewait::async_timer*> timers_;  // m_
  bool sleeping_ = false;  // m_: the loop is about to sleep, or sleeping

  unsigned in_flight_ = 0;  // the loop thread only
  unsigned max_in_flight_ = 0;
  std::uint64_t in_flight_sum_ = 0, samples_ = 0, reads_ = 0, wakeups_ = 0, fired_ = 0;
};

}  // namespace pagewait::demo
