// Locating the project's real data (../shared/data) from tests and benchmarks.
//
//   auto dir = attic::testing::QkvDir();   // nullopt when the folder is absent
//   if (!dir) GTEST_SKIP() << attic::testing::kNoSharedDataMessage;
//
// The root is $ATTIC_SHARED_DIR when set (ctest sets it to <source>/../shared), else
// ../shared relative to the working directory and its parents.
#pragma once

#include <optional>
#include <string>

namespace attic::testing {

inline constexpr const char* kNoSharedDataMessage =
    "real data not found: ../shared/data is absent (a fresh clone has none); set "
    "ATTIC_SHARED_DIR to the folder that holds data/qkv to run this case";

// The shared/ root, if it exists and holds data/.
std::optional<std::string> SharedDir();
// shared/data/qkv/attic-ref-54m/networkx-16k, if present.
std::optional<std::string> QkvDir();

}  // namespace attic::testing
