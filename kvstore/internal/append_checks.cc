#include "kvstore/internal/append_checks.h"

#include <cstdint>
#include <string>

namespace attic::kv_internal {
namespace {

std::string Where(const SequenceConfig& c, std::string_view op, int layer) {
  return std::string(op) + "(sequence " + std::to_string(c.id) + ", layer " +
         std::to_string(layer) + "): ";
}

std::string Str(int64_t v) { return std::to_string(v); }

// A view we can read at all: known dtype, non-negative dims, data when non-empty.
Status CheckUsable(const TensorView& t, const char* name, const std::string& where) {
  if (!DTypeFromNumber(static_cast<int>(t.dtype()))) {
    return InvalidArgumentError(where + name + " has unknown dtype number " +
                                Str(static_cast<int>(t.dtype())));
  }
  for (int i = 0; i < t.rank(); ++i) {
    if (t.dim(i) < 0) {
      return InvalidArgumentError(where + name + " has a negative dimension: " + t.ShapeString());
    }
  }
  if (t.data() == nullptr && t.num_elements() > 0) {
    return InvalidArgumentError(where + name + " " + t.ShapeString() + " has no data");
  }
  return OkStatus();
}

bool SameShape(const TensorView& a, const TensorView& b) {
  if (a.rank() != b.rank()) return false;
  for (int i = 0; i < a.rank(); ++i) {
    if (a.dim(i) != b.dim(i)) return false;
  }
  return true;
}

Status ShapeError(const std::string& where, const TensorView& k, const TensorView& v,
                  const std::string& expected) {
  return InvalidArgumentError(where + "k is " + k.ShapeString() + " and v is " + v.ShapeString() +
                              ", expected " + expected);
}

// The heads and head-dim dims of a row tensor, with stride 1 along D.
bool RowsFit(const SequenceConfig& c, const TensorView& t, int head_dim_index) {
  return t.dim(head_dim_index - 1) == c.num_heads() && t.dim(head_dim_index) == c.spec.head_dim &&
         t.stride(head_dim_index) == 1;
}

std::string RowsExpected(const SequenceConfig& c, const char* lead) {
  return std::string(lead) + Str(c.num_heads()) + ", " + Str(c.spec.head_dim) +
         "] in any dtype with stride 1 along D (kv heads [" + Str(c.head_begin) + ", " +
         Str(c.head_end) + "))";
}

}  // namespace

Status CheckLayer(const SequenceConfig& c, int layer, std::string_view op) {
  if (layer >= 0 && layer < c.spec.num_layers) return OkStatus();
  return InvalidArgumentError(std::string(op) + "(sequence " + Str(c.id) + "): layer " +
                              Str(layer) + " is out of range [0, " + Str(c.spec.num_layers) + ")");
}

Status CheckKvHead(const SequenceConfig& c, int kv_head, std::string_view op) {
  if (kv_head >= c.head_begin && kv_head < c.head_end) return OkStatus();
  return InvalidArgumentError(std::string(op) + "(sequence " + Str(c.id) + "): kv head " +
                              Str(kv_head) + " is not held here; held heads are [" +
                              Str(c.head_begin) + ", " + Str(c.head_end) + ")");
}

StatusOr<int> CheckPrefillChunk(const SequenceConfig& c, int layer, const TensorView& k,
                                const TensorView& v, int num_tokens) {
  const std::string where = Where(c, "AppendPrefill", layer);
  RETURN_IF_ERROR(CheckUsable(k, "k", where));
  RETURN_IF_ERROR(CheckUsable(v, "v", where));
  const int64_t bsize = c.block_size();
  const int64_t d = c.spec.head_dim;
  const std::string expected = "[" + Str(c.num_heads()) + ", blocks, " + Str(bsize) + ", " +
                               Str(d) + "] " + std::string(DTypeName(c.spec.dtype)) +
                               " with rows of a block contiguous (strides [*, *, " + Str(d) +
                               ", 1])";
  auto fits = [&](const TensorView& t) {
    return t.rank() == 4 && t.dtype() == c.spec.dtype && t.dim(0) == c.num_heads() &&
           t.dim(2) == bsize && t.dim(3) == d && t.stride(3) == 1 && t.stride(2) == d;
  };
  if (!fits(k) || !fits(v) || !SameShape(k, v)) return ShapeError(where, k, v, expected);
  const int64_t blocks = k.dim(1);
  if (blocks > KvStore::kMaxSequenceTokens / bsize) {
    return OutOfRangeError(where + Str(blocks) + " blocks exceed the sequence limit of " +
                           Str(KvStore::kMaxSequenceTokens) + " tokens");
  }
  const bool count_ok = blocks == 0
                            ? num_tokens == 0
                            : num_tokens > (blocks - 1) * bsize && num_tokens <= blocks * bsize;
  if (!count_ok) {
    return InvalidArgumentError(where + "num_tokens = " + Str(num_tokens) + " does not fit " +
                                Str(blocks) + " blocks of " + Str(bsize) +
                                " tokens: expected it in (" + Str((blocks - 1) * bsize) + ", " +
                                Str(blocks * bsize) + "]");
  }
  return static_cast<int>(blocks);
}

StatusOr<int> CheckTokenRows(const SequenceConfig& c, int layer, const TensorView& k,
                             const TensorView& v, std::string_view op) {
  const std::string where = Where(c, op, layer);
  RETURN_IF_ERROR(CheckUsable(k, "k", where));
  RETURN_IF_ERROR(CheckUsable(v, "v", where));
  auto fits = [&](const TensorView& t) { return t.rank() == 3 && RowsFit(c, t, 2); };
  if (!fits(k) || !fits(v) || k.dim(0) != v.dim(0)) {
    return ShapeError(where, k, v, RowsExpected(c, "[n, "));
  }
  if (k.dim(0) > KvStore::kMaxSequenceTokens) {
    return OutOfRangeError(where + Str(k.dim(0)) + " tokens exceed the sequence limit of " +
                           Str(KvStore::kMaxSequenceTokens));
  }
  return static_cast<int>(k.dim(0));
}

Status CheckDecodeRow(const SequenceConfig& c, int layer, const TensorView& k,
                      const TensorView& v) {
  const std::string where = Where(c, "AppendDecodeToken", layer);
  RETURN_IF_ERROR(CheckUsable(k, "k", where));
  RETURN_IF_ERROR(CheckUsable(v, "v", where));
  auto fits = [&](const TensorView& t) { return t.rank() == 2 && RowsFit(c, t, 1); };
  if (!fits(k) || !fits(v)) return ShapeError(where, k, v, RowsExpected(c, "["));
  return OkStatus();
}

TensorView AsOneTokenRows(const TensorView& row) {
  return TensorView(row.data(), row.dtype(), {1, row.dim(0), row.dim(1)},
                    {row.dim(0) * row.stride(0), row.stride(0), row.stride(1)});
}

Status CheckRoom(const SequenceConfig& c, int layer, int length, int num_tokens,
                 std::string_view op) {
  if (int64_t{length} + num_tokens <= KvStore::kMaxSequenceTokens) return OkStatus();
  return OutOfRangeError(Where(c, op, layer) + "appending " + Str(num_tokens) + " tokens to " +
                         Str(length) + " would pass the limit of " +
                         Str(KvStore::kMaxSequenceTokens) + " tokens per layer");
}

}  // namespace attic::kv_internal
