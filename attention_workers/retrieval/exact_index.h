// ExactIndex: the exact top-k by scanning every indexed key — the reference the approximate
// indexes are measured against, and what a dense pass costs in key reads. effort is ignored.
// Thread safety: as KeyIndex.
#pragma once

#include <memory>

#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval {

StatusOr<std::unique_ptr<KeyIndex>> BuildExactIndex(const KeyRows& keys);

}  // namespace attic::retrieval
