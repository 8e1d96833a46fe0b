// checker/fiber.hpp — a logical thread of the model: a ucontext fiber with its own stack.
//
// On x86-64 a switch is six register pushes and a stack-pointer swap (switch_stack in
// fiber.cpp): swapcontext would also save and restore the signal mask, a system call per
// switch, which made it the bulk of the search's time. Elsewhere ucontext is used throughout.
//
// The checker is single-threaded. Every logical thread of a scenario runs on a fiber, and only
// the scheduler (the checker's own stack) decides which one runs next; a fiber runs until its
// next scheduling point and then switches back. Fibers are reused across executions: `start`
// rewinds one to the beginning of a new body, abandoning whatever it was doing (an execution
// that found a violation is simply dropped, with its fibers mid-call).
//
// AddressSanitizer is told about every switch (__sanitizer_start/finish_switch_fiber), and the
// stack's shadow is unpoisoned before reuse, since an abandoned fiber leaves redzones behind.
// ThreadSanitizer is not supported (the checker is excluded from TSan builds, see
// checker/CMakeLists.txt).
#pragma once

#include <ucontext.h>

#include <cstddef>
#include <memory>

namespace pagewait::check {

class fiber {
 public:
  using entry_fn = void (*)(void*);

  explicit fiber(std::size_t stack_bytes = 256 * 1024);
  fiber(const fiber&) = delete;
  fiber& operator=(const fiber&) = delete;

  // Prepares the fiber to run fn(arg) from the start on its next resume.
  void start(entry_fn fn, void* arg);
  // Scheduler side: runs the fiber until it switches back.
  void resume();
  // Fiber side: back to the scheduler. `finished`: the fiber will never be resumed again.
  void suspend(bool finished = false);

 private:
  static void trampoline();
  std::unique_ptr<char[]> stack_;
  std::size_t size_;
#if defined(__x86_64__)
  void* sp_ = nullptr;        // the fiber's saved stack pointer
  void* sched_sp_ = nullptr;  // the scheduler's
#else
  ucontext_t ctx_{};
  ucontext_t sched_{};
#endif
  entry_fn fn_ = nullptr;
  void* arg_ = nullptr;
  // ASan bookkeeping: the scheduler's stack, learnt on the first switch into the fiber. Read
  // only in ASan builds (clang's -Wunused-private-field otherwise).
  [[maybe_unused]] const void* sched_bottom_ = nullptr;
  [[maybe_unused]] std::size_t sched_size_ = 0;
  void* fake_stack_ = nullptr;
};

}  // namespace pagewait::check
