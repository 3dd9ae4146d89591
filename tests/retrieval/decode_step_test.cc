// The decode-step measurement (bench/ssd/decode_step.h) on a small synthetic dump and a real
// RocksDB directory: outputs, SSD bytes, and that every configuration attends exactly to what
// it says it selected, with the values the dump holds.
#include "bench/ssd/decode_step.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "attention_workers/decode_attention.h"
#include "bench/retrieval/synthetic_dump.h"
#include "bench/ssd/internal/decode_store.h"
#include "tests/testing/shared_data.h"

namespace attic::retrieval::eval {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() /
              ("attic_decode_step_" + std::to_string(::getpid()) + "_" + std::to_string(next_++))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }

 private:
  static inline int next_ = 0;
  fs::path path_;
};

constexpr int kBlock = 64;

// 2048 tokens, 2 KV heads of group 2, D = 64; the 48 decode steps start mid-block (2000).
StatusOr<Dataset> SmallDump(const TempDir& dir) {
  RETURN_IF_ERROR(WriteSyntheticDump(dir.str() + "/dump", {.tokens = 2048,
                                                           .kv_heads = 2,
                                                           .group_size = 2,
                                                           .head_dim = 64,
                                                           .decode_rows = 48,
                                                           .layers = {4},
                                                           .values = true}));
  const std::vector<int> layers = {4};
  return LoadDataset(dir.str() + "/dump", layers);
}

// 25 % of the 64 value blocks in DRAM; a locality policy strong enough to differ from reading
// every missing block on random keys: budget 4, slack 0.1.
DecodeStepOptions SmallOptions(const TempDir& dir) {
  return {.layer = 4,
          .selection = {.sinks = 4, .window = 64, .top_k = 32},
          .locality = {.block_size = kBlock, .fetch_budget = 4, .score_slack = 0.1f},
          .dram_fraction = 0.25,
          .scratch_dir = dir.str() + "/stores",
          .prefill_chunk = 512,
          .dense_steps = 8};
}

// SparseDecodeAttention over a recorded selection, with the dump's values in the store's
// 64-token blocks: what a step that selected `selection` must answer.
std::vector<float> Reference(const Dataset& ds, const decode_internal::Bf16Layer& data, int head,
                             const HeadStepRecord& rec, const float* q) {
  const size_t row = data.row_bytes();
  std::vector<KvRun> runs;
  for (int64_t t = 0; t <= rec.position; t += kBlock) {
    runs.push_back(
        {.k = data.k[static_cast<size_t>(head)].data() + static_cast<size_t>(t) * row,
         .v = data.v[static_cast<size_t>(head)].data() + static_cast<size_t>(t) * row,
         .num_tokens = static_cast<int>(std::min<int64_t>(kBlock, rec.position + 1 - t))});
  }
  std::vector<float> out(static_cast<size_t>(ds.group_size) * ds.head_dim);
  std::vector<float> lse(static_cast<size_t>(ds.group_size));
  const Status s = SparseDecodeAttention({.q = q,
                                          .group_size = ds.group_size,
                                          .head_dim = ds.head_dim,
                                          .dtype = DType::kBFloat16,
                                          .scale = ds.scale,
                                          .blocks = runs,
                                          .block_size = kBlock,
                                          .positions = rec.selection,
                                          .out = out.data(),
                                          .lse = lse.data()});
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

bool AllFinite(const DecodeConfigResult& c) {
  for (const auto& step : c.records) {
    for (const HeadStepRecord& h : step) {
      for (float v : h.out) {
        if (!std::isfinite(v)) return false;
      }
    }
  }
  return std::isfinite(c.recall) && std::isfinite(c.mass_recall) && std::isfinite(c.output_error);
}

TEST(DecodeStep, SmallDumpSpilledStepsAttendToTheirSelectionWithTheDumpsValues) {
  TempDir dir;
  auto ds = SmallDump(dir);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  const DecodeStepOptions options = SmallOptions(dir);
  auto r = MeasureDecodeSteps(*ds, options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  PrintDecodeStepTable(stdout, *r);
  EXPECT_EQ(r->indexed, 2000);
  EXPECT_EQ(r->value_blocks, 64);

  const DecodeConfigResult* all = r->Find("all-dram", "sparse");
  const DecodeConfigResult* loc = r->Find("locality", "sparse");
  const DecodeConfigResult* every = r->Find("no-locality", "sparse");
  const DecodeConfigResult* all_dense = r->Find("all-dram", "dense");
  const DecodeConfigResult* spilled_dense = r->Find("locality", "dense");
  ASSERT_TRUE(all && loc && every && all_dense && spilled_dense);
  for (const DecodeConfigResult* c : {all, loc, every, all_dense, spilled_dense}) {
    EXPECT_TRUE(AllFinite(*c)) << c->name << " " << c->mode;
    EXPECT_GT(c->step_us.p50, 0.0) << c->name << " " << c->mode;
  }
  EXPECT_EQ(all->steps, 48);
  EXPECT_EQ(all_dense->steps, 8);
  EXPECT_EQ(loc->value_dram_blocks, 16);
  EXPECT_TRUE(loc->locality);
  EXPECT_FALSE(every->locality);

  // Nothing is read with every value in DRAM; the locality plan reads less than reading every
  // missing selected block, and the store's count is what the steps' fetches said.
  EXPECT_EQ(all->ssd_bytes_per_step, 0.0);
  EXPECT_GT(every->ssd_bytes_per_step, 0.0);
  EXPECT_LT(loc->ssd_bytes_per_step, every->ssd_bytes_per_step);
  EXPECT_GT(loc->tier.spilled, 0);
  EXPECT_DOUBLE_EQ(static_cast<double>(loc->tier.store_bytes_read),
                   loc->ssd_bytes_per_step * loc->steps);
  EXPECT_GT(loc->tier.tier_block_bytes_read, 0u);
  EXPECT_GT(spilled_dense->tier.streamed, 0);
  EXPECT_GT(spilled_dense->ssd_bytes_per_step, 0.0);

  // Slack 0 and no budget keep the search's top k: the same outputs as with every value in
  // DRAM; the dense step over the spilled sequence streams the same values.
  EXPECT_EQ(every->max_error_vs_all_dram, 0.0);
  EXPECT_EQ(spilled_dense->max_error_vs_all_dram, 0.0);

  // All-dram and locality outputs equal SparseDecodeAttention over the same selection with the
  // dump's values: the store attends to what the step chose, with the bytes that were written.
  const decode_internal::Bf16Layer data = decode_internal::ToBf16(ds->layers[0], ds->kv_heads);
  const std::vector<int32_t>& positions = ds->layers[0].decode_positions;
  for (const DecodeConfigResult* c : {all, loc}) {
    ASSERT_EQ(c->records.size(), 48u);
    for (size_t i = 0; i < c->records.size(); ++i) {
      for (int h = 0; h < ds->kv_heads; ++h) {
        const HeadStepRecord& rec = c->records[i][static_cast<size_t>(h)];
        ASSERT_EQ(rec.position, positions[i]);
        const float* q = ds->layers[0].q_decode.data() +
                         (i * ds->q_heads + static_cast<size_t>(h) * ds->group_size) * ds->head_dim;
        EXPECT_EQ(Reference(*ds, data, h, rec, q), rec.out)
            << c->name << " step " << i << " head " << h;
      }
    }
  }

  bench::BenchReport report("ssd");
  AddDecodeStepRows(*r, &report);
  int latency = 0, bytes = 0;
  for (const bench::BenchRow& row : report.rows()) {
    latency += row.name == "decode_step_latency";
    bytes += row.name == "decode_step_ssd_bytes";
  }
  EXPECT_EQ(latency, 10);  // 5 configurations x p50, p99
  EXPECT_EQ(bytes, 5);
}

TEST(DecodeStep, RefusesBadOptions) {
  TempDir dir;
  auto ds = SmallDump(dir);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  DecodeStepOptions o = SmallOptions(dir);
  o.dram_fraction = 0.0;
  EXPECT_EQ(MeasureDecodeSteps(*ds, o).status().code(), StatusCode::kInvalidArgument);
  o = SmallOptions(dir);
  o.scratch_dir.clear();
  EXPECT_EQ(MeasureDecodeSteps(*ds, o).status().code(), StatusCode::kInvalidArgument);
  o = SmallOptions(dir);
  o.layer = 3;
  EXPECT_EQ(MeasureDecodeSteps(*ds, o).status().code(), StatusCode::kInvalidArgument);
  o = SmallOptions(dir);
  o.prefill_chunk = 100;
  EXPECT_EQ(MeasureDecodeSteps(*ds, o).status().code(), StatusCode::kInvalidArgument);
}

// The measurement of docs/retrieval-locality.md: layer 4 of the reference dump, both heads, 16K,
// the 256 decode steps, 10 % of the values in DRAM. Prints the table; checks only what holds
// on any machine (the latencies are this machine's).
TEST(DecodeStepReal, Layer4TenPercentInDram) {
  const auto qkv = attic::testing::QkvDir();
  if (!qkv) GTEST_SKIP() << attic::testing::kNoSharedDataMessage;
  const std::vector<int> layers = {4};
  auto ds = LoadDataset(*qkv, layers);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  TempDir dir;
  auto r = MeasureDecodeSteps(*ds, {.scratch_dir = dir.str()});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  PrintDecodeStepTable(stdout, *r);
  bench::BenchReport report("ssd");
  AddDecodeStepRows(*r, &report);
  report.PrintTable(stdout);
  const DecodeConfigResult* all = r->Find("all-dram", "sparse");
  const DecodeConfigResult* loc = r->Find("locality", "sparse");
  const DecodeConfigResult* every = r->Find("no-locality", "sparse");
  ASSERT_TRUE(all && loc && every);
  EXPECT_EQ(all->steps, 256);
  EXPECT_EQ(all->ssd_bytes_per_step, 0.0);
  EXPECT_LT(loc->ssd_bytes_per_step, every->ssd_bytes_per_step);
  EXPECT_EQ(every->max_error_vs_all_dram, 0.0);
}

}  // namespace
}  // namespace attic::retrieval::eval
