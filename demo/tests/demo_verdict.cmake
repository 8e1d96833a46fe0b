# cmake -DPAGEWAIT=<program> -P demo_verdict.cmake
# The end of `pagewait demo`: a verdict per protocol in plain words. Each protocol says what it
# is, whether its end of writeback touched freed pages, its RMWs per end of writeback, and its
# throughput against pinned with the spread over the turns. (What the figures must be is
# demo_test's business: here, that the text is there and says it plainly.)
execute_process(COMMAND "${PAGEWAIT}" demo --seconds 3 RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err TIMEOUT 120)
message("${out}${err}")
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "expected exit status 0, got '${rc}'")
endif()
set(expect
    "\nverdict, per protocol\n"
    "\nclear-then-wake +Linux v5\\.9's end_page_writeback: clears the bit, then looks for waiters, so it touches the page after the clear\n"
    "\npinned +the Nov 2020 fix: an extra page reference held around the clear and the wake-up\n  touched freed pages: +no, in [0-9]+ ends of writeback\n  cost: +3\\.[0-9][0-9] atomic RMWs on the page per end of writeback\n  writebacks/s: +the reference\n"
    "\nxor-waiters +today's mainline: one xor clears the bit and reports the waiters. still pinned\n  touched freed pages: +no, in [0-9]+ ends of writeback\n"
    "\natomic-clear +the seed \\(pagewait\\): the bit is cleared inside the wake-up, so no reference is taken\n  touched freed pages: +no, in [0-9]+ ends of writeback\n  cost: +1\\.[0-9][0-9] atomic RMWs on the page per end of writeback\n  writebacks/s: +[0-9.]+x pinned's \\(turns: [0-9.]+x to [0-9.]+x, higher in [0-6] of 6: (higher in every turn|lower in every turn|no consistent difference)\\)\n")
# The contention statistics, one row per protocol; atomic-clear's writeback waits are counted
# (the demo's writers and truncators wait for writeback on every run).
list(APPEND expect
     "\ncontention, per protocol \\(pagewait/stats.hpp[^\n]*\n"
     "\natomic-clear +[0-9]+ +[1-9][0-9]* +[0-9]+ +[0-9]+ +[1-9][0-9]* +[0-9]+ +[0-9.]+ (µs|ms) +[0-9]+\n")
foreach(e IN LISTS expect)
  if(NOT out MATCHES "${e}")
    message(FATAL_ERROR "the verdict lacks: ${e}")
  endif()
endforeach()
# The old ending read as "slower"; it is gone.
if(out MATCHES "the writebacks/s of pinned, with no reference taken")
  message(FATAL_ERROR "the old one-line ending is still printed")
endif()

# --json: the JSON only, unchanged.
execute_process(COMMAND "${PAGEWAIT}" demo --seconds 0.1 --protocol atomic-clear --json RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
if(NOT rc STREQUAL "0" OR out MATCHES "verdict")
  message(FATAL_ERROR "--json: exit ${rc}, or text beside the JSON:\n${out}")
endif()
string(JSON proto GET "${out}" runs 0 protocol)
string(JSON rmws GET "${out}" runs 0 rmws_per_end_of_writeback)
string(JSON slow GET "${out}" runs 0 contention slow_releases)
if(NOT slow MATCHES "^[0-9]+$")
  message(FATAL_ERROR "--json: runs[0].contention.slow_releases is '${slow}'")
endif()
if(NOT proto STREQUAL "atomic-clear")
  message(FATAL_ERROR "--json: runs[0].protocol is '${proto}'")
endif()
