// The decode-step measurement's table and bench rows (bench/ssd/decode_step.h).
#include <algorithm>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "bench/ssd/decode_step.h"

namespace attic::retrieval::eval {
namespace {

std::string Num(double v, const char* fmt = "%.3f") {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

double Ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

double KiB(double bytes) { return bytes / 1024.0; }

// The all-dram result of the same mode as c (c itself for all-dram), or nullptr.
const DecodeConfigResult* Base(const DecodeStepReport& r, const DecodeConfigResult& c) {
  return r.Find("all-dram", c.mode);
}

void PrintConfig(std::FILE* out, const DecodeStepReport& r, const DecodeConfigResult& c) {
  const DecodeConfigResult* base = Base(r, c);
  const double p50 = base != nullptr ? Ratio(c.step_us.p50, base->step_us.p50) : 0.0;
  const double p99 = base != nullptr ? Ratio(c.step_us.p99, base->step_us.p99) : 0.0;
  std::fprintf(out,
               "%-12s %-6s %5.0f%% %5lld | %9.0f %9.0f %8.0f | %5.2fx %5.2fx | %8.1f %5.1f %5.1f "
               "%4.1f | %7.0f | %6.4f %6.4f %7.4f %8s\n",
               c.name.c_str(), c.mode.c_str(), 100.0 * c.values_in_dram,
               static_cast<long long>(c.value_dram_blocks), c.step_us.p50, c.step_us.p99, c.read_us,
               p50, p99, KiB(c.ssd_bytes_per_step), c.blocks_selected, c.blocks_read, c.dropped,
               c.maintain_us.p50, c.recall, c.mass_recall, c.output_error,
               c.max_error_vs_all_dram < 0 ? "-" : Num(c.max_error_vs_all_dram, "%.1e").c_str());
}

void PrintTier(std::FILE* out, const DecodeConfigResult& c) {
  const TierDelta& t = c.tier;
  const double n = std::max(1, c.steps);
  std::fprintf(out,
               "%-12s %-6s  store read %8.1f KiB/step (reloaded %6.2f, streamed %6.2f blocks/step, "
               "spilled %6.2f)  tier blocks %8.1f KiB/step  RocksDB BYTES_READ %8.1f KiB/step, "
               "blob reads %8.1f KiB/step, compaction reads %8.1f KiB/step\n",
               c.name.c_str(), c.mode.c_str(), KiB(static_cast<double>(t.store_bytes_read) / n),
               static_cast<double>(t.reloaded) / n, static_cast<double>(t.streamed) / n,
               static_cast<double>(t.spilled) / n,
               KiB(static_cast<double>(t.tier_block_bytes_read) / n),
               KiB(static_cast<double>(t.rocksdb_bytes_read) / n),
               KiB(static_cast<double>(t.blob_bytes_read) / n),
               KiB(static_cast<double>(t.compact_bytes_read) / n));
}

std::vector<bench::Param> Params(const DecodeStepReport& r, const DecodeConfigResult& c) {
  return {{"layer", std::to_string(r.layer)},
          {"context", std::to_string(r.context)},
          {"kv_heads", std::to_string(r.kv_heads)},
          {"values_in_dram", Num(c.values_in_dram, "%.2f")},
          {"value_dram_blocks", std::to_string(c.value_dram_blocks)},
          {"locality", c.name == "locality" ? "on" : "off"},
          {"mode", c.mode},
          {"steps", std::to_string(c.steps)},
          {"direct_io", r.direct_io ? "true" : "false"}};
}

void AddLatencyRows(const DecodeStepReport& r, const DecodeConfigResult& c,
                    bench::BenchReport* out) {
  const DecodeConfigResult* base = Base(r, c);
  for (const auto& [name, value, base_value] :
       {std::tuple{"p50", c.step_us.p50, base != nullptr ? base->step_us.p50 : 0.0},
        std::tuple{"p99", c.step_us.p99, base != nullptr ? base->step_us.p99 : 0.0}}) {
    std::vector<bench::Param> params = Params(r, c);
    params.emplace_back("percentile", name);
    bench::BenchRow row{.name = "decode_step_latency",
                        .params = std::move(params),
                        .value = value,
                        .unit = "us",
                        .better = "lower"};
    if (base != nullptr && base != &c) {
      row.limit = base_value;
      row.limit_source = "all values in DRAM, same steps and mode";
    }
    out->AddRow(std::move(row));
  }
}

void AddBytesRow(const DecodeStepReport& r, const DecodeConfigResult& c, bench::BenchReport* out) {
  const TierDelta& t = c.tier;
  const double n = std::max(1, c.steps);
  std::vector<bench::Param> params = Params(r, c);
  params.emplace_back("blocks_selected_per_step", Num(c.blocks_selected, "%.1f"));
  params.emplace_back("blocks_read_per_step", Num(c.blocks_read, "%.2f"));
  params.emplace_back("read_us_per_step", Num(c.read_us, "%.0f"));
  params.emplace_back("store_bytes_read_per_step",
                      Num(static_cast<double>(t.store_bytes_read) / n, "%.0f"));
  params.emplace_back("rocksdb_bytes_read_per_step",
                      Num(static_cast<double>(t.rocksdb_bytes_read) / n, "%.0f"));
  params.emplace_back("blob_bytes_read_per_step",
                      Num(static_cast<double>(t.blob_bytes_read) / n, "%.0f"));
  params.emplace_back("compaction_bytes_read_per_step",
                      Num(static_cast<double>(t.compact_bytes_read) / n, "%.0f"));
  params.emplace_back("spilled_per_step", Num(static_cast<double>(t.spilled) / n, "%.2f"));
  out->AddRow({.name = "decode_step_ssd_bytes",
               .params = std::move(params),
               .value = c.ssd_bytes_per_step,
               .unit = "B",
               .better = "lower"});
}

void AddRecallRow(const DecodeStepReport& r, const DecodeConfigResult& c, bench::BenchReport* out) {
  const DecodeConfigResult* base = Base(r, c);
  std::vector<bench::Param> params = Params(r, c);
  params.emplace_back("mass_recall", Num(c.mass_recall, "%.4f"));
  params.emplace_back("output_error", Num(c.output_error, "%.4f"));
  params.emplace_back("top_k", std::to_string(r.selection.top_k));
  bench::BenchRow row{.name = "decode_step_recall",
                      .params = std::move(params),
                      .value = c.recall,
                      .unit = "fraction",
                      .better = "higher"};
  if (base != nullptr && base != &c) {
    row.limit = base->recall;
    row.limit_source = "all values in DRAM, same steps";
  }
  out->AddRow(std::move(row));
}

}  // namespace

void PrintDecodeStepTable(std::FILE* out, const DecodeStepReport& r) {
  std::fprintf(out,
               "\nDecode step, layer %d of %s: context %lld (prefill %lld), %d KV heads, B %d, "
               "%lld value blocks of %lld KiB; top_k %d, sinks %d, window %d; locality: "
               "budget %d, slack %.2f; graph index build %.0f ms; prefill %.0f ms; %s\n",
               r.layer, r.dir.c_str(), static_cast<long long>(r.context),
               static_cast<long long>(r.indexed), r.kv_heads, r.block_size,
               static_cast<long long>(r.value_blocks), static_cast<long long>(r.block_bytes / 1024),
               r.selection.top_k, r.selection.sinks, r.selection.window, r.locality.fetch_budget,
               static_cast<double>(r.locality.score_slack), r.build_ms, r.prefill_ms,
               r.direct_io ? "direct I/O" : r.direct_io_note.c_str());
  std::fprintf(out,
               "%-12s %-6s %6s %5s | %9s %9s %8s | %6s %6s | %8s %5s %5s %4s | %7s | %6s %6s %7s "
               "%8s\n",
               "config", "mode", "DRAM", "blks", "p50 us", "p99 us", "read us", "p50/a", "p99/a",
               "KiB/step", "sel", "read", "drop", "maint", "recall", "mass", "err", "vs a");
  for (const DecodeConfigResult& c : r.configs) PrintConfig(out, r, c);
  std::fprintf(out, "Tier figures over the steps (the store's, then RocksDB's statistics):\n");
  for (const DecodeConfigResult& c : r.configs) PrintTier(out, c);
}

void AddDecodeStepRows(const DecodeStepReport& r, bench::BenchReport* out) {
  for (const DecodeConfigResult& c : r.configs) {
    AddLatencyRows(r, c, out);
    AddBytesRow(r, c, out);
    if (c.mode == "sparse") AddRecallRow(r, c, out);
  }
}

}  // namespace attic::retrieval::eval
