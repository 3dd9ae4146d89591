# The installable package: `find_package(Attic)` then `target_link_libraries(app Attic::client)`.
#
# Installed: client/client.h, client/scheduler.h and the common/ headers they include (no transport, UCX or Cap'n
# Proto header is part of the public API), the static libraries behind Attic::client (its
# transport and wire code are linked, not exposed), AtticTargets.cmake, AtticConfig.cmake and
# a version file. Layout under the prefix:
#   include/client/{client,scheduler}.h, include/common/{status,dtype,tensor_view,model_spec}.h
#   lib/libattic_{client,transport,wire,control,scheduler_protocol,prefix_summary,common}.a
#   lib/cmake/Attic/Attic{Config,ConfigVersion,Targets}.cmake
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ATTIC_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/Attic")

# Exported as Attic::client, Attic::transport, Attic::wire, Attic::control,
# Attic::scheduler_protocol, Attic::prefix_summary, Attic::common.
foreach(component client transport wire control scheduler_protocol prefix_summary common)
  set_target_properties(attic_${component} PROPERTIES EXPORT_NAME ${component})
endforeach()

install(TARGETS attic_client attic_transport attic_wire attic_control attic_scheduler_protocol
        attic_prefix_summary attic_common
  EXPORT AtticTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}")

# Headers keep their repo-relative paths, so `#include "client/client.h"` works installed too.
# This list is client.h's include closure: the package test fails if it grows without this.
install(FILES client/client.h client/scheduler.h DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/client")
install(FILES common/dtype.h common/index_kind.h common/model_spec.h common/status.h
  common/tensor_view.h
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/common")

install(EXPORT AtticTargets
  NAMESPACE Attic::
  FILE AtticTargets.cmake
  DESTINATION "${ATTIC_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/AtticConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/AtticConfig.cmake"
  INSTALL_DESTINATION "${ATTIC_INSTALL_CMAKEDIR}")
# 0.x releases promise nothing across minor versions.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/AtticConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/AtticConfig.cmake"
              "${PROJECT_BINARY_DIR}/AtticConfigVersion.cmake"
  DESTINATION "${ATTIC_INSTALL_CMAKEDIR}")
