// The sparse-fetch section of `./attic bench ssd`: the locality evaluation
// (bench/ssd/locality_eval.h: value bytes per step with a resident set, and its recall cost)
// and the decode-step latency with most values on SSD (bench/ssd/decode_step.h), on the
// reference activation dump, or on a synthetic dump when none is found.
//
//   bench::BenchReport report("ssd");
//   RETURN_IF_ERROR(AddSparseFetchSection({.data_dir = flags.data, .scratch_dir = dir},
//                                         &report));   // prints its tables, adds rows
//
// Thread safety: runs on the calling thread; writes only under scratch_dir.
#pragma once

#include <string>

#include "bench/bench_report.h"
#include "bench/ssd/decode_step.h"
#include "bench/ssd/locality_eval.h"
#include "common/status.h"

namespace attic::retrieval::eval {

struct SparseFetchOptions {
  // A dump folder (L{l}_k.npy, L{l}_v.npy, L{l}_q_decode.npy, L{l}_q_prefill.npy, meta.json).
  // Empty: $ATTIC_SHARED_DIR/data/qkv/attic-ref-54m/networkx-16k, else the same under
  // ../shared from the working directory; when neither exists, a synthetic dump of the
  // reference's shape is written under scratch_dir (and the tables say so).
  std::string data_dir;
  // Where the decode-step stores and a synthetic dump go (the bench's --dir); required.
  std::string scratch_dir;
  // A smoke run: 64 decode steps, 8 dense steps, a 4K-token synthetic dump.
  bool quick = false;
  // The evaluation's settings (layers, sweep) and the decode-step measurement's; the latter's
  // scratch_dir and layer are set from the fields above and locality.layers[0].
  LocalityEvalOptions locality;
  DecodeStepOptions decode;
};

// Loads the dump's layers, runs EvaluateLocality (PrintLocalityTable, AddLocalityRows) and
// MeasureDecodeSteps (PrintDecodeStepTable, AddDecodeStepRows). The first error of either.
Status AddSparseFetchSection(const SparseFetchOptions& options, bench::BenchReport* report);

}  // namespace attic::retrieval::eval
