# cmake -DSTEP=build -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DCXX=... -DBUILD_TYPE=... -DNM=... -P run.cmake
# cmake -DSTEP=run -DWORK_DIR=... -DRUNS=program[:arg],... -DEXPECT=clean|race|unannotated
#       [-DBUILD_TARGETS=target,...] -P run.cmake
#
# A user's ThreadSanitizer build against the release library: pagewait built WITHOUT TSan (the
# unsanitized build at BUILD_DIR), installed, and programs built WITH -fsanitize=thread.
#   build  install BUILD_DIR into WORK_DIR/prefix and build tests/tsan_consumer (SOURCE_DIR)
#          against it, with find_package, into WORK_DIR/build (the fixture of the tests below)
#   run    build BUILD_TARGETS if given, then run each of RUNS (WORK_DIR/build/<program>, with
#          <arg> as its argument) and check each run:
#            clean        with TSAN_OPTIONS=halt_on_error=1: exit 0, and not one ThreadSanitizer
#                         report
#            race         with halt_on_error=0 (so that a false report after the true one is seen
#                         too): racy mutex|bit_lock|event: exactly one report, a data race on the
#                         variable the program names ("unprotected at <address>"); racy
#                         lock_order: exactly one, a lock-order inversion of two pagewait::mutex
#            unannotated  with halt_on_error=0: the clean programs built with the annotations off
#                         (PAGEWAIT_TSAN_ANNOTATIONS=0) must be reported, which shows that they
#                         exercise what the annotations are for
if(STEP STREQUAL "build")
  file(REMOVE_RECURSE "${WORK_DIR}")
  file(MAKE_DIRECTORY "${WORK_DIR}")
  set(prefix "${WORK_DIR}/prefix")
  execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}"
                  OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" "-DCMAKE_CXX_COMPILER=${CXX}"
                          "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}" "-DCMAKE_PREFIX_PATH=${prefix}"
                          -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
                  COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" -j 2 COMMAND_ERROR_IS_FATAL ANY)
  # The library must really be uninstrumented, or these tests prove nothing.
  file(GLOB_RECURSE lib "${prefix}/*/libpagewait.a" "${prefix}/*/libpagewait.so")
  execute_process(COMMAND "${NM}" -A ${lib} OUTPUT_VARIABLE syms COMMAND_ERROR_IS_FATAL ANY)
  if(syms MATCHES "__tsan_")
    message(FATAL_ERROR "the installed pagewait library is built with TSan: ${lib}")
  endif()
  return()
endif()

if(NOT STEP STREQUAL "run")
  message(FATAL_ERROR "STEP=${STEP}?")
endif()
if(EXPECT STREQUAL "clean")
  set(ENV{TSAN_OPTIONS} "halt_on_error=1 second_deadlock_stack=1")
elseif(EXPECT STREQUAL "race" OR EXPECT STREQUAL "unannotated")
  set(ENV{TSAN_OPTIONS} "halt_on_error=0 second_deadlock_stack=1")
else()
  message(FATAL_ERROR "EXPECT=${EXPECT}?")
endif()
if(BUILD_TARGETS)
  string(REPLACE "," ";" targets "${BUILD_TARGETS}")
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" -j 2 --target ${targets}
                  COMMAND_ERROR_IS_FATAL ANY)
endif()
string(REPLACE "," ";" runs "${RUNS}")
set(failures "")
foreach(run IN LISTS runs)
  string(REPLACE ":" ";" argv "${run}")
  list(GET argv 0 program)
  set(case "")
  if(run MATCHES ":(.*)$")
    set(case "${CMAKE_MATCH_1}")
  endif()
  execute_process(COMMAND "${WORK_DIR}/build/${program}" ${case} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  message("${out}")
  string(REGEX MATCHALL "WARNING: ThreadSanitizer: [a-z-]+" reports "${out}")
  list(LENGTH reports n)
  message(STATUS "${program} ${case}: exit ${rc}, ${n} ThreadSanitizer report(s)")
  set(why "")
  if(EXPECT STREQUAL "clean")
    if(NOT rc EQUAL 0 OR n GREATER 0)
      set(why "expected exit 0 and no ThreadSanitizer report")
    endif()
  elseif(EXPECT STREQUAL "unannotated")
    if(rc EQUAL 0 OR n EQUAL 0 OR NOT out MATCHES "WARNING: ThreadSanitizer: data race")
      set(why "expected data race reports without the annotations")
    endif()
  elseif(rc EQUAL 0 OR NOT n EQUAL 1)
    set(why "expected exactly one ThreadSanitizer report and a failing exit")
  elseif(case STREQUAL "lock_order")
    if(NOT out MATCHES "WARNING: ThreadSanitizer: lock-order-inversion" OR NOT out MATCHES "pagewait::mutex::lock")
      set(why "expected a lock-order inversion of pagewait::mutex")
    endif()
  elseif(NOT out MATCHES "unprotected at (0x[0-9a-fA-F]+)")
    set(why "the program did not name its racing variable")
  else()
    math(EXPR want "${CMAKE_MATCH_1}" OUTPUT_FORMAT HEXADECIMAL)
    if(NOT out MATCHES "WARNING: ThreadSanitizer: data race[^\n]*\n *[A-Za-z ]+ of size [0-9]+ at (0x[0-9a-fA-F]+)")
      set(why "expected a data race report")
    else()
      math(EXPR got "${CMAKE_MATCH_1}" OUTPUT_FORMAT HEXADECIMAL)
      if(NOT got STREQUAL want)
        set(why "the race reported is at ${got}, not on `unprotected` (${want})")
      endif()
    endif()
  endif()
  if(why)
    list(APPEND failures "${program} ${case}: ${why}")
  endif()
endforeach()
if(failures)
  string(REPLACE ";" "\n" failures "${failures}")
  message(FATAL_ERROR "${failures}")
endif()
