#include "common/index_kind.h"

namespace attic {

std::string_view IndexKindName(IndexKind kind) {
  switch (kind) {
    case IndexKind::kExact: return "exact";
    case IndexKind::kGraph: return "graph";
    case IndexKind::kCluster: return "cluster";
    case IndexKind::kQuantized: return "quantized";
  }
  return "unknown";
}

std::optional<IndexKind> ParseIndexKind(std::string_view name) {
  for (int i = 0; i < kNumIndexKinds; ++i) {
    const auto kind = static_cast<IndexKind>(i);
    if (IndexKindName(kind) == name) return kind;
  }
  return std::nullopt;
}

std::optional<IndexKind> IndexKindFromNumber(int number) {
  if (number < 0 || number >= kNumIndexKinds) return std::nullopt;
  return static_cast<IndexKind>(number);
}

}  // namespace attic
