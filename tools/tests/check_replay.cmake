# cmake -DPAGEWAIT=<program> -P check_replay.cmake
# `pagewait check --mode random|pct` prints its seed, and for each failing cell the command line
# that replays it; run alone, that command finds the same violation after the same number of
# schedules.

# One cell, random: the seed in the verdict line, the replay line, exit status 1.
set(cell --protocol clear-then-wake --scenario writeback-free --mode random --seed 7 --runs 500)
execute_process(COMMAND "${PAGEWAIT}" check ${cell} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 60)
message("${out}${err}")
if(NOT rc STREQUAL "1")
  message(FATAL_ERROR "one random cell: expected exit status 1 (violation), got '${rc}'")
endif()
if(NOT out MATCHES "writeback-free / clear-then-wake \\(random, seed 7, 500 runs\\): VIOLATION, ([0-9]+) schedules")
  message(FATAL_ERROR "one random cell: the verdict line does not give the seed")
endif()
set(cell_schedules "${CMAKE_MATCH_1}")
string(REPLACE ";" " " cell_text "${cell}")
if(NOT out MATCHES "\nreplay: \\./scripts/pagewait check ${cell_text}\n")
  message(FATAL_ERROR "one random cell: no replay line, or not the command line that was run")
endif()

# The table, pct: the seed in the heading, a replay line under the failing cell, and the replay
# finds the violation after as many schedules as the cell of the table did.
execute_process(COMMAND "${PAGEWAIT}" check --protocol clear-then-wake --mode pct --seed 3 --runs 300
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
message("${out}${err}")
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "pct table: expected exit status 0, got '${rc}'")
endif()
if(NOT out MATCHES "\nsampled: pct, seed 3, depth 3, 300 runs per cell")
  message(FATAL_ERROR "pct table: the heading does not give the seed")
endif()
if(NOT out MATCHES "\nwriteback-free +[0-9]+ \\| FAIL +([0-9]+) ")
  message(FATAL_ERROR "pct table: clear-then-wake did not fail writeback-free in 300 pct runs")
endif()
set(table_schedules "${CMAKE_MATCH_1}")
if(NOT out MATCHES "\n  replay: \\./scripts/pagewait check ([^\n]*--scenario writeback-free[^\n]*)\n")
  message(FATAL_ERROR "pct table: no replay line under the failing cell")
endif()
separate_arguments(replay UNIX_COMMAND "${CMAKE_MATCH_1}")
execute_process(COMMAND "${PAGEWAIT}" check ${replay} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 60)
message("${out}${err}")
if(NOT rc STREQUAL "1" OR NOT out MATCHES "VIOLATION, ${table_schedules} schedules")
  message(FATAL_ERROR "the replay did not find the violation after ${table_schedules} schedules (exit ${rc})")
endif()
