# troupe's third-party dependencies.
#
# Each one is looked up on the system first (Debian: libasio-dev,
# libconcurrentqueue-dev, catch2) and fetched with FetchContent at a pinned
# tag otherwise (or always, with -DTROUPE_USE_SYSTEM_DEPS=OFF). Offline, a
# local checkout can be used with -DFETCHCONTENT_SOURCE_DIR_<NAME>=<dir>
# (NAME = ASIO, CONCURRENTQUEUE, CATCH2).
#
# Targets created / guaranteed:
#   Threads::Threads
#   troupe_asio             standalone Asio;          #include <asio.hpp>
#   troupe_concurrentqueue  moodycamel::ConcurrentQueue;
#                           #include <concurrentqueue/concurrentqueue.h>  (canonical)
#                           #include <concurrentqueue.h>                  (also works)
#   Catch2::Catch2          Catch2 v2 (only after troupe_find_catch2());
#                           #include <catch2/catch.hpp>
#
# Variables for the install rules (CMakeLists.txt): TROUPE_ASIO_DIR and
# TROUPE_CONCURRENTQUEUE_DIR (directories holding asio.hpp / concurrentqueue.h)
# and TROUPE_ASIO_BUNDLE / TROUPE_CONCURRENTQUEUE_BUNDLE, true when the headers
# did not come from a plain system include directory (fetched, or an upstream
# CMake package with another layout) and so are installed with troupe.
#
# Variables set for tools that compile outside CMake targets (compile-fail
# tests): TROUPE_DEPENDENCY_INCLUDE_DIRS -- the include directories of
# troupe_asio and troupe_concurrentqueue that are *not* compiler-implicit
# (never contains /usr/include: passing -I/usr/include breaks libstdc++'s
# #include_next).

include_guard(GLOBAL)
include(FetchContent)

find_package(Threads REQUIRED)

set(TROUPE_ASIO_GIT_TAG asio-1-22-1)
set(TROUPE_ASIO_MIN_VERSION 102200) # 1.22.0, ASIO_VERSION encoding
set(TROUPE_CONCURRENTQUEUE_GIT_TAG v1.0.3)
set(TROUPE_CATCH2_GIT_TAG v2.13.10)

set(TROUPE_DEPENDENCY_INCLUDE_DIRS "")

# Add DIR to TROUPE_DEPENDENCY_INCLUDE_DIRS unless the compiler searches it anyway.
function(_troupe_note_include_dir dir)
  get_filename_component(real "${dir}" REALPATH)
  foreach(implicit IN LISTS CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
    get_filename_component(implicit_real "${implicit}" REALPATH)
    if(real STREQUAL implicit_real)
      return()
    endif()
  endforeach()
  set(dirs ${TROUPE_DEPENDENCY_INCLUDE_DIRS} "${dir}")
  list(REMOVE_DUPLICATES dirs)
  set(TROUPE_DEPENDENCY_INCLUDE_DIRS "${dirs}" PARENT_SCOPE)
endfunction()

# ---------------------------------------------------------------------------
# Standalone Asio
# ---------------------------------------------------------------------------
if(NOT TARGET troupe_asio)
  set(_troupe_asio_dir "")
  if(TROUPE_USE_SYSTEM_DEPS)
    # Debian's libasio-dev ships /usr/include/asio.hpp and no CMake config.
    find_path(TROUPE_ASIO_INCLUDE_DIR NAMES asio.hpp DOC "Directory containing standalone asio.hpp")
    if(TROUPE_ASIO_INCLUDE_DIR AND EXISTS "${TROUPE_ASIO_INCLUDE_DIR}/asio/version.hpp")
      file(STRINGS "${TROUPE_ASIO_INCLUDE_DIR}/asio/version.hpp" _troupe_asio_version_line
           REGEX "^#define ASIO_VERSION [0-9]+")
      string(REGEX MATCH "[0-9]+" _troupe_asio_version "${_troupe_asio_version_line}")
      if(_troupe_asio_version AND _troupe_asio_version GREATER_EQUAL TROUPE_ASIO_MIN_VERSION)
        set(_troupe_asio_dir "${TROUPE_ASIO_INCLUDE_DIR}")
        message(STATUS "troupe: using system Asio ${_troupe_asio_version} from ${_troupe_asio_dir}")
      else()
        message(STATUS "troupe: system Asio in ${TROUPE_ASIO_INCLUDE_DIR} is too old "
                       "(${_troupe_asio_version} < ${TROUPE_ASIO_MIN_VERSION}), fetching")
      endif()
    endif()
  endif()
  if(NOT _troupe_asio_dir)
    message(STATUS "troupe: fetching Asio ${TROUPE_ASIO_GIT_TAG}")
    FetchContent_Declare(asio
      GIT_REPOSITORY https://github.com/chriskohlhoff/asio.git
      GIT_TAG ${TROUPE_ASIO_GIT_TAG}
      GIT_SHALLOW TRUE
      SOURCE_SUBDIR do-not-add-subdirectory) # populate only; asio has no CMakeLists
    FetchContent_MakeAvailable(asio)
    set(_troupe_asio_dir "${asio_SOURCE_DIR}/asio/include")
    if(NOT EXISTS "${_troupe_asio_dir}/asio.hpp")
      message(FATAL_ERROR "troupe: fetched Asio has no ${_troupe_asio_dir}/asio.hpp")
    endif()
  endif()

  set(TROUPE_ASIO_DIR "${_troupe_asio_dir}")
  if(_troupe_asio_dir STREQUAL TROUPE_ASIO_INCLUDE_DIR)
    set(TROUPE_ASIO_BUNDLE FALSE)
  else()
    set(TROUPE_ASIO_BUNDLE TRUE)
  endif()

  add_library(troupe_asio INTERFACE)
  target_include_directories(troupe_asio SYSTEM INTERFACE $<BUILD_INTERFACE:${_troupe_asio_dir}>)
  target_compile_definitions(troupe_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
  target_link_libraries(troupe_asio INTERFACE Threads::Threads)
  _troupe_note_include_dir("${_troupe_asio_dir}")
endif()

# ---------------------------------------------------------------------------
# moodycamel concurrentqueue
#
# Where concurrentqueue.h lives depends on the source:
#   Debian libconcurrentqueue-dev  /usr/include/concurrentqueue/concurrentqueue.h (no CMake config)
#   upstream `make install`        <prefix>/include/concurrentqueue/moodycamel/concurrentqueue.h
#                                  (+ concurrentqueueConfig.cmake, concurrentqueue::concurrentqueue)
#   FetchContent (upstream repo)   <src>/concurrentqueue.h
# so we normalise: the directory H holding concurrentqueue.h is always on the
# include path (-> <concurrentqueue.h>), and a directory in which
# "concurrentqueue/" resolves to H is too (-> <concurrentqueue/concurrentqueue.h>):
# H's parent when H is named "concurrentqueue", a symlink in the build tree otherwise.
# ---------------------------------------------------------------------------
if(NOT TARGET troupe_concurrentqueue)
  set(_troupe_cq_dir "")
  set(_troupe_cq_link_target "")
  if(TROUPE_USE_SYSTEM_DEPS)
    find_package(concurrentqueue CONFIG QUIET)
    if(TARGET concurrentqueue::concurrentqueue)
      get_target_property(_troupe_cq_dirs concurrentqueue::concurrentqueue INTERFACE_INCLUDE_DIRECTORIES)
      foreach(_d IN LISTS _troupe_cq_dirs)
        foreach(_sub "" "/moodycamel" "/concurrentqueue" "/concurrentqueue/moodycamel")
          if(NOT _troupe_cq_dir AND EXISTS "${_d}${_sub}/concurrentqueue.h")
            set(_troupe_cq_dir "${_d}${_sub}")
          endif()
        endforeach()
      endforeach()
      if(_troupe_cq_dir)
        set(_troupe_cq_link_target concurrentqueue::concurrentqueue)
        message(STATUS "troupe: using concurrentqueue CMake package (${concurrentqueue_DIR}), headers in ${_troupe_cq_dir}")
      endif()
    endif()
    if(NOT _troupe_cq_dir)
      find_path(TROUPE_CONCURRENTQUEUE_INCLUDE_DIR NAMES concurrentqueue.h
                PATH_SUFFIXES concurrentqueue concurrentqueue/moodycamel moodycamel
                DOC "Directory containing moodycamel's concurrentqueue.h")
      if(TROUPE_CONCURRENTQUEUE_INCLUDE_DIR)
        set(_troupe_cq_dir "${TROUPE_CONCURRENTQUEUE_INCLUDE_DIR}")
        message(STATUS "troupe: using system concurrentqueue from ${_troupe_cq_dir}")
      endif()
    endif()
  endif()
  if(NOT _troupe_cq_dir)
    message(STATUS "troupe: fetching concurrentqueue ${TROUPE_CONCURRENTQUEUE_GIT_TAG}")
    FetchContent_Declare(concurrentqueue
      GIT_REPOSITORY https://github.com/cameron314/concurrentqueue.git
      GIT_TAG ${TROUPE_CONCURRENTQUEUE_GIT_TAG}
      GIT_SHALLOW TRUE
      SOURCE_SUBDIR do-not-add-subdirectory) # populate only; we make our own target
    FetchContent_MakeAvailable(concurrentqueue)
    set(_troupe_cq_dir "${concurrentqueue_SOURCE_DIR}")
    if(NOT EXISTS "${_troupe_cq_dir}/concurrentqueue.h")
      message(FATAL_ERROR "troupe: fetched concurrentqueue has no ${_troupe_cq_dir}/concurrentqueue.h")
    endif()
  endif()

  get_filename_component(_troupe_cq_name "${_troupe_cq_dir}" NAME)
  if(_troupe_cq_name STREQUAL "concurrentqueue")
    get_filename_component(_troupe_cq_prefix_dir "${_troupe_cq_dir}" DIRECTORY)
  else()
    set(_troupe_cq_prefix_dir "${PROJECT_BINARY_DIR}/_troupe_deps/include")
    file(MAKE_DIRECTORY "${_troupe_cq_prefix_dir}")
    file(REMOVE_RECURSE "${_troupe_cq_prefix_dir}/concurrentqueue")
    file(CREATE_LINK "${_troupe_cq_dir}" "${_troupe_cq_prefix_dir}/concurrentqueue" RESULT _troupe_cq_link SYMBOLIC)
    if(NOT _troupe_cq_link EQUAL 0)
      # No symlinks (e.g. Windows without privileges): copy the headers.
      file(GLOB _troupe_cq_headers "${_troupe_cq_dir}/*.h")
      file(COPY ${_troupe_cq_headers} DESTINATION "${_troupe_cq_prefix_dir}/concurrentqueue")
    endif()
  endif()

  set(TROUPE_CONCURRENTQUEUE_DIR "${_troupe_cq_dir}")
  # Debian's layout (<dir>/concurrentqueue/concurrentqueue.h) is found again by the installed
  # package; any other layout is installed with troupe.
  if(_troupe_cq_dir STREQUAL TROUPE_CONCURRENTQUEUE_INCLUDE_DIR AND _troupe_cq_name STREQUAL "concurrentqueue")
    set(TROUPE_CONCURRENTQUEUE_BUNDLE FALSE)
  else()
    set(TROUPE_CONCURRENTQUEUE_BUNDLE TRUE)
  endif()

  add_library(troupe_concurrentqueue INTERFACE)
  target_include_directories(troupe_concurrentqueue SYSTEM INTERFACE
    $<BUILD_INTERFACE:${_troupe_cq_prefix_dir}>
    $<BUILD_INTERFACE:${_troupe_cq_dir}>)
  if(_troupe_cq_link_target)
    target_link_libraries(troupe_concurrentqueue INTERFACE ${_troupe_cq_link_target})
  endif()
  _troupe_note_include_dir("${_troupe_cq_prefix_dir}")
  _troupe_note_include_dir("${_troupe_cq_dir}")
endif()

# ---------------------------------------------------------------------------
# Catch2 v2 -- only looked up when tests are built (call from tests/).
# Provides Catch2::Catch2; include as <catch2/catch.hpp>.
# ---------------------------------------------------------------------------
macro(troupe_find_catch2)
  if(NOT TARGET Catch2::Catch2)
    if(TROUPE_USE_SYSTEM_DEPS)
      find_package(Catch2 2 CONFIG QUIET)
    endif()
    if(TARGET Catch2::Catch2)
      message(STATUS "troupe: using system Catch2 ${Catch2_VERSION} (${Catch2_DIR})")
    else()
      message(STATUS "troupe: fetching Catch2 ${TROUPE_CATCH2_GIT_TAG}")
      FetchContent_Declare(Catch2
        GIT_REPOSITORY https://github.com/catchorg/Catch2.git
        GIT_TAG ${TROUPE_CATCH2_GIT_TAG}
        GIT_SHALLOW TRUE
        SYSTEM)
      FetchContent_MakeAvailable(Catch2)
      if(NOT TARGET Catch2::Catch2)
        message(FATAL_ERROR "troupe: fetched Catch2 did not define Catch2::Catch2")
      endif()
    endif()
  endif()
endmacro()
