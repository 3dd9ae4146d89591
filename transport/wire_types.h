// Conversions between Attic's vocabulary types and their wire forms in proto/attic.capnp.
//
//   wire::ModelSpec::Builder b = request.initSpec();
//   SpecToWire(spec, b);
//   ASSIGN_OR_RETURN(ModelSpec spec, SpecFromWire(reader.getSpec()));
//
// Thread safety: stateless.
#pragma once

#include <optional>

#include "common/dtype.h"
#include "common/index_kind.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "transport/proto/attic.capnp.h"

namespace attic::transport {

wire::DType DTypeToWire(DType t);
// INVALID_ARGUMENT for an enumerant this build does not know.
StatusOr<DType> DTypeFromWire(wire::DType t);

// The wire's IndexKind is the kind's number + 1; 0 (workerDefault) is nullopt.
wire::IndexKind IndexKindToWire(std::optional<IndexKind> kind);
// INVALID_ARGUMENT for an enumerant this build does not know.
StatusOr<std::optional<IndexKind>> IndexKindFromWire(wire::IndexKind kind);

void SpecToWire(const ModelSpec& spec, wire::ModelSpec::Builder out);
// INVALID_ARGUMENT if a field is out of range (ModelSpec::Validate's message).
StatusOr<ModelSpec> SpecFromWire(wire::ModelSpec::Reader in);

}  // namespace attic::transport
