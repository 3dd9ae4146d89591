// Deterministic synthetic K/V/Q for trace replay.
//
// Traces carry lengths and prefix-block ids, not tokens. attic-replay turns them into KV contents
// that are functions of (block hash chain, position, layer, KV head, seed) only, never of the
// request: a block two requests share through the prefix cache holds exactly what a fresh
// prefill would have written, so a replay's attention does not depend on which request
// prefilled a block first.
//
//   PromptHashes h = PromptBlockHashes(r.hash_ids, r.input_tokens, spec.block_size,
//                                      /*unique=*/r.index + 1, seed);
//   SyntheticKv gen(spec, seed);
//   gen.FillPrompt(h, layer, first, n, k_bytes, v_bytes);  // [n, Hkv, D] in spec.dtype
//   gen.FillDecode(h.tail, position, layer, k_tok, v_tok, q_tok);
//   gen.FillPromptQueries(h, layer, positions, q_rows);  // [n, Hq, D]: for Client::BuildIndex
//
// Trace blocks are 512 tokens (kTraceBlockTokens): one trace hash id maps to 512 / B blocks of B
// tokens, each with its own chained hash HashCombine(previous, HashCombine(id, sub-block)). (A
// block size that does not divide 512 uses the block's token offset in its trace block for
// sub-block and folds in the ids of every further trace block it reaches.) The chain starts
// from the seed, so two replays with the same seed share the same hashes.
// Requests without hash ids (Azure) get ids derived from `unique` (distinct per request), so
// they share nothing. Tokens past the last full B-block (and decode tokens) take their content
// from the tail hash, HashCombine(last chain hash, unique): private to the request.
//
// Structure (SyntheticStructure::kStructured, the default). Every (layer, KV head) takes one
// row of a small table of attention profiles measured on the reference model's activations
// (internal/head_profiles.inc, printed by attic-synthetic-profile --qkv; docs/replay.md):
// layers in the first third of the model take the rows of the dump's layer 1 (diffuse: the
// worker's head profiler marks them dense), the rest those of its layer 4 (sparse: sinks +
// window + top-100 hold ~0.9 of the mass), KV head h the row of dump head h % 2. attic-ref-54m
// thus has 4 diffuse and 8 sparse heads. A key or query row is noise plus three structured
// parts whose strengths (in logits, q . k * scale) are the row's:
//  - local window: dims [0, D/2) are D/4 planes (dims j and D/4 + j) rotated by position as
//    RoPE does (angle p * w_j, w_j geometric from 1/4 down to 1/256 rad per token), so q_t . k_p
//    * scale holds window_logit * mean_j cos((t - p) w_j): largest for the most recent keys;
//  - heavy hitters: a key is heavy with probability 1/16 (a hash of its content, position,
//    layer and head) along one of D/8 topic axes (dims [D/2, D/2 + D/8)); each query head looks
//    for one topic (a hash of its content, position and head) with strength hh_logit, so a
//    query group's top-100 holds the strongest heavy keys of its topics and differs from step
//    to step;
//  - sinks: keys at positions 0..3 and every query share one more axis (sink_logit; the
//    reference model puts under 0.1 % of its mass on its first 4 keys, so the table's is 0);
//  - noise: keys uniform in [-1, 1) in every dim, queries scaled so that the noise part of
//    q . k * scale has a standard deviation of about noise_logit.
// Diffuse rows have a weaker window and weak or no heavy hitters, so most of their mass stays
// spread over the context. Values stay uniform in [-1, 1). kUniform is the earlier generator:
// keys uniform in [-2, 2), values and queries in [-1, 1), no structure (every head diffuse;
// q . k / sqrt(D) has a standard deviation of about 0.67).
//
// Bytes: 16 random bits per noise value from a counter-based generator (one 64-bit multiply
// per four values), the structure added in fp32 (rotations from integer angle indices, two
// fixed 4096-entry tables and a 64-position table, so that they depend on the position alone,
// not on where a fill starts), converted to the dtype by truncation toward zero (fp16 flushes
// magnitudes below 2^-14 to zero). A replay with the same seed and spec synthesizes the same
// cache on every machine with the same libm (the tables are built with std::cos / std::sin).
// Vectorized (SSE2): about 3.8 GB/s of bf16 K+V per core (kUniform: about 6).
//
// Thread safety: SyntheticKv is immutable; its methods may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/model_spec.h"

namespace attic::replay {

inline constexpr int kTraceBlockTokens = 512;

struct PromptHashes {
  // One chained hash per full B-token block of the prompt (the prefix-cache keys).
  std::vector<uint64_t> blocks;
  // Content key of the prompt's partial last block and of every decode token.
  uint64_t tail = 0;
};

// hash_ids may cover fewer tokens than input_tokens (the rest is treated as unique to the
// request) or more (the extra ids are ignored). input_tokens / block_tokens full blocks.
// REQUIRES: block_tokens > 0, input_tokens >= 0.
PromptHashes PromptBlockHashes(std::span<const uint64_t> hash_ids, int64_t input_tokens,
                               int block_tokens, uint64_t unique, uint64_t seed);

enum class SyntheticStructure {
  kStructured,  // heads with the attention structure of the reference model (the default)
  kUniform,     // the earlier generator: uniform random K/V/Q, every head diffuse
};

// One attention profile: what the reference model's head showed (targets, measured by
// attic-synthetic-profile on the real dump) and the generator strengths fitted to reproduce it.
struct SyntheticHeadProfile {
  int dump_layer = 0;  // layer and KV head of the reference dump the row was measured on
  int dump_head = 0;
  // Mean over decode queries and the GQA group's heads, at a 16K context: softmax mass on the
  // first 4 keys, on the last 64, on those + the top-100 other keys by the group's max q.k,
  // and the fraction of keys holding 0.9 of the mass.
  double sink_mass = 0, window_mass = 0, oracle_mass = 0, keys90 = 0;
  // Generator strengths, in logits (q . k * scale).
  float noise_logit = 1, window_logit = 0, hh_logit = 0, sink_logit = 0;

  // The worker's head profiler's verdict on these figures (attention_workers/retrieval/
  // head_profile.h): oracle mass below 0.7 or keys90 above 0.15.
  bool dense() const { return oracle_mass < 0.7 || keys90 > 0.15; }
};

// The checked-in table (internal/head_profiles.inc): the reference model's layers 1 and 4.
std::span<const SyntheticHeadProfile> ReferenceHeadProfiles();

struct SyntheticKvOptions {
  SyntheticStructure structure = SyntheticStructure::kStructured;
  // Replaces the table's mapping: (layer, KV head) takes profiles[(layer * Hkv + head) %
  // size]. Empty: the reference table, mapped by depth as above. (For fitting and tests.)
  std::vector<SyntheticHeadProfile> profiles;
};

class SyntheticKv {
 public:
  // REQUIRES: spec.Validate() is OK (head_dim a multiple of 32 up to 512).
  SyntheticKv(const ModelSpec& spec, uint64_t seed, SyntheticKvOptions options = {});

  // K and V of prompt tokens [first, first + n) of one layer, token-major [n, Hkv, D] in
  // spec.dtype, written to k and v (n * Hkv * D * DTypeSize(spec.dtype) bytes each). Token p
  // takes its content from hashes.blocks[p / B] when that block is full, else from hashes.tail.
  void FillPrompt(const PromptHashes& hashes, int layer, int64_t first, int64_t n, std::byte* k,
                  std::byte* v) const;

  // One decode token at `position`: k and v [Hkv, D] and q [Hq, D], all in spec.dtype.
  void FillDecode(uint64_t tail, int64_t position, int layer, std::byte* k, std::byte* v,
                  std::byte* q) const;

  // Queries of prompt tokens at `positions` of one layer, [n, Hq, D] in spec.dtype (n =
  // positions.size()): the query a decode step at that position with that content would carry
  // (FillDecode's q for positions whose content is the tail), for an index to learn from at
  // prefill (Client::BuildIndex). Deterministic like the keys: a function of (content hash,
  // position, layer, head, seed).
  void FillPromptQueries(const PromptHashes& hashes, int layer, std::span<const int64_t> positions,
                         std::byte* q) const;

  const ModelSpec& spec() const { return spec_; }
  SyntheticStructure structure() const { return options_.structure; }
  // The profile (layer, KV head) follows. REQUIRES: kStructured, indices in range.
  const SyntheticHeadProfile& profile(int layer, int kv_head) const;

 private:
  // A profile row as row amplitudes (internal units: see synthetic.cc).
  struct Head {
    float k_pos = 0, q_pos = 0, k_hh = 0, q_hh = 0, k_sink = 0, q_sink = 0, q_noise = 1;
  };
  const Head& head(int layer, int kv_head) const;
  void RotaryBase(int64_t position, float* base_rot) const;
  void Rotary(int64_t position, const float* base_rot, float* r) const;
  // rot: the position's rotary vector (unused by kUniform).
  void FillToken(uint64_t content, int64_t position, int layer, const float* rot, std::byte* k,
                 std::byte* v) const;
  void FillQuery(uint64_t content, int64_t position, int layer, const float* rot,
                 std::byte* q) const;

  ModelSpec spec_;
  uint64_t seed_;
  SyntheticKvOptions options_;
  std::vector<SyntheticHeadProfile> rows_;  // one per (layer, KV head), layer-major
  std::vector<Head> heads_;                 // the same, as amplitudes
  std::vector<uint32_t> plane_steps_;       // per rotary plane: angle per token, 2^32 = 2 pi
  std::vector<float> rotary_low_;           // [64][cos P, sin P]: the rotation of 0..63 tokens
};

}  // namespace attic::replay
