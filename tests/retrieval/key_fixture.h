// Keys for retrieval tests, laid out in fixed-size blocks as the KV store holds them.
//
//   TestKeys keys = MakeTestKeys(Gaussian(1000, 128, 0.0f, /*seed=*/1), 128, DType::kBFloat16);
//   index->Search(keys.rows, scorer, {.top_k = 10}, &result);
//   double r = Recall(result.positions, TopKPositions(exact_scores, 10));
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "attention_workers/retrieval/key_rows.h"
#include "common/dtype.h"

namespace attic::retrieval {

struct TestKeys {
  std::vector<float> f;  // [n, d]: the keys as stored (rounded through the dtype)
  std::vector<std::byte> data;
  std::vector<const std::byte*> blocks;
  KeyRows rows;  // views data; a TestKeys must not be copied once rows is used
};

// n = f.size() / d keys in `dtype`, block_size rows per block (the last block padded).
inline TestKeys MakeTestKeys(std::vector<float> f, int d, DType dtype, int block_size = 64) {
  TestKeys k;
  const auto n = static_cast<int64_t>(f.size() / static_cast<size_t>(d));
  const int64_t nblocks = (n + block_size - 1) / block_size;
  const size_t row = static_cast<size_t>(d) * DTypeSize(dtype);
  k.f = std::move(f);
  k.data.resize(static_cast<size_t>(std::max<int64_t>(nblocks, 1)) * block_size * row);
  ConvertFromFloat(dtype, k.f.data(), k.data.data(), k.f.size());
  ConvertToFloat(dtype, k.data.data(), k.f.data(), k.f.size());
  for (int64_t b = 0; b < nblocks; ++b) {
    k.blocks.push_back(k.data.data() + static_cast<size_t>(b) * block_size * row);
  }
  k.rows = {
      .blocks = k.blocks, .block_size = block_size, .head_dim = d, .dtype = dtype, .count = n};
  return k;
}

// count * d values drawn from N(mean, 1), seeded.
inline std::vector<float> Gaussian(int64_t count, int d, float mean, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(mean, 1.0f);
  std::vector<float> f(static_cast<size_t>(count) * static_cast<size_t>(d));
  for (float& x : f) x = dist(rng);
  return f;
}

// |got ∩ truth| / |truth| (1 for an empty truth).
inline double Recall(const std::vector<int32_t>& got, const std::vector<int32_t>& truth) {
  const std::set<int32_t> t(truth.begin(), truth.end());
  int64_t hits = 0;
  for (int32_t p : got) hits += static_cast<int64_t>(t.count(p));
  return truth.empty() ? 1.0 : static_cast<double>(hits) / static_cast<double>(truth.size());
}

}  // namespace attic::retrieval
