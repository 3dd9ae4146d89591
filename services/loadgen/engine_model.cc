#include "services/loadgen/engine_model.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "attention_workers/reference_attention.h"
#include "common/dtype.h"
#include "common/hash.h"

namespace attic::loadgen {
namespace {

constexpr int64_t kDecodeHeadroom = 1024;

// SplitMix64: a fast, well-mixed stream from one 64-bit state.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Approximately N(0, 1): the sum of four uniforms, centred and scaled (Irwin-Hall).
float Normalish(uint64_t bits) {
  float s = 0.0f;
  for (int i = 0; i < 4; ++i) s += static_cast<float>((bits >> (16 * i)) & 0xffff) / 65535.0f;
  return (s - 2.0f) * 1.7320508f;
}

}  // namespace

EngineModel::EngineModel(const ModelSpec& spec, uint64_t seed)
    : spec_(spec),
      seed_(seed),
      row_bytes_(static_cast<size_t>(spec.num_kv_heads) * static_cast<size_t>(spec.head_dim) *
                 DTypeSize(spec.dtype)) {}

void EngineModel::FillToken(const SequenceContent& c, int layer, int64_t pos, std::byte* k,
                            std::byte* v) const {
  const uint64_t content = pos < c.shared_prefix_tokens ? c.prefix_content : c.id;
  const int hd = spec_.num_kv_heads * spec_.head_dim;
  std::vector<float> kf(static_cast<size_t>(hd)), vf(static_cast<size_t>(hd));
  uint64_t state = HashCombine(HashCombine(seed_, content),
                               HashCombine(static_cast<uint64_t>(layer), static_cast<uint64_t>(pos)));
  for (int i = 0; i < hd; ++i) {
    kf[static_cast<size_t>(i)] = Normalish(Mix(state + 2 * static_cast<uint64_t>(i)));
    vf[static_cast<size_t>(i)] = Normalish(Mix(state + 2 * static_cast<uint64_t>(i) + 1));
  }
  ConvertFromFloat(spec_.dtype, kf.data(), k, kf.size());
  ConvertFromFloat(spec_.dtype, vf.data(), v, vf.size());
}

void EngineModel::FillQuery(uint64_t id, int layer, int64_t pos, float* q) const {
  const int n = spec_.num_q_heads * spec_.head_dim;
  const uint64_t state = HashCombine(HashCombine(seed_ ^ 0x51ull, id),
                                     HashCombine(static_cast<uint64_t>(layer),
                                                 static_cast<uint64_t>(pos)));
  // Scaled by 3: logits of about N(0, 9) make attention peaked.
  for (int i = 0; i < n; ++i) q[i] = 3.0f * Normalish(Mix(state + static_cast<uint64_t>(i)));
}

void EngineModel::AddSequence(const SequenceContent& content) {
  Sequence seq;
  seq.content = content;
  seq.layers.resize(static_cast<size_t>(spec_.num_layers));
  const int64_t t = content.prompt_tokens;
  for (int l = 0; l < spec_.num_layers; ++l) {
    Layer& layer = seq.layers[static_cast<size_t>(l)];
    // Room for decode tokens up front: growing a vector of a long context doubles and copies
    // it, a pause of hundreds of milliseconds in the middle of a decode run.
    layer.k.reserve(static_cast<size_t>(t + kDecodeHeadroom) * row_bytes_);
    layer.v.reserve(static_cast<size_t>(t + kDecodeHeadroom) * row_bytes_);
    layer.k.resize(static_cast<size_t>(t) * row_bytes_);
    layer.v.resize(static_cast<size_t>(t) * row_bytes_);
    for (int64_t p = 0; p < t; ++p) {
      FillToken(content, l, p, layer.k.data() + static_cast<size_t>(p) * row_bytes_,
                layer.v.data() + static_cast<size_t>(p) * row_bytes_);
    }
    layer.q.resize(static_cast<size_t>(spec_.num_q_heads * spec_.head_dim));
    FillQuery(content.id, l, t, layer.q.data());
  }
  seqs_[content.id] = std::move(seq);
}

namespace {

// Copies a [rows, heads, D] view (any strides) into contiguous rows of `to`.
std::vector<std::byte> Contiguous(const TensorView& t, DType to) {
  const int64_t rows = t.dim(0), heads = t.dim(1), d = t.dim(2);
  std::vector<std::byte> out(static_cast<size_t>(rows * heads * d) * DTypeSize(to));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      ConvertDType(t.dtype(), t.ElementPtr({r, h, 0}), to,
                   out.data() + static_cast<size_t>((r * heads + h) * d) * DTypeSize(to),
                   static_cast<size_t>(d));
    }
  }
  return out;
}

}  // namespace

void EngineModel::AddRecordedSequence(const SequenceContent& content,
                                      const std::vector<RecordedLayer>& layers) {
  Sequence seq;
  seq.content = content;
  seq.layers.resize(static_cast<size_t>(spec_.num_layers));
  for (int l = 0; l < spec_.num_layers; ++l) {
    const RecordedLayer& src = layers.at(static_cast<size_t>(l));
    Layer& layer = seq.layers[static_cast<size_t>(l)];
    layer.rec_k = Contiguous(src.k, spec_.dtype);
    layer.rec_v = Contiguous(src.v, spec_.dtype);
    const std::vector<std::byte> q = Contiguous(src.q, DType::kFloat32);
    layer.rec_q.resize(q.size() / sizeof(float));
    std::memcpy(layer.rec_q.data(), q.data(), q.size());
    layer.rec_first_q = src.first_q;
    const size_t prompt = static_cast<size_t>(content.prompt_tokens) * row_bytes_;
    layer.k.assign(layer.rec_k.begin(), layer.rec_k.begin() + static_cast<std::ptrdiff_t>(prompt));
    layer.v.assign(layer.rec_v.begin(), layer.rec_v.begin() + static_cast<std::ptrdiff_t>(prompt));
    layer.q.assign(static_cast<size_t>(spec_.num_q_heads * spec_.head_dim), 0.0f);
  }
  seqs_[content.id] = std::move(seq);
}

int64_t EngineModel::RecordedStepsLeft(uint64_t id, int layer) const {
  const Layer& l = LayerOf(id, layer);
  if (l.rec_k.empty()) return -1;
  const int64_t q_rows = static_cast<int64_t>(l.rec_q.size()) / (spec_.num_q_heads * spec_.head_dim);
  const int64_t next = static_cast<int64_t>(l.k.size() / row_bytes_);
  const int64_t rows = static_cast<int64_t>(l.rec_k.size() / row_bytes_);
  return std::max<int64_t>(0, std::min(rows, l.rec_first_q + q_rows) - next);
}

void EngineModel::RemoveSequence(uint64_t id) { seqs_.erase(id); }

const EngineModel::Layer& EngineModel::LayerOf(uint64_t id, int layer) const {
  return seqs_.at(id).layers.at(static_cast<size_t>(layer));
}

int64_t EngineModel::Length(uint64_t id, int layer) const {
  return static_cast<int64_t>(LayerOf(id, layer).k.size() / row_bytes_);
}

TensorView EngineModel::K(uint64_t id, int layer, int64_t first, int64_t n) const {
  return TensorView(LayerOf(id, layer).k.data() + static_cast<size_t>(first) * row_bytes_,
                    spec_.dtype, {n, spec_.num_kv_heads, spec_.head_dim});
}

TensorView EngineModel::V(uint64_t id, int layer, int64_t first, int64_t n) const {
  return TensorView(LayerOf(id, layer).v.data() + static_cast<size_t>(first) * row_bytes_,
                    spec_.dtype, {n, spec_.num_kv_heads, spec_.head_dim});
}

std::vector<uint64_t> EngineModel::PromptHashes(uint64_t id) const {
  const SequenceContent& c = seqs_.at(id).content;
  std::vector<uint64_t> hashes;
  uint64_t h = seed_;
  const int b = spec_.block_size;
  for (int block = 0; (block + 1) * b <= c.prompt_tokens; ++block) {
    // Blocks of the shared prefix hash the same in every sequence sharing it.
    const uint64_t content = (block + 1) * b <= c.shared_prefix_tokens ? c.prefix_content : c.id;
    h = HashCombine(h, HashCombine(content, static_cast<uint64_t>(block)));
    hashes.push_back(h);
  }
  return hashes;
}

int64_t EngineModel::NextToken(uint64_t id, int layer) {
  Sequence& seq = seqs_.at(id);
  Layer& l = seq.layers.at(static_cast<size_t>(layer));
  const int64_t pos = static_cast<int64_t>(l.k.size() / row_bytes_);
  if (!l.rec_k.empty()) {
    // REQUIRES: RecordedStepsLeft() > 0.
    const size_t at = static_cast<size_t>(pos) * row_bytes_;
    l.k.insert(l.k.end(), l.rec_k.begin() + static_cast<std::ptrdiff_t>(at),
               l.rec_k.begin() + static_cast<std::ptrdiff_t>(at + row_bytes_));
    l.v.insert(l.v.end(), l.rec_v.begin() + static_cast<std::ptrdiff_t>(at),
               l.rec_v.begin() + static_cast<std::ptrdiff_t>(at + row_bytes_));
    const size_t qn = l.q.size();
    std::memcpy(l.q.data(), l.rec_q.data() + static_cast<size_t>(pos - l.rec_first_q) * qn,
                qn * sizeof(float));
    return pos;
  }
  l.k.resize(l.k.size() + row_bytes_);
  l.v.resize(l.v.size() + row_bytes_);
  SequenceContent own = seq.content;
  own.shared_prefix_tokens = 0;  // decode tokens are the sequence's own
  FillToken(own, layer, pos, l.k.data() + static_cast<size_t>(pos) * row_bytes_,
            l.v.data() + static_cast<size_t>(pos) * row_bytes_);
  FillQuery(id, layer, pos + 1, l.q.data());
  return pos;
}

const float* EngineModel::Query(uint64_t id, int layer) const {
  return LayerOf(id, layer).q.data();
}

void EngineModel::Reference(uint64_t id, int layer, const float* q, double* out,
                            double* lse) const {
  const Layer& l = LayerOf(id, layer);
  const int64_t t = static_cast<int64_t>(l.k.size() / row_bytes_);
  const int d = spec_.head_dim;
  const int g = spec_.group_size();
  const size_t esize = DTypeSize(spec_.dtype);
  // The reference reads [T, D] runs of one head: gather each head's rows first.
  std::vector<std::byte> kh(static_cast<size_t>(t * d) * esize), vh(kh.size());
  for (int h = 0; h < spec_.num_kv_heads; ++h) {
    const size_t row = static_cast<size_t>(d) * esize;
    for (int64_t p = 0; p < t; ++p) {
      const size_t src = static_cast<size_t>(p) * row_bytes_ + static_cast<size_t>(h) * row;
      std::memcpy(kh.data() + static_cast<size_t>(p) * row, l.k.data() + src, row);
      std::memcpy(vh.data() + static_cast<size_t>(p) * row, l.v.data() + src, row);
    }
    const KvRun run{kh.data(), vh.data(), static_cast<int>(t)};
    const size_t q_row = static_cast<size_t>(h) * static_cast<size_t>(g);
    ReferenceAttention(q + q_row * static_cast<size_t>(d), g, d, spec_.EffectiveScale(),
                       spec_.dtype, std::span<const KvRun>(&run, 1),
                       out + q_row * static_cast<size_t>(d), lse + q_row);
  }
}

}  // namespace attic::loadgen
