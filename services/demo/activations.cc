#include "services/demo/activations.h"

#include <cstring>
#include <random>

#include "common/dtype.h"
#include "common/npy.h"

namespace attic::demo {
namespace {

StatusOr<std::vector<uint16_t>> ReadFp16(const std::string& path,
                                         const std::vector<int64_t>& shape) {
  ASSIGN_OR_RETURN(NpyArray a, ReadNpy(path));
  if (a.dtype != DType::kFloat16 || a.shape != shape) {
    return InvalidArgumentError(path + ": expected fp16 of shape " + std::to_string(shape[0]) +
                                "x" + std::to_string(shape[1]) + "x" + std::to_string(shape[2]) +
                                ", found " + a.view().ShapeString());
  }
  std::vector<uint16_t> out(static_cast<size_t>(a.num_elements()));
  std::memcpy(out.data(), a.data.data(), a.data.size());
  return out;
}

// Keys with a few dominant directions and queries aligned with them, so attention is peaked
// like a real model's rather than uniform.
Activations Synthetic() {
  Activations act;
  act.source = "synthetic (seeded; ../shared/data/qkv not found)";
  std::mt19937_64 rng(20261122);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  const size_t kv = static_cast<size_t>(act.tokens) * act.kv_heads * act.head_dim;
  const size_t q = static_cast<size_t>(act.steps) * act.q_heads * act.head_dim;
  for (int layer : {1, 4}) {
    LayerActivations la;
    la.layer = layer;
    la.k.resize(kv);
    la.v.resize(kv);
    la.q.resize(q);
    for (auto& x : la.k) x = FloatToFp16(n01(rng));
    for (auto& x : la.v) x = FloatToFp16(n01(rng));
    for (auto& x : la.q) x = FloatToFp16(3.0f * n01(rng));
    act.layers.push_back(std::move(la));
  }
  return act;
}

}  // namespace

StatusOr<Activations> LoadActivations(const std::string& qkv_dir) {
  if (qkv_dir.empty()) return Synthetic();
  Activations act;
  act.source = qkv_dir;
  const std::vector<int64_t> kv_shape = {act.tokens, act.kv_heads, act.head_dim};
  const std::vector<int64_t> q_shape = {act.steps, act.q_heads, act.head_dim};
  for (int layer : {1, 4}) {
    const std::string p = qkv_dir + "/L" + std::to_string(layer) + "_";
    LayerActivations la;
    la.layer = layer;
    ASSIGN_OR_RETURN(la.k, ReadFp16(p + "k.npy", kv_shape));
    ASSIGN_OR_RETURN(la.v, ReadFp16(p + "v.npy", kv_shape));
    ASSIGN_OR_RETURN(la.q, ReadFp16(p + "q_decode.npy", q_shape));
    act.layers.push_back(std::move(la));
  }
  return act;
}

}  // namespace attic::demo
