#include "transport/wire_types.h"

#include <limits>
#include <string>

namespace attic::transport {

wire::DType DTypeToWire(DType t) {
  switch (t) {
    case DType::kFloat32: return wire::DType::FLOAT32;
    case DType::kBFloat16: return wire::DType::BFLOAT16;
    case DType::kFloat16: return wire::DType::FLOAT16;
  }
  return wire::DType::FLOAT32;
}

StatusOr<DType> DTypeFromWire(wire::DType t) {
  const std::optional<DType> d = DTypeFromNumber(static_cast<int>(t));
  if (!d) return InvalidArgumentError("unknown dtype number " + std::to_string(static_cast<int>(t)));
  return *d;
}

wire::IndexKind IndexKindToWire(std::optional<IndexKind> kind) {
  if (!kind) return wire::IndexKind::WORKER_DEFAULT;
  return static_cast<wire::IndexKind>(static_cast<uint16_t>(*kind) + 1);
}

StatusOr<std::optional<IndexKind>> IndexKindFromWire(wire::IndexKind kind) {
  const int number = static_cast<int>(kind);
  if (number == 0) return std::optional<IndexKind>();
  const std::optional<IndexKind> k = IndexKindFromNumber(number - 1);
  if (!k) return InvalidArgumentError("unknown index kind number " + std::to_string(number));
  return k;
}

void SpecToWire(const ModelSpec& spec, wire::ModelSpec::Builder out) {
  out.setName(spec.name);
  out.setNumLayers(static_cast<uint32_t>(spec.num_layers));
  out.setNumQHeads(static_cast<uint32_t>(spec.num_q_heads));
  out.setNumKvHeads(static_cast<uint32_t>(spec.num_kv_heads));
  out.setHeadDim(static_cast<uint32_t>(spec.head_dim));
  out.setDtype(DTypeToWire(spec.dtype));
  out.setBlockSize(static_cast<uint32_t>(spec.block_size));
  out.setSoftmaxScale(spec.softmax_scale);
}

StatusOr<ModelSpec> SpecFromWire(wire::ModelSpec::Reader in) {
  // Fields are unsigned on the wire; anything past int range is out of every valid range.
  auto to_int = [](uint32_t v) {
    return v > static_cast<uint32_t>(std::numeric_limits<int>::max()) ? -1 : static_cast<int>(v);
  };
  ModelSpec spec;
  spec.name = in.getName().cStr();
  spec.num_layers = to_int(in.getNumLayers());
  spec.num_q_heads = to_int(in.getNumQHeads());
  spec.num_kv_heads = to_int(in.getNumKvHeads());
  spec.head_dim = to_int(in.getHeadDim());
  ASSIGN_OR_RETURN(spec.dtype, DTypeFromWire(in.getDtype()));
  spec.block_size = to_int(in.getBlockSize());
  spec.softmax_scale = in.getSoftmaxScale();
  RETURN_IF_ERROR(spec.Validate());
  return spec;
}

}  // namespace attic::transport
