#include "attention_workers/decode_attention.h"

#include <string>
#include <vector>

#include "common/model_spec.h"

namespace attic {
namespace {

static_assert(ModelSpec::kMaxGroupSize == kernels::kMaxGroupSize,
              "a valid model spec must fit the kernels");

Status CheckCommon(const float* q, int g, int d, DType dtype, float scale, const float* out,
                   const float* lse, IsaLevel isa) {
  if (q == nullptr || out == nullptr || lse == nullptr) {
    return InvalidArgumentError("decode attention: q, out and lse must not be null");
  }
  if (g < 1 || g > kernels::kMaxGroupSize) {
    return InvalidArgumentError("decode attention: group size " + std::to_string(g) +
                                " is not in [1, 128]");
  }
  if (d < 32 || d > kernels::kMaxHeadDim || d % 32 != 0) {
    return InvalidArgumentError("decode attention: head_dim " + std::to_string(d) +
                                " is not a multiple of 32 in [32, 512]");
  }
  if (!DTypeFromNumber(static_cast<int>(dtype))) {
    return InvalidArgumentError("decode attention: unknown dtype " +
                                std::to_string(static_cast<int>(dtype)));
  }
  if (!(scale > 0.0f) || scale > 1e30f) {
    return InvalidArgumentError("decode attention: scale " + std::to_string(scale) +
                                " is not a finite positive number");
  }
  if (!IsaSupported(isa)) {
    return InvalidArgumentError("decode attention: ISA " + std::string(IsaName(isa)) +
                                " is not supported by this CPU");
  }
  return OkStatus();
}

Status CheckRuns(std::span<const KvRun> runs, const char* what) {
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].num_tokens < 0) {
      return InvalidArgumentError(std::string("decode attention: ") + what + " " +
                                  std::to_string(i) + " has a negative length");
    }
    if (runs[i].num_tokens > 0 && (runs[i].k == nullptr || runs[i].v == nullptr)) {
      return InvalidArgumentError(std::string("decode attention: ") + what + " " +
                                  std::to_string(i) + " has a null K or V pointer");
    }
  }
  return OkStatus();
}

void Run(const kernels::DecodeArgs& args, IsaLevel isa) {
  switch (isa) {
    case IsaLevel::kAvx512Bf16:
      return kernels::DecodeAvx512Bf16(args);
    case IsaLevel::kAvx512:
      return kernels::DecodeAvx512(args);
    case IsaLevel::kAvx2:
      return kernels::DecodeAvx2(args);
    case IsaLevel::kScalar:
      return kernels::DecodeScalar(args);
  }
}

}  // namespace

Status DecodeAttention(const DecodeAttentionParams& p, IsaLevel isa) {
  RETURN_IF_ERROR(
      CheckCommon(p.q, p.group_size, p.head_dim, p.dtype, p.scale, p.out, p.lse, isa));
  RETURN_IF_ERROR(CheckRuns(p.runs, "run"));
  const kernels::DecodeArgs args{p.q,           p.group_size, p.head_dim,
                                 static_cast<int>(p.dtype), p.scale,   p.runs.data(),
                                 static_cast<int>(p.runs.size()), p.out, p.lse};
  Run(args, isa);
  return OkStatus();
}

Status SparseDecodeAttention(const SparseDecodeAttentionParams& p, IsaLevel isa) {
  RETURN_IF_ERROR(
      CheckCommon(p.q, p.group_size, p.head_dim, p.dtype, p.scale, p.out, p.lse, isa));
  // Only blocks a position falls in must have their K and V (checked below): a caller may
  // leave the values of unselected blocks out (e.g. still on SSD).
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    if (p.blocks[b].num_tokens < 0) {
      return InvalidArgumentError("sparse attention: block " + std::to_string(b) +
                                  " has a negative length");
    }
  }
  if (p.block_size < 1) {
    return InvalidArgumentError("sparse attention: block_size " + std::to_string(p.block_size) +
                                " must be positive");
  }
  int64_t total = 0;
  for (size_t b = 0; b < p.blocks.size(); ++b) {
    const bool last = b + 1 == p.blocks.size();
    if (p.blocks[b].num_tokens > p.block_size || (!last && p.blocks[b].num_tokens != p.block_size)) {
      return InvalidArgumentError("sparse attention: block " + std::to_string(b) + " holds " +
                                  std::to_string(p.blocks[b].num_tokens) +
                                  " tokens; every block but the last must hold block_size = " +
                                  std::to_string(p.block_size));
    }
    total += p.blocks[b].num_tokens;
  }
  const size_t row_bytes = static_cast<size_t>(p.head_dim) * DTypeSize(p.dtype);
  // Reused per thread, so steady-state calls do not allocate.
  thread_local std::vector<KvRun> runs;
  runs.clear();
  int32_t prev = -1;
  for (const int32_t pos : p.positions) {
    if (pos <= prev) {
      return InvalidArgumentError("sparse attention: positions must be strictly increasing (" +
                                  std::to_string(pos) + " after " + std::to_string(prev) + ")");
    }
    if (pos >= total) {
      return OutOfRangeError("sparse attention: position " + std::to_string(pos) +
                             " is past the end of a " + std::to_string(total) +
                             "-token context");
    }
    const int32_t b = pos / p.block_size, i = pos % p.block_size;
    if (p.blocks[static_cast<size_t>(b)].k == nullptr ||
        p.blocks[static_cast<size_t>(b)].v == nullptr) {
      return InvalidArgumentError("sparse attention: position " + std::to_string(pos) +
                                  " falls in block " + std::to_string(b) +
                                  ", which has a null K or V pointer");
    }
    if (!runs.empty() && prev == pos - 1 && i != 0) {
      ++runs.back().num_tokens;  // extends the current run inside the same block
    } else {
      const auto* kb = static_cast<const std::byte*>(p.blocks[static_cast<size_t>(b)].k);
      const auto* vb = static_cast<const std::byte*>(p.blocks[static_cast<size_t>(b)].v);
      runs.push_back({kb + static_cast<size_t>(i) * row_bytes,
                      vb + static_cast<size_t>(i) * row_bytes, 1});
    }
    prev = pos;
  }
  const kernels::DecodeArgs args{p.q,           p.group_size, p.head_dim,
                                 static_cast<int>(p.dtype), p.scale,   runs.data(),
                                 static_cast<int>(runs.size()), p.out, p.lse};
  Run(args, isa);
  return OkStatus();
}

}  // namespace attic
