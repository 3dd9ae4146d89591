// The graph index's adjacency: one fixed-capacity slot of neighbour ids per key, flat in one
// array, so a search reads a node's list with one contiguous load and Add grows the graph by
// appending slots.
//
//   Adjacency g(/*max_degree=*/32);
//   g.Resize(n);
//   g.SetRegular(u, pruned_ids);         // at most max_degree ids
//   g.AppendRegular(v, u);               // false when v's regular part is full
//   g.AppendSpare(w, x);                 // connectivity edge: false when the spare slots are full
//   for (int32_t v : g.neighbors(u)) ...
//
// A slot holds max_degree regular edges (chosen by pruning) followed by kSpareEdges spare
// edges that only the connectivity pass and Add use to give an otherwise unreachable key an
// in-edge. Re-pruning a regular list keeps the spare edges, so a key that was linked for
// connectivity stays linked.
// Thread safety: concurrent reads are safe; writers need exclusive access, except that
// SetRegular on distinct nodes may run concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace attic::retrieval::internal {

class Adjacency {
 public:
  static constexpr int kSpareEdges = 2;

  explicit Adjacency(int max_degree) : max_degree_(max_degree), stride_(max_degree + kSpareEdges) {}

  int max_degree() const { return max_degree_; }
  int64_t size() const { return static_cast<int64_t>(regular_.size()); }
  // New nodes have no edges.
  void Resize(int64_t n);

  std::span<const int32_t> neighbors(int32_t u) const {
    const size_t i = static_cast<size_t>(u);
    return {ids_.data() + i * stride_, static_cast<size_t>(regular_[i]) + spare_[i]};
  }
  std::span<const int32_t> regular(int32_t u) const {
    return {ids_.data() + static_cast<size_t>(u) * stride_, regular_[static_cast<size_t>(u)]};
  }
  int degree(int32_t u) const { return regular_[static_cast<size_t>(u)] + spare_[static_cast<size_t>(u)]; }
  // What a search reads to expand u: the list length and the ids.
  int64_t list_bytes(int32_t u) const { return 4 + 4 * static_cast<int64_t>(degree(u)); }

  // Replaces u's regular edges. REQUIRES: ids.size() <= max_degree.
  void SetRegular(int32_t u, std::span<const int32_t> ids);
  bool AppendRegular(int32_t u, int32_t v);
  bool AppendSpare(int32_t u, int32_t v);
  bool HasSpareRoom(int32_t u) const { return spare_[static_cast<size_t>(u)] < kSpareEdges; }

  // Ids, lengths: what memory_bytes() reports for the adjacency.
  int64_t memory_bytes() const;

 private:
  int max_degree_;
  int stride_;
  std::vector<int32_t> ids_;      // [n, stride_]: regular edges, then spare edges
  std::vector<uint16_t> regular_;  // [n]
  std::vector<uint16_t> spare_;    // [n]
};

// Marks every node reachable from the entries (reached[u] = 1) and returns how many there are.
int64_t MarkReachable(const Adjacency& g, std::span<const int32_t> entries,
                      std::vector<uint8_t>* reached);

}  // namespace attic::retrieval::internal
