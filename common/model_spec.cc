#include "common/model_spec.h"

#include <cmath>
#include <cstring>

#include "common/hash.h"

namespace attic {

float ModelSpec::EffectiveScale() const {
  if (softmax_scale != 0.0f) return softmax_scale;
  return head_dim > 0 ? 1.0f / std::sqrt(static_cast<float>(head_dim)) : 0.0f;
}

Status ModelSpec::Validate() const {
  auto bad = [this](const char* field, int value, const char* rule) {
    return InvalidArgumentError("model spec '" + name + "': " + field + " = " +
                                std::to_string(value) + " " + rule);
  };
  if (num_layers < 1 || num_layers > 4096) return bad("num_layers", num_layers, "not in [1, 4096]");
  if (num_kv_heads < 1 || num_kv_heads > 1024) {
    return bad("num_kv_heads", num_kv_heads, "not in [1, 1024]");
  }
  if (num_q_heads < 1 || num_q_heads % num_kv_heads != 0) {
    return bad("num_q_heads", num_q_heads, "is not a positive multiple of num_kv_heads");
  }
  if (group_size() > kMaxGroupSize) {
    return bad("num_q_heads / num_kv_heads", group_size(), "exceeds the GQA group limit of 128");
  }
  if (head_dim < 32 || head_dim > 512 || head_dim % 32 != 0) {
    return bad("head_dim", head_dim, "is not a multiple of 32 in [32, 512]");
  }
  if (block_size < 16 || block_size > 1024 || block_size % 16 != 0) {
    return bad("block_size", block_size, "is not a multiple of 16 in [16, 1024]");
  }
  if (!std::isfinite(softmax_scale) || softmax_scale < 0.0f) {
    return InvalidArgumentError("model spec '" + name + "': softmax_scale = " +
                                std::to_string(softmax_scale) + " is not finite and >= 0");
  }
  if (!DTypeFromNumber(static_cast<int>(dtype))) {
    return bad("dtype", static_cast<int>(dtype), "is not a known dtype");
  }
  return OkStatus();
}

uint64_t ModelSpec::Fingerprint() const {
  uint64_t h = Hash64(name.data(), name.size(), 0x617474696373706bULL);
  const int64_t fields[] = {num_layers, num_q_heads,          num_kv_heads, head_dim,
                            block_size, static_cast<int>(dtype)};
  h = Hash64(fields, sizeof(fields), h);
  uint32_t scale_bits;
  const float scale = EffectiveScale();
  std::memcpy(&scale_bits, &scale, sizeof(scale_bits));
  return Hash64(&scale_bits, sizeof(scale_bits), h);
}

std::string ModelSpec::ToString() const {
  return "ModelSpec{" + name + " L=" + std::to_string(num_layers) +
         " Hq=" + std::to_string(num_q_heads) + " Hkv=" + std::to_string(num_kv_heads) +
         " D=" + std::to_string(head_dim) + " B=" + std::to_string(block_size) + " " +
         std::string(DTypeName(dtype)) + " scale=" + std::to_string(EffectiveScale()) + "}";
}

namespace {
constexpr uint64_t kTenantSeed = 0x61747469632d746eULL;
}  // namespace

uint64_t ScopeFingerprint(std::string_view tenant, uint64_t model_fingerprint,
                          const ModelSpec& spec) {
  const uint64_t spec_fp = spec.Fingerprint();
  const uint64_t model = model_fingerprint != 0 ? model_fingerprint : spec_fp;
  const uint64_t t = Hash64(tenant.data(), tenant.size(), kTenantSeed);
  return HashCombine(HashCombine(t, model), spec_fp);
}

}  // namespace attic
