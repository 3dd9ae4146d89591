// KeyRows: read access to one (layer, KV head)'s keys, wherever they live. Position p is row
// p % block_size of blocks[p / block_size] — the KV store's paged blocks in the worker, or one
// contiguous block in benchmarks and tests (block_size = count).
//
//   std::vector<const std::byte*> ks = ...;   // BlockView::k of every block, in order
//   KeyRows rows{.blocks = ks, .block_size = 64, .head_dim = 128,
//                .dtype = DType::kBFloat16, .count = length};
//   const std::byte* r = rows.row(p);            // [head_dim] in dtype
//
// Indexes never own keys: exact dot products read the KV cache itself, so an index's memory
// is only its own structures (graph, codes, centroids).
// Thread safety: a view; concurrent reads are safe while nobody writes the rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/dtype.h"

namespace attic::retrieval {

struct KeyRows {
  std::span<const std::byte* const> blocks;
  int block_size = 0;
  int head_dim = 0;
  DType dtype = DType::kBFloat16;
  int64_t count = 0;  // rows [0, count) are readable

  size_t row_bytes() const { return static_cast<size_t>(head_dim) * DTypeSize(dtype); }
  // REQUIRES: 0 <= p < count.
  const std::byte* row(int64_t p) const {
    return blocks[static_cast<size_t>(p / block_size)] +
           static_cast<size_t>(p % block_size) * row_bytes();
  }
  // A view of the first n rows. REQUIRES: n <= count.
  KeyRows prefix(int64_t n) const {
    KeyRows r = *this;
    r.count = n;
    return r;
  }
};

// One GQA group's queries at one decode step: q is [group_size, head_dim] fp32, row-major.
struct QueryGroup {
  const float* q = nullptr;
  int group_size = 0;
  int head_dim = 0;
};

}  // namespace attic::retrieval
