// EngineModel: what a compute node holds for decode attention, synthesized deterministically
// — every sequence's K/V (token-major, storage dtype), its queries, and its prompt's block
// hashes — so tests, the demo and benchmarks can drive workers through attic::Client and check
// every output against exact attention computed locally.
//
//   EngineModel model(spec, /*seed=*/7);
//   model.AddSequence({.id = 1, .prompt_tokens = 2048, .shared_prefix_tokens = 1024,
//                      .prefix_content = 100});
//   TensorView k = model.K(1, layer, 0, 2048), v = model.V(1, layer, 0, 2048);  // [n, Hkv, D]
//   model.NextToken(1, layer);                 // grows the context by one token
//   const float* q = model.Query(1, layer);    // [Hq, D] for the current step
//   model.Reference(1, layer, q, o, lse);      // exact attention over the local copy
//
// Content is a pure function of (seed, content id, layer, position, head): two sequences with
// the same prefix content hold identical prefix K/V and identical chained block hashes, as a
// shared prompt prefix would. Values are N(0,1)-like; queries are scaled so that attention is
// peaked (a few keys dominate), which makes merge and ordering mistakes visible.
//
// Thread safety: not thread-safe, except that const methods may run concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "common/model_spec.h"
#include "common/tensor_view.h"

namespace attic::loadgen {

struct SequenceContent {
  uint64_t id = 0;
  int prompt_tokens = 0;
  // The first shared_prefix_tokens tokens (a multiple of B) come from prefix_content; the
  // rest from the sequence's own content (its id).
  int shared_prefix_tokens = 0;
  uint64_t prefix_content = 0;
};

// Recorded activations of one layer (e.g. real ones from a model run): the sequence's prompt
// is the first prompt_tokens rows, decode step i appends row prompt_tokens + i and queries
// with q_rows[i].
struct RecordedLayer {
  TensorView k;       // [T, Hkv, D] any dtype, token-major
  TensorView v;       // [T, Hkv, D]
  TensorView q;       // [steps, Hq, D] any dtype: queries of positions first_q .. first_q+steps-1
  int64_t first_q = 0;
};

class EngineModel {
 public:
  EngineModel(const ModelSpec& spec, uint64_t seed);

  const ModelSpec& spec() const { return spec_; }
  void AddSequence(const SequenceContent& content);
  // A sequence replaying recorded activations: one RecordedLayer per model layer (converted
  // and copied). Its prompt is tokens [0, prompt_tokens); NextToken takes the next recorded
  // row and the recorded query of that position. Prompt hashes are derived from content.id
  // as for synthetic sequences (equal ids of two models give equal hashes: use distinct ids).
  void AddRecordedSequence(const SequenceContent& content, const std::vector<RecordedLayer>& layers);
  // Decode steps a recorded sequence has left (synthetic ones: unlimited, -1).
  int64_t RecordedStepsLeft(uint64_t id, int layer) const;
  void RemoveSequence(uint64_t id);
  bool Has(uint64_t id) const { return seqs_.count(id) != 0; }

  // Tokens held locally for (sequence, layer).
  int64_t Length(uint64_t id, int layer) const;
  // [n, Hkv, D] views of tokens [first, first + n) in the storage dtype. Valid until the next
  // NextToken / RemoveSequence of this sequence.
  TensorView K(uint64_t id, int layer, int64_t first, int64_t n) const;
  TensorView V(uint64_t id, int layer, int64_t first, int64_t n) const;
  // One chained hash per full B-token prompt block.
  std::vector<uint64_t> PromptHashes(uint64_t id) const;

  // Appends the next token's K/V of (sequence, layer) to the local copy and makes the query
  // of that position current. Returns the new token's position.
  int64_t NextToken(uint64_t id, int layer);
  // The current query [Hq, D] fp32 of (sequence, layer) (the prompt's last position before
  // the first NextToken).
  const float* Query(uint64_t id, int layer) const;
  // Exact fp64 attention of q [Hq, D] over every local token of (sequence, layer), one GQA
  // group at a time: out [Hq, D], lse [Hq] (natural log).
  void Reference(uint64_t id, int layer, const float* q, double* out, double* lse) const;

 private:
  struct Layer {
    std::vector<std::byte> k;  // [T, Hkv, D] storage dtype
    std::vector<std::byte> v;
    std::vector<float> q;      // [Hq, D] of the current step
    // Recorded sequences only: every recorded row (storage dtype) and query (fp32).
    std::vector<std::byte> rec_k;
    std::vector<std::byte> rec_v;
    std::vector<float> rec_q;  // [steps, Hq, D]
    int64_t rec_first_q = 0;
  };
  struct Sequence {
    SequenceContent content;
    std::vector<Layer> layers;
  };

  void FillToken(const SequenceContent& c, int layer, int64_t pos, std::byte* k,
                 std::byte* v) const;
  void FillQuery(uint64_t id, int layer, int64_t pos, float* q) const;
  const Layer& LayerOf(uint64_t id, int layer) const;

  ModelSpec spec_;
  uint64_t seed_;
  size_t row_bytes_;  // Hkv * D * sizeof(dtype): one token of one layer
  std::map<uint64_t, Sequence> seqs_;
};

}  // namespace attic::loadgen
