// demo/pagecache/page_cache.cpp — the pool, the file, the page contents, the demo's wait table.
#include "page_cache.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <thread>

namespace pagewait::demo {

detail::wait_table<demo_policy>& demo_policy::table() noexcept {
  // Never freed: waiters of any run may still be leaving it when the next run starts.
  static auto* t = new detail::wait_table<demo_policy>(
      detail::wait_table<demo_policy>::size_for_machine(std::thread::hardware_concurrency()));
  return *t;
}

void widen_sleep(std::chrono::nanoseconds d) noexcept {
  timespec ts{static_cast<time_t>(d.count() / 1000000000), static_cast<long>(d.count() % 1000000000)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

namespace {
std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}
constexpr std::size_t words_per_page = page_size / sizeof(std::uint64_t);
}  // namespace

void fill_page(unsigned char* data, std::uint64_t index, std::uint64_t version) noexcept {
  if (version == 0) {
    std::memset(data, 0, page_size);
    return;
  }
  const std::uint64_t seed = mix(index * 0x9E3779B97F4A7C15ull ^ version);
  for (std::size_t i = 0; i < words_per_page; ++i) {
    const std::uint64_t w = i == 0 ? index : i == 1 ? version : seed + i * 0x9E3779B97F4A7C15ull;
    std::memcpy(data + i * sizeof w, &w, sizeof w);
  }
}

bool page_is(const unsigned char* data, std::uint64_t index, std::uint64_t version) noexcept {
  alignas(64) unsigned char expect[page_size];
  fill_page(expect, index, version);
  return std::memcmp(expect, data, page_size) == 0;
}

page_pool::page_pool(int fd, unsigned frames, std::uint64_t file_pages)
    : fd_(fd),
      nframes_(frames),
      file_pages_(file_pages),
      frames_(std::make_unique<frame[]>(frames)),
      map_(file_pages, nullptr) {
  for (unsigned i = frames; i-- > 0;) {
    frames_[i].next_free = free_;
    free_ = &frames_[i];
  }
}

frame* page_pool::find_get(std::uint64_t index) {
  std::lock_guard<std::mutex> g(lock_);
  frame* f = map_[index];
  if (f) get(f);
  return f;
}

frame* page_pool::get_if_mapped(frame& f, std::uint32_t need) {
  std::lock_guard<std::mutex> g(lock_);
  if (!f.mapped || (f.flags.load(std::memory_order_relaxed) & need) != need) return nullptr;
  get(&f);
  return &f;
}

frame* page_pool::find_or_create(std::uint64_t index, bool& created) {
  std::lock_guard<std::mutex> g(lock_);
  created = false;
  if (frame* f = map_[index]) {
    get(f);
    return f;
  }
  frame* f = free_;
  if (!f) return nullptr;
  free_ = f->next_free;
  created = true;
  f->next_free = nullptr;
  f->index = index;
  f->mapped = true;
  f->refs.store(2, std::memory_order_relaxed);            // the mapping's and the caller's
  f->generation.fetch_add(1, std::memory_order_release);  // even: in use again
  // A plain OR, not a store: the word may still carry a stale waiters bit, which only a
  // release under the bucket lock may clear (pagewait's invariant on that bit). Nobody else
  // can hold LOCKED on a free frame.
  f->flags.fetch_or(PG_LOCKED, std::memory_order_acquire);
  map_[index] = f;
  return f;
}

void page_pool::remove(frame* f) {
  {
    std::lock_guard<std::mutex> g(lock_);
    map_[f->index] = nullptr;
    f->mapped = false;
  }
  put(f);
}

void page_pool::put(frame* f) {
  // acq_rel: whatever any holder did to the frame happens-before it is freed and reused.
  if (f->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (f->flags.load(std::memory_order_relaxed) & (PG_LOCKED | PG_WRITEBACK | PG_DIRTY))
    bad_frees_.fetch_add(1, std::memory_order_relaxed);
  // Odd: free. Before the frame can be handed out: an end of writeback that reads a new
  // generation knows this free happened before its access (release pairs with demo_policy's
  // acquire).
  f->generation.fetch_add(1, std::memory_order_release);
  std::lock_guard<std::mutex> g(lock_);
  f->next_free = free_;
  free_ = f;
}

bool page_pool::write_page(const frame* f) {
  const off_t off = static_cast<off_t>(f->index * page_size);
  if (pwrite(fd_, f->data, page_size, off) != static_cast<ssize_t>(page_size)) {
    io_errors_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

bool page_pool::read_page(frame* f) {
  const off_t off = static_cast<off_t>(f->index * page_size);
  if (pread(fd_, f->data, page_size, off) != static_cast<ssize_t>(page_size)) {
    io_errors_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

}  // namespace pagewait::demo
