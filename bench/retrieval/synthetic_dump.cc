#include "bench/retrieval/synthetic_dump.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/dtype.h"

namespace attic::retrieval::eval {
namespace fs = std::filesystem;
namespace {

std::vector<float> Gaussian(size_t n, float sigma, std::mt19937_64* rng) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

// Queries [rows, heads, d]: noise plus a direction shared by all rows, so scores are skewed.
std::vector<float> Queries(int64_t rows, int heads, int d, std::mt19937_64* rng) {
  const std::vector<float> shared = Gaussian(static_cast<size_t>(heads) * d, 1.0f, rng);
  std::vector<float> q = Gaussian(static_cast<size_t>(rows) * heads * d, 1.0f, rng);
  for (size_t i = 0; i < q.size(); ++i) q[i] += shared[i % shared.size()];
  return q;
}

Status WriteLayer(const std::string& dir, int layer, const SyntheticDumpOptions& o,
                  std::mt19937_64* rng) {
  const std::string base = (fs::path(dir) / ("L" + std::to_string(layer) + "_")).string();
  const int hq = o.kv_heads * o.group_size;
  std::vector<float> k = Gaussian(static_cast<size_t>(o.tokens) * o.kv_heads * o.head_dim, 1.0f, rng);
  for (int s = 0; s < 4 && s < o.tokens; ++s) {  // sink-like rows: large norm
    for (int i = 0; i < o.kv_heads * o.head_dim; ++i) k[static_cast<size_t>(s) * o.kv_heads * o.head_dim + i] *= 3.0f;
  }
  RETURN_IF_ERROR(WriteNpyFp16(base + "k.npy", {o.tokens, o.kv_heads, o.head_dim}, k));
  if (o.values) {
    RETURN_IF_ERROR(WriteNpyFp16(base + "v.npy", {o.tokens, o.kv_heads, o.head_dim},
                                 Gaussian(k.size(), 1.0f, rng)));
  }
  RETURN_IF_ERROR(WriteNpyFp16(base + "q_decode.npy", {o.decode_rows, hq, o.head_dim},
                               Queries(o.decode_rows, hq, o.head_dim, rng)));
  if (o.prefill) {
    const int64_t rows = (o.tokens + o.prefill_stride - 1) / o.prefill_stride;
    RETURN_IF_ERROR(WriteNpyFp16(base + "q_prefill.npy", {rows, hq, o.head_dim},
                                 Queries(rows, hq, o.head_dim, rng)));
  }
  return OkStatus();
}

}  // namespace

Status WriteNpyFp16(const std::string& path, const std::vector<int64_t>& shape,
                    const std::vector<float>& values) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(a, b, c,)" -> "(a, b, c)"
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f2', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<uint16_t> half(values.size());
  for (size_t i = 0; i < values.size(); ++i) half[i] = FloatToFp16(values[i]);
  std::ofstream out(path, std::ios::binary);
  if (!out) return UnavailableError("synthetic dump: cannot write '" + path + "'");
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(half.data()),
            static_cast<std::streamsize>(half.size() * sizeof(uint16_t)));
  if (!out) return DataLossError("synthetic dump: short write to '" + path + "'");
  return OkStatus();
}

Status WriteSyntheticDump(const std::string& dir, const SyntheticDumpOptions& o) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return UnavailableError("synthetic dump: cannot create '" + dir + "': " + ec.message());
  std::mt19937_64 rng(o.seed);
  for (int layer : o.layers) RETURN_IF_ERROR(WriteLayer(dir, layer, o, &rng));
  if (!o.meta) return OkStatus();
  std::ofstream meta((fs::path(dir) / "meta.json").string());
  meta << "{\"softmax_scale\": " << 1.0 / std::sqrt(double(o.head_dim))
       << ", \"decode_positions\": [" << o.tokens - o.decode_rows << ", " << o.tokens - 1
       << "], \"prefill_stride\": " << o.prefill_stride << ", \"n\": " << o.tokens << "}\n";
  if (!meta) return DataLossError("synthetic dump: cannot write meta.json in '" + dir + "'");
  return OkStatus();
}

}  // namespace attic::retrieval::eval
