// checker/fiber.cpp — see fiber.hpp.
#include "fiber.hpp"

#include <cstdint>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#define PAGEWAIT_CHECK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PAGEWAIT_CHECK_ASAN 1
#endif
#endif
#ifndef PAGEWAIT_CHECK_ASAN
#define PAGEWAIT_CHECK_ASAN 0
#endif

#if PAGEWAIT_CHECK_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__)
// switch_stack(save, to): saves the callee-saved registers on the current stack, stores the
// stack pointer in *save, and resumes the context whose stack pointer is `to` (System V ABI:
// rbx, rbp, r12-r15 are all a called function must preserve; the caller saved the rest).
extern "C" void pagewait_check_switch_stack(void** save, void* to);
asm(R"(
  .pushsection .text
  .globl pagewait_check_switch_stack
  .type pagewait_check_switch_stack,@function
pagewait_check_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pagewait_check_switch_stack,.-pagewait_check_switch_stack
  .popsection
)");
#endif

namespace pagewait::check {

namespace {
// The fiber being started: makecontext passes only ints, so the trampoline finds it here.
fiber* g_starting = nullptr;
}  // namespace

fiber::fiber(std::size_t stack_bytes) : stack_(new char[stack_bytes]), size_(stack_bytes) {}

void fiber::start(entry_fn fn, void* arg) {
  fn_ = fn;
  arg_ = arg;
#if PAGEWAIT_CHECK_ASAN
  ASAN_UNPOISON_MEMORY_REGION(stack_.get(), size_);
#endif
#if defined(__x86_64__)
  // A fresh stack as switch_stack leaves it: six saved registers, then the trampoline as the
  // return address, then a null return address for the trampoline itself (at entry, rsp must
  // be 8 modulo 16, as after a call).
  auto top = reinterpret_cast<std::uintptr_t>(stack_.get() + size_) & ~std::uintptr_t(15);
  auto* sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(&fiber::trampoline);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  sp_ = sp;
#else
  if (getcontext(&ctx_) != 0) std::abort();
  ctx_.uc_stack.ss_sp = stack_.get();
  ctx_.uc_stack.ss_size = size_;
  ctx_.uc_link = nullptr;  // the entry never returns: it suspends for good instead
  makecontext(&ctx_, &fiber::trampoline, 0);
#endif
  fake_stack_ = nullptr;
}

void fiber::trampoline() {
  fiber* self = g_starting;
#if PAGEWAIT_CHECK_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &self->sched_bottom_, &self->sched_size_);
#endif
  self->fn_(self->arg_);
  self->suspend(true);
  std::abort();  // never resumed
}

void fiber::resume() {
  g_starting = this;
#if PAGEWAIT_CHECK_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, stack_.get(), size_);
#endif
#if defined(__x86_64__)
  pagewait_check_switch_stack(&sched_sp_, sp_);
#else
  if (swapcontext(&sched_, &ctx_) != 0) std::abort();
#endif
#if PAGEWAIT_CHECK_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

void fiber::suspend(bool finished) {
#if PAGEWAIT_CHECK_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &fake_stack_, sched_bottom_, sched_size_);
#else
  (void)finished;
#endif
#if defined(__x86_64__)
  pagewait_check_switch_stack(&sp_, sched_sp_);
#else
  if (swapcontext(&ctx_, &sched_) != 0) std::abort();
#endif
#if PAGEWAIT_CHECK_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_, &sched_bottom_, &sched_size_);
#endif
}

}  // namespace pagewait::check
