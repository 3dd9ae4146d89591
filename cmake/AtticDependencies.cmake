# Third-party packages, all from Debian 12 (see ./attic setup for the package list).
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json REQUIRED)
if(ATTIC_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
