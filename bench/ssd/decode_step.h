// Decode-step latency of retrieval attention when most values live on SSD: the decode steps of
// one layer of an activation dump, run against a real KvStore with an SSD tier the way the
// worker's attend executor runs them (bench/ssd/internal/head_step.h), in three configurations
// of the same sequence:
//
//   all-dram     every value in DRAM (value_dram_blocks = the V pool): the search's top k
//   locality     dram_fraction of the sequence's value blocks in DRAM, the worker's locality
//                plan (LocalityParams defaults: prefer resident blocks, bounded fetch)
//   no-locality  the same DRAM, score_slack 0 and no fetch budget: every selected block that
//                is not resident is read (the top k are the search's, as with all-dram)
//
// and a dense step (every block of [0, p]; spilled values streamed with LoadValues) over the
// all-dram sequence and over the spilled one (after the locality run).
//
//   ASSIGN_OR_RETURN(Dataset ds, LoadDataset(dir, std::vector<int>{4}));
//   ASSIGN_OR_RETURN(DecodeStepReport r, MeasureDecodeSteps(ds, {.scratch_dir = "/mnt/ssd/x"}));
//   PrintDecodeStepTable(stdout, r);
//   bench::BenchReport report("ssd");
//   AddDecodeStepRows(r, &report);
//
// Protocol, per configuration, with a fresh store and RocksDB directory under scratch_dir
// (removed afterwards):
//  - The store: one sequence of a one-layer model holding the dump's layer (its heads, head
//    dimension and softmax scale), bf16 (fp16 dumps are converted), B = locality.block_size.
//    Keys and values of [0, indexed) are appended block-major (AppendPrefill in chunks of
//    prefill_chunk tokens), each chunk written through to the tier. The tier reads with
//    O_DIRECT when the file system allows it (direct_io), so reloads reach the disk.
//  - The index: the graph index the worker builds (BuildKeyIndex(kGraph) over the indexed
//    keys, learning from the prefill query sample before them), built once from the same
//    bf16 keys and searched over each store's key blocks. It is not grown during the steps:
//    later keys are attended as the fixed part, as in EvaluateLocality.
//  - Maintain() after the prefill and after every step (the worker calls it between
//    requests): values above the high watermark are spilled, least recently used first.
//  - A step at position p: the tokens up to p are appended (AppendTokens, not timed), then,
//    timed on one thread, every KV head's sparse step (ReadBlocks, search, locality plan,
//    FetchValues, SparseDecodeAttention), then Maintain (timed apart).
//  - SSD bytes per step: FetchStats::bytes_read of the step's reads (all heads). The store's
//    and RocksDB's own figures are taken before and after the steps.
//  - Accuracy per step and head, against exact figures from the dump: recall@top_k of the
//    retrieved tokens (exact group-max top k of the indexed keys), mass recall
//    exp(lse_sel - lse_full), and the output's relative error against dense attention over
//    [0, p] (bf16 keys and values). The spilled configurations' outputs are also compared
//    with all-dram's step by step.
// Thread safety: MeasureDecodeSteps runs on the calling thread and writes only under
// scratch_dir.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "attention_workers/retrieval/locality.h"
#include "attention_workers/retrieval/selection.h"
#include "bench/bench_report.h"
#include "bench/retrieval/dataset.h"
#include "common/status.h"

namespace attic::retrieval::eval {

struct DecodeStepOptions {
  // The dump's layer; it must have been loaded with its values. Layer 4 is the sparse layer of
  // the reference dump.
  int layer = 4;
  // Tokens of context; 0 = the dump's N (PlanContext says which steps that gives).
  int64_t context = 0;
  // Decode steps; 0 = every step of the context.
  int max_steps = 0;
  // The worker's default selection.
  SelectionParams selection = {.sinks = 4, .window = 64, .top_k = 100};
  // The locality configuration's policy (the worker's defaults); its block_size is the
  // store's B.
  LocalityParams locality;
  // Values in DRAM in the spilled configurations, as a fraction of the sequence's value blocks
  // (all heads, the whole context): value_dram_blocks = max(1, round(fraction x blocks)).
  double dram_fraction = 0.10;
  // Where the stores' RocksDB directories go (required; created if missing): the disk measured.
  std::string scratch_dir;
  // O_DIRECT reads and flushes (the tier falls back to buffered I/O when refused).
  bool direct_io = true;
  // Tokens per AppendPrefill call, a multiple of the block size.
  int prefill_chunk = 2048;
  // Dense steps per dense configuration (the last ones of the context); 0 = none.
  int dense_steps = 32;
};

// Percentiles of one sample, microseconds.
struct LatencyUs {
  double p50 = 0.0;
  double p99 = 0.0;
  double mean = 0.0;
  double max = 0.0;
  int samples = 0;
};

// One step of one head, kept for comparisons.
struct HeadStepRecord {
  int32_t position = 0;
  std::vector<int32_t> selection;  // attended positions, sorted (sparse)
  std::vector<float> out;          // [G, D]
  std::vector<float> lse;          // [G]
};

// Deltas of the store's and RocksDB's figures over a configuration's steps.
struct TierDelta {
  uint64_t store_bytes_read = 0;       // KvStoreStats::ssd_bytes_read
  int64_t reloaded = 0;                // values made resident (FetchValues)
  int64_t streamed = 0;                // values read into caller buffers (LoadValues)
  int64_t spilled = 0;                 // values spilled by Maintain
  uint64_t tier_block_bytes_read = 0;  // SsdTierStats::block_bytes_read
  uint64_t rocksdb_bytes_read = 0;     // RocksDB BYTES_READ
  uint64_t blob_bytes_read = 0;        // RocksDB BLOB_DB_BLOB_FILE_BYTES_READ
  uint64_t compact_bytes_read = 0;     // RocksDB COMPACT_READ_BYTES (background)
};

struct DecodeConfigResult {
  std::string name;             // "all-dram", "locality", "no-locality"
  std::string mode;             // "sparse" or "dense"
  double values_in_dram = 1.0;  // the DRAM budget as a fraction of the sequence's values
  bool locality = false;        // the locality plan chose the top k (sparse, spilled)
  int64_t value_dram_blocks = 0;
  int steps = 0;
  LatencyUs step_us;      // all heads of a step, one thread
  LatencyUs maintain_us;  // sparse: the Maintain after each step
  double ssd_bytes_per_step = 0.0;
  double read_us = 0.0;          // per step: time in FetchValues / LoadValues reading SSD
  double blocks_selected = 0.0;  // per step, all heads
  double blocks_read = 0.0;      // per step, all heads
  double dropped = 0.0;          // candidates passed over for the budget, per step
  double resident_blocks = 0.0;  // values resident before a step (store-wide), mean
  double recall = 0.0;           // sparse: recall@top_k, mean over steps and heads
  double mass_recall = 0.0;      // sparse: mean over steps and heads
  double output_error = 0.0;     // relative error against dense attention over [0, p], mean
  // Spilled configurations: max over steps and heads of the relative error against
  // all-dram's output of the same step and mode (0 = the same output); -1 for all-dram.
  double max_error_vs_all_dram = -1.0;
  TierDelta tier;
  std::vector<std::vector<HeadStepRecord>> records;  // [step][kv_head]
};

struct DecodeStepReport {
  std::string dir;  // the dump
  int layer = 0;
  int64_t context = 0;
  int64_t indexed = 0;  // the prefill: positions [0, indexed)
  int kv_heads = 0;
  int block_size = 0;
  int64_t block_bytes = 0;   // one value block
  int64_t value_blocks = 0;  // the sequence's value blocks at the end (all heads)
  SelectionParams selection;
  LocalityParams locality;
  double dram_fraction = 0.0;
  bool direct_io = false;  // the tier's reads bypassed the page cache
  std::string direct_io_note;
  double build_ms = 0.0;    // graph index builds, all heads
  double prefill_ms = 0.0;  // the first configuration's prefill (write-through included)
  std::vector<DecodeConfigResult> configs;

  // The result of (name, mode), or nullptr.
  const DecodeConfigResult* Find(const std::string& name, const std::string& mode) const;
};

// InvalidArgument for bad options (selection, locality, dram_fraction outside (0, 1], no
// scratch_dir, a prefill_chunk that is not a positive multiple of the block size, a layer not
// loaded or without values); FailedPrecondition when the context cannot be planned; the
// store's or the tier's error when a step fails.
StatusOr<DecodeStepReport> MeasureDecodeSteps(const Dataset& ds, const DecodeStepOptions& options);

// One line per configuration: latency p50/p99, ratio to all-dram, SSD bytes per step, blocks,
// accuracy; then the tier's figures.
void PrintDecodeStepTable(std::FILE* out, const DecodeStepReport& report);

// decode_step_latency (params: layer, context, values_in_dram, locality on/off, mode
// sparse/dense, percentile p50/p99; unit us, lower is better; the spilled rows' limit is the
// all-dram row of the same mode and percentile), decode_step_ssd_bytes (bytes per step; the
// tier's figures as params) and decode_step_recall (sparse; limit: all-dram's).
void AddDecodeStepRows(const DecodeStepReport& report, bench::BenchReport* out);

}  // namespace attic::retrieval::eval
