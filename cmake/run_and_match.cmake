# cmake -P script: run a program and check its output.
#
#   cmake -DPROGRAM=<exe> [-DARGS=a;b] [-DEXPECT_FILE=<file>] [-DTIMEOUT=<s>] -P run_and_match.cmake
#
# Fails if the program exits non-zero (or crashes / times out). If
# EXPECT_FILE exists, every non-blank line in it is a CMake regex that must
# match at least one line of the program's combined stdout+stderr (so ^ and $
# anchor a line). Lines may match in any order.

if(NOT DEFINED PROGRAM OR "${PROGRAM}" STREQUAL "")
  message(FATAL_ERROR "run_and_match.cmake: -DPROGRAM=... is required")
endif()

set(timeout_args "")
if(DEFINED TIMEOUT AND NOT "${TIMEOUT}" STREQUAL "")
  set(timeout_args TIMEOUT ${TIMEOUT})
endif()
set(input_args "")
if(EXISTS /dev/null)
  set(input_args INPUT_FILE /dev/null)
endif()

execute_process(COMMAND "${PROGRAM}" ${ARGS}
                RESULT_VARIABLE result
                OUTPUT_VARIABLE output
                ERROR_VARIABLE output
                ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE
                ${timeout_args} ${input_args})

if(NOT result STREQUAL "0")
  message(FATAL_ERROR "FAIL: ${PROGRAM} exited with '${result}'")
endif()

if(NOT DEFINED EXPECT_FILE OR NOT EXISTS "${EXPECT_FILE}")
  return()
endif()

# Split text into a CMake list of lines without ';', '[', ']' or '\' confusing
# list handling: those characters are swapped for control characters here and
# swapped back per line with _restore().
string(ASCII 1 _semi)
string(ASCII 2 _lbr)
string(ASCII 3 _rbr)
string(ASCII 4 _bsl)
function(_split_lines text out)
  string(REPLACE "\\" "${_bsl}" text "${text}")
  string(REPLACE ";" "${_semi}" text "${text}")
  string(REPLACE "[" "${_lbr}" text "${text}")
  string(REPLACE "]" "${_rbr}" text "${text}")
  string(REPLACE "\r\n" "\n" text "${text}")
  string(REPLACE "\n" ";" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()
function(_restore text out)
  string(REPLACE "${_bsl}" "\\" text "${text}")
  string(REPLACE "${_semi}" ";" text "${text}")
  string(REPLACE "${_lbr}" "[" text "${text}")
  string(REPLACE "${_rbr}" "]" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

file(READ "${EXPECT_FILE}" expect_text)
_split_lines("${expect_text}" expect_lines)
_split_lines("${output}" output_lines)

set(missing "")
foreach(raw_regex IN LISTS expect_lines)
  _restore("${raw_regex}" regex)
  if(regex MATCHES "^[ \t]*$")
    continue()
  endif()
  set(found FALSE)
  foreach(raw_line IN LISTS output_lines)
    _restore("${raw_line}" line)
    if(line MATCHES "${regex}")
      set(found TRUE)
      break()
    endif()
  endforeach()
  if(NOT found)
    string(APPEND missing "\n  ${regex}")
  endif()
endforeach()

if(missing)
  message(FATAL_ERROR "FAIL: no output line of ${PROGRAM} matches these lines of ${EXPECT_FILE}:${missing}")
endif()
message(STATUS "PASS: output matches every line of ${EXPECT_FILE}")
