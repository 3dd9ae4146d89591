// QuantizedScan (IndexKind::kQuantized): the two-stage scan. Every indexed key's group score is
// approximated from per-dimension scalar codes (4-bit or 1-bit, internal/quantizer.h) by a
// vectorized scan; the best `rerank` candidates are then scored exactly from the keys and the
// top-k returned. effort = the re-rank count (0 = options.rerank).
//
//   ASSIGN_OR_RETURN(auto index, BuildQuantizedScan(keys, {.bits = 4}, {.pool = &pool}));
//   RETURN_IF_ERROR(index->Search(keys, scorer, {.top_k = 100, .effort = 200}, &r));
//
// Cost: linear in the context — code bytes of every key (64 B per 128-dim key at 4 bits,
// 16 B at 1 bit) plus the re-ranked rows — so it is the baseline the sub-linear indexes
// (cluster_index.h, graph_index.h) must beat, and a robust fallback: it needs no query sample.
// SearchStats: keys_scored = keys re-ranked; bytes_read = code bytes scanned (whole blocks of 16
// keys) + keys re-ranked * row bytes. Codes are fitted to the build's keys (the first Add's
// when the build had none); later keys outside that range are clamped, which the exact re-rank
// absorbs. Thread safety: as KeyIndex.
#pragma once

#include <memory>

#include "attention_workers/retrieval/key_index.h"

namespace attic::retrieval {

struct QuantizedScanOptions {
  // Bits per key dimension: 4 (recall near 1 with a few hundred re-ranked keys) or 1 (a
  // quarter of the code bytes, lower recall at the same re-rank count).
  int bits = 4;
  // Candidates re-scored exactly when SearchParams::effort is 0; at least top_k are always
  // re-ranked. 200 reaches recall@100 of 0.99 at 4 bits on the reference data
  // (docs/retrieval-cluster.md).
  int rerank = 200;
};

// InvalidArgument for invalid keys, bits other than 1 or 4, or rerank < 1.
StatusOr<std::unique_ptr<KeyIndex>> BuildQuantizedScan(const KeyRows& keys,
                                                       const QuantizedScanOptions& options = {},
                                                       const BuildOptions& build = {});

}  // namespace attic::retrieval
