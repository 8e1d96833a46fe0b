# cmake -DPAGEWAIT=<program> -DCASES=<file> -P expect_usage_errors.cmake
# Command-line rules of the `pagewait` program. Each line of CASES (blank lines and # comments
# aside) is
#   <arguments, separated by spaces> => <regular expression>
# and the program run with those arguments must exit with status 2 (a usage error: not 0, not a
# run that failed, not a crash or a hang) and print, on stderr, a message that matches the
# expression (which names the option and what it accepts). Every failing case is reported.
file(STRINGS "${CASES}" lines)
set(failed 0)
set(n 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^[ \t]*(#|$)")
    continue()
  endif()
  if(NOT line MATCHES "^(.*[^ ]) +=> +(.*)$")
    message(FATAL_ERROR "${CASES}: not '<arguments> => <regex>': ${line}")
  endif()
  set(args "${CMAKE_MATCH_1}")
  set(expect "${CMAKE_MATCH_2}")
  separate_arguments(argv UNIX_COMMAND "${args}")
  execute_process(COMMAND "${PAGEWAIT}" ${argv} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 20)
  math(EXPR n "${n} + 1")
  if(NOT rc STREQUAL "2")
    message("FAIL: pagewait ${args}: exit status '${rc}', expected 2\n  stdout: ${out}\n  stderr: ${err}")
    set(failed 1)
  elseif(NOT err MATCHES "${expect}")
    message("FAIL: pagewait ${args}: the message does not match '${expect}':\n  ${err}")
    set(failed 1)
  else()
    string(REGEX REPLACE "\n.*" "" first "${err}")
    message("ok: pagewait ${args}  ->  ${first}")
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "some of the ${n} command lines were not refused as they must be")
endif()
message("all ${n} command lines refused with exit status 2 and a message naming the option")
