#include "common/tensor_view.h"

namespace attic {

TensorView::TensorView(const void* data, DType dtype, std::initializer_list<int64_t> shape)
    : data_(data), dtype_(dtype), rank_(static_cast<int>(shape.size())) {
  size_t i = 0;
  for (int64_t d : shape) shape_[i++] = d;
  int64_t s = 1;
  for (int k = rank_ - 1; k >= 0; --k) {
    strides_[static_cast<size_t>(k)] = s;
    s *= shape_[static_cast<size_t>(k)];
  }
}

TensorView::TensorView(const void* data, DType dtype, std::initializer_list<int64_t> shape,
                       std::initializer_list<int64_t> strides)
    : data_(data), dtype_(dtype), rank_(static_cast<int>(shape.size())) {
  size_t i = 0;
  for (int64_t d : shape) shape_[i++] = d;
  i = 0;
  for (int64_t s : strides) strides_[i++] = s;
}

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int k = 0; k < rank_; ++k) n *= shape_[static_cast<size_t>(k)];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t s = 1;
  for (int k = rank_ - 1; k >= 0; --k) {
    const auto ku = static_cast<size_t>(k);
    if (shape_[ku] != 1 && strides_[ku] != s) return false;
    s *= shape_[ku];
  }
  return true;
}

const void* TensorView::ElementPtr(std::initializer_list<int64_t> idx) const {
  int64_t off = 0;
  size_t k = 0;
  for (int64_t i : idx) off += i * strides_[k++];
  return static_cast<const std::byte*>(data_) + off * static_cast<int64_t>(DTypeSize(dtype_));
}

std::string TensorView::ShapeString() const {
  std::string s = "[";
  for (int k = 0; k < rank_; ++k) {
    if (k) s += ", ";
    s += std::to_string(shape_[static_cast<size_t>(k)]);
  }
  s += "] ";
  s += DTypeName(dtype_);
  return s;
}

}  // namespace attic
