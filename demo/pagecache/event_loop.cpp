// demo/pagecache/event_loop.cpp — the loop of event_loop.hpp, on io_uring when it can be had.
#include "event_loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#if PAGEWAIT_DEMO_URING
#include <liburing.h>
#endif

namespace pagewait::demo {

#if PAGEWAIT_DEMO_URING
struct event_loop::ring {
  io_uring r;
};
namespace {
constexpr unsigned ring_entries = 1024;
// The user_data of the eventfd's read; a read_op's is its address, never this.
constexpr std::uint64_t eventfd_tag = 1;
}  // namespace
#endif

event_loop::event_loop(bool want_uring) {
#if PAGEWAIT_DEMO_URING
  if (want_uring) {
    auto* rg = new ring;
    const int e = io_uring_queue_init(ring_entries, &rg->r, 0);
    eventfd_ = e == 0 ? eventfd(0, EFD_CLOEXEC) : -1;
    if (e == 0 && eventfd_ >= 0) {
      ring_ = rg;
      arm_eventfd();
    } else {
      why_not_ = std::string("io_uring unavailable here (") + std::strerror(e ? -e : errno) +
                 "): pread on the loop thread";
      if (e == 0) io_uring_queue_exit(&rg->r);
      delete rg;
    }
  } else {
    why_not_ = "io_uring not asked for: pread on the loop thread";
  }
#else
  (void)want_uring;
  why_not_ = "built without liburing: pread on the loop thread";
#endif
}

event_loop::~event_loop() {
#if PAGEWAIT_DEMO_URING
  if (ring_) {
    io_uring_queue_exit(&ring_->r);
    delete ring_;
  }
#endif
  if (eventfd_ >= 0) close(eventfd_);
}

void event_loop::post(std::coroutine_handle<> h) noexcept {
  bool wake;
  {
    std::lock_guard<std::mutex> g(m_);
    posted_.push_back(h);
    // The loop sets `sleeping_` under this mutex after it found the queue empty, so either it
    // sees this handle before it sleeps, or we see `sleeping_` and wake it.
    wake = sleeping_;
    sleeping_ = false;
    if (wake) ++wakeups_;
  }
  if (wake) this->wake();
}

void event_loop::wake() noexcept {
  if (eventfd_ >= 0) {
    const std::uint64_t one = 1;
    // A full counter (never, at 2^64 - 2) would fail with EAGAIN, and the loop is awake anyway.
    [[maybe_unused]] const ssize_t n = write(eventfd_, &one, sizeof one);
  } else {
    cv_.notify_one();
  }
}

void event_loop::arm_timer(pagewait::async_timer& t, std::chrono::steady_clock::time_point at) noexcept {
  bool wake;
  {
    std::lock_guard<std::mutex> g(m_);
    const auto it = timers_.emplace(at, &t);
    // A sleeping loop sleeps until its earliest timer: wake it if this one comes first.
    wake = sleeping_ && it == timers_.begin();
    if (wake) sleeping_ = false;
  }
  if (wake) this->wake();
}

bool event_loop::disarm_timer(pagewait::async_timer& t) noexcept {
  std::lock_guard<std::mutex> g(m_);
  auto [it, end] = timers_.equal_range(t.deadline());
  for (; it != end; ++it)
    if (it->second == &t) {
      timers_.erase(it);
      return true;
    }
  return false;  // taken by fire_due: its fire() has begun, or is about to
}

// Fires the timers that are due. Taken out of the map under the mutex (from then on
// disarm_timer says false), fired outside it: fire() may disarm, post or arm.
void event_loop::fire_due() {
  std::vector<pagewait::async_timer*> due;
  {
    std::lock_guard<std::mutex> g(m_);
    const auto now = std::chrono::steady_clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      due.push_back(timers_.begin()->second);
      timers_.erase(timers_.begin());
    }
  }
  fired_ += due.size();
  for (pagewait::async_timer* t : due) t->fire();  // not touched after: it may be gone
}

void event_loop::read_op::await_suspend(std::coroutine_handle<> c) noexcept {
  h = c;
  loop.submit_read(this);
}

#if PAGEWAIT_DEMO_URING
namespace {
[[noreturn]] void fatal(const char* what, int err) {
  std::fprintf(stderr, "pagewait demo: %s: %s\n", what, std::strerror(err));
  std::abort();
}
}  // namespace
#endif

void event_loop::submit_read(read_op* op) noexcept {
  ++reads_;
#if PAGEWAIT_DEMO_URING
  if (ring_) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_->r);
    if (!sqe) {  // the submission queue is full: hand it to the kernel first
      submit();
      sqe = io_uring_get_sqe(&ring_->r);
      if (!sqe) fatal("io_uring: no submission entry after a submit", EBUSY);
    }
    io_uring_prep_read(sqe, op->fd, op->buf, op->len, static_cast<std::uint64_t>(op->off));
    io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uintptr_t>(op));
    ++in_flight_;
    return;
  }
#endif
  const ssize_t n = pread(op->fd, op->buf, op->len, op->off);
  op->result = n < 0 ? -errno : static_cast<int>(n);
  post(op->h);
}

void event_loop::arm_eventfd() noexcept {
#if PAGEWAIT_DEMO_URING
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_->r);
  if (!sqe) {
    submit();
    sqe = io_uring_get_sqe(&ring_->r);
    if (!sqe) fatal("io_uring: no submission entry after a submit", EBUSY);
  }
  io_uring_prep_read(sqe, eventfd_, &eventfd_buf_, sizeof eventfd_buf_, 0);
  io_uring_sqe_set_data64(sqe, eventfd_tag);
#endif
}

// Hands the queued submissions to the kernel. A failure other than an interrupted call would
// leave the eventfd's read unarmed (the loop could sleep through a post): the demo stops.
void event_loop::submit() noexcept {
#if PAGEWAIT_DEMO_URING
  for (;;) {
    const int e = io_uring_submit(&ring_->r);
    if (e >= 0) break;
    if (e != -EINTR) fatal("io_uring_submit", -e);
  }
  max_in_flight_ = std::max(max_in_flight_, in_flight_);
#endif
}

void event_loop::wait_for_completion(std::chrono::steady_clock::time_point until) noexcept {
#if PAGEWAIT_DEMO_URING
  submit();
  io_uring_cqe* cqe = nullptr;
  int e;
  if (until == std::chrono::steady_clock::time_point::max()) {
    e = io_uring_wait_cqe(&ring_->r, &cqe);
  } else {
    const auto left =
        std::max(until - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration(0));
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    __kernel_timespec ts{};
    ts.tv_sec = ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    e = io_uring_wait_cqe_timeout(&ring_->r, &cqe, &ts);
  }
  if (e < 0 && e != -EINTR && e != -ETIME) fatal("io_uring_wait_cqe", -e);
#else
  (void)until;
#endif
}

// Takes the completions that are there and resumes their readers.
void event_loop::reap() {
#if PAGEWAIT_DEMO_URING
  submit();
  std::vector<read_op*> done;
  io_uring_cqe* cqe = nullptr;
  unsigned head;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_->r, head, cqe) {
    ++seen;
    const std::uint64_t tag = io_uring_cqe_get_data64(cqe);
    if (tag == eventfd_tag) {
      arm_eventfd();  // a post woke us: keep the next one able to
      continue;
    }
    auto* op = reinterpret_cast<read_op*>(static_cast<std::uintptr_t>(tag));
    op->result = cqe->res;
    --in_flight_;
    done.push_back(op);
  }
  io_uring_cq_advance(&ring_->r, seen);
  // Resumed after the completion queue is advanced: a reader may submit again at once.
  for (read_op* op : done) op->h.resume();
#endif
}

void event_loop::run(const std::function<bool()>& finished) {
  std::deque<std::coroutine_handle<>> ready;
  for (;;) {
    fire_due();
    {
      std::unique_lock<std::mutex> g(m_);
      ready.swap(posted_);
    }
    for (std::coroutine_handle<> h : ready) h.resume();
    const bool had_work = !ready.empty();
    ready.clear();
    if (in_flight_) {
      ++samples_;
      in_flight_sum_ += in_flight_;
    }
    if (ring_) reap();
    if (had_work) continue;
    // Nothing ran this round: sleep until a post, a read completion or the next timer, unless
    // done.
    auto until = std::chrono::steady_clock::time_point::max();
    {
      std::unique_lock<std::mutex> g(m_);
      if (!posted_.empty()) continue;
      if (in_flight_ == 0 && finished()) return;
      if (!timers_.empty()) until = timers_.begin()->first;
      sleeping_ = true;
      if (!ring_) {
        if (until == std::chrono::steady_clock::time_point::max())
          cv_.wait(g, [&] { return !sleeping_; });
        else
          cv_.wait_until(g, until, [&] { return !sleeping_; });
        sleeping_ = false;
        continue;
      }
    }
    wait_for_completion(until);
    {
      // Awake before anything runs: a coroutine resumed below that posts (a grant to another,
      // a yield) must not write the eventfd for a loop that is not asleep.
      std::lock_guard<std::mutex> g(m_);
      sleeping_ = false;
    }
    reap();
  }
}

}  // namespace pagewait::demo
