# One way to declare Attic targets, so that every component gets the same options.
#
#   attic_cc_library(NAME kvstore SRCS a.cc b.cc DEPS attic::common)
#     -> target attic_kvstore, alias attic::kvstore; headers included as "kvstore/a.h".
#   attic_cc_binary(NAME attic-worker SRCS main.cc DEPS attic::kvstore)
#   attic_cc_test(NAME kvstore_block_pool_test SRCS block_pool_test.cc DEPS attic::kvstore
#                 LABELS slow)  -> a GoogleTest binary registered with ctest, one ctest per
#                 TEST, named "<binary>.<Suite>.<Test>" and labelled `slow` or `unit`.
#   attic_isa_sources(avx512 file.cc ...) marks sources compiled for one runtime-dispatched ISA.

include(GoogleTest OPTIONAL)

function(_attic_apply_options target)
  target_compile_options(${target} PRIVATE ${ATTIC_WARNING_FLAGS} ${ATTIC_BASE_FLAGS})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}>
    $<INSTALL_INTERFACE:include>)
endfunction()

function(attic_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target attic_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SRCS})
  add_library(attic::${ARG_NAME} ALIAS ${target})
  _attic_apply_options(${target})
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

function(attic_cc_binary)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  _attic_apply_options(${ARG_NAME})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
  set_target_properties(${ARG_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${PROJECT_BINARY_DIR}/bin")
endfunction()

function(attic_cc_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  _attic_apply_options(${ARG_NAME})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} attic::testing GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  # One label per test: gtest_discover_tests writes PROPERTIES unquoted, so a list of labels
  # would lose all but its first. Components are selected by name instead (-R kvstore_test).
  if("slow" IN_LIST ARG_LABELS)
    set(labels slow)
  else()
    set(labels unit)
  endif()
  gtest_discover_tests(${ARG_NAME}
    TEST_PREFIX "${ARG_NAME}."
    TEST_LIST ${ARG_NAME}_TESTS
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${labels}" TIMEOUT ${ARG_TIMEOUT})
  # The tests' environment, a list. It is not passed through PROPERTIES above: that flattens
  # every value into one argument list (over several layers of re-splitting, whose escaping
  # depends on the discovery mode), so "A=1;B=2" would become a property named "B=2". A ctest
  # include file of our own runs after the discovered tests exist and sets it, quoted.
  set(env "ATTIC_SHARED_DIR=${ATTIC_SHARED_DIR}")
  if(NOT ATTIC_SANITIZE STREQUAL "")
    # UCX intercepts malloc/mmap to track registered memory; that clashes with the
    # sanitizers' own interception, so sanitized test runs switch it off.
    list(APPEND env "UCX_MEM_MALLOC_HOOKS=no" "UCX_MEM_EVENTS=no")
  endif()
  if(ATTIC_SANITIZE STREQUAL "thread")
    # A race inside a child process (an attic-worker a test started) must fail the test, not
    # only print a report into the child's log.
    # RocksDB's own write path is uninstrumented: cmake/tsan.supp says why it is suppressed.
    list(APPEND env "TSAN_OPTIONS=halt_on_error=1 suppressions=${PROJECT_SOURCE_DIR}/cmake/tsan.supp")
  endif()
  set(env_file "${CMAKE_CURRENT_BINARY_DIR}/${ARG_NAME}_environment.cmake")
  file(WRITE "${env_file}"
    "if(${ARG_NAME}_TESTS)\n"
    "  set_tests_properties(\${${ARG_NAME}_TESTS} PROPERTIES ENVIRONMENT [==[${env}]==])\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${env_file}")
endfunction()

# Sources compiled with one ISA's flags. Such files must only include intrinsics headers and
# plain-struct Attic headers: an inline function from a shared header compiled with wider flags
# could be picked by the linker for every caller and fault on an older CPU.
function(attic_isa_sources isa)
  string(TOUPPER "${isa}" upper)
  set(flags ${ATTIC_ISA_FLAGS_${upper}})
  if(NOT flags)
    message(FATAL_ERROR "unknown ISA '${isa}'")
  endif()
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS "${flags}")
endfunction()
