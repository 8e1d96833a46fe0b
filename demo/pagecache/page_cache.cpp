// demo/pagecache/page_cache.cpp — the pool, the file, the page contents, the demo's wait table.
#include "page_cache.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>
#include <stdexcept>
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

namespace {
constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
// The block: the state, the mapping, then the frames (each 64-byte aligned).
constexpr std::size_t map_offset = round_up(sizeof(pool_state), 64);
std::size_t frames_offset(std::uint64_t file_pages) {
  return round_up(map_offset + std::size_t(file_pages) * sizeof(std::uint32_t), alignof(frame));
}
}  // namespace

std::size_t page_pool::shared_bytes(unsigned frames, std::uint64_t file_pages) {
  return frames_offset(file_pages) + std::size_t(frames) * sizeof(frame);
}

page_pool::page_pool(int fd, unsigned frames, std::uint64_t file_pages)
    : fd_(fd), nframes_(frames), file_pages_(file_pages) {
  owned_ = ::operator new (shared_bytes(frames, file_pages), std::align_val_t{alignof(frame)});
  format(owned_);
}

page_pool::page_pool(int fd, unsigned frames, std::uint64_t file_pages, shm::domain& d, void* area)
    : fd_(fd), nframes_(frames), file_pages_(file_pages), domain_(&d) {
  if (reinterpret_cast<std::uintptr_t>(area) % alignof(frame) != 0 ||
      !d.contains(area, shared_bytes(frames, file_pages)))
    throw std::invalid_argument("demo: the pool's area must be aligned and inside the domain's user area");
  format(area);
}

void page_pool::format(void* area) {
  char* base = static_cast<char*>(area);
  state_ = new (base) pool_state;
  // One object at a time (no array new: it may put a cookie in front).
  map_ = reinterpret_cast<std::uint32_t*>(base + map_offset);
  for (std::uint64_t i = 0; i < file_pages_; ++i) new (&map_[i]) std::uint32_t(0);
  frames_ = reinterpret_cast<frame*>(base + frames_offset(file_pages_));
  for (unsigned i = nframes_; i-- > 0;) {
    new (&frames_[i]) frame;
    frames_[i].next_free = state_->free_head;
    state_->free_head = i;
  }
}

page_pool::~page_pool() {
  // Trivially destructible but for the atomics, which need nothing either: only the block goes.
  if (owned_) ::operator delete (owned_, std::align_val_t{alignof(frame)});
}

page_pool::mapping_guard::mapping_guard(page_pool& p) : p_(p) {
  if (p_.domain_)
    p_.domain_->lock_bit(p_.state_->mapping_lock, 1u);
  else
    p_.mutex_.lock();
}

page_pool::mapping_guard::~mapping_guard() {
  if (p_.domain_)
    p_.domain_->unlock_bit(p_.state_->mapping_lock, 1u);
  else
    p_.mutex_.unlock();
}

frame* page_pool::find_get(std::uint64_t index) {
  mapping_guard g(*this);
  if (!map_[index]) return nullptr;
  frame* f = &frames_[map_[index] - 1];
  get(f);
  return f;
}

frame* page_pool::get_if_mapped(frame& f, std::uint32_t need) {
  mapping_guard g(*this);
  if (!f.mapped || (f.flags.load(std::memory_order_relaxed) & need) != need) return nullptr;
  get(&f);
  return &f;
}

frame* page_pool::find_or_create(std::uint64_t index, bool& created) {
  mapping_guard g(*this);
  created = false;
  if (map_[index]) {
    frame* f = &frames_[map_[index] - 1];
    get(f);
    return f;
  }
  if (state_->free_head == no_frame) return nullptr;
  const std::uint32_t n = state_->free_head;
  frame* f = &frames_[n];
  state_->free_head = f->next_free;
  created = true;
  f->next_free = no_frame;
  f->index = index;
  f->mapped = true;
  f->refs.store(2, std::memory_order_relaxed);            // the mapping's and the caller's
  f->generation.fetch_add(1, std::memory_order_release);  // even: in use again
  // A plain OR, not a store: the word may still carry a stale waiters bit, which only a
  // release under the bucket lock may clear (pagewait's invariant on that bit). Nobody else
  // can hold LOCKED on a free frame.
  f->flags.fetch_or(PG_LOCKED, std::memory_order_acquire);
  map_[index] = n + 1;
  return f;
}

void page_pool::remove(frame* f) {
  {
    mapping_guard g(*this);
    map_[f->index] = 0;
    f->mapped = false;
  }
  put(f);
}

void page_pool::put(frame* f) {
  // acq_rel: whatever any holder did to the frame happens-before it is freed and reused.
  if (f->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (f->flags.load(std::memory_order_relaxed) & (PG_LOCKED | PG_WRITEBACK | PG_DIRTY))
    state_->bad_frees.fetch_add(1, std::memory_order_relaxed);
  // Odd: free. Before the frame can be handed out: an end of writeback that reads a new
  // generation knows this free happened before its access (release pairs with demo_policy's
  // acquire).
  f->generation.fetch_add(1, std::memory_order_release);
  mapping_guard g(*this);
  f->next_free = state_->free_head;
  state_->free_head = static_cast<std::uint32_t>(f - frames_);
}

bool page_pool::write_page(const frame* f) {
  const off_t off = static_cast<off_t>(f->index * page_size);
  if (pwrite(fd_, f->data, page_size, off) != static_cast<ssize_t>(page_size)) {
    state_->io_errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

bool page_pool::read_page(frame* f) {
  const off_t off = static_cast<off_t>(f->index * page_size);
  if (pread(fd_, f->data, page_size, off) != static_cast<ssize_t>(page_size)) {
    state_->io_errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

}  // namespace pagewait::demo
