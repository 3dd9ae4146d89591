#include "tests/testing/shared_data.h"

#include <cstdlib>
#include <filesystem>

namespace attic::testing {
namespace fs = std::filesystem;

std::optional<std::string> SharedDir() {
  if (const char* env = std::getenv("ATTIC_SHARED_DIR"); env != nullptr && *env != '\0') {
    if (fs::is_directory(fs::path(env) / "data")) return std::string(env);
  }
  std::error_code ec;
  fs::path dir = fs::current_path(ec);
  for (int up = 0; up < 6 && !ec; ++up) {
    const fs::path candidate = dir / ".." / "shared";
    if (fs::is_directory(candidate / "data")) return fs::canonical(candidate).string();
    if (!dir.has_parent_path() || dir.parent_path() == dir) break;
    dir = dir.parent_path();
  }
  return std::nullopt;
}

std::optional<std::string> QkvDir() {
  auto root = SharedDir();
  if (!root) return std::nullopt;
  const fs::path p = fs::path(*root) / "data" / "qkv" / "attic-ref-54m" / "networkx-16k";
  if (!fs::is_regular_file(p / "L4_k.npy")) return std::nullopt;
  return p.string();
}

}  // namespace attic::testing
