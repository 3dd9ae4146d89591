// ./attic bench ssd [--dir DIR] [--bytes N] [--json FILE] [--quick] [--sync] [--buffered]
//                   [--flush-bytes N] [--read-threads N] [--writers LIST] [--shards LIST]
//                   [--data DIR] [--dram-fraction F] [--skip-sparse] [--sections LIST]
//
// The SSD tier against the disk under it, in one run (docs/kvstore-ssd.md):
//
//   disk_seq_write / disk_seq_read   raw O_DIRECT sequential throughput, 4 MiB transfers over a
//                                    file of --bytes (the write timed with its fdatasync), on
//                                    1, 2 and 4 threads (contiguous ranges); the best pass is
//                                    the physical limit of the rows below.
//   disk_random_read_latency         raw O_DIRECT 16 KiB reads at random aligned offsets.
//   disk_random_read_iops / _qd_latency  raw O_DIRECT 4 KiB and 16 KiB random reads at queue
//                                    depths 1, 16 and 32 (that many threads): IOPS and p50.
//   spill_throughput                 16 KiB blocks through SsdTier::Write in batches of 256
//                                    (4 MiB: the forced-flush path) until --bytes, from 1, 2
//                                    and 4 writer threads (--writers; each writes its own
//                                    sequences), for each block shard count of --shards (a
//                                    row each; the best). A batch is
//                                    shaped like the KV store's prefill write-through: K and V
//                                    of 4 blocks of each of 4 layers x 8 heads. Target:
//                                    >= 0.7 x disk_seq_write. RocksDB's own bytes written
//                                    (WAL, flush, compaction) are params: write amplification.
//   reload_throughput                the last spill's blocks back through ReadBlocks
//                                    (MultiGet, batches of 256, one stream's K and V after
//                                    another) on 1, 2, 4 and 8 threads, reopened (cold) before
//                                    each; one row per thread count and the best. Target:
//                                    >= 0.7 x disk_seq_read.
//   reload_values_only_throughput    the V blocks alone, one ReadBlocks per (layer, head)
//                                    stream in block order: what a dense attention step over
//                                    spilled values reads. Same rows and target.
//   random_block_read_latency        single ReadBlock of random keys (p50; p90/p99 as params),
//                                    table files opened first (steady state). Limit:
//                                    disk_random_read_latency p50.
//   sparse_fetch_step_latency        KvStore::FetchValues of 16 and 64 scattered spilled
//                                    value blocks per step (bench/ssd/sparse_step.h), with the
//                                    tier's 16 read threads and with 1. Limit: the disk's time
//                                    for that many random reads, max(QD1 p50, n / best IOPS).
//   locality_* / decode_step_*       sparse fetch (bench/ssd/sparse_fetch_section.h): value
//                                    bytes per step with the locality plan on the activation
//                                    dump (--data, else ../shared, else synthetic), and the
//                                    decode-step latency with --dram-fraction of the values in
//                                    DRAM against all of them (docs/retrieval-locality.md).
//
// Sections run in order and append rows to one report; a later section may read what an
// earlier one measured (SsdBenchContext). GB/s = 1e9 bytes/s.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/bench_report.h"
#include "bench/ssd/disk_throughput.h"
#include "bench/ssd/sparse_fetch_section.h"
#include "bench/ssd/sparse_step.h"
#include "bench/ssd/tier_throughput.h"

namespace attic::bench {
namespace {

constexpr double kTargetRatio = 0.7;

struct Flags {
  std::string dir;   // empty: a fresh directory under $TMPDIR or /tmp
  size_t bytes = 0;  // 0: 1 GiB, or 256 MiB with --quick
  std::string json;
  bool quick = false;
  bool sync = false;              // SsdTierOptions.sync: power-loss durable writes (every fsync)
  std::vector<int> shards = {0};  // SsdTierOptions.block_shards of each spill (0: default)
  std::vector<int> writers = {1, 2, 4};  // writer threads of each spill
  bool buffered = false;                 // SsdTierOptions.direct_io = false
  size_t flush_bytes = 0;                // SsdTierOptions.flush_bytes (0: the tier's default)
  int read_threads = -1;                 // SsdTierOptions.read_threads (-1: the tier's default)
  std::string data;                      // activation dump of the sparse-fetch section
  double dram_fraction = 0.1;            // values in DRAM in its spilled decode steps
  bool skip_sparse = false;
  // Sections to run besides the disk's (which every other one compares with); empty: all.
  std::vector<std::string> sections;
};

// What the sections share: the flags, the scratch directory, and the figures measured so far.
struct SsdBenchContext {
  Flags flags;
  std::string dir;
  size_t bytes = 0;
  DiskFigures disk;
  SpillFigures spill;
  std::vector<std::string> verdicts;  // printed after the table
};

using Section = Status (*)(SsdBenchContext&, BenchReport&);

void Usage() {
  std::printf(
      "usage: attic-bench-ssd [--dir DIR] [--bytes N] [--json FILE] [--quick] [--sync]\n"
      "                       [--buffered] [--flush-bytes N] [--read-threads N]\n"
      "                       [--writers LIST] [--shards LIST] [--data DIR]\n"
      "                       [--dram-fraction F] [--skip-sparse] [--sections LIST]\n"
      "  The SSD tier (RocksDB) against raw O_DIRECT throughput of the same disk.\n"
      "  --dir DIR    where to write (default: a fresh directory under $TMPDIR or /tmp);\n"
      "               the disk under DIR is the one measured\n"
      "  --bytes N    bytes to write and read back (suffix K, M or G; default 1G, --quick 256M)\n"
      "  --json FILE  also write the result envelope as JSON\n"
      "  --quick      256 MiB and fewer latency samples (a smoke run)\n"
      "  --sync       the tier with SsdTierOptions.sync (every fsync: power-loss durable)\n"
      "  --buffered   the tier without direct I/O (flushes and reads through the page cache)\n"
      "  --flush-bytes N  SsdTierOptions.flush_bytes: smaller writes go through the WAL (their\n"
      "               bytes then sit in the page cache and memtables: not disk figures)\n"
      "  --read-threads N  SsdTierOptions.read_threads of the tier rows (default: the tier's)\n"
      "  --writers LIST  writer thread counts to spill with (default 1,2,4)\n"
      "  --shards LIST  block shard counts to spill with, e.g. 1,4,8 (default: the tier's\n"
      "               default, min(8, hardware threads)); reloads read the last one's blocks\n"
      "  --data DIR   activation dump of the sparse-fetch section (default: ../shared's\n"
      "               reference dump, else a synthetic one)\n"
      "  --dram-fraction F  values in DRAM in its spilled decode steps (default 0.1)\n"
      "  --skip-sparse      leave out the sparse-fetch section\n"
      "  --sections LIST    run only these besides the disk's: spill, reload, random (the last\n"
      "               two read what spill wrote), sparse-step, sparse-fetch\n");
}

size_t ParseBytes(const std::string& v) {
  char* end = nullptr;
  double n = std::strtod(v.c_str(), &end);
  const std::string unit = end;
  if (unit == "K" || unit == "k") n *= 1024.0;
  if (unit == "M" || unit == "m") n *= 1024.0 * 1024.0;
  if (unit == "G" || unit == "g") n *= 1024.0 * 1024.0 * 1024.0;
  if (n <= 0 || (!unit.empty() && unit.find_first_not_of("KkMmGg") != std::string::npos)) {
    std::fprintf(stderr, "attic-bench-ssd: --bytes takes a positive size, got '%s'\n", v.c_str());
    std::exit(2);
  }
  return static_cast<size_t>(n);
}

std::vector<int> ParseCounts(const char* flag, const std::string& v) {
  std::vector<int> out;
  size_t at = 0;
  while (at <= v.size()) {
    const size_t comma = std::min(v.find(',', at), v.size());
    const int n = std::atoi(v.substr(at, comma - at).c_str());
    if (n < 1 || n > 64) {
      std::fprintf(stderr, "attic-bench-ssd: %s takes counts in [1, 64], got '%s'\n", flag,
                   v.c_str());
      std::exit(2);
    }
    out.push_back(n);
    at = comma + 1;
  }
  return out;
}

std::vector<std::string> ParseNames(const std::string& v) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= v.size()) {
    const size_t comma = std::min(v.find(',', at), v.size());
    out.push_back(v.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--dir" && has_value) {
      f->dir = argv[++i];
    } else if (a == "--bytes" && has_value) {
      f->bytes = ParseBytes(argv[++i]);
    } else if (a == "--json" && has_value) {
      f->json = argv[++i];
    } else if (a == "--quick") {
      f->quick = true;
    } else if (a == "--sync") {
      f->sync = true;
    } else if (a == "--buffered") {
      f->buffered = true;
    } else if (a == "--read-threads" && has_value) {
      f->read_threads = std::atoi(argv[++i]);
    } else if (a == "--flush-bytes" && has_value) {
      f->flush_bytes = ParseBytes(argv[++i]);
    } else if (a == "--shards" && has_value) {
      f->shards = ParseCounts("--shards", argv[++i]);
    } else if (a == "--writers" && has_value) {
      f->writers = ParseCounts("--writers", argv[++i]);
    } else if (a == "--data" && has_value) {
      f->data = argv[++i];
    } else if (a == "--dram-fraction" && has_value) {
      f->dram_fraction = std::atof(argv[++i]);
    } else if (a == "--skip-sparse") {
      f->skip_sparse = true;
    } else if (a == "--sections" && has_value) {
      f->sections = ParseNames(argv[++i]);
    } else if (a == "--help" || a == "-h") {
      Usage();
      return false;
    } else {
      std::fprintf(stderr, "attic-bench-ssd: unknown argument '%s' (try --help)\n", a.c_str());
      std::exit(2);
    }
  }
  return true;
}

StatusOr<std::string> MakeDirectory(const Flags& f) {
  if (!f.dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(f.dir, ec);
    if (ec) return UnavailableError("creating " + f.dir + ": " + ec.message());
    char pattern[] = "attic-bench-ssd-XXXXXX";
    std::string p = f.dir + "/" + pattern;
    if (mkdtemp(p.data()) == nullptr) return UnavailableError("mkdtemp under " + f.dir);
    return p;
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string p =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/attic-bench-ssd-XXXXXX";
  if (mkdtemp(p.data()) == nullptr) return UnavailableError("mkdtemp " + p);
  return p;
}

std::string Num(double v, const char* fmt = "%.3f") {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

std::string Verdict(const std::string& row, double value, double limit, const char* unit) {
  const double ratio = limit > 0 ? value / limit : 0.0;
  return row + ": " + Num(value) + " " + unit + " = " + Num(ratio, "%.2f") + " x limit " +
         Num(limit) + " " + unit + " (target >= " + Num(kTargetRatio, "%.1f") +
         "): " + (ratio >= kTargetRatio ? "MET" : "NOT MET");
}

// ---- sections ----

// The per-thread-count passes as params ("gbps_2t": 1.9) and the thread count of the best.
std::vector<Param> PassParams(const DiskFigures& d, const std::vector<DiskPass>& passes,
                              double best) {
  std::vector<Param> p = {{"bytes", std::to_string(d.bytes)},
                          {"transfer_bytes", std::to_string(size_t{4} << 20)},
                          {"direct_io", d.direct_io ? "true" : "false"}};
  for (const DiskPass& pass : passes) {
    if (pass.gbps == best) p.emplace_back("threads", std::to_string(pass.threads));
  }
  for (const DiskPass& pass : passes) {
    p.emplace_back("gbps_" + std::to_string(pass.threads) + "t", Num(pass.gbps));
  }
  return p;
}

// disk_random_read_iops and disk_random_read_qd_latency: one row each per (size, depth).
void AddRandomPassRows(const DiskFigures& d, BenchReport& report) {
  for (const RandomReadPass& p : d.random_passes) {
    const std::vector<Param> params = {{"read_bytes", std::to_string(p.bytes)},
                                       {"queue_depth", std::to_string(p.queue_depth)},
                                       {"samples", std::to_string(p.latency.samples)},
                                       {"p90_us", Num(p.latency.p90_us, "%.1f")},
                                       {"p99_us", Num(p.latency.p99_us, "%.1f")},
                                       {"direct_io", d.direct_io ? "true" : "false"}};
    report.AddRow(
        {.name = "disk_random_read_iops", .params = params, .value = p.iops, .unit = "IOPS"});
    report.AddRow({.name = "disk_random_read_qd_latency",
                   .params = params,
                   .value = p.latency.p50_us,
                   .unit = "us",
                   .better = "lower"});
  }
}

Status DiskSection(SsdBenchContext& c, BenchReport& report) {
  ASSIGN_OR_RETURN(
      c.disk,
      MeasureDisk({.dir = c.dir, .bytes = c.bytes, .random_reads = c.flags.quick ? 500 : 2000}));
  const DiskFigures& d = c.disk;
  if (!d.direct_io) {
    std::printf("WARNING: %s; the disk rows below are buffered I/O figures, not the device's\n",
                d.note.c_str());
  }
  report.AddRow({.name = "disk_seq_write",
                 .params = PassParams(d, d.writes, d.write_gbps),
                 .value = d.write_gbps,
                 .unit = "GB/s"});
  report.AddRow({.name = "disk_seq_read",
                 .params = PassParams(d, d.reads, d.read_gbps),
                 .value = d.read_gbps,
                 .unit = "GB/s"});
  AddRandomPassRows(d, report);
  report.AddRow({.name = "disk_random_read_latency",
                 .params = {{"read_bytes", "16384"},
                            {"samples", std::to_string(d.random_read.samples)},
                            {"p90_us", Num(d.random_read.p90_us, "%.1f")},
                            {"p99_us", Num(d.random_read.p99_us, "%.1f")},
                            {"direct_io", d.direct_io ? "true" : "false"}},
                 .value = d.random_read.p50_us,
                 .unit = "us",
                 .better = "lower"});
  return OkStatus();
}

// The reloads and the latency run open the last spill's directory with its shard count.
TierBenchOptions TierOptions(const SsdBenchContext& c) {
  TierBenchOptions o;
  o.dir = c.dir + "/tier";
  o.tier.block_shards = c.flags.shards.back();
  o.bytes = c.bytes;
  o.random_reads = c.flags.quick ? 500 : 2000;
  o.tier.sync = c.flags.sync;
  o.tier.direct_io = !c.flags.buffered;
  if (c.flags.read_threads >= 0) o.tier.read_threads = c.flags.read_threads;
  if (c.flags.flush_bytes != 0) {
    o.tier.flush_bytes = c.flags.flush_bytes;
    o.tier.write_buffer_bytes = std::max(o.tier.write_buffer_bytes, c.flags.flush_bytes);
  }
  return o;
}

std::vector<Param> SpillParams(const SpillFigures& s) {
  const SsdTierStats& st = s.stats;
  return {{"writers", std::to_string(s.writers)},
          {"shards", std::to_string(s.shards)},
          {"blocks", std::to_string(s.blocks)},
          {"block_bytes", "16384"},
          {"batch_blocks", std::to_string(TierBenchOptions().batch_blocks())},
          {"seconds", Num(s.seconds)},
          {"flushes", std::to_string(st.flushes)},
          {"rocksdb_wal_bytes", std::to_string(st.wal_bytes)},
          {"rocksdb_flush_bytes", std::to_string(st.flush_bytes_written)},
          {"rocksdb_compaction_write_bytes", std::to_string(st.compact_bytes_written)},
          {"rocksdb_compaction_read_bytes", std::to_string(st.compact_bytes_read)},
          {"rocksdb_blob_bytes", std::to_string(st.blob_bytes_written)},
          {"write_amplification", Num(st.write_amplification())},
          {"rocksdb_stall_us", std::to_string(st.stall_micros)},
          {"live_blob_bytes", std::to_string(st.live_blob_bytes)},
          {"sst_bytes", std::to_string(st.total_sst_bytes)},
          {"direct_io", st.direct_io ? "true" : "false"},
          {"rocksdb_crc32c_accelerated", st.rocksdb_crc32c_accelerated ? "true" : "false"},
          {"sync", s.sync ? "true" : "false"}};
}

// One spill per shard count and writer count (each into a fresh tier; the last one's blocks
// stay for the reload), a row each, and the best as spill_throughput.
Status SpillSection(SsdBenchContext& c, BenchReport& report) {
  TierBenchOptions o = TierOptions(c);
  SpillFigures best;
  for (int shards : c.flags.shards) {
    o.tier.block_shards = shards;
    for (int writers : c.flags.writers) {
      ASSIGN_OR_RETURN(c.spill, MeasureSpill(o, writers));
      report.AddRow({.name = "spill_throughput_writers",
                     .params = SpillParams(c.spill),
                     .value = c.spill.gbps,
                     .unit = "GB/s",
                     .limit = c.disk.write_gbps,
                     .limit_source = "raw O_DIRECT sequential write, same run"});
      if (c.spill.gbps > best.gbps) best = c.spill;
    }
  }
  report.AddRow({.name = "spill_throughput",
                 .params = SpillParams(best),
                 .value = best.gbps,
                 .unit = "GB/s",
                 .limit = c.disk.write_gbps,
                 .limit_source = "raw O_DIRECT sequential write, same run"});
  c.verdicts.push_back(Verdict("spill_throughput", best.gbps, c.disk.write_gbps, "GB/s"));
  return OkStatus();
}

// One row per thread count and the best, for one kind of reload (all blocks, or the values
// alone as a dense attention step streams them).
Status ReloadRows(SsdBenchContext& c, BenchReport& report, ReloadKind kind, const std::string& row,
                  const std::string& keys_per_read) {
  ASSIGN_OR_RETURN(std::vector<ReloadFigures> runs, MeasureReload(TierOptions(c), c.spill, kind));
  const ReloadFigures* best = nullptr;
  for (const ReloadFigures& r : runs) {
    report.AddRow({.name = row + "_threads",
                   .params = {{"threads", std::to_string(r.threads)},
                              {"seconds", Num(r.seconds)},
                              {"bytes", std::to_string(r.bytes)},
                              {"blob_bytes_read", std::to_string(r.stats.blob_bytes_read)}},
                   .value = r.gbps,
                   .unit = "GB/s",
                   .limit = c.disk.read_gbps,
                   .limit_source = "raw O_DIRECT sequential read, same run"});
    if (best == nullptr || r.gbps > best->gbps) best = &r;
  }
  if (best == nullptr) return OkStatus();
  report.AddRow({.name = row,
                 .params = {{"threads", std::to_string(best->threads)},
                            {"keys_per_read", keys_per_read},
                            {"bytes", std::to_string(best->bytes)}},
                 .value = best->gbps,
                 .unit = "GB/s",
                 .limit = c.disk.read_gbps,
                 .limit_source = "raw O_DIRECT sequential read, same run"});
  c.verdicts.push_back(Verdict(row, best->gbps, c.disk.read_gbps, "GB/s"));
  return OkStatus();
}

Status ReloadSection(SsdBenchContext& c, BenchReport& report) {
  const TierBenchOptions o = TierOptions(c);
  RETURN_IF_ERROR(ReloadRows(c, report, ReloadKind::kAll, "reload_throughput",
                             std::to_string(o.read_batch_blocks)));
  return ReloadRows(c, report, ReloadKind::kValuesOnly, "reload_values_only_throughput",
                    std::to_string(o.stream_blocks) + " (one stream)");
}

Status RandomReadSection(SsdBenchContext& c, BenchReport& report) {
  ASSIGN_OR_RETURN(LatencyFigures lat, MeasureRandomBlockReads(TierOptions(c), c.spill));
  report.AddRow({.name = "random_block_read_latency",
                 .params = {{"samples", std::to_string(lat.samples)},
                            {"p90_us", Num(lat.p90_us, "%.1f")},
                            {"p99_us", Num(lat.p99_us, "%.1f")},
                            {"mean_us", Num(lat.mean_us, "%.1f")}},
                 .value = lat.p50_us,
                 .unit = "us",
                 .limit = c.disk.random_read.p50_us,
                 .limit_source = "raw O_DIRECT 16 KiB random read p50, same run",
                 .better = "lower"});
  return OkStatus();
}

// FetchValues of n scattered spilled blocks per step against the disk's random-read latency
// and IOPS of the same run: sparse_fetch_step_latency, one row per (read threads, n).
Status SparseStepSection(SsdBenchContext& c, BenchReport& report) {
  SparseStepOptions o{.dir = c.dir, .direct_io = !c.flags.buffered};
  if (c.flags.quick) o.steps = 50;
  ASSIGN_OR_RETURN(std::vector<SparseStepFigures> rows, MeasureSparseSteps(o));
  for (const SparseStepFigures& f : rows) {
    const double limit = SparseStepLimitUs(c.disk, f.block_bytes, f.blocks_per_step);
    const RandomReadPass* qd1 = c.disk.FindRandom(f.block_bytes, 1);
    const double serial = qd1 != nullptr ? qd1->latency.p50_us * f.blocks_per_step : 0.0;
    report.AddRow({.name = "sparse_fetch_step_latency",
                   .params = {{"blocks_per_step", std::to_string(f.blocks_per_step)},
                              {"read_threads", std::to_string(f.read_threads)},
                              {"block_bytes", std::to_string(f.block_bytes)},
                              {"blocks_read_per_step", Num(f.blocks_read, "%.1f")},
                              {"steps", std::to_string(f.step.samples)},
                              {"p90_us", Num(f.step.p90_us, "%.1f")},
                              {"p99_us", Num(f.step.p99_us, "%.1f")},
                              {"serial_us", Num(serial, "%.1f")}},
                   .value = f.step.p50_us,
                   .unit = "us",
                   .limit = limit,
                   .limit_source =
                       "max(raw QD1 random-read p50, blocks / best raw random-read IOPS), same run",
                   .better = "lower"});
    c.verdicts.push_back(
        "sparse_fetch_step_latency (" + std::to_string(f.blocks_per_step) + " blocks, " +
        std::to_string(f.read_threads) + " read threads): p50 " + Num(f.step.p50_us, "%.0f") +
        " us = " + Num(limit > 0 ? f.step.p50_us / limit : 0.0, "%.2f") + " x limit " +
        Num(limit, "%.0f") + " us (one read per block in turn: " + Num(serial, "%.0f") + " us)");
  }
  return OkStatus();
}

Status SparseFetchSection(SsdBenchContext& c, BenchReport& report) {
  if (c.flags.skip_sparse) return OkStatus();
  retrieval::eval::SparseFetchOptions o{
      .data_dir = c.flags.data, .scratch_dir = c.dir + "/sparse", .quick = c.flags.quick};
  o.decode.dram_fraction = c.flags.dram_fraction;
  return retrieval::eval::AddSparseFetchSection(o, &report);
}

struct NamedSection {
  const char* name;
  Section run;
};

// New sections go at the end; each appends its rows (and verdicts) to the one report. The
// reload and random-read sections read what the spill wrote.
constexpr NamedSection kSections[] = {{"disk", DiskSection},
                                      {"spill", SpillSection},
                                      {"reload", ReloadSection},
                                      {"random", RandomReadSection},
                                      {"sparse-step", SparseStepSection},
                                      {"sparse-fetch", SparseFetchSection}};

bool Wanted(const Flags& f, const std::string& name) {
  if (f.sections.empty() || name == "disk") return true;
  return std::find(f.sections.begin(), f.sections.end(), name) != f.sections.end();
}

int Run(const Flags& flags) {
  SsdBenchContext c;
  c.flags = flags;
  c.bytes = flags.bytes != 0 ? flags.bytes : (flags.quick ? size_t{256} << 20 : size_t{1} << 30);
  StatusOr<std::string> dir = MakeDirectory(flags);
  if (!dir.ok()) {
    std::fprintf(stderr, "attic-bench-ssd: %s\n", dir.status().ToString().c_str());
    return 1;
  }
  c.dir = *dir;
  std::printf("attic-bench-ssd: %zu bytes in %s\n", c.bytes, c.dir.c_str());
  BenchReport report("ssd");
  report.AddHostFact("dir", c.dir);
  Status s;
  for (const NamedSection& section : kSections) {
    if (!Wanted(flags, section.name)) continue;
    s = section.run(c, report);
    if (!s.ok()) break;
  }
  std::error_code ec;
  std::filesystem::remove_all(c.dir, ec);
  if (!s.ok()) {
    std::fprintf(stderr, "attic-bench-ssd: %s\n", s.ToString().c_str());
    return 1;
  }
  const int rc = report.Finish(flags.json, "attic-bench-ssd");
  for (const std::string& v : c.verdicts) std::printf("%s\n", v.c_str());
  return rc;
}

}  // namespace
}  // namespace attic::bench

int main(int argc, char** argv) {
  attic::bench::Flags flags;
  if (!attic::bench::ParseFlags(argc, argv, &flags)) return 0;
  return attic::bench::Run(flags);
}
