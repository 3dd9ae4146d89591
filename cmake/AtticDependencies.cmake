# Third-party packages, all from Debian 12 (see ./attic setup for the package list).
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json REQUIRED)
if(ATTIC_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# Data plane: UCX (link ucx::ucs next to ucx::ucp: status strings and logging live there) and
# Cap'n Proto (its config probes libatomic with a C test, hence C in project()).
find_package(ucx REQUIRED)
find_package(CapnProto REQUIRED)
# Control plane and services.
find_package(Boost 1.74 REQUIRED COMPONENTS system)
find_package(prometheus-cpp REQUIRED)
find_package(yaml-cpp REQUIRED)
