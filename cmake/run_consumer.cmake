# cmake -P script: build and run one consumer project of tests/consumers/.
#
#   cmake -DSETTINGS=<file> -P run_consumer.cmake
#
# SETTINGS (written by tests/CMakeLists.txt) sets: CONSUMER_SOURCE, CONSUMER_BINARY, GENERATOR,
# MAKE_PROGRAM, CXX_COMPILER, CONFIGURE_ARGS (a list of -D options), and optionally
# INSTALL_FROM + PREFIX (first `cmake --install INSTALL_FROM --prefix PREFIX`; the prefix goes
# on CMAKE_PREFIX_PATH) and PKG_CONFIG (then also compile main.cpp with the flags
# `pkg-config --cflags --libs troupe` gives for PREFIX, and run that program).
# Each step's output is shown; any failure fails the test.

include("${SETTINGS}")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message("---- ${what}\n${out}")
  if(NOT result STREQUAL "0")
    message(FATAL_ERROR "FAIL: ${what} (exit '${result}')")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${CONSUMER_BINARY}")
set(args ${CONFIGURE_ARGS})
if(DEFINED INSTALL_FROM)
  file(REMOVE_RECURSE "${PREFIX}")
  run_step("install troupe into ${PREFIX}" "${CMAKE_COMMAND}" --install "${INSTALL_FROM}" --prefix "${PREFIX}")
  list(APPEND args "-DCMAKE_PREFIX_PATH=${PREFIX}")
endif()
if(MAKE_PROGRAM)
  list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

run_step("configure the consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE}" -B "${CONSUMER_BINARY}"
         -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" ${args})
run_step("build the consumer" "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY}" --config Debug)
set(program "${CONSUMER_BINARY}/consumer")
if(NOT EXISTS "${program}" AND EXISTS "${CONSUMER_BINARY}/Debug/consumer") # multi-config generators
  set(program "${CONSUMER_BINARY}/Debug/consumer")
endif()
run_step("run the consumer" "${program}")
if(NOT step_output MATCHES "2 \\+ 3 = 5")
  message(FATAL_ERROR "FAIL: the consumer did not print its sum")
endif()

if(PKG_CONFIG)
  run_step("pkg-config troupe" "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${PREFIX}/share/pkgconfig"
           "${PKG_CONFIG}" --cflags --libs troupe)
  separate_arguments(pc_flags UNIX_COMMAND "${step_output}")
  run_step("compile the consumer with pkg-config's flags" "${CXX_COMPILER}" -std=c++20
           "${CONSUMER_SOURCE}/main.cpp" ${pc_flags} -o "${CONSUMER_BINARY}/pc_consumer")
  run_step("run the pkg-config consumer" "${CONSUMER_BINARY}/pc_consumer")
  if(NOT step_output MATCHES "2 \\+ 3 = 5")
    message(FATAL_ERROR "FAIL: the pkg-config consumer did not print its sum")
  endif()
endif()
message("PASS")
