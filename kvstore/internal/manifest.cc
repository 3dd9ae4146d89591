#include "kvstore/internal/manifest.h"

#include <cstring>

#include "common/hash.h"

namespace attic::kv_internal {
namespace {

constexpr uint32_t kVersion = 1;
constexpr uint64_t kChecksumSeed = 0x6d616e6966657374ULL;

class Writer {
 public:
  void U32(uint32_t v) { Raw(&v, sizeof(v)); }
  void U64(uint64_t v) { Raw(&v, sizeof(v)); }
  void F32(float v) { Raw(&v, sizeof(v)); }
  void Str(const std::string& s) {
    U32(static_cast<uint32_t>(s.size()));
    Raw(s.data(), s.size());
  }
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) { return Raw(v, sizeof(*v)); }
  bool U64(uint64_t* v) { return Raw(v, sizeof(*v)); }
  bool F32(float* v) { return Raw(v, sizeof(*v)); }
  bool Str(std::string* s, size_t max) {
    uint32_t n = 0;
    if (!U32(&n) || n > max || n > in_.size() - pos_) return false;
    s->assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool Raw(void* p, size_t n) {
    if (n > in_.size() - pos_) return false;
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace

std::string EncodeManifest(const Manifest& m) {
  Writer w;
  w.U32(kVersion);
  w.U64(m.id);
  w.Str(m.tenant);
  w.Str(m.spec.name);
  w.U32(static_cast<uint32_t>(m.spec.num_layers));
  w.U32(static_cast<uint32_t>(m.spec.num_q_heads));
  w.U32(static_cast<uint32_t>(m.spec.num_kv_heads));
  w.U32(static_cast<uint32_t>(m.spec.head_dim));
  w.U32(static_cast<uint32_t>(m.spec.dtype));
  w.U32(static_cast<uint32_t>(m.spec.block_size));
  w.F32(m.spec.softmax_scale);
  w.U64(m.model_fingerprint);
  w.U32(static_cast<uint32_t>(m.head_begin));
  w.U32(static_cast<uint32_t>(m.head_end));
  w.U32(static_cast<uint32_t>(m.hashes.size()));
  for (uint64_t h : m.hashes) w.U64(h);
  w.U32(static_cast<uint32_t>(m.durable_lengths.size()));
  for (int n : m.durable_lengths) w.U32(static_cast<uint32_t>(n));
  const uint64_t sum = Hash64(w.out().data(), w.out().size(), kChecksumSeed);
  w.U64(sum);
  return std::move(w.out());
}

StatusOr<Manifest> DecodeManifest(std::string_view bytes) {
  auto bad = [](const std::string& what) { return DataLossError("sequence manifest: " + what); };
  if (bytes.size() < sizeof(uint64_t) + sizeof(uint32_t)) return bad("truncated");
  const std::string_view body = bytes.substr(0, bytes.size() - sizeof(uint64_t));
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + body.size(), sizeof(stored));
  if (Hash64(body.data(), body.size(), kChecksumSeed) != stored) return bad("checksum mismatch");
  Reader r(body);
  Manifest m;
  uint32_t version = 0, layers = 0, hq = 0, hkv = 0, d = 0, dtype = 0, bsize = 0, hb = 0, he = 0;
  uint32_t nh = 0, nl = 0;
  bool ok = r.U32(&version) && version == kVersion && r.U64(&m.id) && r.Str(&m.tenant, 1 << 20) &&
            r.Str(&m.spec.name, 1 << 20) && r.U32(&layers) && r.U32(&hq) && r.U32(&hkv) &&
            r.U32(&d) && r.U32(&dtype) && r.U32(&bsize) && r.F32(&m.spec.softmax_scale) &&
            r.U64(&m.model_fingerprint) && r.U32(&hb) && r.U32(&he) && r.U32(&nh);
  if (!ok) return bad(version != kVersion ? "unknown version " + std::to_string(version) : "truncated");
  m.hashes.resize(nh <= (1u << 24) ? nh : 0);
  ok = nh <= (1u << 24);
  for (size_t i = 0; ok && i < m.hashes.size(); ++i) ok = r.U64(&m.hashes[i]);
  ok = ok && r.U32(&nl) && nl == layers && nl <= 4096;
  if (!ok) return bad("truncated hash or length list");
  m.durable_lengths.resize(nl);
  for (size_t i = 0; ok && i < nl; ++i) {
    uint32_t n = 0;
    ok = r.U32(&n) && n <= (1u << 30);
    m.durable_lengths[i] = static_cast<int>(n);
  }
  if (!ok || !r.done()) return bad("bad length list or trailing bytes");
  if (dtype >= static_cast<uint32_t>(kNumDTypes)) return bad("unknown dtype " + std::to_string(dtype));
  m.spec.num_layers = static_cast<int>(layers);
  m.spec.num_q_heads = static_cast<int>(hq);
  m.spec.num_kv_heads = static_cast<int>(hkv);
  m.spec.head_dim = static_cast<int>(d);
  m.spec.dtype = static_cast<DType>(dtype);
  m.spec.block_size = static_cast<int>(bsize);
  m.head_begin = static_cast<int>(hb);
  m.head_end = static_cast<int>(he);
  Status valid = m.spec.Validate();
  if (!valid.ok()) return bad("invalid model spec: " + std::string(valid.message()));
  if (m.head_begin < 0 || m.head_begin >= m.head_end || m.head_end > m.spec.num_kv_heads) {
    return bad("bad KV head range");
  }
  return m;
}

}  // namespace attic::kv_internal
