# cmake -DMODE=... -DBUILD_DIR=... -DPAGEWAIT_SOURCE=... -DSOURCE_DIR=... -DWORK_DIR=... -DCXX=...
#       -DCXX_FLAGS=... -DBUILD_TYPE=... -P run.cmake
# Builds tests/consumer (SOURCE_DIR) the way MODE says, and runs it:
#   package      install the already built pagewait from BUILD_DIR into a fresh prefix, then
#                find_package it from there only
#   shared       configure, build and install pagewait as a shared library (BUILD_SHARED_LIBS),
#                find_package it, and check the program loads the versioned SONAME
#   subproject, fetchcontent   the consumer builds pagewait from PAGEWAIT_SOURCE itself
#   pkgconfig    install as for package, then compile main.cpp with the flags
#                `pkg-config --cflags --libs pagewait` gives, no CMake in the consumer
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(common "-DCMAKE_CXX_COMPILER=${CXX}" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_C_FLAGS=${CXX_FLAGS}"
           "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
           "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF" "-DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF")

if(MODE STREQUAL "package" OR MODE STREQUAL "pkgconfig")
  execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}"
                  OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
elseif(MODE STREQUAL "shared")
  execute_process(COMMAND "${CMAKE_COMMAND}" -S "${PAGEWAIT_SOURCE}" -B "${WORK_DIR}/lib" ${common}
                          -DBUILD_SHARED_LIBS=ON -DPAGEWAIT_BUILD_TESTS=OFF -DPAGEWAIT_BUILD_TOOLS=OFF
                  OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK_DIR}/lib" -j 2 OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND "${CMAKE_COMMAND}" --install "${WORK_DIR}/lib" --prefix "${prefix}"
                  OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
endif()

if(MODE STREQUAL "pkgconfig")
  find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
  file(GLOB_RECURSE pc "${prefix}/*/pagewait.pc")
  if(NOT pc)
    message(FATAL_ERROR "no pagewait.pc installed under ${prefix}")
  endif()
  get_filename_component(pcdir "${pc}" DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} "${pcdir}")
  execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs pagewait OUTPUT_VARIABLE flags
                  OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND "${PKG_CONFIG}" --modversion pagewait OUTPUT_VARIABLE version
                  OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  message(STATUS "pkg-config: pagewait ${version}: ${flags}")
  separate_arguments(flags UNIX_COMMAND "${flags}")
  separate_arguments(cxx_flags UNIX_COMMAND "${CXX_FLAGS}")
  execute_process(COMMAND "${CXX}" -std=c++20 ${cxx_flags} "${SOURCE_DIR}/main.cpp" ${flags} -o "${WORK_DIR}/consumer"
                  COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND "${WORK_DIR}/consumer" COMMAND_ERROR_IS_FATAL ANY)
  # The C program: compiled as C, linked by the C++ driver (the library is C++).
  execute_process(COMMAND "${CXX}" -x c -std=c11 ${cxx_flags} "${SOURCE_DIR}/main_c.c" -x none ${flags}
                          -o "${WORK_DIR}/consumer_c" COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND "${WORK_DIR}/consumer_c" COMMAND_ERROR_IS_FATAL ANY)
  return()
endif()

set(how "-DPAGEWAIT_CONSUME=package" "-DCMAKE_PREFIX_PATH=${prefix}")
if(MODE STREQUAL "subproject" OR MODE STREQUAL "fetchcontent")
  set(how "-DPAGEWAIT_CONSUME=${MODE}" "-DPAGEWAIT_SOURCE=${PAGEWAIT_SOURCE}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" ${common} ${how}
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" -j 2 COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${WORK_DIR}/build/consumer" COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND "${WORK_DIR}/build/consumer_c" COMMAND_ERROR_IS_FATAL ANY)

if(MODE STREQUAL "shared")
  # The program must load the shared library by its versioned SONAME, not a static copy.
  execute_process(COMMAND ldd "${WORK_DIR}/build/consumer" OUTPUT_VARIABLE deps COMMAND_ERROR_IS_FATAL ANY)
  if(NOT deps MATCHES "libpagewait\\.so\\.[0-9]+\\.[0-9]+ ")
    message(FATAL_ERROR "consumer does not load libpagewait.so.<major>.<minor>:\n${deps}")
  endif()
endif()
