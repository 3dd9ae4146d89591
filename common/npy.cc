#include "common/npy.h"

#include <cstring>
#include <fstream>

namespace attic {
namespace {

// The value text after `'key':` in the header dict, up to the next top-level comma or brace.
std::string HeaderField(const std::string& header, const std::string& key) {
  const std::string needle = "'" + key + "':";
  const size_t pos = header.find(needle);
  if (pos == std::string::npos) return "";
  size_t i = pos + needle.size();
  while (i < header.size() && header[i] == ' ') ++i;
  if (i < header.size() && header[i] == '(') {
    const size_t close = header.find(')', i);
    return close == std::string::npos ? "" : header.substr(i, close - i + 1);
  }
  size_t end = i;
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return header.substr(i, end - i);
}

// Far beyond any real array, small enough that products of four cannot overflow int64 checks.
constexpr int64_t kMaxDim = int64_t{1} << 40;
constexpr int64_t kMaxBytes = int64_t{1} << 40;

StatusOr<std::vector<int64_t>> ParseShape(const std::string& text) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') {
    return InvalidArgumentError("npy: malformed shape '" + text + "'");
  }
  std::vector<int64_t> shape;
  size_t i = 1;
  while (i < text.size() - 1) {
    while (i < text.size() - 1 && (text[i] == ' ' || text[i] == ',')) ++i;
    if (i >= text.size() - 1) break;
    size_t end = i;
    int64_t dim = 0;
    while (end < text.size() - 1 && text[end] >= '0' && text[end] <= '9') {
      dim = dim * 10 + (text[end] - '0');
      if (dim > kMaxDim) return InvalidArgumentError("npy: dimension too large in '" + text + "'");
      ++end;
    }
    if (end == i) return InvalidArgumentError("npy: malformed shape '" + text + "'");
    shape.push_back(dim);
    i = end;
  }
  return shape;
}

}  // namespace

int64_t NpyArray::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorView NpyArray::view() const {
  const void* p = data.data();
  switch (shape.size()) {
    case 1:
      return TensorView(p, dtype, {shape[0]});
    case 2:
      return TensorView(p, dtype, {shape[0], shape[1]});
    case 3:
      return TensorView(p, dtype, {shape[0], shape[1], shape[2]});
    case 4:
      return TensorView(p, dtype, {shape[0], shape[1], shape[2], shape[3]});
    default:
      return TensorView(p, dtype, {});
  }
}

StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("npy: cannot open '" + path + "'");
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    return InvalidArgumentError("npy: '" + path + "' is not a .npy file");
  }
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) return DataLossError("npy: short header");
    header_len = b[0] | (static_cast<uint32_t>(b[1]) << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) return DataLossError("npy: short header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    return InvalidArgumentError("npy: unsupported format version " + std::to_string(major));
  }
  if (header_len > (1u << 20)) return InvalidArgumentError("npy: header too large");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) return DataLossError("npy: short header in " + path);

  NpyArray arr;
  const std::string descr = HeaderField(header, "descr");
  if (descr == "'<f4'") {
    arr.dtype = DType::kFloat32;
  } else if (descr == "'<f2'") {
    arr.dtype = DType::kFloat16;
  } else if (descr == "'<u2'" || descr == "'<V2'") {
    arr.dtype = DType::kBFloat16;  // bf16 is conventionally saved as raw 16-bit words
  } else {
    return InvalidArgumentError("npy: unsupported dtype " + descr + " in " + path);
  }
  if (HeaderField(header, "fortran_order") != "False") {
    return InvalidArgumentError("npy: Fortran-order arrays are not supported: " + path);
  }
  ASSIGN_OR_RETURN(arr.shape, ParseShape(HeaderField(header, "shape")));
  if (arr.shape.size() > static_cast<size_t>(TensorView::kMaxRank)) {
    return InvalidArgumentError("npy: rank above 4 in " + path);
  }
  int64_t elements = 1;
  for (int64_t d : arr.shape) {
    if (d != 0 && elements > kMaxBytes / d) {
      return InvalidArgumentError("npy: shape of '" + path + "' is too large");
    }
    elements *= d;
  }
  const size_t bytes = static_cast<size_t>(elements) * DTypeSize(arr.dtype);
  // Check the file really holds that much before allocating for it.
  const std::streampos data_start = in.tellg();
  in.seekg(0, std::ios::end);
  const std::streamoff available = in.tellg() - data_start;
  in.seekg(data_start);
  if (available < static_cast<std::streamoff>(bytes)) {
    return DataLossError("npy: '" + path + "' is shorter than its shape says");
  }
  arr.data.resize(bytes);
  if (!in.read(reinterpret_cast<char*>(arr.data.data()), static_cast<std::streamsize>(bytes))) {
    return DataLossError("npy: '" + path + "' is shorter than its shape says");
  }
  return arr;
}

}  // namespace attic
