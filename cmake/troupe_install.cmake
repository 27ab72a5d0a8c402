# Install rules: the headers, the CMake package (troupeConfig.cmake, troupeConfigVersion.cmake,
# troupeTargets.cmake with troupe::troupe) and troupe.pc for pkg-config.
#
# Dependencies of the installed package: Threads always comes from find_dependency. Asio and
# concurrentqueue are found again at the consumer's configure time when this build took them
# from a plain system include directory (Debian's libasio-dev / libconcurrentqueue-dev), with a
# clear error naming the package when they are missing. When this build fetched them (or found
# an upstream package with another header layout), their headers are installed with troupe,
# under <includedir>/troupe/third_party, and the package uses that copy: an installed troupe
# never depends on a build tree or a download. Everything is architecture-independent, so the
# package files go under <datadir> (share/cmake/troupe, share/pkgconfig).

include(CMakePackageConfigHelpers)

set(TROUPE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/troupe" CACHE STRING
    "Where troupeConfig.cmake is installed (relative to the prefix)")
set(TROUPE_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig" CACHE STRING
    "Where troupe.pc is installed (relative to the prefix)")
set(TROUPE_THIRD_PARTY_DIR "${CMAKE_INSTALL_INCLUDEDIR}/troupe/third_party")

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS troupe EXPORT troupeTargets)
install(EXPORT troupeTargets NAMESPACE troupe:: DESTINATION ${TROUPE_INSTALL_CMAKEDIR})

# ---- the optional components: troupe::msgpack, troupe::nats -----------------------------------
# Each in an export set of its own, which troupeConfig.cmake loads only when it finds the
# component's dependencies again (msgpack-cxx; nats.c): find_package(troupe COMPONENTS nats).
# Exported only when this build took msgpack-cxx from the system (a fetched copy is not
# installed).
if(TARGET troupe_msgpack AND TROUPE_MSGPACK_SYSTEM)
  set_target_properties(troupe_msgpack PROPERTIES EXPORT_NAME msgpack)
  install(TARGETS troupe_msgpack EXPORT troupeMsgpackTargets)
  install(EXPORT troupeMsgpackTargets NAMESPACE troupe:: DESTINATION ${TROUPE_INSTALL_CMAKEDIR})
  if(TARGET troupe_nats)
    set_target_properties(troupe_nats PROPERTIES EXPORT_NAME nats)
    install(TARGETS troupe_nats EXPORT troupeNatsTargets)
    install(EXPORT troupeNatsTargets NAMESPACE troupe:: DESTINATION ${TROUPE_INSTALL_CMAKEDIR})
  endif()
elseif(TARGET troupe_msgpack)
  message(STATUS "troupe: msgpack-cxx was fetched: the install has no troupe::msgpack or troupe::nats")
endif()

# ---- bundled dependency headers -------------------------------------------------------------
if(NOT DEFINED TROUPE_ASIO_BUNDLE)
  set(TROUPE_ASIO_BUNDLE FALSE) # troupe_asio came from the including project: find it again
endif()
if(NOT DEFINED TROUPE_CONCURRENTQUEUE_BUNDLE)
  set(TROUPE_CONCURRENTQUEUE_BUNDLE FALSE)
endif()
set(_troupe_pc_extra_cflags "")
if(TROUPE_ASIO_BUNDLE OR TROUPE_CONCURRENTQUEUE_BUNDLE)
  set(_troupe_pc_extra_cflags "-I\${includedir}/troupe/third_party")
endif()
if(TROUPE_ASIO_BUNDLE)
  install(FILES "${TROUPE_ASIO_DIR}/asio.hpp" DESTINATION ${TROUPE_THIRD_PARTY_DIR})
  install(DIRECTORY "${TROUPE_ASIO_DIR}/asio" DESTINATION ${TROUPE_THIRD_PARTY_DIR})
  message(STATUS "troupe: the install bundles the Asio headers of ${TROUPE_ASIO_DIR}")
endif()
if(TROUPE_CONCURRENTQUEUE_BUNDLE)
  file(GLOB _troupe_cq_install_headers "${TROUPE_CONCURRENTQUEUE_DIR}/*.h")
  install(FILES ${_troupe_cq_install_headers} DESTINATION ${TROUPE_THIRD_PARTY_DIR}/concurrentqueue)
  message(STATUS "troupe: the install bundles the concurrentqueue headers of ${TROUPE_CONCURRENTQUEUE_DIR}")
endif()

# ---- CMake package ---------------------------------------------------------------------------
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/troupeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/troupeConfig.cmake
  INSTALL_DESTINATION ${TROUPE_INSTALL_CMAKEDIR}
  PATH_VARS TROUPE_THIRD_PARTY_DIR)
# 0.x: a minor version may break the API, so only the same minor version is compatible.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/troupeConfig.cmake ${PROJECT_BINARY_DIR}/troupeConfigVersion.cmake
        DESTINATION ${TROUPE_INSTALL_CMAKEDIR})

# ---- pkg-config ------------------------------------------------------------------------------
# Relocatable: the prefix is computed from the .pc file's own location.
if(IS_ABSOLUTE "${TROUPE_INSTALL_PKGCONFIGDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(_troupe_pc_prefix "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _troupe_pc_up "/prefix/${TROUPE_INSTALL_PKGCONFIGDIR}" "/prefix")
  string(REGEX REPLACE "/$" "" _troupe_pc_up "${_troupe_pc_up}")
  set(_troupe_pc_prefix "\${pcfiledir}/${_troupe_pc_up}")
endif()
set(TROUPE_PC_PREFIX "${_troupe_pc_prefix}")
set(TROUPE_PC_EXTRA_CFLAGS "${_troupe_pc_extra_cflags}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/troupe.pc.in ${PROJECT_BINARY_DIR}/troupe.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/troupe.pc DESTINATION ${TROUPE_INSTALL_PKGCONFIGDIR})
