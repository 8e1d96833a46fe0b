# cmake -DPAGEWAIT=<program> -P expect_violation.cmake
# One cell that must break: `pagewait check` must exit with exactly 1 (a violation, not a crash
# or a usage error) and print the step-by-step trace ending in the invariant that broke.
execute_process(COMMAND "${PAGEWAIT}" check --protocol clear-then-wake --scenario writeback-free
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc STREQUAL "1")
  message(FATAL_ERROR "expected exit status 1 (violation), got '${rc}'")
endif()
if(NOT out MATCHES "ATTEMPTED on freed memory" OR NOT out MATCHES "CONTRACT 3\\.1")
  message(FATAL_ERROR "the trace does not show the touch after free and the invariant it broke")
endif()
