// Manifest: what the SSD tier keeps about one open sequence so that a restarted store can
// rebuild it — identity, shape, prompt hashes and the durable length of every layer. The block
// keys follow from it (docs/kvstore-ssd.md): block b of (layer, head) is shared (stored under
// the prefix scope and hashes[b]) when it is a full prompt block, private otherwise.
//
//   std::string bytes = EncodeManifest(m);
//   ASSIGN_OR_RETURN(Manifest back, DecodeManifest(bytes));   // DataLoss if damaged
//
// Thread safety: plain functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"

namespace attic::kv_internal {

struct Manifest {
  uint64_t id = 0;
  std::string tenant;
  ModelSpec spec;
  uint64_t model_fingerprint = 0;  // resolved
  int head_begin = 0;
  int head_end = 0;
  std::vector<uint64_t> hashes;       // prompt block hashes given to LookupPrefix
  std::vector<int> durable_lengths;   // [num_layers], tokens on SSD
};

std::string EncodeManifest(const Manifest& m);
// DataLoss naming what is wrong (truncated, bad checksum, unknown version, bad shape).
StatusOr<Manifest> DecodeManifest(std::string_view bytes);

}  // namespace attic::kv_internal
