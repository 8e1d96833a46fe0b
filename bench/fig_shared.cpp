// bench/fig_shared.cpp — figure 10: words shared between processes (pagewait/shm.hpp).
//
// Two processes, a parent A and a forked child B, over one MAP_SHARED mapping that holds a wait
// domain and every peer's object.
//   * Lock hand-off: A holds the lock; B calls lock() and goes to sleep in it (A waits ~50 µs to
//     let it); A reads the clock and unlocks; B, once it owns the lock, reads the clock. Peers: a
//     domain's lock_bit, a PTHREAD_PROCESS_SHARED mutex, and the floor, a bare shared futex
//     ping-pong (a store and one FUTEX_WAKE against one FUTEX_WAIT).
//   * Event wake: B waits for a flag to clear; A clears it and wakes. Peers: a domain's
//     wait_bit_clear / clear_bit_and_wake, a process-shared mutex + condition variable (the flag
//     under the mutex, pthread_cond_broadcast), and the bare shared futex.
// steady_clock is CLOCK_MONOTONIC, one clock for every process. The parent runs on CPU 0 and the
// child on CPU 1 (when there are two), so every peer is measured for the same wake-up, across
// CPUs. B is given 50 µs to fall asleep before each release and then seen asleep in /proc (up
// to 200 µs more; the rounds where it was not are counted), the same for every peer, as in
// figure 4. Between rounds the child sleeps on a shared futex and the parent yields
// until the child has started its round. Peers take turns in blocks (a fresh child per block
// and peer), and the ratio is to the bare futex of the same run. A child that dies ends the run
// with an error (the parent's waits time out and look), and a child whose parent dies is killed.
//   * Uncontended: lock+unlock of a word in a domain against a word in private memory with
//     pagewait.hpp (same single RMW each way; the domain's bounds check of the word reads only its
//     handle), interleaved repetitions.
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "common.hpp"
#include "pagewait/pagewait.hpp"
#include "pagewait/shm.hpp"

namespace pwbench {
namespace {

long shared_wait(std::atomic<std::uint32_t>* w, std::uint32_t expected) noexcept {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(w), FUTEX_WAIT, expected, nullptr, nullptr, 0);
}
long shared_wake(std::atomic<std::uint32_t>* w) noexcept {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(w), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

constexpr std::uint32_t LOCK = 1, FLAG = 2;
constexpr unsigned max_samples = 4096;

// Everything both processes use, in the domain's user area.
struct area {
  std::atomic<std::uint32_t> phase;  // 2k+1: B may start round k; 2k+2: B is done with it
  std::atomic<std::uint32_t> b_going;
  std::atomic<std::int64_t> t0;
  std::atomic<std::uint32_t> pw_word;  // the domain's word: LOCK and FLAG bits
  std::atomic<std::uint32_t> bare;     // bare futex lock: 1 free, 0 held
  std::atomic<std::uint32_t> flag;     // bare futex event: 1 set
  pthread_mutex_t m;
  pthread_cond_t cv;
  bool cv_flag;
  double lat[max_samples];
};

// Whether the child has exited, leaving it waitable (WNOWAIT: the block's final waitpid reaps it
// and reads its status).
bool child_exited(pid_t child_pid) {
  siginfo_t info{};
  return waitid(P_PID, id_t(child_pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == child_pid;
}

[[noreturn]] void child_died(pid_t child_pid) {
  siginfo_t info{};
  waitid(P_PID, id_t(child_pid), &info, WEXITED | WNOHANG | WNOWAIT);
  throw std::runtime_error(std::string("figure 10: the child process died early (") +
                           (info.si_code == CLD_EXITED ? "exit status " : "signal ") +
                           std::to_string(info.si_status) + ")");
}

// Waits for `phase` to become `want`; the parent (child_pid > 0) also watches the child, so that a
// child that died ends the figure with an error instead of a hang. The phase is read again after
// the child is seen gone: the child sets the last phase and exits at once, and a parent woken
// late (a loaded machine) may see both.
void wait_phase(area& a, std::uint32_t want, pid_t child_pid = 0) {
  const timespec tick{0, 100 * 1000 * 1000};
  for (std::uint32_t v; (v = a.phase.load(std::memory_order_acquire)) != want;) {
    syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&a.phase), FUTEX_WAIT, v, child_pid ? &tick : nullptr,
            nullptr, 0);
    if (child_pid && child_exited(child_pid) && a.phase.load(std::memory_order_acquire) != want)
      child_died(child_pid);
  }
}

void pin_to(int cpu) {
  if (std::thread::hardware_concurrency() < 2) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}
void set_phase(area& a, std::uint32_t v) {
  a.phase.store(v, std::memory_order_release);
  shared_wake(&a.phase);
}
std::int64_t now_ns() { return clock_type::now().time_since_epoch().count(); }

// A peer: lock/unlock for the hand-off; arm (A: the event is pending), wait (B), fire (A).
struct domain_peer {
  static constexpr std::string_view name = "pagewait domain";
  pagewait::shm::domain* d;
  area* a;
  void lock() { d->lock_bit(a->pw_word, LOCK); }
  void unlock() { d->unlock_bit(a->pw_word, LOCK); }
  void arm() { a->pw_word.fetch_or(FLAG); }
  void wait() { d->wait_bit_clear(a->pw_word, FLAG); }
  void fire() { d->clear_bit_and_wake(a->pw_word, FLAG); }
};
struct pthread_peer {
  static constexpr std::string_view name = "pshared mutex (+ condvar)";
  pagewait::shm::domain* d;
  area* a;
  void lock() { pthread_mutex_lock(&a->m); }
  void unlock() { pthread_mutex_unlock(&a->m); }
  void arm() {
    pthread_mutex_lock(&a->m);
    a->cv_flag = true;
    pthread_mutex_unlock(&a->m);
  }
  void wait() {
    pthread_mutex_lock(&a->m);
    while (a->cv_flag) pthread_cond_wait(&a->cv, &a->m);
    pthread_mutex_unlock(&a->m);
  }
  void fire() {
    pthread_mutex_lock(&a->m);
    a->cv_flag = false;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->m);
  }
};
struct bare_peer {
  static constexpr std::string_view name = "bare shared futex";
  pagewait::shm::domain* d;
  area* a;
  void lock() {
    while (!a->bare.exchange(0, std::memory_order_acquire)) shared_wait(&a->bare, 0);
  }
  void unlock() {
    a->bare.store(1, std::memory_order_release);
    shared_wake(&a->bare);
  }
  void arm() { a->flag.store(1); }
  void wait() {
    while (a->flag.load(std::memory_order_acquire)) shared_wait(&a->flag, 1);
  }
  void fire() {
    a->flag.store(0, std::memory_order_release);
    shared_wake(&a->flag);
  }
};

// One block of `n` rounds of one peer; B is a forked child, which records its latencies in the
// area. `event`: the event wake, else the lock hand-off. Returns how many rounds released a B
// that was not seen asleep in the kernel (wait_until_asleep).
template <class Peer>
unsigned block(pagewait::shm::domain& d, area& a, unsigned n, bool event, std::vector<double>& out) {
  Peer p{&d, &a};
  a.phase.store(0);
  a.b_going.store(0);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the parent (run.py waits for our pipe)
    pin_to(1);
    for (unsigned k = 0; k < n; ++k) {
      wait_phase(a, 2 * k + 1);
      a.b_going.store(1);
      if (event) {
        p.wait();
      } else {
        p.lock();
      }
      a.lat[k] = double(now_ns() - a.t0.load(std::memory_order_relaxed));
      if (!event) p.unlock();
      a.b_going.store(0);
      set_phase(a, 2 * k + 2);
    }
    _exit(0);
  }
  const std::string child_stat = "/proc/" + std::to_string(pid) + "/stat";
  unsigned not_asleep = 0;
  for (unsigned k = 0; k < n; ++k) {
    if (event)
      p.arm();
    else
      p.lock();
    set_phase(a, 2 * k + 1);
    for (unsigned spins = 0; !a.b_going.load(); ++spins) {
      std::this_thread::yield();
      if (spins % 1024 == 1023 && child_exited(pid) && !a.b_going.load()) child_died(pid);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    // B (the child's only thread) is asleep in the kernel; counted if not seen so in time.
    if (!wait_until_asleep(child_stat, std::chrono::microseconds(200))) ++not_asleep;
    a.t0.store(now_ns(), std::memory_order_relaxed);
    if (event)
      p.fire();
    else
      p.unlock();
    wait_phase(a, 2 * k + 2, pid);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("figure 10: child failed");
  out.insert(out.end(), a.lat, a.lat + n);
  return not_asleep;
}

double uncontended_ns(std::atomic<std::uint32_t>& w, pagewait::shm::domain* d, unsigned iters) {
  const auto t0 = clock_type::now();
  for (unsigned i = 0; i < iters; ++i) {
    if (d) {
      d->lock_bit(w, LOCK);
      d->unlock_bit(w, LOCK);
    } else {
      pagewait::lock_bit(w, LOCK);
      pagewait::unlock_bit(w, LOCK);
    }
  }
  return ns_between(t0, clock_type::now()) / iters;
}

json run_shared(const run_options& o) {
  const std::size_t size = pagewait::shm::domain::bytes_needed(sizeof(area) + 4096);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) throw std::runtime_error("mmap failed");
  json out;
  {
    pagewait::shm::domain d = pagewait::shm::domain::create(base, size);
    cpu_set_t was;
    const bool pinned = sched_getaffinity(0, sizeof was, &was) == 0;
    pin_to(0);
    area& a = *new (d.user_area()) area{};
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&a.m, &ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&a.cv, &ca);
    a.bare.store(1);

    const unsigned blocks = o.quick ? 2 : 10;
    const unsigned per_block = std::min(max_samples, unsigned((o.quick ? 300 : 3000) * o.scale) / blocks + 1);
    json rows = json::array();
    for (bool event : {false, true}) {
      std::vector<std::vector<double>> lat(3);
      // Per block: each peer's median, and its ratio to the bare futex's median of that block.
      std::vector<std::vector<double>> block_p50(3), block_ratio(3);
      unsigned not_asleep[3] = {};
      for (unsigned blk = 0; blk < blocks; ++blk) {
        std::vector<double> one[3];
        not_asleep[0] += block<bare_peer>(d, a, per_block, event, one[0]);
        not_asleep[1] += block<domain_peer>(d, a, per_block, event, one[1]);
        not_asleep[2] += block<pthread_peer>(d, a, per_block, event, one[2]);
        double p50[3];
        for (int i = 0; i < 3; ++i) {
          lat[std::size_t(i)].insert(lat[std::size_t(i)].end(), one[i].begin(), one[i].end());
          p50[i] = percentile(one[i], 50);
          block_p50[std::size_t(i)].push_back(p50[i]);
        }
        for (int i = 0; i < 3; ++i) block_ratio[std::size_t(i)].push_back(p50[i] / p50[0]);
      }
      const std::string_view peer_names[3] = {bare_peer::name, domain_peer::name, pthread_peer::name};
      for (std::size_t i = 0; i < 3; ++i) {
        auto& r = block_ratio[i];
        auto& b = block_p50[i];
        rows.push_back({{"kind", event ? "event wake" : "lock hand-off"},
                        {"peer", std::string(peer_names[i])},
                        {"samples", lat[i].size()},
                        {"p50_ns", percentile(lat[i], 50)},
                        {"p90_ns", percentile(lat[i], 90)},
                        {"p99_ns", percentile(lat[i], 99)},
                        {"block_p50_min_ns", *std::min_element(b.begin(), b.end())},
                        {"block_p50_max_ns", *std::max_element(b.begin(), b.end())},
                        {"vs_bare", percentile(r, 50)},
                        {"vs_bare_min", *std::min_element(r.begin(), r.end())},
                        {"vs_bare_max", *std::max_element(r.begin(), r.end())},
                        {"not_seen_asleep", not_asleep[i]}});
      }
    }
    // Uncontended: interleaved repetitions of a domain word and a private word.
    const unsigned reps = o.quick ? 3 : 7;
    const unsigned iters = unsigned((o.quick ? 200000 : 2000000) * o.scale) + 1000;
    std::atomic<std::uint32_t> private_word{0};
    std::vector<double> in_domain, in_private;
    for (unsigned r = 0; r < reps; ++r) {
      in_domain.push_back(uncontended_ns(a.pw_word, &d, iters));
      in_private.push_back(uncontended_ns(private_word, nullptr, iters));
    }
    std::vector<double> ratio;
    for (unsigned r = 0; r < reps; ++r) ratio.push_back(in_domain[r] / in_private[r]);
    json unc = {{"domain_ns", in_domain},
                {"private_ns", in_private},
                {"domain_vs_private", percentile(ratio, 50)},
                {"domain_vs_private_min", *std::min_element(ratio.begin(), ratio.end())},
                {"domain_vs_private_max", *std::max_element(ratio.begin(), ratio.end())}};
    if (pinned) sched_setaffinity(0, sizeof was, &was);
    pthread_cond_destroy(&a.cv);
    pthread_mutex_destroy(&a.m);
    out = {{"rows", rows},
           {"reference", std::string(bare_peer::name)},
           {"blocks", blocks},
           {"uncontended", unc},
           {"iterations", iters}};
  }
  munmap(base, size);
  return out;
}

figure_registrar reg{
    {"shared", "fig 10: across processes: hand-off and event latency; uncontended cost", &run_shared}};

}  // namespace
}  // namespace pwbench
