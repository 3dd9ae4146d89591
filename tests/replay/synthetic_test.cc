#include "services/replay/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "attention_workers/reference_attention.h"
#include "attention_workers/retrieval/head_profile.h"
#include "attention_workers/thread_pool.h"
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

// The uniform generator (SyntheticStructure::kUniform): value ranges and rounding.
TEST(SyntheticKvTest, DTypesHoldTheSameValuesInRange) {
  const std::vector<uint64_t> ids = {1};
  const PromptHashes h = PromptBlockHashes(ids, 512, 64, 1, 3);
  const SyntheticKvOptions uniform{.structure = SyntheticStructure::kUniform};
  const Kv f32 = Prompt(SyntheticKv(Spec(DType::kFloat32), 3, uniform), h, 0, 0, 512);
  const Kv b16 = Prompt(SyntheticKv(Spec(DType::kBFloat16), 3, uniform), h, 0, 0, 512);
  const Kv f16 = Prompt(SyntheticKv(Spec(DType::kFloat16), 3, uniform), h, 0, 0, 512);
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
  const SyntheticKv gen(spec, 3, {.structure = SyntheticStructure::kUniform});
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

TEST(SyntheticKvTest, VectorizedTruncationEqualsPortable) {
  std::vector<float> in(512);
  for (size_t i = 0; i < in.size(); ++i) {
    // Signs, magnitudes from below fp16's normal range to large structured values.
    in[i] = static_cast<float>((i % 2 ? -1.0 : 1.0) *
                               std::ldexp(1.0 + 0.37 * (i % 7), static_cast<int>(i % 36) - 24));
  }
  for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
    std::vector<std::byte> fast(in.size() * DTypeSize(dtype)), portable(fast.size());
    internal::TruncateRow(dtype, in.data(), 512, /*portable=*/false, fast.data());
    internal::TruncateRow(dtype, in.data(), 512, /*portable=*/true, portable.data());
    ASSERT_EQ(fast, portable) << DTypeName(dtype);
    const std::vector<float> back = ToFloat(dtype, fast);
    for (size_t i = 0; i < in.size(); ++i) ASSERT_LE(std::fabs(back[i]), std::fabs(in[i])) << i;
  }
}

// Structured and uniform contents differ, and both are deterministic.
TEST(SyntheticKvTest, StructureOptionSelectsTheGenerator) {
  const ModelSpec spec = Spec();
  const PromptHashes h = PromptBlockHashes({}, 256, spec.block_size, 1, 7);
  const SyntheticKv structured(spec, 7);
  const SyntheticKv uniform(spec, 7, {.structure = SyntheticStructure::kUniform});
  EXPECT_EQ(structured.structure(), SyntheticStructure::kStructured);
  const Kv a = Prompt(structured, h, 0, 0, 256);
  const Kv b = Prompt(uniform, h, 0, 0, 256);
  EXPECT_NE(a.k, b.k);
  EXPECT_EQ(a.v, b.v);  // values are uniform either way
  EXPECT_EQ(a.k, Prompt(SyntheticKv(spec, 7), h, 0, 0, 256).k);
}

// Prompt queries: functions of (content, position, layer, head, seed), equal for a block two
// requests share, and the same rows FillDecode gives for tail positions.
TEST(SyntheticKvTest, PromptQueriesAreDeterministicAndMatchDecodeQueries) {
  const ModelSpec spec = Spec();
  const SyntheticKv gen(spec, 11);
  const std::vector<uint64_t> a_ids = {0, 1, 2};
  const std::vector<uint64_t> b_ids = {0, 1, 7};
  const PromptHashes a = PromptBlockHashes(a_ids, 1400, spec.block_size, 1, 11);
  const PromptHashes b = PromptBlockHashes(b_ids, 1500, spec.block_size, 2, 11);
  std::vector<int64_t> positions;
  for (int64_t p = 0; p < 1400; p += 16) positions.push_back(p);
  const size_t qrow = static_cast<size_t>(spec.num_q_heads) * spec.head_dim * 2;
  std::vector<std::byte> qa(positions.size() * qrow), qb(qa.size()), qa2(qa.size());
  gen.FillPromptQueries(a, 1, positions, qa.data());
  gen.FillPromptQueries(b, 1, positions, qb.data());
  gen.FillPromptQueries(a, 1, positions, qa2.data());
  EXPECT_EQ(qa, qa2);
  for (size_t i = 0; i < positions.size(); ++i) {
    const bool same = std::memcmp(qa.data() + i * qrow, qb.data() + i * qrow, qrow) == 0;
    EXPECT_EQ(same, positions[i] < 1024) << positions[i];  // the shared blocks only
  }
  // Position 1392 lies in a's partial last block: its query is FillDecode's for the tail.
  const size_t tb = TokenBytes(spec);
  std::vector<std::byte> k(tb), v(tb), q(qrow);
  gen.FillDecode(a.tail, 1392, 1, k.data(), v.data(), q.data());
  EXPECT_EQ(0, std::memcmp(q.data(), qa.data() + (positions.size() - 1) * qrow, qrow));
  // Another layer, another query.
  std::vector<std::byte> q0(qa.size());
  gen.FillPromptQueries(a, 0, positions, q0.data());
  EXPECT_NE(q0, qa);
}

// ---- Attention structure on attic-ref-54m's shape, measured with the project's own exact
// attention (fp64 ReferenceAttention) and head profiler.

ModelSpec RefSpec() {
  return ModelSpec{.name = "attic-ref-54m",
                   .num_layers = 6,
                   .num_q_heads = 8,
                   .num_kv_heads = 2,
                   .head_dim = 128,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

constexpr int64_t kContext = 16384;
constexpr int kDecodeSteps = 16;

// One (layer, KV head) of a kContext-token context: the prompt's keys and values plus
// kDecodeSteps decode tokens, per head in fp32 (as stored) and as bf16 rows.
struct HeadKv {
  std::vector<float> k;                 // [n, D] fp32, the stored bf16 values widened
  std::vector<std::byte> k_raw, v_raw;  // [n, D] bf16
};

struct LayerContext {
  std::vector<HeadKv> heads;          // per KV head
  std::vector<std::vector<float>> q;  // per decode step: [Hq, D] fp32
  std::vector<int64_t> q_positions;
};

LayerContext MakeLayer(const SyntheticKv& gen, const PromptHashes& h, int layer) {
  const ModelSpec& spec = gen.spec();
  const int hkv = spec.num_kv_heads, d = spec.head_dim;
  const int64_t prompt = kContext - kDecodeSteps;
  const size_t row = static_cast<size_t>(d) * 2;
  std::vector<std::byte> k(static_cast<size_t>(kContext) * hkv * row), v(k.size());
  gen.FillPrompt(h, layer, 0, prompt, k.data(), v.data());
  LayerContext out;
  for (int s = 0; s < kDecodeSteps; ++s) {
    const int64_t t = prompt + s;
    std::vector<std::byte> q(static_cast<size_t>(spec.num_q_heads) * row);
    gen.FillDecode(h.tail, t, layer, k.data() + t * hkv * row, v.data() + t * hkv * row, q.data());
    out.q.push_back(ToFloat(DType::kBFloat16, q));
    out.q_positions.push_back(t);
  }
  for (int head = 0; head < hkv; ++head) {
    HeadKv hk;
    hk.k_raw.resize(static_cast<size_t>(kContext) * row);
    hk.v_raw.resize(hk.k_raw.size());
    for (int64_t t = 0; t < kContext; ++t) {
      std::memcpy(hk.k_raw.data() + t * row, k.data() + (t * hkv + head) * row, row);
      std::memcpy(hk.v_raw.data() + t * row, v.data() + (t * hkv + head) * row, row);
    }
    hk.k = ToFloat(DType::kBFloat16, hk.k_raw);
    out.heads.push_back(std::move(hk));
  }
  return out;
}

// Mean over the group's heads of the softmax mass a query group at t puts on sinks(4) +
// window(64) + the top-100 other keys by the group's max q.k: exp(lse_S - lse_all), both by
// ReferenceAttention.
double SelectionMass(const HeadKv& hk, const float* q, int g, int d, float scale, int64_t t) {
  const int64_t ctx = t + 1;
  std::vector<float> score(static_cast<size_t>(ctx), -1e30f);
  for (int64_t p = 0; p < ctx; ++p) {
    for (int i = 0; i < g; ++i) {
      float acc = 0;
      for (int j = 0; j < d; ++j) acc += q[i * d + j] * hk.k[static_cast<size_t>(p) * d + j];
      score[static_cast<size_t>(p)] = std::max(score[static_cast<size_t>(p)], acc);
    }
  }
  std::vector<int64_t> cand;
  for (int64_t p = 4; p < ctx - 64; ++p) cand.push_back(p);
  std::partial_sort(cand.begin(), cand.begin() + 100, cand.end(),
                    [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  std::vector<int64_t> sel(cand.begin(), cand.begin() + 100);
  for (int64_t p = 0; p < 4; ++p) sel.push_back(p);
  for (int64_t p = ctx - 64; p < ctx; ++p) sel.push_back(p);
  std::sort(sel.begin(), sel.end());
  const size_t row = static_cast<size_t>(d) * 2;
  std::vector<std::byte> ks(sel.size() * row), vs(ks.size());
  for (size_t i = 0; i < sel.size(); ++i) {
    std::memcpy(ks.data() + i * row, hk.k_raw.data() + sel[i] * row, row);
    std::memcpy(vs.data() + i * row, hk.v_raw.data() + sel[i] * row, row);
  }
  const std::vector<KvRun> all = {{hk.k_raw.data(), hk.v_raw.data(), static_cast<int>(ctx)}};
  const std::vector<KvRun> part = {{ks.data(), vs.data(), static_cast<int>(sel.size())}};
  std::vector<double> o(static_cast<size_t>(g) * d), lse_all(g), lse_sel(g);
  ReferenceAttention(q, g, d, scale, DType::kBFloat16, all, o.data(), lse_all.data());
  ReferenceAttention(q, g, d, scale, DType::kBFloat16, part, o.data(), lse_sel.data());
  double mass = 0;
  for (int i = 0; i < g; ++i) mass += std::exp(lse_sel[i] - lse_all[i]);
  return mass / g;
}

class SyntheticStructureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const ModelSpec spec = RefSpec();
    gen_ = new SyntheticKv(spec, 5);
    hashes_ = new PromptHashes(PromptBlockHashes({}, kContext, spec.block_size, 1, 5));
    layers_ = new std::vector<LayerContext>;
    for (int layer = 0; layer < spec.num_layers; ++layer) {
      layers_->push_back(MakeLayer(*gen_, *hashes_, layer));
    }
  }
  static void TearDownTestSuite() {
    delete layers_;
    delete hashes_;
    delete gen_;
  }
  static SyntheticKv* gen_;
  static PromptHashes* hashes_;
  static std::vector<LayerContext>* layers_;
};
SyntheticKv* SyntheticStructureTest::gen_ = nullptr;
PromptHashes* SyntheticStructureTest::hashes_ = nullptr;
std::vector<LayerContext>* SyntheticStructureTest::layers_ = nullptr;

// The table maps attic-ref-54m's 6 layers x 2 KV heads to the reference rows by depth: the
// first two layers take the dump's diffuse layer 1, the other four its sparse layer 4.
TEST_F(SyntheticStructureTest, HeadsFollowTheReferenceTable) {
  const auto table = ReferenceHeadProfiles();
  ASSERT_EQ(table.size(), 4u);
  int dense = 0;
  for (int layer = 0; layer < 6; ++layer) {
    for (int h = 0; h < 2; ++h) {
      const SyntheticHeadProfile& p = gen_->profile(layer, h);
      EXPECT_EQ(p.dump_layer, layer < 2 ? 1 : 4) << layer;
      EXPECT_EQ(p.dump_head, h);
      dense += p.dense();
    }
  }
  EXPECT_EQ(dense, 4);
  // The table's own verdicts: the dump's layer 1 diffuse, layer 4 sparse.
  for (const auto& row : table) EXPECT_EQ(row.dense(), row.dump_layer == 1);
}

// Exact attention: sparse heads put >= 0.8 of their mass on sinks + window + top-100,
// diffuse heads under 0.6; each head within 0.1 of the dump head its row was measured on, and
// the mean of the heads that follow one row within 0.05 of it (the distribution over the 12
// heads is the table's). The uniform generator, by contrast, has nothing to select.
TEST_F(SyntheticStructureTest, SelectionMassPerHeadMatchesTheTable) {
  const ModelSpec& spec = gen_->spec();
  const int g = spec.group_size(), d = spec.head_dim;
  std::vector<double> row_sum(ReferenceHeadProfiles().size()), row_n(row_sum.size());
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    const LayerContext& lc = (*layers_)[static_cast<size_t>(layer)];
    for (int h = 0; h < spec.num_kv_heads; ++h) {
      double mass = 0;
      for (size_t s = 0; s < lc.q.size(); ++s) {
        mass += SelectionMass(lc.heads[h], lc.q[s].data() + static_cast<size_t>(h) * g * d, g, d,
                              spec.EffectiveScale(), lc.q_positions[s]);
      }
      mass /= static_cast<double>(lc.q.size());
      const SyntheticHeadProfile& p = gen_->profile(layer, h);
      RecordProperty("L" + std::to_string(layer) + "H" + std::to_string(h) + "_mass",
                     std::to_string(mass));
      std::printf("layer %d kv head %d: selection mass %.3f (dump layer %d head %d: %.3f)\n", layer,
                  h, mass, p.dump_layer, p.dump_head, p.oracle_mass);
      if (p.dense()) {
        EXPECT_LT(mass, 0.6) << "layer " << layer << " head " << h;
      } else {
        EXPECT_GE(mass, 0.8) << "layer " << layer << " head " << h;
      }
      EXPECT_NEAR(mass, p.oracle_mass, 0.1) << "layer " << layer << " head " << h;
      for (size_t r = 0; r < row_sum.size(); ++r) {
        const SyntheticHeadProfile& t = ReferenceHeadProfiles()[r];
        if (t.dump_layer == p.dump_layer && t.dump_head == p.dump_head) {
          row_sum[r] += mass;
          row_n[r] += 1;
        }
      }
    }
  }
  for (size_t r = 0; r < row_sum.size(); ++r) {
    const SyntheticHeadProfile& t = ReferenceHeadProfiles()[r];
    ASSERT_GT(row_n[r], 0) << "row " << r << " unused";
    EXPECT_NEAR(row_sum[r] / row_n[r], t.oracle_mass, 0.05)
        << "dump layer " << t.dump_layer << " head " << t.dump_head;
  }

  const SyntheticKv uniform(spec, 5, {.structure = SyntheticStructure::kUniform});
  const LayerContext u = MakeLayer(uniform, *hashes_, 3);
  const double um =
      SelectionMass(u.heads[0], u.q[0].data(), g, d, spec.EffectiveScale(), u.q_positions[0]);
  EXPECT_LT(um, 0.1);
}

// The worker's head profiler, fed prompt queries (every 16th position, as the replay would
// send them with Client::BuildIndex), marks exactly the diffuse rows' heads dense.
TEST_F(SyntheticStructureTest, HeadProfilerMarksTheIntendedHeadsDense) {
  const ModelSpec& spec = gen_->spec();
  const int g = spec.group_size(), d = spec.head_dim, hq = spec.num_q_heads;
  std::vector<int64_t> positions;
  for (int64_t p = 0; p < kContext - kDecodeSteps; p += 16) positions.push_back(p);
  std::vector<int32_t> positions32(positions.begin(), positions.end());
  ThreadPool pool({.num_threads = 2});
  int dense = 0;
  for (int layer = 0; layer < spec.num_layers; ++layer) {
    std::vector<std::byte> qraw(positions.size() * hq * d * 2);
    gen_->FillPromptQueries(*hashes_, layer, positions, qraw.data());
    const std::vector<float> q = ToFloat(DType::kBFloat16, qraw);
    for (int h = 0; h < spec.num_kv_heads; ++h) {
      const HeadKv& hk = (*layers_)[static_cast<size_t>(layer)].heads[h];
      std::vector<float> group(positions.size() * g * d);
      for (size_t i = 0; i < positions.size(); ++i) {
        std::memcpy(&group[i * g * d], &q[(i * hq + static_cast<size_t>(h) * g) * d],
                    static_cast<size_t>(g) * d * sizeof(float));
      }
      const std::vector<const std::byte*> blocks = {hk.k_raw.data()};
      const retrieval::KeyRows rows{.blocks = blocks,
                                    .block_size = static_cast<int>(kContext),
                                    .head_dim = d,
                                    .dtype = DType::kBFloat16,
                                    .count = kContext - kDecodeSteps};
      auto p = retrieval::ProfileHead(rows,
                                      {.q = group.data(),
                                       .num_queries = static_cast<int>(positions.size()),
                                       .group_size = g,
                                       .head_dim = d,
                                       .positions = positions32},
                                      {.scale = spec.EffectiveScale(), .pool = &pool});
      ASSERT_TRUE(p.ok()) << p.status();
      EXPECT_TRUE(p->has_evidence);
      std::printf("layer %d kv head %d: %s\n", layer, h, p->ToString().c_str());
      EXPECT_EQ(p->dense, gen_->profile(layer, h).dense())
          << "layer " << layer << " head " << h << ": " << p->ToString();
      dense += p->dense;
    }
  }
  EXPECT_EQ(dense, 4);
}

// Structure does not break determinism: a shared prefix holds the same bytes whichever
// request prefilled it and however the prefill was cut into chunks.
TEST(SyntheticKvTest, StructuredSharedPrefixIsIndependentOfRequestAndChunks) {
  const ModelSpec spec = RefSpec();
  const SyntheticKv gen(spec, 3);
  const std::vector<uint64_t> a_ids = {9, 8, 7, 6};
  const std::vector<uint64_t> b_ids = {9, 8, 7, 1};
  const PromptHashes a = PromptBlockHashes(a_ids, 2048, spec.block_size, 1, 3);
  const PromptHashes b = PromptBlockHashes(b_ids, 3000, spec.block_size, 2, 3);
  const Kv whole = Prompt(gen, a, 4, 0, 2048);
  // b: prefilled from a prefix-cache hit at 1024, then in uneven chunks.
  const Kv b1 = Prompt(gen, b, 4, 0, 1000);
  const Kv b2 = Prompt(gen, b, 4, 1000, 77);
  const Kv b3 = Prompt(gen, b, 4, 1077, 459);
  std::vector<std::byte> k = b1.k, v = b1.v;
  for (const Kv* part : {&b2, &b3}) {
    k.insert(k.end(), part->k.begin(), part->k.end());
    v.insert(v.end(), part->v.begin(), part->v.end());
  }
  const size_t shared = 1536 * TokenBytes(spec);
  EXPECT_EQ(0, std::memcmp(k.data(), whole.k.data(), shared));
  EXPECT_EQ(0, std::memcmp(v.data(), whole.v.data(), shared));
}

}  // namespace
}  // namespace attic::replay
