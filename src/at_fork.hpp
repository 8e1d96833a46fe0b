// src/at_fork.hpp — what each part of the library does around fork() (internal).
//
// The handlers are registered once, by wait_table.cpp (pthread_atfork), when the library is
// loaded. In `prepare` each part takes the locks it has that a thread may hold for a moment
// (so that the child never inherits one held by a thread it does not have); in `parent` it
// releases them; in `child` it releases them and drops everything that belonged to the
// parent's other threads. Nothing here runs on a fast path.
#pragma once

namespace pagewait::detail {

enum class fork_phase { prepare, parent, child };

void parker_pool_at_fork(fork_phase) noexcept;  // parker.cpp
void settings_at_fork(fork_phase) noexcept;     // pagewait.cpp
void checked_at_fork(fork_phase) noexcept;      // checked.cpp (checked builds; else nothing)
void async_at_fork(fork_phase) noexcept;        // async.cpp (waits started before the fork)

}  // namespace pagewait::detail
