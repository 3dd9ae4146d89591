#include "bench/ssd/sparse_fetch_section.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "bench/retrieval/dataset.h"
#include "bench/retrieval/synthetic_dump.h"

namespace attic::retrieval::eval {
namespace {

namespace fs = std::filesystem;

constexpr const char* kReferenceDump = "data/qkv/attic-ref-54m/networkx-16k";

// The reference dump under $ATTIC_SHARED_DIR or ../shared, or empty.
std::string FindReferenceDump() {
  std::vector<fs::path> roots;
  if (const char* env = std::getenv("ATTIC_SHARED_DIR"); env != nullptr && *env != '\0') {
    roots.emplace_back(env);
  }
  roots.emplace_back("../shared");
  for (const fs::path& root : roots) {
    std::error_code ec;
    if (fs::is_regular_file(root / kReferenceDump / "L4_k.npy", ec)) {
      return (root / kReferenceDump).string();
    }
  }
  return {};
}

// The dump to load: the given folder, the reference, or a synthetic one written now.
StatusOr<std::string> ResolveDump(const SparseFetchOptions& o, int layer) {
  if (!o.data_dir.empty()) return o.data_dir;
  if (std::string ref = FindReferenceDump(); !ref.empty()) return ref;
  const std::string dir = o.scratch_dir + "/synthetic-dump";
  const SyntheticDumpOptions s{.tokens = o.quick ? 4096 : 16384,
                               .kv_heads = 2,
                               .group_size = 4,
                               .head_dim = 128,
                               .decode_rows = o.quick ? 64 : 256,
                               .prefill_stride = 16,
                               .layers = {layer}};
  std::printf(
      "sparse fetch: no activation dump given and none under $ATTIC_SHARED_DIR or "
      "../shared; using a synthetic dump (random keys: the figures are not those of a "
      "model) in %s\n",
      dir.c_str());
  RETURN_IF_ERROR(WriteSyntheticDump(dir, s));
  return dir;
}

}  // namespace

Status AddSparseFetchSection(const SparseFetchOptions& options, bench::BenchReport* report) {
  if (options.scratch_dir.empty()) return InvalidArgumentError("sparse fetch: no scratch_dir");
  LocalityEvalOptions locality = options.locality;
  if (locality.layers.empty()) return InvalidArgumentError("sparse fetch: no layer");
  DecodeStepOptions decode = options.decode;
  decode.scratch_dir = options.scratch_dir + "/decode-step";
  decode.layer = locality.layers[0];
  if (options.quick) {
    locality.max_steps = decode.max_steps = 64;
    decode.dense_steps = 8;
  }
  ASSIGN_OR_RETURN(const std::string dir, ResolveDump(options, decode.layer));
  ASSIGN_OR_RETURN(const Dataset ds, LoadDataset(dir, locality.layers));
  ASSIGN_OR_RETURN(const LocalityReport loc, EvaluateLocality(ds, locality));
  PrintLocalityTable(stdout, loc);
  AddLocalityRows(loc, report);
  ASSIGN_OR_RETURN(const DecodeStepReport steps, MeasureDecodeSteps(ds, decode));
  PrintDecodeStepTable(stdout, steps);
  AddDecodeStepRows(steps, report);
  std::fflush(stdout);
  return OkStatus();
}

}  // namespace attic::retrieval::eval
