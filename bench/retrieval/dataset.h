// A dump of real attention activations (keys, values, decode and prefill queries of some
// layers), in the format of shared/data/qkv/*/*/ (its README.md), loaded for the retrieval
// evaluation, and the context-sweep protocol over it.
//
//   ASSIGN_OR_RETURN(Dataset ds, LoadDataset("/path/to/networkx-16k", /*layers=*/{}));
//   const LayerData& l = ds.layers[0];
//   ASSIGN_OR_RETURN(ContextPlan plan, PlanContext(ds, l, 4096));
//   KeyRows keys = l.key_rows(/*kv_head=*/0).prefix(plan.indexed);   // what an index may see
//
// Nothing about one dump is assumed: layers are found by globbing L{l}_k.npy; the numbers of
// tokens, query heads, KV heads and the head dimension come from the arrays' shapes; the
// softmax scale, decode positions and prefill stride from meta.json when it has them
// (fallbacks: 1/sqrt(D), the last T positions, N / prefill rows). L{l}_v.npy and
// L{l}_q_prefill.npy may be absent. Every error names the file at fault.
//
// Keys and values are held per KV head as [N, D] rows in the file's 16-bit dtype (fp16 or
// bf16; fp32 dumps are narrowed to bf16), queries as fp32.
// Thread safety: a Dataset is immutable after loading; share it across threads freely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/key_rows.h"
#include "common/dtype.h"
#include "common/status.h"

namespace attic::retrieval::eval {

struct LayerData {
  int layer = 0;
  DType dtype = DType::kFloat16;                  // storage dtype of keys and values
  std::vector<std::vector<std::byte>> keys;       // [kv_heads] of [N, D]
  std::vector<std::vector<std::byte>> values;     // [kv_heads] of [N, D]; empty when absent
  std::vector<const std::byte*> key_blocks;       // [kv_heads]: one block per head
  std::vector<float> q_decode;                    // [T, Hq, D]
  std::vector<int32_t> decode_positions;          // [T]
  std::vector<float> q_prefill;                   // [P, Hq, D]; empty when absent
  std::vector<int32_t> prefill_positions;         // [P]
  int64_t num_tokens = 0;
  int head_dim = 0;

  bool has_values() const { return !values.empty(); }
  bool has_prefill() const { return !prefill_positions.empty(); }
  // All N keys of one KV head as a single block.
  KeyRows key_rows(int kv_head) const;
  // Values of one KV head, or its keys when the dump has none (attention weights and LSE do
  // not depend on values; only the output does).
  const std::byte* values_or_keys(int kv_head) const;
};

struct Dataset {
  std::string dir;
  int64_t num_tokens = 0;  // N
  int q_heads = 0;         // Hq
  int kv_heads = 0;        // Hkv
  int group_size = 0;      // G = Hq / Hkv
  int head_dim = 0;        // D
  float scale = 0.0f;      // softmax scale
  int64_t first_decode = 0;    // position of the first q_decode row
  int64_t prefill_stride = 0;  // q_prefill row i is position i * stride
  std::vector<LayerData> layers;  // ascending layer number
};

// Loads DIR. `layers` empty = every layer found; otherwise those layers, each must exist.
StatusOr<Dataset> LoadDataset(const std::string& dir, std::span<const int> layers);

// One context of the cost-vs-length sweep: index keys [0, indexed), learn only from prefill
// queries at positions < indexed, decode with the queries at positions [indexed, context).
// For context = N the decode steps are the q_decode rows; for shorter contexts they are the
// prefill rows in [context - (N - first_decode), context).
struct ContextPlan {
  int64_t context = 0;
  int64_t indexed = 0;                 // the first decode position of this context
  bool steps_from_prefill = false;     // decode queries come from q_prefill rows
  std::vector<int> step_rows;          // rows of q_decode or q_prefill
  std::vector<int32_t> step_positions; // the steps' token positions
  int sample_rows = 0;                 // q_prefill rows [0, sample_rows) may be learned from
};

// FailedPrecondition when the context cannot be planned (no prefill queries for a shorter
// context, or no decode steps inside it); InvalidArgument when context > N.
StatusOr<ContextPlan> PlanContext(const Dataset& ds, const LayerData& layer, int64_t context);

// The query of one decode step for KV head h: [G, D] fp32.
const float* StepQueries(const Dataset& ds, const LayerData& layer, const ContextPlan& plan,
                         int step, int kv_head);

// The prefill queries of KV head h an index may learn from, gathered as [rows, G, D].
struct SampleBuffer {
  std::vector<float> q;
  std::vector<int32_t> positions;
  QuerySample sample;
};
SampleBuffer GatherSample(const Dataset& ds, const LayerData& layer, int rows, int kv_head);

// The no-leakage guard: FailedPrecondition unless every sample position is below
// first_decode (an index must never see a query of a step it will serve) and the sample
// carries a position per query.
Status CheckNoLeakage(const QuerySample& sample, int64_t first_decode);

}  // namespace attic::retrieval::eval
