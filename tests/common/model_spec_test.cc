#include "common/model_spec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace attic {
namespace {

// The reference model of shared/data/qkv: 8 query heads over 2 KV heads, D = 128.
ModelSpec RefModel() {
  return ModelSpec{.name = "attic-ref-54m",
                   .num_layers = 6,
                   .num_q_heads = 8,
                   .num_kv_heads = 2,
                   .head_dim = 128,
                   .dtype = DType::kFloat16};
}

TEST(ModelSpecTest, ValidSpecs) {
  EXPECT_TRUE(RefModel().Validate().ok()) << RefModel().Validate();
  const ModelSpec llama{.name = "llama-3-8b",
                        .num_layers = 32,
                        .num_q_heads = 32,
                        .num_kv_heads = 8,
                        .head_dim = 128,
                        .dtype = DType::kBFloat16};
  EXPECT_TRUE(llama.Validate().ok()) << llama.Validate();
  EXPECT_EQ(llama.block_size, 64);  // the documented default
  EXPECT_EQ(llama.group_size(), 4);
}

TEST(ModelSpecTest, BoundariesAccepted) {
  const std::vector<std::function<void(ModelSpec&)>> edits = {
      [](ModelSpec& s) { s.num_layers = 1; },
      [](ModelSpec& s) { s.num_layers = 4096; },
      [](ModelSpec& s) {
        s.num_kv_heads = 1;
        s.num_q_heads = 128;
      },  // group 128
      [](ModelSpec& s) {
        s.num_kv_heads = 1024;
        s.num_q_heads = 1024;
      },
      [](ModelSpec& s) { s.head_dim = 32; },
      [](ModelSpec& s) { s.head_dim = 512; },
      [](ModelSpec& s) { s.block_size = 16; },
      [](ModelSpec& s) { s.block_size = 1024; },
      [](ModelSpec& s) { s.softmax_scale = 0.125f; },
      [](ModelSpec& s) { s.dtype = DType::kFloat32; },
      [](ModelSpec& s) { s.dtype = DType::kBFloat16; },
      [](ModelSpec& s) { s.name = ""; },
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    ModelSpec s = RefModel();
    edits[i](s);
    EXPECT_TRUE(s.Validate().ok()) << "edit " << i << ": " << s.Validate();
  }
}

struct BadField {
  const char* field;
  std::function<void(ModelSpec&)> edit;
};

TEST(ModelSpecTest, ValidateNamesTheBadField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<BadField> cases = {
      {"num_layers", [](ModelSpec& s) { s.num_layers = 0; }},
      {"num_layers", [](ModelSpec& s) { s.num_layers = -3; }},
      {"num_layers", [](ModelSpec& s) { s.num_layers = 4097; }},
      {"num_kv_heads", [](ModelSpec& s) { s.num_kv_heads = 0; }},
      {"num_kv_heads", [](ModelSpec& s) { s.num_kv_heads = -1; }},
      {"num_kv_heads",
       [](ModelSpec& s) {
         s.num_kv_heads = 1025;
         s.num_q_heads = 1025;
       }},
      {"num_q_heads", [](ModelSpec& s) { s.num_q_heads = 0; }},
      {"num_q_heads", [](ModelSpec& s) { s.num_q_heads = -8; }},
      {"num_q_heads", [](ModelSpec& s) { s.num_q_heads = 7; }},  // not a multiple of 2
      {"num_q_heads",
       [](ModelSpec& s) {
         s.num_kv_heads = 1;
         s.num_q_heads = 256;
       }},  // G > 128
      {"head_dim", [](ModelSpec& s) { s.head_dim = 0; }},
      {"head_dim", [](ModelSpec& s) { s.head_dim = 16; }},
      {"head_dim", [](ModelSpec& s) { s.head_dim = 100; }},
      {"head_dim", [](ModelSpec& s) { s.head_dim = 544; }},
      {"block_size", [](ModelSpec& s) { s.block_size = 0; }},
      {"block_size", [](ModelSpec& s) { s.block_size = 8; }},
      {"block_size", [](ModelSpec& s) { s.block_size = 24; }},
      {"block_size", [](ModelSpec& s) { s.block_size = 1040; }},
      {"softmax_scale", [](ModelSpec& s) { s.softmax_scale = -0.1f; }},
      {"softmax_scale", [nan](ModelSpec& s) { s.softmax_scale = nan; }},
      {"softmax_scale", [inf](ModelSpec& s) { s.softmax_scale = inf; }},
      {"dtype", [](ModelSpec& s) { s.dtype = static_cast<DType>(3); }},
      {"dtype", [](ModelSpec& s) { s.dtype = static_cast<DType>(200); }},
  };
  for (const BadField& c : cases) {
    ModelSpec s = RefModel();
    c.edit(s);
    const Status st = s.Validate();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.field << ": " << st;
    EXPECT_NE(st.message().find(c.field), std::string_view::npos)
        << "message does not name " << c.field << ": " << st;
    EXPECT_NE(st.message().find("attic-ref-54m"), std::string_view::npos)
        << "message does not name the model: " << st;
  }
}

TEST(ModelSpecTest, ValidateNamesTheFirstBadField) {
  ModelSpec s = RefModel();
  s.head_dim = 7;
  s.block_size = 7;
  const Status st = s.Validate();
  EXPECT_NE(st.message().find("head_dim"), std::string_view::npos) << st;
  EXPECT_EQ(st.message().find("block_size"), std::string_view::npos) << st;
}

TEST(ModelSpecTest, DefaultConstructedIsInvalid) {
  EXPECT_EQ(ModelSpec{}.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(ModelSpecTest, EffectiveScale) {
  ModelSpec s = RefModel();
  EXPECT_FLOAT_EQ(s.EffectiveScale(), 1.0f / std::sqrt(128.0f));
  EXPECT_NEAR(s.EffectiveScale(), 0.08838834764831845, 1e-7);  // shared/data/qkv meta.json
  s.head_dim = 64;
  EXPECT_FLOAT_EQ(s.EffectiveScale(), 0.125f);
  s.softmax_scale = 0.5f;
  EXPECT_EQ(s.EffectiveScale(), 0.5f);
  EXPECT_EQ(ModelSpec{}.EffectiveScale(), 0.0f);  // no head_dim, no scale: no division by zero
}

TEST(ModelSpecTest, DerivedSizes) {
  ModelSpec s = RefModel();
  EXPECT_EQ(s.group_size(), 4);
  EXPECT_EQ(s.block_bytes(), 64u * 128u * 2u);
  s.dtype = DType::kFloat32;
  s.block_size = 16;
  EXPECT_EQ(s.block_bytes(), 16u * 128u * 4u);
  EXPECT_EQ(ModelSpec{}.group_size(), 0);
}

TEST(ModelSpecTest, FingerprintIsDeterministic) {
  EXPECT_EQ(RefModel().Fingerprint(), RefModel().Fingerprint());
  const ModelSpec a = RefModel();
  const ModelSpec b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(a.Fingerprint(), b.Fingerprint());
}

// The fingerprint scopes content-addressed blocks that outlive a process (the SSD tier), so its
// value must not change between releases. If this fails, the change broke the stored caches.
TEST(ModelSpecTest, FingerprintIsStable) {
  EXPECT_EQ(RefModel().Fingerprint(), 0xd807eef8360a58f0ULL);
}

TEST(ModelSpecTest, FingerprintDiffersWhenAnyFieldDiffers) {
  const std::vector<std::pair<const char*, std::function<void(ModelSpec&)>>> edits = {
      {"name", [](ModelSpec& s) { s.name = "attic-ref-54m-v2"; }},
      {"name empty", [](ModelSpec& s) { s.name = ""; }},
      {"num_layers", [](ModelSpec& s) { s.num_layers = 7; }},
      {"num_q_heads", [](ModelSpec& s) { s.num_q_heads = 16; }},
      {"num_kv_heads", [](ModelSpec& s) { s.num_kv_heads = 4; }},
      {"head_dim", [](ModelSpec& s) { s.head_dim = 64; }},
      {"head_dim and scale",
       [](ModelSpec& s) {
         s.head_dim = 64;
         s.softmax_scale = 0.0883883f;
       }},
      {"dtype bf16", [](ModelSpec& s) { s.dtype = DType::kBFloat16; }},
      {"dtype fp32", [](ModelSpec& s) { s.dtype = DType::kFloat32; }},
      {"block_size", [](ModelSpec& s) { s.block_size = 128; }},
      {"softmax_scale", [](ModelSpec& s) { s.softmax_scale = 0.1f; }},
      {"layers and heads swapped",
       [](ModelSpec& s) {
         s.num_layers = 8;
         s.num_q_heads = 6;
       }},
  };
  const uint64_t base = RefModel().Fingerprint();
  std::set<uint64_t> seen = {base};
  for (const auto& [what, edit] : edits) {
    ModelSpec s = RefModel();
    edit(s);
    const uint64_t fp = s.Fingerprint();
    EXPECT_NE(fp, base) << what;
    EXPECT_TRUE(seen.insert(fp).second) << what << " collides with another edit";
  }
}

TEST(ModelSpecTest, FingerprintUsesTheEffectiveScale) {
  // An explicit scale equal to the default describes the same attention.
  ModelSpec explicit_scale = RefModel();
  explicit_scale.softmax_scale = RefModel().EffectiveScale();
  EXPECT_EQ(explicit_scale.Fingerprint(), RefModel().Fingerprint());
}

TEST(ModelSpecTest, EqualityAndToString) {
  EXPECT_EQ(RefModel(), RefModel());
  ModelSpec other = RefModel();
  other.block_size = 32;
  EXPECT_NE(other, RefModel());
  const std::string text = RefModel().ToString();
  for (const char* part : {"attic-ref-54m", "L=6", "Hq=8", "Hkv=2", "D=128", "B=64", "fp16"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << " missing from " << text;
  }
}

}  // namespace
}  // namespace attic
