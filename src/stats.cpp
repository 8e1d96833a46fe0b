// src/stats.cpp — contention statistics (pagewait/stats.hpp): the native policy's stat_* hooks.
#include "pagewait/stats.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <new>

#include "pagewait/detail/native_policy.hpp"
#include "stats_counters.hpp"

namespace pagewait {
namespace detail {

std::atomic<bool> native_policy::stats_flag{false};

namespace {

using stats_impl::bucket_counters;
using stats_impl::now_ns;
using stats_impl::raise_to;

// Allocated once, for the table's size, the first time counting is turned on; never freed
// (threads may still count after main returns).
std::atomic<bucket_counters*> the_counters{nullptr};

struct hook_slot {
  contention_hook fn;
  void* arg;
  const hook_slot* older;  // the retired slots, newest first
};
std::atomic<const hook_slot*> the_hook{nullptr};
// Superseded slots are never freed (a thread may be calling through one right now); they stay
// reachable from here.
std::mutex hook_mutex;
const hook_slot* retired_hooks = nullptr;

thread_local std::int64_t hold_start_ns = 0;  // 0: not timing a hold
thread_local std::uint64_t release_visits = 0;
thread_local bool in_hook = false;  // the hook's own slow-path waits do not call it again

bucket_counters* counters_for(const void* word) noexcept {
  bucket_counters* c = the_counters.load(std::memory_order_acquire);
  return c ? &c[native_policy::table().index_of(word)] : nullptr;
}

}  // namespace

void native_policy::stat_wait_done(const void* word, std::uint64_t bit, bool exclusive, bool ok,
                                   std::chrono::steady_clock::duration waited) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(waited);
  if (bucket_counters* c = counters_for(word)) stats_impl::count_wait(*c, exclusive, ok, ns);
  const hook_slot* h = the_hook.load(std::memory_order_acquire);
  if (h && !in_hook) {
    in_hook = true;
    h->fn(h->arg, word, bit, exclusive ? wait_kind::lock : wait_kind::shared, ns, ok);
    in_hook = false;
  }
}

void native_policy::stat_lost_race(const void* word) noexcept {
  if (bucket_counters* c = counters_for(word)) c->lost_races.fetch_add(1, std::memory_order_relaxed);
}

void native_policy::stat_release_done(const void* word, bool handoff) noexcept {
  const std::uint64_t visits = release_visits;
  release_visits = 0;
  if (bucket_counters* c = counters_for(word)) stats_impl::count_release(*c, handoff, visits);
}

void native_policy::stat_hold_begin() noexcept { hold_start_ns = now_ns(); }

void native_policy::stat_hold_end(const bucket_lock* l) noexcept {
  const std::int64_t start = hold_start_ns;
  hold_start_ns = 0;
  if (start == 0) return;  // counting was turned on during this hold
  bucket_counters* c = the_counters.load(std::memory_order_acquire);
  if (!c) return;
  // The bucket whose lock this is. Policies derived from this one (the benchmarks', the demo's)
  // may have tables of their own: a lock that is not one of the native table's is not counted.
  wait_table<native_policy>& t = table();
  const auto* first = reinterpret_cast<const char*>(&t.at(0).lock);
  const auto* p = reinterpret_cast<const char*>(l);
  if (p < first) return;
  const std::size_t i = std::size_t(p - first) / sizeof(bucket<native_policy>);
  if (i >= t.size() || &t.at(i).lock != l) return;
  raise_to(c[i].longest_hold_ns, std::uint64_t(now_ns() - start));
}

void native_policy::stat_visit() noexcept { ++release_visits; }

}  // namespace detail

void enable_stats(bool on) {
  using detail::bucket_counters;
  if (on && !detail::the_counters.load(std::memory_order_acquire)) {
    const std::size_t n = detail::native_policy::table().size();
    auto* fresh = new bucket_counters[n];
    bucket_counters* expected = nullptr;
    if (!detail::the_counters.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel))
      delete[] fresh;  // another thread installed them first
  }
  detail::native_policy::stats_flag.store(on, std::memory_order_relaxed);
  detail::native_parker::counting.store(on, std::memory_order_relaxed);
}

bool stats_enabled() noexcept { return detail::native_policy::stats_on(); }

stats_snapshot get_stats() {
  stats_snapshot out;
  out.wake_syscalls = detail::native_parker::wake_calls.load(std::memory_order_relaxed);
  out.sleeps = detail::native_parker::sleeps.load(std::memory_order_relaxed);
  const detail::bucket_counters* c = detail::the_counters.load(std::memory_order_acquire);
  if (c) detail::stats_impl::snapshot_buckets(c, detail::native_policy::table().size(), out);
  return out;
}

void reset_stats() noexcept {
  detail::native_parker::wake_calls.store(0, std::memory_order_relaxed);
  detail::native_parker::sleeps.store(0, std::memory_order_relaxed);
  detail::bucket_counters* c = detail::the_counters.load(std::memory_order_acquire);
  if (!c) return;
  const std::size_t n = detail::native_policy::table().size();
  for (std::size_t i = 0; i < n; ++i) detail::stats_impl::zero(c[i]);
}

std::size_t bucket_of(const void* word) noexcept { return detail::native_policy::table().index_of(word); }

void set_contention_hook(contention_hook hook, void* arg) noexcept {
  std::lock_guard<std::mutex> g(detail::hook_mutex);
  detail::hook_slot* h = hook ? new (std::nothrow) detail::hook_slot{hook, arg, nullptr} : nullptr;
  if (hook && !h) return;  // out of memory: the previous hook stays
  const detail::hook_slot* old = detail::the_hook.exchange(h, std::memory_order_acq_rel);
  if (old) {
    const_cast<detail::hook_slot*>(old)->older = detail::retired_hooks;
    detail::retired_hooks = old;
  }
}

}  // namespace pagewait
