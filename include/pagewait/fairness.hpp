// pagewait/fairness.hpp — the bounds on unfairness of lock hand-off (CONTRACT §3.6).
#pragma once

#include <chrono>

namespace pagewait {

// Bounded unfairness (CONTRACT §3.6). A lock waiter woken without a hand-off may lose the race for
// the bit to a thread that never queued. After `max_lost_races` such losses, or once it has
// waited `max_wait`, the next release hands the lock to it directly.
struct fairness_settings {
  unsigned max_lost_races = 5;  // the kernel's sysctl_page_lock_unfairness
  std::chrono::nanoseconds max_wait = std::chrono::milliseconds(1);
};

}  // namespace pagewait
