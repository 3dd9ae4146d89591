#include "bench/retrieval/report.h"

#include <nlohmann/json.hpp>
#include <tuple>

namespace attic::retrieval::eval {
namespace {

double Ratio(const EvalRow& r, const DenseLatencies& dense_us) {
  const auto it = dense_us.find(r.context);
  return it == dense_us.end() || it->second <= 0 ? 0.0 : r.latency_us / it->second;
}

std::string PerHead(const EvalRow& r) {
  std::string s;
  char buf[16];
  for (double h : r.recall_per_head) {
    std::snprintf(buf, sizeof(buf), "%s%.2f", s.empty() ? "" : "/", h);
    s += buf;
  }
  return s;
}

void PrintHeader(std::FILE* out) {
  std::fprintf(out, "%-5s %-4s %-7s %-20s %-40s %7s %-19s %7s %8s %8s %8s %9s %6s %8s %11s %7s\n",
               "layer", "head", "context", "method", "setting", "rec@100", "per q-head", "mass",
               "out_err", "keys%", "bytes%", "lat_us", "ratio", "build_ms", "bld_keys/s/c",
               "B/key");
}

void PrintRow(std::FILE* out, const EvalRow& r, const DenseLatencies& dense_us) {
  char err[16] = "-";
  if (r.output_rel_err) std::snprintf(err, sizeof(err), "%.4f", *r.output_rel_err);
  std::fprintf(out,
               "%-5d %-4d %-7lld %-20s %-40s %7.3f %-19s %7.4f %8s %8.2f %8.2f %9.1f %6.3f %8.1f "
               "%12.0f %7.1f\n",
               r.layer, r.kv_head, static_cast<long long>(r.context), r.method.c_str(),
               r.setting.c_str(), r.recall_at_100, PerHead(r).c_str(), r.mass_recall, err,
               100.0 * r.keys_scanned_fraction, 100.0 * r.bytes_fraction, r.latency_us,
               Ratio(r, dense_us), r.build_ms, r.build_keys_per_s_per_core, r.index_bytes_per_key);
}

}  // namespace

void PrintRows(std::FILE* out, const std::vector<EvalRow>& rows, const DenseLatencies& dense_us) {
  PrintHeader(out);
  for (const EvalRow& r : rows) PrintRow(out, r, dense_us);
}

void PrintMatchedRecall(std::FILE* out, const std::vector<EvalRow>& rows,
                        const DenseLatencies& dense_us, double target) {
  // (layer, head, context, method) -> index of the cheapest row reaching the target, or of the
  // best recall when none does.
  std::map<std::tuple<int, int, int64_t, std::string>, size_t> best;
  for (size_t i = 0; i < rows.size(); ++i) {
    const EvalRow& r = rows[i];
    const auto key = std::make_tuple(r.layer, r.kv_head, r.context, r.method);
    const auto it = best.find(key);
    if (it == best.end()) {
      best[key] = i;
      continue;
    }
    const EvalRow& b = rows[it->second];
    const bool r_ok = r.recall_at_100 >= target, b_ok = b.recall_at_100 >= target;
    if ((r_ok && (!b_ok || r.bytes_fraction < b.bytes_fraction)) ||
        (!r_ok && !b_ok && r.recall_at_100 > b.recall_at_100)) {
      it->second = i;
    }
  }
  std::fprintf(out, "\nAt matched recall (recall@100 >= %.2f: the cheapest setting by bytes; "
                    "'(best)' = no setting reached it, the best recall shown)\n", target);
  std::fprintf(out, "%-5s %-4s %-7s %-20s %-40s %7s %8s %8s %9s %6s\n", "layer", "head",
               "context", "method", "setting", "rec@100", "bytes%", "keys%", "lat_us", "ratio");
  for (const auto& [key, i] : best) {
    const EvalRow& r = rows[i];
    const std::string setting = r.recall_at_100 >= target ? r.setting : r.setting + " (best)";
    std::fprintf(out, "%-5d %-4d %-7lld %-20s %-40s %7.3f %8.2f %8.2f %9.1f %6.3f\n", r.layer,
                 r.kv_head, static_cast<long long>(r.context), r.method.c_str(), setting.c_str(),
                 r.recall_at_100, 100.0 * r.bytes_fraction, 100.0 * r.keys_scanned_fraction,
                 r.latency_us, Ratio(r, dense_us));
  }
}

std::vector<ServingSummary> PrintServingPolicy(std::FILE* out, const std::vector<EvalRow>& rows,
                                               const DenseLatencies& dense_us, double target,
                                               const std::string& method) {
  // (layer, head, context) -> the profile's dense row, or the serving row.
  std::map<std::tuple<int, int, int64_t>, const EvalRow*> chosen;
  for (const EvalRow& r : rows) {
    const auto key = std::make_tuple(r.layer, r.kv_head, r.context);
    if (r.method == "attic-dense") {
      chosen[key] = &r;
    } else if (r.method == method && chosen.count(key) == 0) {
      chosen[key] = &r;
    }
  }
  std::vector<ServingSummary> out_summary;
  if (std::none_of(rows.begin(), rows.end(), [&](const EvalRow& r) { return r.method == method; })) {
    return out_summary;
  }
  std::fprintf(out, "\nServing policy, %s (chosen from the prefill sample only: head profile, "
                    "then the calibrated graph, the 4-bit scan, or dense)\n", method.c_str());
  std::fprintf(out, "%-5s %-4s %-7s %-14s %-40s %7s %8s %9s %6s\n", "layer", "head", "context",
               "served", "setting", "rec@100", "bytes%", "lat_us", "ratio");
  std::map<int64_t, ServingSummary> by_context;
  for (const auto& [key, r] : chosen) {
    const bool dense = r->bytes_fraction >= 1.0;
    std::fprintf(out, "%-5d %-4d %-7lld %-14s %-40s %7.3f %8.2f %9.1f %6.3f\n", r->layer,
                 r->kv_head, static_cast<long long>(r->context), dense ? "dense" : "sparse",
                 r->setting.c_str(), r->recall_at_100, 100.0 * r->bytes_fraction, r->latency_us,
                 dense ? 1.0 : Ratio(*r, dense_us));
    ServingSummary& s = by_context[r->context];
    s.method = method;
    s.context = r->context;
    ++s.heads;
    s.all_bytes += r->bytes_fraction;
    if (dense) continue;
    ++s.sparse_heads;
    s.below_target += r->recall_at_100 < target ? 1 : 0;
    s.min_recall = std::min(s.min_recall, r->recall_at_100);
    s.mean_recall += r->recall_at_100;
    s.sparse_bytes += r->bytes_fraction;
    s.max_sparse_bytes = std::max(s.max_sparse_bytes, r->bytes_fraction);
  }
  for (auto& [context, s] : by_context) {
    if (s.sparse_heads > 0) {
      s.mean_recall /= s.sparse_heads;
      s.sparse_bytes /= s.sparse_heads;
    }
    s.all_bytes /= s.heads;
    std::fprintf(out, "%s, context %lld: %d of %d heads sparse; sparse heads: recall@100 min %.3f mean "
                      "%.3f (%d under %.2f), bytes mean %.2f %% max %.2f %%; all heads: bytes "
                      "%.2f %%\n",
                 method.c_str(), static_cast<long long>(context), s.sparse_heads, s.heads, s.min_recall,
                 s.mean_recall, s.below_target, target, 100.0 * s.sparse_bytes,
                 100.0 * s.max_sparse_bytes, 100.0 * s.all_bytes);
    out_summary.push_back(s);
  }
  return out_summary;
}

std::string RowJson(const EvalRow& r, double dense_us) {
  nlohmann::json j = {{"method", r.method},
                      {"setting", r.setting},
                      {"layer", r.layer},
                      {"kv_head", r.kv_head},
                      {"context", r.context},
                      {"recall_at_100", r.recall_at_100},
                      {"recall_at_100_per_head", r.recall_per_head},
                      {"mass_recall", r.mass_recall},
                      {"keys_scanned_fraction", r.keys_scanned_fraction},
                      {"bytes_fraction", r.bytes_fraction},
                      {"latency_us", r.latency_us},
                      {"build_ms", r.build_ms},
                      {"build_threads", r.build_threads},
                      {"build_keys_per_s_per_core", r.build_keys_per_s_per_core},
                      {"index_bytes_per_key", r.index_bytes_per_key},
                      {"steps", r.steps}};
  j["output_rel_err"] = r.output_rel_err ? nlohmann::json(*r.output_rel_err) : nullptr;
  if (dense_us > 0) {
    j["dense_latency_us"] = dense_us;
    j["latency_ratio"] = r.latency_us / dense_us;
  } else {
    j["dense_latency_us"] = nullptr;
    j["latency_ratio"] = nullptr;
  }
  return j.dump();
}

}  // namespace attic::retrieval::eval
