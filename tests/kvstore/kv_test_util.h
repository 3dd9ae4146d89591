// Helpers shared by the KV store tests: small model specs, deterministic K/V contents that are
// exact in every dtype, builders for the tensors the appends take, and a reader that compares
// what the store holds with what a content function says.
//
//   ModelSpec spec = SmallSpec();                          // L=2, Hkv=2, D=32, B=16, bf16
//   KvFn fn = SeededContent(7);
//   KvTensors t = TokenRows(fn, layer, /*t0=*/0, /*n=*/5, /*head_begin=*/0, spec, DType::kFloat32);
//   ASSERT_OK(store->AppendTokens(id, layer, t.k.view(), t.v.view()));
//   ExpectHolds(*store, id, layer, head, fn, spec);
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/hash.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/tensor_view.h"
#include "kvstore/kv_store.h"

#define ASSERT_OK(expr)                                       \
  do {                                                        \
    const ::attic::Status& assert_ok_status_ = (expr);        \
    ASSERT_TRUE(assert_ok_status_.ok()) << assert_ok_status_; \
  } while (false)
#define EXPECT_OK(expr)                                       \
  do {                                                        \
    const ::attic::Status& expect_ok_status_ = (expr);        \
    EXPECT_TRUE(expect_ok_status_.ok()) << expect_ok_status_; \
  } while (false)

namespace attic::kv_test {

inline ModelSpec SmallSpec(DType dtype = DType::kBFloat16) {
  return ModelSpec{.name = "tiny",
                   .num_layers = 2,
                   .num_q_heads = 4,
                   .num_kv_heads = 2,
                   .head_dim = 32,
                   .dtype = dtype,
                   .block_size = 16};
}

// A value in [-15.875, 15.875] in steps of 1/8: exact in fp32, bf16 and fp16, so conversions
// between them never change it.
inline float ExactValue(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  const uint64_t h = HashCombine(HashCombine(HashCombine(seed, a), b), c);
  return static_cast<float>(static_cast<int>(h % 255) - 127) / 8.0f;
}

// Element (token t, absolute KV head h, dim d) of K (v = false) or V (v = true) at `layer`.
using KvFn = std::function<float(int layer, int t, int h, int d, bool v)>;

inline KvFn SeededContent(uint64_t seed) {
  return [seed](int layer, int t, int h, int d, bool v) {
    return ExactValue(seed, static_cast<uint64_t>(layer) << 32 | static_cast<uint32_t>(t),
                      static_cast<uint64_t>(h), static_cast<uint64_t>(d) * 2 + (v ? 1 : 0));
  };
}

struct Tensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  TensorView view() const {
    const void* p = bytes.data();
    if (shape.size() == 2) return TensorView(p, dtype, {shape[0], shape[1]});
    if (shape.size() == 3) return TensorView(p, dtype, {shape[0], shape[1], shape[2]});
    return TensorView(p, dtype, {shape[0], shape[1], shape[2], shape[3]});
  }
};

struct KvTensors {
  Tensor k;
  Tensor v;
};

inline void Put(float x, DType dtype, std::byte* dst) { ConvertFromFloat(dtype, &x, dst, 1); }

// Token-major [n, heads, D] in `dtype`: tokens [t0, t0 + n) of heads [head_begin, +heads).
inline KvTensors TokenRows(const KvFn& fn, int layer, int t0, int n, int head_begin, int heads,
                           int d, DType dtype) {
  KvTensors out;
  for (bool v : {false, true}) {
    Tensor& t = v ? out.v : out.k;
    t = Tensor{dtype, {n, heads, d}, {}};
    t.bytes.resize(static_cast<size_t>(n) * heads * d * DTypeSize(dtype));
    size_t off = 0;
    for (int i = 0; i < n; ++i) {
      for (int h = 0; h < heads; ++h) {
        for (int j = 0; j < d; ++j, off += DTypeSize(dtype)) {
          Put(fn(layer, t0 + i, head_begin + h, j, v), dtype, &t.bytes[off]);
        }
      }
    }
  }
  return out;
}

// One token [heads, D] in `dtype`.
inline KvTensors DecodeRow(const KvFn& fn, int layer, int t0, int head_begin, int heads, int d,
                           DType dtype) {
  KvTensors out = TokenRows(fn, layer, t0, 1, head_begin, heads, d, dtype);
  out.k.shape = {heads, d};
  out.v.shape = {heads, d};
  return out;
}

// Block-major [heads, blocks, B, D] in `dtype` holding tokens [t0, t0 + n); rows after the
// last token are zero. REQUIRES: t0 % B == 0.
inline KvTensors BlockChunk(const KvFn& fn, int layer, int t0, int n, int head_begin, int heads,
                            int bsize, int d, DType dtype) {
  const int blocks = (n + bsize - 1) / bsize;
  KvTensors out;
  for (bool v : {false, true}) {
    Tensor& t = v ? out.v : out.k;
    t = Tensor{dtype, {heads, blocks, bsize, d}, {}};
    t.bytes.resize(static_cast<size_t>(heads) * blocks * bsize * d * DTypeSize(dtype));
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < n; ++i) {
        const size_t row = (static_cast<size_t>(h) * blocks * bsize + static_cast<size_t>(i)) *
                           static_cast<size_t>(d);
        for (int j = 0; j < d; ++j) {
          Put(fn(layer, t0 + i, head_begin + h, j, v), dtype,
              &t.bytes[(row + static_cast<size_t>(j)) * DTypeSize(dtype)]);
        }
      }
    }
  }
  return out;
}

// Empty string when the views hold exactly `len` tokens of fn at (layer, head) in the storage
// dtype; else a description of the first difference.
inline std::string CompareViews(const std::vector<BlockView>& views, const KvFn& fn, int layer,
                                int head, int len, const ModelSpec& spec) {
  const int bsize = spec.block_size;
  const size_t es = DTypeSize(spec.dtype);
  int seen = 0;
  for (size_t b = 0; b < views.size(); ++b) {
    const bool last = b + 1 == views.size();
    if (views[b].num_tokens != (last ? len - seen : bsize)) {
      return "block " + std::to_string(b) + " has " + std::to_string(views[b].num_tokens) +
             " tokens";
    }
    for (int r = 0; r < views[b].num_tokens; ++r) {
      for (int j = 0; j < spec.head_dim; ++j) {
        for (bool v : {false, true}) {
          std::byte want[4];
          Put(fn(layer, seen + r, head, j, v), spec.dtype, want);
          const std::byte* got =
              (v ? views[b].v : views[b].k) + (static_cast<size_t>(r) * spec.head_dim + j) * es;
          if (std::memcmp(want, got, es) != 0) {
            return std::string(v ? "V" : "K") + " differs at token " + std::to_string(seen + r) +
                   " dim " + std::to_string(j);
          }
        }
      }
    }
    seen += views[b].num_tokens;
  }
  if (seen != len)
    return "views hold " + std::to_string(seen) + " tokens, not " + std::to_string(len);
  return "";
}

inline void ExpectHolds(const KvStore& store, uint64_t id, int layer, int head, const KvFn& fn,
                        int len, const ModelSpec& spec) {
  std::vector<BlockView> views;
  ASSERT_OK(store.ReadBlocks(id, layer, head, &views));
  EXPECT_EQ(CompareViews(views, fn, layer, head, len, spec), "")
      << "sequence " << id << " layer " << layer << " head " << head;
}

}  // namespace attic::kv_test

namespace attic::kv_test {

// h_i = H(h_{i-1}, seed + i): a chain of n block hashes as an engine would make them.
inline std::vector<uint64_t> Chain(uint64_t seed, int n, uint64_t parent = 0) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; ++i) {
    parent = HashCombine(parent, seed + static_cast<uint64_t>(i));
    out.push_back(parent);
  }
  return out;
}

// A store over SmallSpec() (1 KiB bf16 blocks) with helpers that append and check whole
// sequences.
class StoreTest : public ::testing::Test {
 protected:
  void MakeStore(int64_t blocks = 256, bool verify_reads = false) {
    options_.block_bytes = 1024;
    options_.k_pool_blocks = blocks;
    options_.v_pool_blocks = blocks;
    options_.verify_reads = verify_reads;
    StatusOr<std::unique_ptr<KvStore>> s = KvStore::Open(options_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(s).value();
  }
  void SetUp() override { MakeStore(); }

  Status Open(uint64_t id, const std::string& tenant = "acme", int head_begin = 0,
              int head_end = -1) {
    return store_->OpenSequence({.id = id,
                                 .tenant = tenant,
                                 .spec = spec_,
                                 .kv_head_begin = head_begin,
                                 .kv_head_end = head_end});
  }

  // AppendPrefill of tokens [t0, t0 + n) of fn on every layer. REQUIRES: t0 % B == 0.
  Status PrefillAll(uint64_t id, const KvFn& fn, int t0, int n, int head_begin = 0, int heads = 2) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      KvTensors c = BlockChunk(fn, layer, t0, n, head_begin, heads, spec_.block_size,
                               spec_.head_dim, spec_.dtype);
      RETURN_IF_ERROR(store_->AppendPrefill(id, layer, c.k.view(), c.v.view(), n));
    }
    return OkStatus();
  }

  // AppendTokens of tokens [t0, t0 + n) of fn on every layer, in `dtype`.
  Status TokensAll(uint64_t id, const KvFn& fn, int t0, int n, DType dtype, int head_begin = 0,
                   int heads = 2) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      KvTensors r = TokenRows(fn, layer, t0, n, head_begin, heads, spec_.head_dim, dtype);
      RETURN_IF_ERROR(store_->AppendTokens(id, layer, r.k.view(), r.v.view()));
    }
    return OkStatus();
  }

  void ExpectAll(uint64_t id, const KvFn& fn, int len, int head_begin = 0, int head_end = 2) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      for (int h = head_begin; h < head_end; ++h)
        ExpectHolds(*store_, id, layer, h, fn, len, spec_);
    }
  }

  std::vector<BlockView> Read(uint64_t id, int layer, int head) {
    std::vector<BlockView> views;
    EXPECT_OK(store_->ReadBlocks(id, layer, head, &views));
    return views;
  }

  // The bookkeeping identity that holds whenever no operation is running.
  void ExpectBalanced() {
    const KvStoreStats s = store_->Stats();
    EXPECT_EQ(s.k.used_blocks, s.private_blocks + s.prefix_blocks);
    EXPECT_EQ(s.v.used_blocks, s.private_blocks + s.prefix_blocks);
    EXPECT_EQ(s.k.used_blocks + s.k.free_blocks, s.k.capacity_blocks);
    EXPECT_EQ(s.v.used_blocks + s.v.free_blocks, s.v.capacity_blocks);
    EXPECT_LE(s.cached_blocks, s.prefix_blocks);
    EXPECT_LE(s.shared_blocks, s.prefix_blocks);
    EXPECT_OK(store_->Verify());
  }

  KvStoreOptions options_;
  ModelSpec spec_ = SmallSpec();
  std::unique_ptr<KvStore> store_;
};

}  // namespace attic::kv_test
