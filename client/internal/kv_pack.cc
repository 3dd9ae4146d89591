#include "client/internal/kv_pack.h"

#include <cstring>
#include <string>
#include <vector>

namespace attic::client_internal {
namespace {

std::string ShapeText(std::initializer_list<int64_t> shape) {
  std::string s = "[";
  for (const int64_t* d = shape.begin(); d != shape.end(); ++d) {
    if (d != shape.begin()) s += ", ";
    s += *d < 0 ? std::string("n") : std::to_string(*d);
  }
  return s + "]";
}

// One row of `d` elements starting at `row` with element stride `stride`, converted to `to`.
// A strided row is gathered first: ConvertDType needs contiguous input.
void CopyRow(const std::byte* row, int64_t stride, DType from, int64_t d, DType to,
             std::byte* dst) {
  const auto n = static_cast<size_t>(d);
  if (stride == 1 || d == 1) {
    ConvertDType(from, row, to, dst, n);
    return;
  }
  const size_t esize = DTypeSize(from);
  std::vector<std::byte> gathered(n * esize);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(gathered.data() + i * esize,
                row + static_cast<int64_t>(i) * stride * static_cast<int64_t>(esize), esize);
  }
  ConvertDType(from, gathered.data(), to, dst, n);
}

}  // namespace

Status CheckView(std::string_view what, const TensorView& view,
                 std::initializer_list<int64_t> shape) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError(std::string(what) + ": expected " + ShapeText(shape) + ", got " +
                                view.ShapeString() + why);
  };
  if (!DTypeFromNumber(static_cast<int>(view.dtype()))) {
    return InvalidArgumentError(std::string(what) + ": unknown dtype " +
                                std::to_string(static_cast<int>(view.dtype())));
  }
  if (view.rank() != static_cast<int>(shape.size())) return bad("");
  int i = 0;
  for (int64_t want : shape) {
    const int64_t got = view.dim(i);
    if (got < 0 || (want >= 0 && got != want)) return bad("");
    if (view.stride(i) < 0) return bad(" (negative stride)");
    ++i;
  }
  if (view.num_elements() > 0 && view.data() == nullptr) return bad(" (null data)");
  return OkStatus();
}

size_t BlockMajorBytes(int64_t tokens, int heads, int block_size, int head_dim, DType dtype) {
  const int64_t blocks = (tokens + block_size - 1) / block_size;
  return static_cast<size_t>(heads) * static_cast<size_t>(blocks) *
         static_cast<size_t>(block_size) * static_cast<size_t>(head_dim) * DTypeSize(dtype);
}

void PackBlockMajor(const TensorView& src, int64_t t0, int64_t t1, int h0, int h1, int block_size,
                    DType to, std::byte* dst) {
  const int64_t d = src.dim(2);
  const int64_t tokens = t1 - t0;
  const int64_t padded = (tokens + block_size - 1) / block_size * block_size;
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(to);
  const auto* base = static_cast<const std::byte*>(src.data());
  const auto esize = static_cast<int64_t>(DTypeSize(src.dtype()));
  for (int h = h0; h < h1; ++h) {
    // Per head, the blocks of consecutive tokens are consecutive: [blocks * B, D].
    std::byte* head_dst =
        dst + static_cast<size_t>(h - h0) * static_cast<size_t>(padded) * row_bytes;
    for (int64_t t = 0; t < tokens; ++t) {
      const std::byte* row = base + ((t0 + t) * src.stride(0) + h * src.stride(1)) * esize;
      CopyRow(row, src.stride(2), src.dtype(), d, to,
              head_dst + static_cast<size_t>(t) * row_bytes);
    }
    std::memset(head_dst + static_cast<size_t>(tokens) * row_bytes, 0,
                static_cast<size_t>(padded - tokens) * row_bytes);
  }
}

void PackRows(const TensorView& src, int64_t r0, int64_t r1, DType to, std::byte* dst) {
  const int64_t d = src.dim(1);
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(to);
  const auto* base = static_cast<const std::byte*>(src.data());
  const auto esize = static_cast<int64_t>(DTypeSize(src.dtype()));
  for (int64_t r = r0; r < r1; ++r) {
    CopyRow(base + r * src.stride(0) * esize, src.stride(1), src.dtype(), d, to,
            dst + static_cast<size_t>(r - r0) * row_bytes);
  }
}

}  // namespace attic::client_internal
