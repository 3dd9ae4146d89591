#include "services/replay/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "services/replay/internal/synthetic_row.h"

namespace attic::replay {
namespace {

ModelSpec Spec(DType dtype = DType::kBFloat16, int block = 64) {
  return ModelSpec{.name = "synthetic-test",
                   .num_layers = 2,
                   .num_q_heads = 4,
                   .num_kv_heads = 2,
                   .head_dim = 64,
                   .dtype = dtype,
                   .block_size = block};
}

size_t TokenBytes(const ModelSpec& s) {
  return static_cast<size_t>(s.num_kv_heads) * static_cast<size_t>(s.head_dim) * DTypeSize(s.dtype);
}

struct Kv {
  std::vector<std::byte> k, v;
};

// K and V of prompt tokens [first, first + n) of one layer.
Kv Prompt(const SyntheticKv& gen, const PromptHashes& h, int layer, int64_t first, int64_t n) {
  Kv kv;
  kv.k.resize(static_cast<size_t>(n) * TokenBytes(gen.spec()));
  kv.v.resize(kv.k.size());
  gen.FillPrompt(h, layer, first, n, kv.k.data(), kv.v.data());
  return kv;
}

// Whether token t of a and token u of b hold the same K and V bytes.
bool SameToken(const ModelSpec& s, const Kv& a, int64_t t, const Kv& b, int64_t u) {
  const size_t tb = TokenBytes(s);
  return std::memcmp(a.k.data() + t * tb, b.k.data() + u * tb, tb) == 0 &&
         std::memcmp(a.v.data() + t * tb, b.v.data() + u * tb, tb) == 0;
}

std::vector<float> ToFloat(DType dtype, const std::vector<std::byte>& bytes) {
  std::vector<float> out(bytes.size() / DTypeSize(dtype));
  ConvertToFloat(dtype, bytes.data(), out.data(), out.size());
  return out;
}

TEST(PromptBlockHashesTest, OneHashPerFullBlockAndEightPerTraceId) {
  const std::vector<uint64_t> ids = {0, 1, 2};
  const PromptHashes h = PromptBlockHashes(ids, 1500, 64, /*unique=*/1, /*seed=*/7);
  EXPECT_EQ(h.blocks.size(), 23u);  // 1500 / 64
  const PromptHashes again = PromptBlockHashes(ids, 1500, 64, 1, 7);
  EXPECT_EQ(h.blocks, again.blocks);
  EXPECT_EQ(h.tail, again.tail);
  // All distinct: sub-blocks of one trace id do not repeat a hash.
  std::vector<uint64_t> sorted = h.blocks;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  // Another seed: another chain.
  const PromptHashes other_seed = PromptBlockHashes(ids, 1500, 64, 1, 8);
  EXPECT_NE(h.blocks[0], other_seed.blocks[0]);
  EXPECT_TRUE(PromptBlockHashes(ids, 63, 64, 1, 7).blocks.empty());
  EXPECT_TRUE(PromptBlockHashes(ids, 0, 64, 1, 7).blocks.empty());
}

TEST(PromptBlockHashesTest, SharedLeadingIdsShareExactlyTheirBlocks) {
  const std::vector<uint64_t> a = {0, 1, 2, 3};
  const std::vector<uint64_t> b = {0, 1, 9, 3};  // same ids after a difference: not shared
  const PromptHashes ha = PromptBlockHashes(a, 2048, 64, 1, 7);
  const PromptHashes hb = PromptBlockHashes(b, 2048, 64, 2, 7);
  ASSERT_EQ(ha.blocks.size(), 32u);
  ASSERT_EQ(hb.blocks.size(), 32u);
  for (size_t i = 0; i < 32; ++i) {
    if (i < 16) {
      EXPECT_EQ(ha.blocks[i], hb.blocks[i]) << i;
    } else {
      EXPECT_NE(ha.blocks[i], hb.blocks[i]) << i;
    }
  }
  EXPECT_NE(ha.tail, hb.tail);
  // Same ids, other request: full blocks shared, tail private.
  const PromptHashes ha2 = PromptBlockHashes(a, 2048, 64, 3, 7);
  EXPECT_EQ(ha.blocks, ha2.blocks);
  EXPECT_NE(ha.tail, ha2.tail);
}

TEST(PromptBlockHashesTest, MissingIdsArePrivateExtraIdsIgnored) {
  const std::vector<uint64_t> one = {5};
  const PromptHashes a = PromptBlockHashes(one, 1024, 64, 1, 7);
  const PromptHashes b = PromptBlockHashes(one, 1024, 64, 2, 7);
  for (size_t i = 0; i < 16; ++i) {
    if (i < 8) {
      EXPECT_EQ(a.blocks[i], b.blocks[i]) << i;
    } else {
      EXPECT_NE(a.blocks[i], b.blocks[i]) << i;  // past the ids: unique to each request
    }
  }
  const std::vector<uint64_t> more = {5, 6, 7};
  EXPECT_EQ(PromptBlockHashes(more, 512, 64, 1, 7).blocks,
            PromptBlockHashes(one, 512, 64, 2, 7).blocks);
}

TEST(PromptBlockHashesTest, RequestsWithoutIdsShareNothing) {
  const PromptHashes a = PromptBlockHashes({}, 4096, 64, 1, 7);
  const PromptHashes b = PromptBlockHashes({}, 4096, 64, 2, 7);
  ASSERT_EQ(a.blocks.size(), 64u);
  for (size_t i = 0; i < a.blocks.size(); ++i) EXPECT_NE(a.blocks[i], b.blocks[i]) << i;
  EXPECT_NE(a.tail, b.tail);
  // Deterministic all the same.
  EXPECT_EQ(a.blocks, PromptBlockHashes({}, 4096, 64, 1, 7).blocks);
}

TEST(PromptBlockHashesTest, BlockSizesThatDoNotDivide512) {
  const std::vector<uint64_t> a = {0, 1, 2};
  const std::vector<uint64_t> b = {0, 4, 2};
  // B = 48: blocks 0..9 lie in trace block 0; block 10 (tokens 480..527) reaches id 1.
  const PromptHashes a48 = PromptBlockHashes(a, 1536, 48, 1, 7);
  const PromptHashes b48 = PromptBlockHashes(b, 1536, 48, 2, 7);
  ASSERT_EQ(a48.blocks.size(), 32u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(a48.blocks[i], b48.blocks[i]) << i;
  EXPECT_NE(a48.blocks[10], b48.blocks[10]);
  // B = 1024: one block spans ids 0 and 1.
  const PromptHashes a1k = PromptBlockHashes(a, 1536, 1024, 1, 7);
  const PromptHashes b1k = PromptBlockHashes(b, 1536, 1024, 2, 7);
  ASSERT_EQ(a1k.blocks.size(), 1u);
  EXPECT_NE(a1k.blocks[0], b1k.blocks[0]);
  const std::vector<uint64_t> c = {0, 1, 5};
  EXPECT_EQ(a1k.blocks[0], PromptBlockHashes(c, 1536, 1024, 3, 7).blocks[0]);
}

TEST(SyntheticKvTest, Deterministic) {
  const ModelSpec spec = Spec();
  const std::vector<uint64_t> ids = {3, 4};
  const PromptHashes h = PromptBlockHashes(ids, 700, spec.block_size, 1, 7);
  const SyntheticKv g1(spec, 7), g2(spec, 7), other(spec, 8);
  const Kv a = Prompt(g1, h, 1, 0, 700);
  const Kv b = Prompt(g2, h, 1, 0, 700);
  EXPECT_EQ(a.k, b.k);
  EXPECT_EQ(a.v, b.v);
  EXPECT_NE(a.k, a.v);
  const Kv c = Prompt(other, h, 1, 0, 700);
  EXPECT_NE(a.k, c.k);
  const Kv layer0 = Prompt(g1, h, 0, 0, 700);
  EXPECT_NE(a.k, layer0.k);
  // The two heads of one token differ.
  const size_t row = static_cast<size_t>(spec.head_dim) * DTypeSize(spec.dtype);
  EXPECT_NE(std::memcmp(a.k.data(), a.k.data() + row, row), 0);
}

TEST(SyntheticKvTest, SharedPrefixHasIdenticalBytesThenDiverges) {
  const ModelSpec spec = Spec();
  const SyntheticKv gen(spec, 11);
  const std::vector<uint64_t> a_ids = {0, 1, 2};
  const std::vector<uint64_t> b_ids = {0, 1, 7, 8};
  const PromptHashes a = PromptBlockHashes(a_ids, 1400, spec.block_size, 1, 11);
  const PromptHashes b = PromptBlockHashes(b_ids, 2000, spec.block_size, 2, 11);
  const Kv ka = Prompt(gen, a, 0, 0, 1400);
  const Kv kb = Prompt(gen, b, 0, 0, 1400);
  for (int64_t t = 0; t < 1400; ++t) {
    if (t < 1024) {
      ASSERT_TRUE(SameToken(spec, ka, t, kb, t)) << t;
    } else {
      ASSERT_FALSE(SameToken(spec, ka, t, kb, t)) << t;
    }
  }
  // A position's content depends on the position: block 0's tokens all differ.
  EXPECT_FALSE(SameToken(spec, ka, 0, ka, 1));
}

TEST(SyntheticKvTest, RequestsWithoutIdsShareNoContent) {
  const ModelSpec spec = Spec();
  const SyntheticKv gen(spec, 11);
  const PromptHashes a = PromptBlockHashes({}, 300, spec.block_size, 1, 11);
  const PromptHashes b = PromptBlockHashes({}, 300, spec.block_size, 2, 11);
  const Kv ka = Prompt(gen, a, 0, 0, 300);
  const Kv kb = Prompt(gen, b, 0, 0, 300);
  for (int64_t t = 0; t < 300; ++t) ASSERT_FALSE(SameToken(spec, ka, t, kb, t)) << t;
}

TEST(SyntheticKvTest, PartialLastBlockAndDecodeUseTheTail) {
  const ModelSpec spec = Spec();
  const SyntheticKv gen(spec, 5);
  const std::vector<uint64_t> ids = {1, 2};
  const PromptHashes a = PromptBlockHashes(ids, 1000, spec.block_size, 1, 5);  // 15 full blocks
  const PromptHashes b = PromptBlockHashes(ids, 1000, spec.block_size, 2, 5);
  ASSERT_EQ(a.blocks.size(), 15u);
  const Kv ka = Prompt(gen, a, 1, 0, 1000);
  const Kv kb = Prompt(gen, b, 1, 0, 1000);
  for (int64_t t = 0; t < 1000; ++t) {
    EXPECT_EQ(SameToken(spec, ka, t, kb, t), t < 960) << t;  // the tail is private
  }
  // Token 970 of the prompt is what FillDecode gives for the tail at position 970.
  const size_t tb = TokenBytes(spec);
  Kv dec{std::vector<std::byte>(tb), std::vector<std::byte>(tb)};
  std::vector<std::byte> q(static_cast<size_t>(spec.num_q_heads) * spec.head_dim * 2);
  gen.FillDecode(a.tail, 970, 1, dec.k.data(), dec.v.data(), q.data());
  EXPECT_TRUE(SameToken(spec, ka, 970, dec, 0));
  // Decode tokens past the prompt: deterministic, position-dependent, with a query.
  Kv d1{std::vector<std::byte>(tb), std::vector<std::byte>(tb)};
  Kv d2 = d1;
  std::vector<std::byte> q1(q.size()), q2(q.size());
  gen.FillDecode(a.tail, 1000, 1, d1.k.data(), d1.v.data(), q1.data());
  gen.FillDecode(a.tail, 1000, 1, d2.k.data(), d2.v.data(), q2.data());
  EXPECT_TRUE(SameToken(spec, d1, 0, d2, 0));
  EXPECT_EQ(q1, q2);
  gen.FillDecode(a.tail, 1001, 1, d2.k.data(), d2.v.data(), q2.data());
  EXPECT_FALSE(SameToken(spec, d1, 0, d2, 0));
  EXPECT_NE(q1, q2);
}

TEST(SyntheticKvTest, FillsInPiecesEqualOneFill) {
  const ModelSpec spec = Spec();
  const SyntheticKv gen(spec, 9);
  const std::vector<uint64_t> ids = {4, 5};
  const PromptHashes h = PromptBlockHashes(ids, 1100, spec.block_size, 1, 9);
  const Kv whole = Prompt(gen, h, 0, 100, 1000);  // [100, 1100)
  const Kv first = Prompt(gen, h, 0, 100, 437);   // [100, 537)
  const Kv second = Prompt(gen, h, 0, 537, 563);  // [537, 1100)
  std::vector<std::byte> k = first.k, v = first.v;
  k.insert(k.end(), second.k.begin(), second.k.end());
  v.insert(v.end(), second.v.begin(), second.v.end());
  EXPECT_EQ(k, whole.k);
  EXPECT_EQ(v, whole.v);
}

TEST(SyntheticKvTest, DTypesHoldTheSameValuesInRange) {
  const std::vector<uint64_t> ids = {1};
  const PromptHashes h = PromptBlockHashes(ids, 512, 64, 1, 3);
  const Kv f32 = Prompt(SyntheticKv(Spec(DType::kFloat32), 3), h, 0, 0, 512);
  const Kv b16 = Prompt(SyntheticKv(Spec(DType::kBFloat16), 3), h, 0, 0, 512);
  const Kv f16 = Prompt(SyntheticKv(Spec(DType::kFloat16), 3), h, 0, 0, 512);
  ASSERT_EQ(f32.k.size(), 2 * b16.k.size());
  ASSERT_EQ(f16.k.size(), b16.k.size());
  const std::vector<float> k32 = ToFloat(DType::kFloat32, f32.k);
  const std::vector<float> v32 = ToFloat(DType::kFloat32, f32.v);
  const std::vector<float> kb = ToFloat(DType::kBFloat16, b16.k);
  const std::vector<float> kh = ToFloat(DType::kFloat16, f16.k);
  const std::vector<float> vb = ToFloat(DType::kBFloat16, b16.v);
  double k_sum = 0, k_sq = 0, v_sum = 0, v_sq = 0;
  for (size_t i = 0; i < k32.size(); ++i) {
    ASSERT_GE(k32[i], -2.0f);
    ASSERT_LT(k32[i], 2.0f);
    ASSERT_GE(v32[i], -1.0f);
    ASSERT_LT(v32[i], 1.0f);
    // bf16 and fp16 are the fp32 value rounded toward zero.
    ASSERT_LE(std::fabs(kb[i]), std::fabs(k32[i]));
    ASSERT_LE(std::fabs(k32[i] - kb[i]), std::fabs(k32[i]) / 128 + 1e-30f) << i;
    ASSERT_LE(std::fabs(k32[i] - kh[i]), std::fabs(k32[i]) / 1024 + 1.0f / 16384) << i;
    ASSERT_LE(std::fabs(v32[i] - vb[i]), std::fabs(v32[i]) / 128 + 1e-30f) << i;
    k_sum += k32[i];
    k_sq += static_cast<double>(k32[i]) * k32[i];
    v_sum += v32[i];
    v_sq += static_cast<double>(v32[i]) * v32[i];
  }
  const auto n = static_cast<double>(k32.size());  // 65536 values
  EXPECT_NEAR(k_sum / n, 0.0, 0.03);
  EXPECT_NEAR(k_sq / n, 16.0 / 12, 0.03);  // uniform on [-2, 2)
  EXPECT_NEAR(v_sum / n, 0.0, 0.02);
  EXPECT_NEAR(v_sq / n, 4.0 / 12, 0.01);  // uniform on [-1, 1)
}

TEST(SyntheticKvTest, VectorizedRowsEqualPortableRows) {
  for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
    for (int d : {32, 64, 128, 512}) {
      for (uint64_t state : {0ull, 1ull, 0x0123456789abcdefull, ~0ull}) {
        for (bool key : {false, true}) {
          std::vector<std::byte> fast(static_cast<size_t>(d) * DTypeSize(dtype));
          std::vector<std::byte> portable(fast.size());
          internal::SyntheticRow(dtype, state, d, key, /*portable=*/false, fast.data());
          internal::SyntheticRow(dtype, state, d, key, /*portable=*/true, portable.data());
          ASSERT_EQ(fast, portable) << DTypeName(dtype) << " d=" << d << " state=" << state;
        }
      }
    }
  }
  // An unaligned destination is fine.
  std::vector<std::byte> buf(64 * 4 + 1);
  internal::SyntheticRow(DType::kFloat32, 5, 64, true, false, buf.data() + 1);
  std::vector<std::byte> ref(size_t{64} * 4);
  internal::SyntheticRow(DType::kFloat32, 5, 64, true, true, ref.data());
  EXPECT_EQ(0, std::memcmp(buf.data() + 1, ref.data(), ref.size()));
}

TEST(SyntheticKvTest, QueriesAreUnitRangeAndPerHead) {
  const ModelSpec spec = Spec(DType::kFloat32);
  const SyntheticKv gen(spec, 3);
  const size_t tb = TokenBytes(spec);
  std::vector<std::byte> k(tb), v(tb), q(static_cast<size_t>(spec.num_q_heads) * spec.head_dim * 4);
  gen.FillDecode(/*tail=*/42, 10, 0, k.data(), v.data(), q.data());
  const std::vector<float> qf = ToFloat(DType::kFloat32, q);
  for (float x : qf) {
    ASSERT_GE(x, -1.0f);
    ASSERT_LT(x, 1.0f);
  }
  const auto d = static_cast<size_t>(spec.head_dim);
  EXPECT_NE(std::memcmp(qf.data(), qf.data() + d, d * sizeof(float)), 0);
}

}  // namespace
}  // namespace attic::replay
