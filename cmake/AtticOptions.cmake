# Every compile option of the project lives here; targets get them through attic_cc_* helpers.

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

option(ATTIC_BUILD_TESTS "Build the GoogleTest suites" ON)
option(ATTIC_WERROR "Treat warnings in Attic's own code as errors" ON)
# Clang only (the clang preset): locking that -Wthread-safety finds wrong fails the build even
# where ATTIC_WERROR is off (common/thread_annotations.h).
option(ATTIC_WERROR_THREAD_SAFETY "Treat clang's -Wthread-safety findings as errors" OFF)
set(ATTIC_SANITIZE "" CACHE STRING "Sanitizer build: '', 'address' (address+undefined) or 'thread'")

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
  set(CMAKE_CXX_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
endif()

# Warnings for Attic's own targets only (third-party headers come in as SYSTEM includes).
set(ATTIC_WARNING_FLAGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
    -Woverloaded-virtual -Wimplicit-fallthrough -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  list(APPEND ATTIC_WARNING_FLAGS -Wthread-safety)
  if(ATTIC_WERROR_THREAD_SAFETY)
    list(APPEND ATTIC_WARNING_FLAGS -Werror=thread-safety)
  endif()
elseif(ATTIC_WERROR_THREAD_SAFETY)
  message(FATAL_ERROR "ATTIC_WERROR_THREAD_SAFETY needs clang (-Wthread-safety), not "
                      "${CMAKE_CXX_COMPILER_ID}")
endif()
if(ATTIC_WERROR)
  list(APPEND ATTIC_WARNING_FLAGS -Werror)
endif()

# The baseline ISA is plain x86-64: wider instructions are only used by kernels that are
# selected at run time from the CPU's features (see attention_workers/isa.h).
set(ATTIC_BASE_FLAGS -fno-strict-aliasing)

set(ATTIC_SANITIZER_FLAGS "")
if(ATTIC_SANITIZE STREQUAL "address")
  set(ATTIC_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined)
elseif(ATTIC_SANITIZE STREQUAL "thread")
  set(ATTIC_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT ATTIC_SANITIZE STREQUAL "")
  message(FATAL_ERROR "ATTIC_SANITIZE must be '', 'address' or 'thread', not '${ATTIC_SANITIZE}'")
endif()
add_compile_options(${ATTIC_SANITIZER_FLAGS})
add_link_options(${ATTIC_SANITIZER_FLAGS})

# Per-ISA flags for kernel translation units that are dispatched at run time.
set(ATTIC_ISA_FLAGS_AVX2 -mavx2 -mfma -mf16c)
set(ATTIC_ISA_FLAGS_AVX512 -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq)
set(ATTIC_ISA_FLAGS_AVX512BF16 ${ATTIC_ISA_FLAGS_AVX512} -mavx512bf16)

# Where tests and benchmarks look for the real data (traces, activations); absent in a fresh clone.
set(ATTIC_SHARED_DIR "${PROJECT_SOURCE_DIR}/../shared" CACHE PATH "Folder holding data/ and models/")
