#include "bench/retrieval/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>

#include "common/npy.h"

namespace attic::retrieval::eval {
namespace fs = std::filesystem;
namespace {

// What meta.json says, each field optional.
struct Meta {
  std::optional<double> scale;
  std::optional<std::pair<int64_t, int64_t>> decode_range;  // first, last (inclusive)
  std::optional<int64_t> prefill_stride;
};

Status Annotate(const Status& s, const std::string& path) {
  if (s.ok()) return s;
  const std::string msg(s.message());
  if (msg.find(path) != std::string::npos) return s;
  return Status(s.code(), path + ": " + msg);
}

StatusOr<NpyArray> ReadArray(const std::string& path, int rank) {
  auto arr = ReadNpy(path);
  if (!arr.ok()) return Annotate(arr.status(), path);
  if (static_cast<int>(arr->shape.size()) != rank) {
    return InvalidArgumentError(path + ": expected a rank-" + std::to_string(rank) +
                                " array, the file holds rank " +
                                std::to_string(arr->shape.size()));
  }
  for (int64_t d : arr->shape) {
    if (d <= 0) return InvalidArgumentError(path + ": empty dimension in its shape");
  }
  return arr;
}

StatusOr<Meta> ReadMeta(const std::string& path) {
  Meta meta;
  std::ifstream in(path);
  if (!in) return meta;  // no meta.json: every field falls back
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgumentError(path + ": not a JSON object");
  if (j.contains("softmax_scale")) {
    if (!j["softmax_scale"].is_number() || j["softmax_scale"].get<double>() <= 0) {
      return InvalidArgumentError(path + ": softmax_scale must be a positive number");
    }
    meta.scale = j["softmax_scale"].get<double>();
  }
  if (j.contains("decode_positions")) {
    const auto& d = j["decode_positions"];
    if (!d.is_array() || d.size() != 2 || !d[0].is_number_integer() ||
        !d[1].is_number_integer() || d[0].get<int64_t>() < 0 ||
        d[1].get<int64_t>() < d[0].get<int64_t>()) {
      return InvalidArgumentError(path + ": decode_positions must be [first, last], first <= last");
    }
    meta.decode_range = std::make_pair(d[0].get<int64_t>(), d[1].get<int64_t>());
  }
  if (j.contains("prefill_stride")) {
    if (!j["prefill_stride"].is_number_integer() || j["prefill_stride"].get<int64_t>() < 1) {
      return InvalidArgumentError(path + ": prefill_stride must be a positive integer");
    }
    meta.prefill_stride = j["prefill_stride"].get<int64_t>();
  }
  return meta;
}

// The layer numbers of every L{l}_k.npy in dir, ascending.
std::vector<int> FindLayers(const std::string& dir) {
  static const std::regex kKeyFile(R"(L(\d+)_k\.npy)");
  std::vector<int> layers;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, kKeyFile)) layers.push_back(std::stoi(m[1].str()));
  }
  std::sort(layers.begin(), layers.end());
  return layers;
}

// [N, H, D] in any dtype -> H buffers of [N, D] in `to`.
std::vector<std::vector<std::byte>> SplitHeads(const NpyArray& a, DType to) {
  const int64_t n = a.shape[0], h = a.shape[1], d = a.shape[2];
  const size_t in_row = static_cast<size_t>(d) * DTypeSize(a.dtype);
  const size_t out_row = static_cast<size_t>(d) * DTypeSize(to);
  std::vector<std::vector<std::byte>> heads(static_cast<size_t>(h));
  for (int64_t head = 0; head < h; ++head) {
    auto& out = heads[static_cast<size_t>(head)];
    out.resize(static_cast<size_t>(n) * out_row);
    for (int64_t t = 0; t < n; ++t) {
      const std::byte* src = a.data.data() + (static_cast<size_t>(t * h + head)) * in_row;
      ConvertDType(a.dtype, src, to, out.data() + static_cast<size_t>(t) * out_row,
                   static_cast<size_t>(d));
    }
  }
  return heads;
}

std::vector<float> ToFloat(const NpyArray& a) {
  std::vector<float> f(static_cast<size_t>(a.num_elements()));
  ConvertToFloat(a.dtype, a.data.data(), f.data(), f.size());
  return f;
}

// Shapes every layer must agree on, set by the first layer loaded.
struct Shapes {
  int64_t n = 0, kv_heads = 0, head_dim = 0, q_heads = 0, decode_rows = 0;
};

Status CheckQueries(const std::string& path, const NpyArray& q, const Shapes& s) {
  if (q.shape[1] % s.kv_heads != 0 || q.shape[2] != s.head_dim) {
    return InvalidArgumentError(path + ": shape [" + std::to_string(q.shape[0]) + ", " +
                                std::to_string(q.shape[1]) + ", " + std::to_string(q.shape[2]) +
                                "] does not fit keys with " + std::to_string(s.kv_heads) +
                                " KV heads of dimension " + std::to_string(s.head_dim));
  }
  if (s.q_heads != 0 && q.shape[1] != s.q_heads) {
    return InvalidArgumentError(path + ": " + std::to_string(q.shape[1]) +
                                " query heads, other files have " + std::to_string(s.q_heads));
  }
  return OkStatus();
}

StatusOr<LayerData> LoadLayer(const std::string& dir, int layer, Shapes* s) {
  const std::string base = (fs::path(dir) / ("L" + std::to_string(layer) + "_")).string();
  LayerData l;
  l.layer = layer;
  ASSIGN_OR_RETURN(NpyArray k, ReadArray(base + "k.npy", 3));
  if (s->n == 0) {
    s->n = k.shape[0];
    s->kv_heads = k.shape[1];
    s->head_dim = k.shape[2];
  } else if (k.shape[0] != s->n || k.shape[1] != s->kv_heads || k.shape[2] != s->head_dim) {
    return InvalidArgumentError(base + "k.npy: shape differs from the other layers' keys");
  }
  l.dtype = k.dtype == DType::kFloat32 ? DType::kBFloat16 : k.dtype;
  l.num_tokens = s->n;
  l.head_dim = static_cast<int>(s->head_dim);
  l.keys = SplitHeads(k, l.dtype);
  if (fs::exists(base + "v.npy")) {
    ASSIGN_OR_RETURN(NpyArray v, ReadArray(base + "v.npy", 3));
    if (v.shape != k.shape) return InvalidArgumentError(base + "v.npy: shape differs from keys'");
    l.values = SplitHeads(v, l.dtype);
  }
  ASSIGN_OR_RETURN(NpyArray qd, ReadArray(base + "q_decode.npy", 3));
  RETURN_IF_ERROR(CheckQueries(base + "q_decode.npy", qd, *s));
  if (qd.shape[0] > s->n) {
    return InvalidArgumentError(base + "q_decode.npy: more decode rows than tokens");
  }
  if (s->decode_rows != 0 && qd.shape[0] != s->decode_rows) {
    return InvalidArgumentError(base + "q_decode.npy: row count differs from other layers'");
  }
  s->q_heads = qd.shape[1];
  s->decode_rows = qd.shape[0];
  l.q_decode = ToFloat(qd);
  if (fs::exists(base + "q_prefill.npy")) {
    ASSIGN_OR_RETURN(NpyArray qp, ReadArray(base + "q_prefill.npy", 3));
    RETURN_IF_ERROR(CheckQueries(base + "q_prefill.npy", qp, *s));
    l.q_prefill = ToFloat(qp);
    l.prefill_positions.resize(static_cast<size_t>(qp.shape[0]));
  }
  for (size_t b = 0; b < l.keys.size(); ++b) l.key_blocks.push_back(l.keys[b].data());
  return l;
}

// Decode positions and prefill positions from meta (or the fallbacks), checked against N.
Status PlacePositions(const std::string& meta_path, const Meta& meta, Dataset* ds) {
  const int64_t t = static_cast<int64_t>(ds->layers[0].q_decode.size()) /
                    (static_cast<int64_t>(ds->q_heads) * ds->head_dim);
  ds->first_decode = ds->num_tokens - t;
  if (meta.decode_range) {
    const auto [first, last] = *meta.decode_range;
    if (last - first + 1 != t || last >= ds->num_tokens) {
      return InvalidArgumentError(meta_path + ": decode_positions [" + std::to_string(first) +
                                  ", " + std::to_string(last) + "] do not match " +
                                  std::to_string(t) + " q_decode rows in " +
                                  std::to_string(ds->num_tokens) + " tokens");
    }
    ds->first_decode = first;
  }
  for (LayerData& l : ds->layers) {
    l.decode_positions.resize(static_cast<size_t>(t));
    for (int64_t i = 0; i < t; ++i) {
      l.decode_positions[static_cast<size_t>(i)] = static_cast<int32_t>(ds->first_decode + i);
    }
    const int64_t rows = static_cast<int64_t>(l.prefill_positions.size());
    if (rows == 0) continue;
    const int64_t stride = meta.prefill_stride.value_or(std::max<int64_t>(1, ds->num_tokens / rows));
    if ((rows - 1) * stride >= ds->num_tokens) {
      return InvalidArgumentError("L" + std::to_string(l.layer) + "_q_prefill.npy: " +
                                  std::to_string(rows) + " rows at stride " +
                                  std::to_string(stride) + " pass the end of " +
                                  std::to_string(ds->num_tokens) + " tokens");
    }
    ds->prefill_stride = stride;
    for (int64_t i = 0; i < rows; ++i) {
      l.prefill_positions[static_cast<size_t>(i)] = static_cast<int32_t>(i * stride);
    }
  }
  return OkStatus();
}

}  // namespace

KeyRows LayerData::key_rows(int kv_head) const {
  return {.blocks = std::span<const std::byte* const>(&key_blocks[static_cast<size_t>(kv_head)], 1),
          .block_size = static_cast<int>(num_tokens),
          .head_dim = head_dim,
          .dtype = dtype,
          .count = num_tokens};
}

const std::byte* LayerData::values_or_keys(int kv_head) const {
  const auto& src = has_values() ? values : keys;
  return src[static_cast<size_t>(kv_head)].data();
}

StatusOr<Dataset> LoadDataset(const std::string& dir, std::span<const int> layers) {
  if (!fs::is_directory(dir)) return NotFoundError("dataset: '" + dir + "' is not a directory");
  const std::vector<int> found = FindLayers(dir);
  std::vector<int> wanted(layers.begin(), layers.end());
  if (wanted.empty()) wanted = found;
  if (wanted.empty()) return NotFoundError("dataset: no L{layer}_k.npy in '" + dir + "'");
  Dataset ds;
  ds.dir = dir;
  Shapes shapes;
  for (int layer : wanted) {
    if (std::find(found.begin(), found.end(), layer) == found.end()) {
      return NotFoundError("dataset: layer " + std::to_string(layer) + " requested, but '" + dir +
                           "' has no L" + std::to_string(layer) + "_k.npy");
    }
    ASSIGN_OR_RETURN(LayerData l, LoadLayer(dir, layer, &shapes));
    ds.layers.push_back(std::move(l));
  }
  std::sort(ds.layers.begin(), ds.layers.end(),
            [](const LayerData& a, const LayerData& b) { return a.layer < b.layer; });
  ds.num_tokens = shapes.n;
  ds.kv_heads = static_cast<int>(shapes.kv_heads);
  ds.q_heads = static_cast<int>(shapes.q_heads);
  ds.group_size = ds.q_heads / ds.kv_heads;
  ds.head_dim = static_cast<int>(shapes.head_dim);
  const std::string meta_path = (fs::path(dir) / "meta.json").string();
  ASSIGN_OR_RETURN(Meta meta, ReadMeta(meta_path));
  ds.scale = static_cast<float>(meta.scale.value_or(1.0 / std::sqrt(double(ds.head_dim))));
  RETURN_IF_ERROR(PlacePositions(meta_path, meta, &ds));
  return ds;
}

StatusOr<ContextPlan> PlanContext(const Dataset& ds, const LayerData& layer, int64_t context) {
  if (context > ds.num_tokens || context < 1) {
    return InvalidArgumentError("context " + std::to_string(context) + " outside the dump's " +
                                std::to_string(ds.num_tokens) + " tokens");
  }
  ContextPlan plan;
  plan.context = context;
  const int64_t tail = ds.num_tokens - ds.first_decode;
  plan.indexed = context - tail;
  if (plan.indexed < 1) {
    return FailedPreconditionError("context " + std::to_string(context) + " holds no key before its " +
                                   std::to_string(tail) + " decode positions");
  }
  if (context == ds.num_tokens) {
    for (size_t i = 0; i < layer.decode_positions.size(); ++i) {
      plan.step_rows.push_back(static_cast<int>(i));
      plan.step_positions.push_back(layer.decode_positions[i]);
    }
  } else {
    if (!layer.has_prefill()) {
      return FailedPreconditionError("context " + std::to_string(context) +
                                     " needs prefill queries as decode steps; L" +
                                     std::to_string(layer.layer) + "_q_prefill.npy is absent");
    }
    plan.steps_from_prefill = true;
    for (size_t i = 0; i < layer.prefill_positions.size(); ++i) {
      const int32_t p = layer.prefill_positions[i];
      if (p >= plan.indexed && p < context) {
        plan.step_rows.push_back(static_cast<int>(i));
        plan.step_positions.push_back(p);
      }
    }
    if (plan.step_rows.empty()) {
      return FailedPreconditionError("context " + std::to_string(context) +
                                     ": no prefill query falls in its decode positions");
    }
  }
  for (int32_t p : layer.prefill_positions) {
    if (p < plan.indexed) ++plan.sample_rows;
  }
  return plan;
}

const float* StepQueries(const Dataset& ds, const LayerData& layer, const ContextPlan& plan,
                         int step, int kv_head) {
  const auto& q = plan.steps_from_prefill ? layer.q_prefill : layer.q_decode;
  const size_t row = static_cast<size_t>(plan.step_rows[static_cast<size_t>(step)]);
  return q.data() + (row * ds.q_heads + static_cast<size_t>(kv_head) * ds.group_size) * ds.head_dim;
}

SampleBuffer GatherSample(const Dataset& ds, const LayerData& layer, int rows, int kv_head) {
  SampleBuffer b;
  const size_t group = static_cast<size_t>(ds.group_size) * ds.head_dim;
  b.q.resize(static_cast<size_t>(rows) * group);
  for (int i = 0; i < rows; ++i) {
    const float* src = layer.q_prefill.data() +
                       (static_cast<size_t>(i) * ds.q_heads +
                        static_cast<size_t>(kv_head) * ds.group_size) * ds.head_dim;
    std::memcpy(b.q.data() + static_cast<size_t>(i) * group, src, group * sizeof(float));
    b.positions.push_back(layer.prefill_positions[static_cast<size_t>(i)]);
  }
  b.sample = {.q = b.q.data(), .num_queries = rows, .group_size = ds.group_size,
              .head_dim = ds.head_dim, .positions = b.positions};
  return b;
}

Status CheckNoLeakage(const QuerySample& sample, int64_t first_decode) {
  if (sample.empty()) return OkStatus();
  if (static_cast<int>(sample.positions.size()) != sample.num_queries) {
    return FailedPreconditionError("leakage guard: the query sample has " +
                                   std::to_string(sample.num_queries) + " queries but " +
                                   std::to_string(sample.positions.size()) + " positions");
  }
  for (int32_t p : sample.positions) {
    if (p >= first_decode) {
      return FailedPreconditionError("leakage guard: a prefill query at position " +
                                     std::to_string(p) + " would be learned from, but decode starts at " +
                                     std::to_string(first_decode));
    }
  }
  return OkStatus();
}

}  // namespace attic::retrieval::eval
