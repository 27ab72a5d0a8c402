# cmake -P script: assert that a C++ file does NOT compile, with a diagnostic
# matching a regex.
#
#   cmake -DCOMPILER=<c++> -DSOURCE=<file.cpp> -DREGEX_FILE=<file with the regex>
#         [-DREGEX=<regex>] [-DINCLUDE_DIRS=a;b] [-DDEFINES=X;Y=1] [-DEXTRA_FLAGS=...]
#         -P compile_fail.cmake
#
# Runs: COMPILER -std=c++20 -fsyntax-only -I<dir>... -D<def>... SOURCE
# Passes only if the compiler exits non-zero AND its output (stdout+stderr)
# matches the regex (CMake regex syntax, searched anywhere in the output).

foreach(var COMPILER SOURCE)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "compile_fail.cmake: -D${var}=... is required")
  endif()
endforeach()

if(DEFINED REGEX_FILE)
  file(READ "${REGEX_FILE}" REGEX)
  string(REGEX REPLACE "[\r\n]+$" "" REGEX "${REGEX}")
endif()
if("${REGEX}" STREQUAL "")
  message(FATAL_ERROR "compile_fail.cmake: no expected-diagnostic regex for ${SOURCE}")
endif()

set(command "${COMPILER}" -std=c++20 -fsyntax-only -fdiagnostics-color=never)
foreach(dir IN LISTS INCLUDE_DIRS)
  list(APPEND command "-I${dir}")
endforeach()
foreach(def IN LISTS DEFINES)
  list(APPEND command "-D${def}")
endforeach()
list(APPEND command ${EXTRA_FLAGS} "${SOURCE}")

list(JOIN command " " command_line)
message(STATUS "compile_fail: ${command_line}")
message(STATUS "compile_fail: expecting failure matching: ${REGEX}")

execute_process(COMMAND ${command}
                RESULT_VARIABLE result
                OUTPUT_VARIABLE output
                ERROR_VARIABLE output)

if(result STREQUAL "0")
  message(FATAL_ERROR "FAIL: ${SOURCE} compiled successfully, but it must not compile.\n${output}")
endif()
if(NOT result MATCHES "^[0-9]+$")
  message(FATAL_ERROR "FAIL: could not run the compiler (${result}).\n${output}")
endif()
if(NOT output MATCHES "${REGEX}")
  message(FATAL_ERROR "FAIL: ${SOURCE} failed to compile (exit ${result}), but no diagnostic "
                      "matches the expected regex\n  ${REGEX}\ncompiler output:\n${output}")
endif()
message(STATUS "PASS: ${SOURCE} fails to compile as expected (matched '${CMAKE_MATCH_0}')")
