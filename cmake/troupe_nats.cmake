# The optional parts of troupe that leave the process: the default codec (msgpack-cxx) and the
# NATS bridge (nats.c). Included by the top-level CMakeLists.txt after troupe_dependencies.cmake.
#
# Targets created:
#   troupe::msgpack   troupe::troupe + msgpack-cxx (header-only, MSGPACK_NO_BOOST), for
#                     <troupe/codec_msgpack.hpp>. System first (Debian libmsgpack-cxx-dev), a
#                     pinned FetchContent otherwise (header-only: populate only).
#   troupe::nats      troupe::msgpack + nats.c (Debian libnats-dev), for <troupe/nats/*.hpp>.
#                     Only where libnats is found (find_package(cnats), then pkg-config);
#                     TROUPE_HAVE_NATS tells whether it exists.
# Variables: TROUPE_NATS_SERVER -- the nats-server binary for the tests and the demo (may be
# NOTFOUND: the NATS tests then report themselves skipped).

include_guard(GLOBAL)
include(FetchContent)

option(TROUPE_WITH_NATS "Build the NATS bridge (troupe::nats) when nats.c is found" ON)
set(TROUPE_MSGPACK_GIT_TAG cpp-4.1.1)
set(TROUPE_MSGPACK_MIN_MAJOR 4)

# ---------------------------------------------------------------------------
# msgpack-cxx
# ---------------------------------------------------------------------------
if(NOT TARGET troupe_msgpack)
  set(_troupe_msgpack_dir "")
  if(TROUPE_USE_SYSTEM_DEPS)
    find_path(TROUPE_MSGPACK_INCLUDE_DIR NAMES msgpack.hpp DOC "Directory containing msgpack.hpp")
    if(TROUPE_MSGPACK_INCLUDE_DIR AND EXISTS "${TROUPE_MSGPACK_INCLUDE_DIR}/msgpack/version_master.hpp")
      file(STRINGS "${TROUPE_MSGPACK_INCLUDE_DIR}/msgpack/version_master.hpp" _troupe_mp_major
           REGEX "^#define MSGPACK_VERSION_MAJOR +[0-9]+")
      string(REGEX MATCH "[0-9]+$" _troupe_mp_major "${_troupe_mp_major}")
      if(_troupe_mp_major AND _troupe_mp_major GREATER_EQUAL TROUPE_MSGPACK_MIN_MAJOR)
        set(_troupe_msgpack_dir "${TROUPE_MSGPACK_INCLUDE_DIR}")
        set(TROUPE_MSGPACK_SYSTEM TRUE) # (only then does the install export troupe::msgpack)
        message(STATUS "troupe: using system msgpack-cxx ${_troupe_mp_major}.x from ${_troupe_msgpack_dir}")
      else()
        message(STATUS "troupe: system msgpack-cxx in ${TROUPE_MSGPACK_INCLUDE_DIR} is too old, fetching")
      endif()
    endif()
  endif()
  if(NOT _troupe_msgpack_dir)
    message(STATUS "troupe: fetching msgpack-cxx ${TROUPE_MSGPACK_GIT_TAG}")
    FetchContent_Declare(msgpack
      GIT_REPOSITORY https://github.com/msgpack/msgpack-c.git
      GIT_TAG ${TROUPE_MSGPACK_GIT_TAG}
      GIT_SHALLOW TRUE
      SOURCE_SUBDIR do-not-add-subdirectory) # header-only: populate only
    FetchContent_MakeAvailable(msgpack)
    set(_troupe_msgpack_dir "${msgpack_SOURCE_DIR}/include")
  endif()
  add_library(troupe_msgpack INTERFACE)
  add_library(troupe::msgpack ALIAS troupe_msgpack)
  target_include_directories(troupe_msgpack SYSTEM INTERFACE $<BUILD_INTERFACE:${_troupe_msgpack_dir}>)
  target_compile_definitions(troupe_msgpack INTERFACE MSGPACK_NO_BOOST)
  # Installed: troupeConfig.cmake finds msgpack-cxx again (troupe::msgpack_dependency).
  target_link_libraries(troupe_msgpack INTERFACE troupe
                        $<INSTALL_INTERFACE:troupe::msgpack_dependency>)
endif()

# ---------------------------------------------------------------------------
# nats.c and nats-server
# ---------------------------------------------------------------------------
set(TROUPE_HAVE_NATS FALSE)
if(TROUPE_WITH_NATS AND NOT TARGET troupe_nats)
  # Not find_package(cnats): Debian's cnats-config.cmake names a static library the package
  # does not ship, and fails. The header and the shared library are all we need.
  find_path(TROUPE_NATS_INCLUDE_DIR NAMES nats/nats.h DOC "Directory containing nats/nats.h")
  find_library(TROUPE_NATS_LIBRARY NAMES nats DOC "nats.c's shared library (libnats)")
  set(_troupe_nats_link "")
  if(TROUPE_NATS_INCLUDE_DIR AND TROUPE_NATS_LIBRARY AND EXISTS "${TROUPE_NATS_INCLUDE_DIR}/nats/version.h")
    file(STRINGS "${TROUPE_NATS_INCLUDE_DIR}/nats/version.h" _troupe_nats_version
         REGEX "^#define NATS_VERSION_STRING")
    string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" _troupe_nats_version "${_troupe_nats_version}")
    if(_troupe_nats_version VERSION_GREATER_EQUAL 3.4)
      add_library(troupe_libnats UNKNOWN IMPORTED)
      set_target_properties(troupe_libnats PROPERTIES
        IMPORTED_LOCATION "${TROUPE_NATS_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${TROUPE_NATS_INCLUDE_DIR}")
      set(_troupe_nats_link troupe_libnats)
      message(STATUS "troupe: using nats.c ${_troupe_nats_version} (${TROUPE_NATS_LIBRARY})")
    else()
      message(STATUS "troupe: nats.c ${_troupe_nats_version} is older than 3.4")
    endif()
  endif()
  if(_troupe_nats_link)
    add_library(troupe_nats INTERFACE)
    add_library(troupe::nats ALIAS troupe_nats)
    # Installed: troupeConfig.cmake finds nats.c again (troupe::libnats).
    target_link_libraries(troupe_nats INTERFACE troupe_msgpack
                          $<BUILD_INTERFACE:${_troupe_nats_link}> $<INSTALL_INTERFACE:troupe::libnats>)
    set(TROUPE_HAVE_NATS TRUE)
  else()
    message(STATUS "troupe: nats.c (libnats-dev) not found; troupe::nats and its tests are not built")
  endif()
elseif(TARGET troupe_nats)
  set(TROUPE_HAVE_NATS TRUE)
endif()

find_program(TROUPE_NATS_SERVER nats-server DOC "nats-server, for the NATS tests and the demo")
