// The result envelope every Attic benchmark prints and writes:
//
//   {"bench": NAME, "host": {"cpu", "cores", "isa", "l3_bytes", ...},
//    "rows": [{"name", "params": {...}, "value", "unit", "limit", "limit_source", "ratio",
//              "better": "higher" | "lower"}]}
//
// ratio = value / limit; a row without a limit has limit, limit_source and ratio null.
//
//   BenchReport report("kernels");
//   report.AddRow({.name = "read_bandwidth", .params = {{"threads", 1}}, .value = 26.8,
//                  .unit = "GB/s", .better = "higher"});
//   report.PrintTable(stdout);
//   RETURN_IF_ERROR(report.WriteJson(path));
//
// Thread safety: not thread-safe; one report per benchmark run.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace attic::bench {

// A parameter value printed as a number when it parses as one, as a string otherwise.
using Param = std::pair<std::string, std::string>;

struct BenchRow {
  std::string name;
  std::vector<Param> params;
  double value = 0.0;
  std::string unit;
  std::optional<double> limit;
  std::string limit_source;
  std::string better = "higher";
};

class BenchReport {
 public:
  explicit BenchReport(std::string bench);

  // Host facts are gathered at construction (CPU model, cores, ISA, L3); more may be added.
  void AddHostFact(const std::string& key, const std::string& value);
  void AddRow(BenchRow row);
  // A row of a benchmark's own schema: one JSON object as text, written after the BenchRows
  // in "rows" and not printed by PrintTable (the benchmark prints its own table).
  void AddRawRow(std::string json_object);
  const std::vector<BenchRow>& rows() const { return rows_; }

  void PrintTable(std::FILE* out) const;
  Status WriteJson(const std::string& path) const;
  // The end of every benchmark: prints the table to stdout and, when json_path is not empty,
  // writes the JSON and says so. Returns the process exit code (1 if the JSON could not be
  // written, the error printed as "<program>: ...").
  int Finish(const std::string& json_path, const char* program) const;

 private:
  std::string bench_;
  std::vector<Param> host_;
  std::vector<BenchRow> rows_;
  std::vector<std::string> raw_rows_;
};

// The CPU's model name from /proc/cpuinfo ("unknown" if unreadable).
std::string CpuModel();
// Bytes of last-level cache, or 32 MiB when the OS does not say.
size_t LastLevelCacheBytes();

}  // namespace attic::bench
