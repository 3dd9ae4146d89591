// The attention activations the demo replays: the real ones of the reference model
// (shared/data/qkv/attic-ref-54m/networkx-16k) or, when that folder is absent, a seeded
// synthetic set of the same shapes.
//
//   ASSIGN_OR_RETURN(Activations act, LoadActivations(shared_dir));   // "" = synthetic
//   act.layers[0].k  // [tokens, Hkv, D] fp16, token-major
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace attic::demo {

struct LayerActivations {
  int layer = 0;                // the model layer these came from
  std::vector<uint16_t> k;      // [tokens, Hkv, D] fp16
  std::vector<uint16_t> v;      // [tokens, Hkv, D] fp16
  std::vector<uint16_t> q;      // [steps, Hq, D] fp16: queries of the last `steps` positions
};

struct Activations {
  std::string source;           // where they came from, for the report
  int tokens = 16384;
  int steps = 256;              // decode steps: positions tokens-steps .. tokens-1
  int q_heads = 8;
  int kv_heads = 2;
  int head_dim = 128;
  float scale = 0.08838834764831845f;
  std::vector<LayerActivations> layers;
};

// Real activations from `qkv_dir` (layers 1 and 4), or synthetic ones if qkv_dir is empty.
StatusOr<Activations> LoadActivations(const std::string& qkv_dir);

}  // namespace attic::demo
