#include "services/loadgen/decode_driver.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>

#include "attention_workers/reference_attention.h"

namespace attic::loadgen {

StatusOr<PrefixMatch> OpenAndPrefill(Client& client, EngineModel& model, uint64_t id,
                                     const ShardPlan& plan, const std::string& tenant) {
  RETURN_IF_ERROR(client.Open({.id = id, .tenant = tenant, .plan = plan}).get());
  const std::vector<uint64_t> hashes = model.PromptHashes(id);
  ASSIGN_OR_RETURN(PrefixMatch match, client.LookupPrefix(id, hashes).get());
  std::vector<std::future<Status>> pending;
  for (int layer = 0; layer < model.spec().num_layers; ++layer) {
    const int64_t n = model.Length(id, layer);
    pending.push_back(
        client.Prefill(id, layer, 0, model.K(id, layer, 0, n), model.V(id, layer, 0, n)));
  }
  Status first;
  for (auto& f : pending) {
    Status s = f.get();
    if (first.ok() && !s.ok()) first = std::move(s);
  }
  RETURN_IF_ERROR(first);
  return match;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t i = static_cast<size_t>(p * static_cast<double>(values.size()));
  return values[std::min(values.size() - 1, i)];
}

StatusOr<StepResult> DecodeStep(Client& client, EngineModel& model, int layer,
                                const std::vector<uint64_t>& ids, bool check) {
  const ModelSpec& spec = model.spec();
  const size_t hq = static_cast<size_t>(spec.num_q_heads);
  const size_t d = static_cast<size_t>(spec.head_dim);
  std::vector<float> out(ids.size() * hq * d);
  std::vector<float> lse(ids.size() * hq);
  AttendBatch batch{.layer = layer};
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t pos = model.NextToken(ids[i], layer);
    const TensorView k = model.K(ids[i], layer, pos, 1);
    const TensorView v = model.V(ids[i], layer, pos, 1);
    batch.items.push_back(AttendItem{
        .id = ids[i],
        .q = TensorView(model.Query(ids[i], layer), DType::kFloat32,
                        {spec.num_q_heads, spec.head_dim}),
        .k_new = TensorView(k.data(), spec.dtype, {spec.num_kv_heads, spec.head_dim}),
        .v_new = TensorView(v.data(), spec.dtype, {spec.num_kv_heads, spec.head_dim}),
        .out = out.data() + i * hq * d,
        .lse = lse.data() + i * hq});
  }
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(AttendStats stats, client.Attend(std::move(batch)).get());
  StepResult result;
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.keys_scanned = stats.keys_scanned;
  if (!check) return result;
  result.checked = true;
  std::vector<double> ref_o(hq * d), ref_lse(hq);
  for (size_t i = 0; i < ids.size(); ++i) {
    model.Reference(ids[i], layer, model.Query(ids[i], layer), ref_o.data(), ref_lse.data());
    result.max_relative_error =
        std::max(result.max_relative_error,
                 RelativeError(out.data() + i * hq * d, ref_o.data(), static_cast<int>(hq * d)));
    for (size_t h = 0; h < hq; ++h) {
      result.max_lse_error =
          std::max(result.max_lse_error, std::abs(lse[i * hq + h] - ref_lse[h]));
    }
  }
  return result;
}

}  // namespace attic::loadgen
