// TensorView: a non-owning, typed, strided view of up to 4 dimensions.
//
// Shape and strides are in elements (not bytes), outermost dimension first. Element
// (i0, i1, ..., i{r-1}) lives at byte offset  sum_k i_k * strides[k] * DTypeSize(dtype)  from
// data. A view made by the shape-only constructor is row-major contiguous ("C order"): the last
// dimension has stride 1 and each earlier stride is the product of the later dims.
//
//   // k: [n, Hkv, D], row-major, bf16
//   TensorView k(ptr, DType::kBFloat16, {n, hkv, d});
//   const void* row = k.ElementPtr({t, h, 0});
//
// Lifetime: the view does not own `data`; the memory must outlive every use of the view.
// Thread safety: a view is a value; concurrent reads of the viewed memory are the owner's business.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "common/dtype.h"

namespace attic {

class TensorView {
 public:
  static constexpr int kMaxRank = 4;

  TensorView() = default;
  // Row-major contiguous view. REQUIRES: shape.size() <= kMaxRank, every dim >= 0.
  TensorView(const void* data, DType dtype, std::initializer_list<int64_t> shape);
  // Explicit strides (in elements). REQUIRES: shape.size() == strides.size() <= kMaxRank.
  TensorView(const void* data, DType dtype, std::initializer_list<int64_t> shape,
             std::initializer_list<int64_t> strides);

  const void* data() const { return data_; }
  // Callers that own the memory mutably may write through this.
  void* mutable_data() const { return const_cast<void*>(data_); }
  DType dtype() const { return dtype_; }
  int rank() const { return rank_; }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  int64_t stride(int i) const { return strides_[static_cast<size_t>(i)]; }
  int64_t num_elements() const;
  size_t num_bytes() const { return static_cast<size_t>(num_elements()) * DTypeSize(dtype_); }
  bool is_contiguous() const;

  // Address of one element. REQUIRES: idx.size() == rank() and every index in range.
  const void* ElementPtr(std::initializer_list<int64_t> idx) const;

  // "[16384, 2, 128] bf16".
  std::string ShapeString() const;

 private:
  const void* data_ = nullptr;
  DType dtype_ = DType::kFloat32;
  int rank_ = 0;
  std::array<int64_t, kMaxRank> shape_{};
  std::array<int64_t, kMaxRank> strides_{};
};

}  // namespace attic
