// ProfileHead: how concentrated one (layer, KV head)'s attention is, measured on the prefill
// query sample only, and the decision whether sparse retrieval attention can serve it or the
// head should be attended densely.
//
//   HeadProfile p = ProfileHead(keys, sample, {.scale = 0.0884f});
//   if (p.dense) ...   // attend all keys; log / export p's statistics either way
//
// For each profiled query (the sample's last max_queries, each at its position p attending
// causally to keys [0, p]) and each head of its GQA group, the exact softmax gives
//  - key_fraction: the fraction of keys [0, p] that the largest probabilities need to reach
//    mass_target of the mass (diffuse heads need a large fraction);
//  - oracle_mass: the mass on the selection an ideal index would produce — sinks + window +
//    the exact top-k keys by group score (SelectionParams).
// dense = mean oracle_mass < min_oracle_mass, or mean key_fraction > max_key_fraction.
// Without positions in the sample, every query is taken to attend to all keys.
// An empty sample (or no profiled query) gives dense = false with has_evidence = false: no
// evidence, so the head stays on the default (sparse) path.
// Thread safety: stateless.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention_workers/retrieval/key_index.h"
#include "attention_workers/retrieval/selection.h"

namespace attic {
class ThreadPool;
}

namespace attic::retrieval {

struct ProfileOptions {
  // Softmax scale applied to q . k; 0 = 1 / sqrt(head_dim).
  float scale = 0.0f;
  // The selection the oracle mass is measured for (exclude_window is ignored).
  SelectionParams selection = {.sinks = 4, .window = 64, .top_k = 100};
  // The sample's last queries that are profiled (each costs one exact pass per head).
  int max_queries = 32;
  // Queries at positions below this are skipped: short contexts say little about long ones.
  int min_position = 512;
  double mass_target = 0.9;
  // Thresholds of the dense decision, chosen on the reference data (docs/retrieval-cluster.md).
  double min_oracle_mass = 0.7;
  double max_key_fraction = 0.15;
  ThreadPool* pool = nullptr;  // parallel over queries; nullptr = the calling thread
};

struct HeadProfile {
  bool dense = false;
  bool has_evidence = false;      // false: nothing was profiled, dense is the default false
  int queries = 0;                // queries profiled
  double mean_context = 0.0;      // mean keys attended per profiled query
  double key_fraction = 0.0;      // mean over queries and heads
  double max_key_fraction = 0.0;  // worst query head
  double oracle_mass = 0.0;       // mean over queries and heads
  double min_oracle_mass = 0.0;   // worst query head

  // One line for logs: "dense=0 evidence=1 queries=32 ctx=15624 keys90=0.031 ...".
  std::string ToString() const;
};

// The fewest largest of probs whose sum reaches target (in (0, 1]), as a fraction of
// probs.size() (all of them when the sum never reaches it); 0 for none. The profile's keys90.
double KeyFractionForMass(std::vector<float> probs, double target);

// InvalidArgument for invalid keys, a sample that does not match them, or bad options.
StatusOr<HeadProfile> ProfileHead(const KeyRows& keys, const QuerySample& sample,
                                  const ProfileOptions& options = {});

}  // namespace attic::retrieval
