#include "attention_workers/retrieval/key_index.h"

#include <string>

#include "attention_workers/retrieval/cluster_index.h"
#include "attention_workers/retrieval/exact_index.h"
#include "attention_workers/retrieval/graph_index.h"
#include "attention_workers/retrieval/quantized_scan.h"

namespace attic::retrieval {

Status ValidateKeyRows(const KeyRows& keys) {
  if (keys.count < 0) return InvalidArgumentError("key rows: negative count");
  if (keys.head_dim < 32 || keys.head_dim > 512 || keys.head_dim % 32 != 0) {
    return InvalidArgumentError("key rows: head_dim " + std::to_string(keys.head_dim) +
                                " is not a multiple of 32 in [32, 512]");
  }
  if (keys.count > 0 && keys.block_size <= 0) {
    return InvalidArgumentError("key rows: block size must be positive");
  }
  if (keys.count > 0 &&
      static_cast<int64_t>(keys.blocks.size()) * keys.block_size < keys.count) {
    return InvalidArgumentError("key rows: " + std::to_string(keys.blocks.size()) +
                                " blocks cannot hold " + std::to_string(keys.count) + " rows");
  }
  if (keys.count > INT32_MAX) return InvalidArgumentError("key rows: more than 2^31 rows");
  return OkStatus();
}

Status ValidateSearch(const KeyRows& keys, int64_t indexed, const GroupScorer& scorer,
                      const SearchParams& params) {
  if (params.top_k < 1) {
    return InvalidArgumentError("search: top_k " + std::to_string(params.top_k) + " < 1");
  }
  if (params.effort < 0) return InvalidArgumentError("search: negative effort");
  if (params.position_limit < 0) return InvalidArgumentError("search: negative position_limit");
  if (scorer.head_dim() != keys.head_dim || scorer.dtype() != keys.dtype) {
    return InvalidArgumentError("search: queries have head_dim " +
                                std::to_string(scorer.head_dim()) + " and dtype " +
                                std::string(DTypeName(scorer.dtype())) + ", keys " +
                                std::to_string(keys.head_dim) + " and " +
                                std::string(DTypeName(keys.dtype)));
  }
  if (keys.count < indexed) {
    return InvalidArgumentError("search: " + std::to_string(keys.count) +
                                " key rows given, the index covers " + std::to_string(indexed));
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<KeyIndex>> BuildKeyIndex(IndexKind kind, const KeyRows& keys,
                                                  const QuerySample& sample,
                                                  const BuildOptions& options) {
  RETURN_IF_ERROR(ValidateKeyRows(keys));
  if (!sample.empty() && (sample.q == nullptr || sample.head_dim != keys.head_dim ||
                          sample.group_size < 1)) {
    return InvalidArgumentError("query sample: head_dim " + std::to_string(sample.head_dim) +
                                " does not match the keys' " + std::to_string(keys.head_dim));
  }
  (void)options;
  switch (kind) {
    case IndexKind::kExact:
      return BuildExactIndex(keys);
    case IndexKind::kCluster:
      return BuildClusterIndex(keys, sample, {}, options);
    case IndexKind::kQuantized:
      return BuildQuantizedScan(keys, {}, options);
    case IndexKind::kGraph:
      return BuildGraphIndex(keys, sample, {}, options);
  }
  return UnimplementedError(std::string("index kind '") + std::string(IndexKindName(kind)) +
                            "' is not built yet");
}

}  // namespace attic::retrieval
