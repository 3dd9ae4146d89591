#include "attention_workers/retrieval/internal/graph_adjacency.h"

#include <algorithm>

namespace attic::retrieval::internal {

void Adjacency::Resize(int64_t n) {
  ids_.resize(static_cast<size_t>(n) * stride_);
  regular_.resize(static_cast<size_t>(n));
  spare_.resize(static_cast<size_t>(n));
}

void Adjacency::SetRegular(int32_t u, std::span<const int32_t> ids) {
  const size_t i = static_cast<size_t>(u);
  int32_t* slot = ids_.data() + i * stride_;
  // The spare edges sit right after the regular ones: move them first.
  int32_t spare[kSpareEdges];
  std::copy_n(slot + regular_[i], spare_[i], spare);
  std::copy(ids.begin(), ids.end(), slot);
  std::copy_n(spare, spare_[i], slot + ids.size());
  regular_[i] = static_cast<uint16_t>(ids.size());
}

bool Adjacency::AppendRegular(int32_t u, int32_t v) {
  const size_t i = static_cast<size_t>(u);
  if (regular_[i] >= max_degree_) return false;
  int32_t* slot = ids_.data() + i * stride_;
  // Keep regular edges first: the spare edges shift by one.
  std::copy_backward(slot + regular_[i], slot + regular_[i] + spare_[i],
                     slot + regular_[i] + spare_[i] + 1);
  slot[regular_[i]] = v;
  ++regular_[i];
  return true;
}

bool Adjacency::AppendSpare(int32_t u, int32_t v) {
  const size_t i = static_cast<size_t>(u);
  if (spare_[i] >= kSpareEdges) return false;
  ids_[i * stride_ + regular_[i] + spare_[i]] = v;
  ++spare_[i];
  return true;
}

int64_t Adjacency::memory_bytes() const {
  return static_cast<int64_t>(ids_.size() * sizeof(int32_t) +
                              regular_.size() * sizeof(uint16_t) +
                              spare_.size() * sizeof(uint16_t));
}

int64_t MarkReachable(const Adjacency& g, std::span<const int32_t> entries,
                      std::vector<uint8_t>* reached) {
  reached->assign(static_cast<size_t>(g.size()), 0);
  std::vector<int32_t> stack;
  int64_t count = 0;
  for (int32_t e : entries) {
    if ((*reached)[static_cast<size_t>(e)]) continue;
    (*reached)[static_cast<size_t>(e)] = 1;
    ++count;
    stack.push_back(e);
  }
  while (!stack.empty()) {
    const int32_t u = stack.back();
    stack.pop_back();
    for (int32_t v : g.neighbors(u)) {
      if ((*reached)[static_cast<size_t>(v)]) continue;
      (*reached)[static_cast<size_t>(v)] = 1;
      ++count;
      stack.push_back(v);
    }
  }
  return count;
}

}  // namespace attic::retrieval::internal
