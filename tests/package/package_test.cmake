# Run by ctest with cmake -P (see CMakeLists.txt): install, build the consumer, run it.
# Inputs: ATTIC_BUILD_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, C_COMPILER, CXX_COMPILER,
# SANITIZER_FLAGS (the build's sanitizer flags, which the consumer must link with too).
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
  message(STATUS "${what}: ok")
endfunction()

run("install" "${CMAKE_COMMAND}" --install "${ATTIC_BUILD_DIR}" --prefix "${prefix}")

# The public headers are client/ and common/ only: no transport, UCX or Cap'n Proto.
file(GLOB_RECURSE headers RELATIVE "${prefix}/include" "${prefix}/include/*")
foreach(h IN LISTS headers)
  if(NOT h MATCHES "^(client|common)/")
    message(FATAL_ERROR "unexpected installed header: ${h}")
  endif()
endforeach()

run("configure consumer" "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${build}" -G Ninja
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_C_COMPILER=${C_COMPILER}"
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_CXX_FLAGS=${SANITIZER_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${SANITIZER_FLAGS}")
run("build consumer" "${CMAKE_COMMAND}" --build "${build}")
run("run consumer" "${build}/attic_consumer")
