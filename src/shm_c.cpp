// src/shm_c.cpp — pagewait/shm.h: the wait domain's C interface over pagewait/shm.hpp. Each
// function calls the C++ member and turns what it would throw into a status code; nothing of the
// protocol is here.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <type_traits>

#include "pagewait/shm.h"
#include "pagewait/shm.hpp"

// The C caller's word is a plain uint32_t/uint64_t that it accesses atomically; the library
// accesses the same bytes as std::atomic. That is sound only if the two have one representation.
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
              alignof(std::atomic<std::uint32_t>) == alignof(std::uint32_t) &&
              std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint64_t>) == sizeof(std::uint64_t) &&
              alignof(std::atomic<std::uint64_t>) == alignof(std::uint64_t) &&
              std::atomic<std::uint64_t>::is_always_lock_free);

struct pw_domain {
  pagewait::shm::domain d;
};

namespace {

using pagewait::shm::errc;

int status_of(errc c) noexcept { return -static_cast<int>(c); }
// Every errc, one by one: a value moved in either enum must not pass unnoticed.
static_assert(-static_cast<int>(errc::bad_magic) == PW_EBADMAGIC);
static_assert(-static_cast<int>(errc::layout_version) == PW_ELAYOUT);
static_assert(-static_cast<int>(errc::abi_mismatch) == PW_EABI);
static_assert(-static_cast<int>(errc::not_ready) == PW_ENOTREADY);
static_assert(-static_cast<int>(errc::too_small) == PW_ETOOSMALL);
static_assert(-static_cast<int>(errc::misaligned) == PW_EMISALIGNED);
static_assert(-static_cast<int>(errc::bad_options) == PW_EBADOPTIONS);
static_assert(-static_cast<int>(errc::word_outside) == PW_EOUTSIDE);
static_assert(-static_cast<int>(errc::slots_exhausted) == PW_ENOSLOTS);
static_assert(-static_cast<int>(errc::unsupported) == PW_EUNSUPPORTED);
static_assert(-static_cast<int>(errc::overlaps) == PW_EOVERLAPS);
static_assert(-static_cast<int>(errc::too_many) == PW_ETOOMANY);
static_assert(-static_cast<int>(errc::pid_namespace) == PW_EPIDNS);

// Runs f and maps what it throws. usage_error (a release of a bit that is not set) is a
// logic_error, and invalid_argument (a bad bit) is one too: the more specific first.
template <class F>
int guarded(F&& f) noexcept {
  try {
    return f();
  } catch (const pagewait::shm::domain_error& e) {
    return status_of(e.code());
  } catch (const pagewait::usage_error&) {
    return PW_ENOTSET;
  } catch (const std::invalid_argument&) {
    return PW_EINVAL;
  } catch (const std::bad_alloc&) {
    return PW_ENOMEM;
  } catch (...) {
    return PW_EFAIL;  // e.g. std::system_error from a mutex of the process's registry
  }
}

pagewait::shm::options options_from(const pw_domain_options* o) {
  pagewait::shm::options out;
  if (o) {
    out.buckets = o->buckets;
    out.slots = o->slots;
    out.release_reserve = o->release_reserve;
  }
  return out;
}

template <class W>
std::atomic<W>* as_atomic(W* word) noexcept {
  return reinterpret_cast<std::atomic<W>*>(word);
}

// What the C++ interface cannot be asked without undefined behaviour: a null handle or word
// (EINVAL), and a misaligned word (EOUTSIDE, as the C++ check would say of one inside the user
// area; naming it as a std::atomic reference would itself be undefined). 0 if neither.
template <class W>
int unusable(const pw_domain* d, const W* word) noexcept {
  if (!d || !word) return PW_EINVAL;
  if (reinterpret_cast<std::uintptr_t>(word) % alignof(std::atomic<W>) != 0) return PW_EOUTSIDE;
  return 0;
}

std::chrono::nanoseconds ns(std::int64_t t) noexcept { return std::chrono::nanoseconds(t); }

// One operation on a C caller's word: the checks above, then `op(domain, word)`, which returns
// the status of a call that did not throw; what it throws becomes a status (guarded).
template <class W, class Op>
int on_word(pw_domain* d, W* word, Op op) noexcept {
  if (const int rc = unusable(d, word)) return rc;
  return guarded([&] { return op(d->d, *as_atomic(word)); });
}

// The operations, once for both word widths.
constexpr auto try_lock = [](auto bit) {
  return [bit](auto& dom, auto& w) { return dom.try_lock_bit(w, bit) ? PW_OK : PW_BUSY; };
};
constexpr auto lock = [](auto bit) {
  return [bit](auto& dom, auto& w) {
    dom.lock_bit(w, bit);
    return PW_OK;
  };
};
constexpr auto lock_timed = [](auto bit, std::int64_t t) {
  return [bit, t](auto& dom, auto& w) { return dom.try_lock_bit_for(w, bit, ns(t)) ? PW_OK : PW_TIMEDOUT; };
};
constexpr auto unlock = [](auto bit) {
  return [bit](auto& dom, auto& w) {
    dom.unlock_bit(w, bit);
    return PW_OK;
  };
};
constexpr auto clear_and_wake = [](auto bit) {
  return [bit](auto& dom, auto& w) {
    dom.clear_bit_and_wake(w, bit);
    return PW_OK;
  };
};
constexpr auto wait_clear = [](auto bit) {
  return [bit](auto& dom, auto& w) {
    dom.wait_bit_clear(w, bit);
    return PW_OK;
  };
};
constexpr auto wait_clear_timed = [](auto bit, std::int64_t t) {
  return [bit, t](auto& dom, auto& w) { return dom.wait_bit_clear_for(w, bit, ns(t)) ? PW_OK : PW_TIMEDOUT; };
};

}  // namespace

extern "C" {

void pw_domain_options_init(pw_domain_options* o) {
  if (!o) return;
  const pagewait::shm::options d;
  o->buckets = d.buckets;
  o->slots = d.slots;
  o->release_reserve = d.release_reserve;
}

int pw_domain_bytes_needed(size_t user_bytes, const pw_domain_options* o, size_t* bytes) {
  if (!bytes) return PW_EINVAL;
  return guarded([&] {
    *bytes = pagewait::shm::domain::bytes_needed(user_bytes, options_from(o));
    return PW_OK;
  });
}

int pw_domain_create(void* base, size_t size, const pw_domain_options* o, pw_domain** out) {
  if (!out) return PW_EINVAL;
  *out = nullptr;
  return guarded([&] {
    // The handle first: if it cannot be had, the memory is not formatted.
    auto* h = static_cast<pw_domain*>(::operator new(sizeof(pw_domain)));
    try {
      new (h) pw_domain{pagewait::shm::domain::create(base, size, options_from(o))};
    } catch (...) {
      ::operator delete(h);
      throw;
    }
    *out = h;
    return PW_OK;
  });
}

int pw_domain_attach(void* base, size_t size, pw_domain** out) {
  if (!out) return PW_EINVAL;
  *out = nullptr;
  return guarded([&] {
    auto* h = static_cast<pw_domain*>(::operator new(sizeof(pw_domain)));
    try {
      new (h) pw_domain{pagewait::shm::domain::attach(base, size)};
    } catch (...) {
      ::operator delete(h);
      throw;
    }
    *out = h;
    return PW_OK;
  });
}

void pw_domain_detach(pw_domain* d) { delete d; }

void* pw_domain_user_area(const pw_domain* d) { return d ? d->d.user_area() : nullptr; }
size_t pw_domain_user_size(const pw_domain* d) { return d ? d->d.user_size() : 0; }

const char* pw_strerror(int status) {
  switch (status) {
    case PW_OK:
      return "success";
    case PW_BUSY:
      return "the bit was set";
    case PW_TIMEDOUT:
      return "the deadline passed first";
    case PW_EBADMAGIC:
      return "the memory was never formatted as a pagewait domain";
    case PW_ELAYOUT:
      return "the domain was formatted by a pagewait with another layout version";
    case PW_EABI:
      return "the domain was formatted by a build with other structure sizes";
    case PW_ENOTREADY:
      return "the domain is still being formatted";
    case PW_ETOOSMALL:
      return "the memory is too small for the domain";
    case PW_EMISALIGNED:
      return "the memory is not 64-byte aligned";
    case PW_EBADOPTIONS:
      return "buckets, slots or release reserve out of range";
    case PW_EOUTSIDE:
      return "the word is not in the domain's user area";
    case PW_ENOSLOTS:
      return "every slot of the domain is taken";
    case PW_EUNSUPPORTED:
      return "this build has no shared futexes";
    case PW_EOVERLAPS:
      return "the memory overlaps a domain this process has attached";
    case PW_ETOOMANY:
      return "this process has too many domains attached";
    case PW_EPIDNS:
      return "the domain was created in another PID namespace";
    case PW_EINVAL:
      return "invalid argument: a null pointer, or not exactly one bit, or the waiters bit";
    case PW_ENOTSET:
      return "the bit to release is not set";
    case PW_ENOMEM:
      return "out of memory";
    case PW_EFAIL:
      return "an unexpected failure of the system";
    default:
      return "unknown pagewait status";
  }
}

int pw_domain_recover(pw_domain* d, pw_recovery_report* out) {
  if (!d) return PW_EINVAL;
  return guarded([&] {
    const pagewait::shm::recovery_report r = d->d.recover();
    if (out) {
      out->dead_slots = r.dead_slots;
      out->waits_finished = r.waits_finished;
      out->locks_passed_on = r.locks_passed_on;
      out->waits_pending = r.waits_pending;
      out->releases_finished = r.releases_finished;
      out->releases_pending = r.releases_pending;
      out->buckets_taken_over = r.buckets_taken_over;
    }
    return PW_OK;
  });
}

int pw_domain_slots_held_by(const pw_domain* d, int pid, size_t* out) {
  if (!d || !out) return PW_EINVAL;
  return guarded([&] {
    *out = d->d.slots_held_by(pid);
    return PW_OK;
  });
}

int pw_try_lock_bit32(pw_domain* d, uint32_t* w, uint32_t bit) { return on_word(d, w, try_lock(bit)); }
int pw_lock_bit32(pw_domain* d, uint32_t* w, uint32_t bit) { return on_word(d, w, lock(bit)); }
int pw_lock_bit32_timed(pw_domain* d, uint32_t* w, uint32_t bit, int64_t t) {
  return on_word(d, w, lock_timed(bit, t));
}
int pw_unlock_bit32(pw_domain* d, uint32_t* w, uint32_t bit) { return on_word(d, w, unlock(bit)); }
int pw_clear_bit_and_wake32(pw_domain* d, uint32_t* w, uint32_t bit) {
  return on_word(d, w, clear_and_wake(bit));
}
int pw_wait_bit_clear32(pw_domain* d, uint32_t* w, uint32_t bit) { return on_word(d, w, wait_clear(bit)); }
int pw_wait_bit_clear32_timed(pw_domain* d, uint32_t* w, uint32_t bit, int64_t t) {
  return on_word(d, w, wait_clear_timed(bit, t));
}

int pw_try_lock_bit64(pw_domain* d, uint64_t* w, uint64_t bit) { return on_word(d, w, try_lock(bit)); }
int pw_lock_bit64(pw_domain* d, uint64_t* w, uint64_t bit) { return on_word(d, w, lock(bit)); }
int pw_lock_bit64_timed(pw_domain* d, uint64_t* w, uint64_t bit, int64_t t) {
  return on_word(d, w, lock_timed(bit, t));
}
int pw_unlock_bit64(pw_domain* d, uint64_t* w, uint64_t bit) { return on_word(d, w, unlock(bit)); }
int pw_clear_bit_and_wake64(pw_domain* d, uint64_t* w, uint64_t bit) {
  return on_word(d, w, clear_and_wake(bit));
}
int pw_wait_bit_clear64(pw_domain* d, uint64_t* w, uint64_t bit) { return on_word(d, w, wait_clear(bit)); }
int pw_wait_bit_clear64_timed(pw_domain* d, uint64_t* w, uint64_t bit, int64_t t) {
  return on_word(d, w, wait_clear_timed(bit, t));
}

}  // extern "C"
