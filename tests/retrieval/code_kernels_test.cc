// The per-ISA code-scan, dot and 4-bit code kernels (code_scan_abi.h, graph_code_abi.h) against
// fp64 references written from the ABI's definitions, on every level the CPU supports: the
// levels share one kernel source, so the scalar level is no independent reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "attention_workers/isa.h"
#include "attention_workers/retrieval/internal/code_scan_abi.h"
#include "attention_workers/retrieval/internal/graph_code_abi.h"

namespace attic::retrieval::kernels {
namespace {

void CodeScanAt(IsaLevel isa, const CodeScanArgs& a) {
  if (isa >= IsaLevel::kAvx512) return CodeScanAvx512(a);
  if (isa >= IsaLevel::kAvx2) return CodeScanAvx2(a);
  CodeScanScalar(a);
}

void DotAt(IsaLevel isa, const DotArgs& a) {
  if (isa >= IsaLevel::kAvx512) return DotAvx512(a);
  if (isa >= IsaLevel::kAvx2) return DotAvx2(a);
  DotScalar(a);
}

void CodeScoreAt(IsaLevel isa, const CodeScoreArgs& a) {
  if (isa >= IsaLevel::kAvx512) return CodeScoreAvx512(a);
  CodeScoreScalar(a);
}

// The code of key i, dimension d, in a block of code_scan_abi.h's layout.
int BlockCode(const uint8_t* block, int bits, int d, int i) {
  if (bits == 4) {
    const uint8_t byte = block[(d / 2) * kCodeBlock + i];
    return d % 2 == 0 ? byte & 15 : byte >> 4;
  }
  const int mask = block[2 * d] | (block[2 * d + 1] << 8);
  return (mask >> i) & 1;
}

std::vector<float> Normal(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

std::vector<uint8_t> Bytes(size_t n, std::mt19937& rng) {
  std::vector<uint8_t> b(n);
  for (uint8_t& v : b) v = static_cast<uint8_t>(rng() & 0xff);
  return b;
}

TEST(CodeScanKernels, EveryIsaMatchesTheFp64Definition) {
  std::mt19937 rng(7);
  for (int bits : {1, 4}) {
    for (int d : {32, 128}) {
      for (int g : {1, 3, 4, 5, 8, 9, 17}) {
        const int blocks = 5, block_bytes = d * kCodeBlock * bits / 8;
        const std::vector<float> q = Normal(static_cast<size_t>(g) * d, rng);
        const std::vector<float> bias = Normal(static_cast<size_t>(g), rng);
        const std::vector<uint8_t> codes = Bytes(static_cast<size_t>(blocks) * block_bytes, rng);
        std::vector<double> want(static_cast<size_t>(blocks) * kCodeBlock, -INFINITY);
        for (int b = 0; b < blocks; ++b) {
          for (int i = 0; i < kCodeBlock; ++i) {
            for (int h = 0; h < g; ++h) {
              double s = bias[static_cast<size_t>(h)];
              for (int j = 0; j < d; ++j) {
                s += static_cast<double>(q[static_cast<size_t>(h) * d + j]) *
                     BlockCode(codes.data() + static_cast<size_t>(b) * block_bytes, bits, j, i);
              }
              double& w = want[static_cast<size_t>(b) * kCodeBlock + i];
              w = std::max(w, s);
            }
          }
        }
        for (IsaLevel isa : SupportedIsaLevels()) {
          std::vector<float> got(want.size());
          CodeScanAt(isa, {.q = q.data(), .bias = bias.data(), .group_size = g, .head_dim = d,
                           .bits = bits, .codes = codes.data(), .num_blocks = blocks,
                           .out = got.data()});
          for (size_t i = 0; i < want.size(); ++i) {
            ASSERT_NEAR(got[i], want[i], 1e-4 * (std::abs(want[i]) + d))
                << IsaName(isa) << " bits " << bits << " d " << d << " g " << g << " at " << i;
          }
        }
      }
    }
  }
}

TEST(DotKernels, EveryIsaMatchesTheFp64Definition) {
  std::mt19937 rng(8);
  for (int d : {16, 48, 128}) {
    for (int cols : {1, 7, 8, 19}) {
      const int rows = 3;
      const std::vector<float> x = Normal(static_cast<size_t>(rows) * d, rng);
      const std::vector<float> y = Normal(static_cast<size_t>(cols) * d, rng);
      for (IsaLevel isa : SupportedIsaLevels()) {
        std::vector<float> got(static_cast<size_t>(rows) * cols);
        DotAt(isa, {.x = x.data(), .y = y.data(), .head_dim = d, .num_rows = rows,
                    .num_cols = cols, .out = got.data()});
        for (int i = 0; i < rows; ++i) {
          for (int c = 0; c < cols; ++c) {
            double s = 0;
            for (int j = 0; j < d; ++j) {
              s += static_cast<double>(x[static_cast<size_t>(i) * d + j]) *
                   y[static_cast<size_t>(c) * d + j];
            }
            ASSERT_NEAR(got[static_cast<size_t>(i) * cols + c], s, 1e-4 * (1 + std::sqrt(d)))
                << IsaName(isa) << " d " << d << " cols " << cols;
          }
        }
      }
    }
  }
}

TEST(GraphCodeKernels, EveryIsaMatchesTheFp64Definition) {
  std::mt19937 rng(9);
  for (int d : {32, 128}) {
    for (int g : {1, 4, 8, 9, 13}) {
      const int keys = 40, half = d / 2;
      const std::vector<float> qs = Normal(static_cast<size_t>(g) * d, rng);
      const std::vector<float> bias = Normal(static_cast<size_t>(g), rng);
      const std::vector<uint8_t> codes = Bytes(static_cast<size_t>(keys) * half, rng);
      std::vector<int32_t> ids = {3, 0, 39, 17, 17, 5, 22};
      for (IsaLevel isa : SupportedIsaLevels()) {
        std::vector<float> got(ids.size());
        CodeScoreAt(isa, {.qs = qs.data(), .bias = bias.data(), .group_size = g, .head_dim = d,
                          .codes = codes.data(), .ids = ids.data(),
                          .num_ids = static_cast<int>(ids.size()), .out = got.data()});
        for (size_t i = 0; i < ids.size(); ++i) {
          const uint8_t* c = codes.data() + static_cast<size_t>(ids[i]) * half;
          double best = -INFINITY;
          for (int h = 0; h < g; ++h) {
            const float* q = qs.data() + static_cast<size_t>(h) * d;
            double s = bias[static_cast<size_t>(h)];
            for (int j = 0; j < half; ++j) {
              s += static_cast<double>(q[j]) * (c[j] & 15) +
                   static_cast<double>(q[j + half]) * (c[j] >> 4);
            }
            best = std::max(best, s);
          }
          ASSERT_NEAR(got[i], best, 1e-4 * (std::abs(best) + d))
              << IsaName(isa) << " d " << d << " g " << g << " id " << ids[i];
        }
      }
    }
  }
}

}  // namespace
}  // namespace attic::retrieval::kernels
