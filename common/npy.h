// Reading NumPy .npy files (format versions 1-3): little-endian fp16, fp32 and bf16-as-<u2
// arrays in C order, the format of the real activations under shared/data/qkv.
//
//   ASSIGN_OR_RETURN(NpyArray k, ReadNpy("L4_k.npy"));   // k.shape = {16384, 2, 128}, fp16
//   TensorView view = k.view();
//
// Errors: NotFound for a missing file, InvalidArgument for a malformed header, an unsupported
// dtype, Fortran order or a size that disagrees with the shape; DataLoss for a short read.
// Thread safety: a value type.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor_view.h"

namespace attic {

struct NpyArray {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;  // row-major, shape's product elements of dtype

  int64_t num_elements() const;
  // A view of data. REQUIRES: shape.size() <= TensorView::kMaxRank.
  TensorView view() const;
};

StatusOr<NpyArray> ReadNpy(const std::string& path);

}  // namespace attic
