// A small dump in the real-activation format (shared/data/qkv/*/*/README.md), written from
// random numbers: for tests of the loader and smoke runs of attic-bench-retrieval.
//
//   SyntheticDumpOptions o{.tokens = 1024, .layers = {2}, .values = false};
//   RETURN_IF_ERROR(WriteSyntheticDump("/tmp/dump", o));
//
// Keys are Gaussian with a few heavy "sink" rows; queries are Gaussian with a shared
// direction, so the top-k is neither trivial nor uniform. Arrays are fp16 .npy (format 1.0).
// Thread safety: stateless (distinct directories may be written concurrently).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace attic::retrieval::eval {

struct SyntheticDumpOptions {
  int64_t tokens = 1024;
  int kv_heads = 2;
  int group_size = 2;
  int head_dim = 64;
  int decode_rows = 64;     // the last decode_rows positions
  int prefill_stride = 16;  // q_prefill rows at 0, stride, 2 stride, ...
  std::vector<int> layers = {3};
  bool values = true;
  bool prefill = true;
  bool meta = true;         // meta.json with scale, decode_positions, prefill_stride
  uint64_t seed = 1;
};

// Creates dir if needed and writes L{l}_k/_v/_q_decode/_q_prefill.npy and meta.json.
Status WriteSyntheticDump(const std::string& dir, const SyntheticDumpOptions& options);

// One fp16 .npy of the given shape (C order) from fp32 values.
Status WriteNpyFp16(const std::string& path, const std::vector<int64_t>& shape,
                    const std::vector<float>& values);

}  // namespace attic::retrieval::eval
