// The kernels' accuracy check, shared by the fast and the slow test binaries: one fp64
// reference, every ISA level this CPU has.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <string>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "attention_workers/reference_attention.h"
#include "tests/attention_workers/kv_fixture.h"

namespace attic::testing {

inline double Tolerance(DType dtype) { return dtype == DType::kFloat32 ? 1e-3 : 5e-3; }

// Runs the kernel on every supported ISA level against one reference.
inline void ExpectMatchesReference(const BlockedKv& kv, const std::vector<float>& q, int g, float scale,
                            std::span<const KvRun> runs) {
  const int d = kv.head_dim;
  std::vector<double> o_ref(static_cast<size_t>(g) * d), lse_ref(static_cast<size_t>(g));
  ReferenceAttention(q.data(), g, d, scale, kv.dtype, runs, o_ref.data(), lse_ref.data());
  for (IsaLevel isa : SupportedIsaLevels()) {
    SCOPED_TRACE(std::string("isa=") + std::string(IsaName(isa)));
    std::vector<float> out(static_cast<size_t>(g) * d, -7.0f), lse(static_cast<size_t>(g));
    ASSERT_TRUE(DecodeAttention({.q = q.data(), .group_size = g, .head_dim = d, .dtype = kv.dtype,
                                 .scale = scale, .runs = runs, .out = out.data(),
                                 .lse = lse.data()},
                                isa)
                    .ok());
    for (int h = 0; h < g; ++h) {
      const double err = RelativeError(out.data() + h * d, o_ref.data() + h * d, d);
      EXPECT_LT(err, Tolerance(kv.dtype)) << "head " << h;
      EXPECT_NEAR(lse[static_cast<size_t>(h)], lse_ref[static_cast<size_t>(h)], 1e-3)
          << "head " << h;
    }
  }
}

}  // namespace attic::testing
