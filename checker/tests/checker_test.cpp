// checker/tests/checker_test.cpp — tests of the model checker itself: it must fail where the
// protocol is wrong (the 2020 bug, the Jan 2021 race, the broken walk) in every search mode,
// print a usable trace, and pass the shipped protocol. The full table of exhaustive verdicts
// runs as the ctest `checker_table` (`pagewait check`).
#include <gtest/gtest.h>

#include "scenarios.hpp"

namespace pc = pagewait::check;
using pagewait::release_protocol;

namespace {

pc::cell_result run(const char* scenario, release_protocol p, pc::mode m = pc::mode::exhaustive,
                    bool broken = false, std::uint64_t seed = 1) {
  const pc::scenario* s = pc::find_scenario(scenario);
  EXPECT_NE(s, nullptr) << scenario;
  pc::run_options o;
  o.how = m;
  o.seed = seed;
  o.runs = 50000;
  return pc::check_cell(*s, p, broken, o);
}

TEST(Checker, FindsThe2020BugWithATrace) {
  const pc::cell_result r = run("writeback-free", release_protocol::clear_then_wake);
  ASSERT_TRUE(r.failed);
  EXPECT_NE(r.violation.find("touch of a freed object"), std::string::npos) << r.violation;
  // The trace shows the clear, the free, then the releaser's attempted touch.
  const auto clear = r.trace.find("fetch_and");
  const auto free = r.trace.find("FREE the object");
  const auto touch = r.trace.find("ATTEMPTED on freed");
  ASSERT_NE(clear, std::string::npos) << r.trace;
  ASSERT_NE(free, std::string::npos) << r.trace;
  ASSERT_NE(touch, std::string::npos) << r.trace;
  EXPECT_LT(clear, free);
  EXPECT_LT(free, touch);
}

TEST(Checker, AtomicClearIsSafeWithoutAPinAtThreePreemptions) {
  const pc::scenario* s = pc::find_scenario("writeback-free");
  pc::run_options o;
  o.preemptions = 3;
  const pc::cell_result r = pc::check_cell(*s, release_protocol::atomic_clear, false, o);
  EXPECT_FALSE(r.failed) << r.trace;
  EXPECT_TRUE(r.complete);
}

TEST(Checker, PinnedProtocolsSurviveTheFree) {
  for (release_protocol p : {release_protocol::pinned, release_protocol::xor_waiters}) {
    const pc::cell_result r = run("writeback-free", p);
    EXPECT_FALSE(r.failed) << r.trace;
  }
}

// The self-test: a walk that clears in a later hold than the one that reached the end.
TEST(Checker, CatchesTheBrokenWalkInEveryMode) {
  for (pc::mode m : {pc::mode::exhaustive, pc::mode::random, pc::mode::pct}) {
    const pc::cell_result r = run("arrivals-during-walk", release_protocol::atomic_clear, m, true, 11);
    EXPECT_TRUE(r.failed) << int(m);
  }
  // The same scenario passes on the shipped walk.
  EXPECT_FALSE(run("arrivals-during-walk", release_protocol::atomic_clear).failed);
}

TEST(Checker, RandomAndPctFindThe2020BugAndThe2021Race) {
  for (pc::mode m : {pc::mode::random, pc::mode::pct}) {
    EXPECT_TRUE(run("writeback-free", release_protocol::clear_then_wake, m, false, 5).failed) << int(m);
    EXPECT_TRUE(run("writeback-restart", release_protocol::pinned, m, false, 5).failed) << int(m);
  }
}

TEST(Checker, LateWakeUpIsReportedAsWokenIntoASetBit) {
  const pc::cell_result r = run("writeback-restart", release_protocol::pinned);
  ASSERT_TRUE(r.failed);
  EXPECT_NE(r.violation.find("CONTRACT 3.3"), std::string::npos) << r.violation;
}

TEST(Checker, RandomAndPctPassTheShippedProtocol) {
  for (const pc::scenario& s : pc::scenarios())
    for (pc::mode m : {pc::mode::random, pc::mode::pct}) {
      pc::run_options o;
      o.how = m;
      o.seed = 42;
      o.runs = 5000;
      // A death row has its offsets cell only (a waiter dies only in a domain).
      std::size_t ac = 0;
      while (pagewait::all_release_protocols[ac] != release_protocol::atomic_clear) ++ac;
      o.offsets = !s.setup[ac];
      const pc::cell_result r = pc::check_cell(s, release_protocol::atomic_clear, false, o);
      EXPECT_FALSE(r.failed) << s.name << "\n" << r.trace;
    }
}

}  // namespace
