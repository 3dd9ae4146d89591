#include "kvstore/ssd/internal/key_tags.h"

#include <cstdint>

namespace attic::ssd_internal {

std::optional<std::string> PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    const auto last = static_cast<uint8_t>(end.back());
    if (last != 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::nullopt;
}

}  // namespace attic::ssd_internal
