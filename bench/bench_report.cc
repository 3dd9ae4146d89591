#include "bench/bench_report.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "attention_workers/isa.h"

namespace attic::bench {
namespace {

nlohmann::json ParamValue(const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (!v.empty() && end == v.c_str() + v.size()) return d;
  return v;
}

nlohmann::json ParamsJson(const std::vector<Param>& params) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : params) j[k] = ParamValue(v);
  return j;
}

std::string ParamsText(const std::vector<Param>& params) {
  std::string s;
  for (const auto& [k, v] : params) {
    if (!s.empty()) s += " ";
    s += k + "=" + v;
  }
  return s;
}

}  // namespace

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

// The kernel's view (/sys) first: inside VMs, sysconf may report the host's whole L3.
size_t LastLevelCacheBytes() {
  size_t best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/size");
    std::string text;
    if (!(in >> text) || text.empty()) continue;
    size_t value = std::strtoull(text.c_str(), nullptr, 10);
    if (text.back() == 'K') value <<= 10;
    if (text.back() == 'M') value <<= 20;
    best = std::max(best, value);
  }
  if (best > 0) return best;
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return static_cast<size_t>(l3);
  return size_t{32} << 20;
}

BenchReport::BenchReport(std::string bench) : bench_(std::move(bench)) {
  host_.emplace_back("cpu", CpuModel());
  host_.emplace_back("cores", std::to_string(std::thread::hardware_concurrency()));
  host_.emplace_back("isa", std::string(IsaName(ActiveIsa())));
  host_.emplace_back("llc_bytes", std::to_string(LastLevelCacheBytes()));
}

void BenchReport::AddHostFact(const std::string& key, const std::string& value) {
  host_.emplace_back(key, value);
}

void BenchReport::AddRow(BenchRow row) { rows_.push_back(std::move(row)); }

void BenchReport::AddRawRow(std::string json_object) { raw_rows_.push_back(std::move(json_object)); }

void BenchReport::PrintTable(std::FILE* out) const {
  if (rows_.empty() && !raw_rows_.empty()) return;
  std::fprintf(out, "%-28s %-36s %12s %-8s %12s %-26s %7s\n", "name", "params", "value", "unit",
               "limit", "limit source", "ratio");
  for (const BenchRow& r : rows_) {
    char limit[32] = "-", ratio[32] = "-";
    if (r.limit && *r.limit > 0) {
      std::snprintf(limit, sizeof(limit), "%.2f", *r.limit);
      std::snprintf(ratio, sizeof(ratio), "%.3f", r.value / *r.limit);
    }
    std::fprintf(out, "%-28s %-36s %12.2f %-8s %12s %-26s %7s\n", r.name.c_str(),
                 ParamsText(r.params).c_str(), r.value, r.unit.c_str(), limit,
                 r.limit ? r.limit_source.c_str() : "-", ratio);
  }
}

int BenchReport::Finish(const std::string& json_path, const char* program) const {
  PrintTable(stdout);
  if (json_path.empty()) return 0;
  const Status s = WriteJson(json_path);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", program, s.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s\n", json_path.c_str());
  return 0;
}

Status BenchReport::WriteJson(const std::string& path) const {
  nlohmann::json j;
  j["bench"] = bench_;
  j["host"] = ParamsJson(host_);
  j["rows"] = nlohmann::json::array();
  for (const BenchRow& r : rows_) {
    nlohmann::json row = {{"name", r.name},   {"params", ParamsJson(r.params)},
                          {"value", r.value}, {"unit", r.unit},
                          {"better", r.better}};
    if (r.limit && *r.limit > 0) {
      row["limit"] = *r.limit;
      row["limit_source"] = r.limit_source;
      row["ratio"] = r.value / *r.limit;
    } else {
      row["limit"] = nullptr;
      row["limit_source"] = nullptr;
      row["ratio"] = nullptr;
    }
    j["rows"].push_back(std::move(row));
  }
  for (const std::string& raw : raw_rows_) {
    nlohmann::json row = nlohmann::json::parse(raw, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object()) return InvalidArgumentError("bench: a raw row is not a JSON object");
    j["rows"].push_back(std::move(row));
  }
  std::ofstream out(path);
  if (!out) return UnavailableError("bench: cannot write '" + path + "'");
  out << j.dump(2) << "\n";
  if (!out) return DataLossError("bench: short write to '" + path + "'");
  return OkStatus();
}

}  // namespace attic::bench
