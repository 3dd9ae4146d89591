// IndexKind: the retrieval indexes a worker can build over a sequence's keys
// (docs/retrieval.md). One enum for the whole project: the client names a kind, the wire
// carries it (transport/proto/attic.capnp's IndexKind, number + 1 so that 0 means "the
// worker's default"; only the two codecs convert), the worker builds and searches it.
//
//   std::optional<IndexKind> kind = ParseIndexKind("graph");
//   std::string_view name = IndexKindName(IndexKind::kCluster);   // "cluster"
//
// Thread safety: stateless.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace attic {

// Numbers are stable: they are stored with query samples on the SSD tier.
enum class IndexKind : uint8_t {
  kExact = 0,      // scans every key exactly: the reference, and the dense-equivalent cost
  kGraph = 1,      // attention-aware key graph learned from prefill queries
  kCluster = 2,    // query-scored k-means clusters with quantized members
  kQuantized = 3,  // two-stage scan: quantized scores of every key, exact re-rank
};
inline constexpr int kNumIndexKinds = 4;

// "exact", "graph", "cluster", "quantized"; "unknown" for a number outside the enum.
std::string_view IndexKindName(IndexKind kind);
std::optional<IndexKind> ParseIndexKind(std::string_view name);
// nullopt unless 0 <= number < kNumIndexKinds.
std::optional<IndexKind> IndexKindFromNumber(int number);

}  // namespace attic
