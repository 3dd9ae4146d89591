// Request headers into WorkerCall structs, every field checked (worker_codec.h).
#include <string>
#include <unordered_set>
#include <utility>

#include "services/worker/codec/worker_codec.h"
#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"
#include "transport/wire_types.h"

namespace attic::worker_codec {

using transport::CapnpMessage;
using transport::CatchKj;

namespace {

std::string SeqName(uint64_t id) { return "sequence " + std::to_string(id); }

Status CheckAligned(uint64_t offset, DType dtype, const char* what) {
  if (offset % DTypeSize(dtype) == 0) return OkStatus();
  return InvalidArgumentError(std::string(what) + " offset " + std::to_string(offset) +
                              " is not a multiple of its element size " +
                              std::to_string(DTypeSize(dtype)));
}

Status CheckLayer(uint32_t layer, const ModelSpec& spec) {
  if (layer < static_cast<uint32_t>(spec.num_layers)) return OkStatus();
  return OutOfRangeError("layer " + std::to_string(layer) + " of a " +
                         std::to_string(spec.num_layers) + "-layer model");
}

StatusOr<OpenSequenceCall> DecodeOpen(wire::OpenSequenceRequest::Reader r,
                                      const CodecContext& ctx) {
  OpenSequenceCall c;
  c.id = r.getSequenceId();
  c.resume = r.getResume();
  c.token_begin = r.getTokenBegin();
  const auto tenant = r.getTenant();
  if (tenant.size() > ctx.limits.max_tenant_bytes) {
    return InvalidArgumentError("tenant of " + std::to_string(tenant.size()) +
                                " bytes (at most " + std::to_string(ctx.limits.max_tenant_bytes) +
                                ")");
  }
  c.tenant = tenant.cStr();
  ASSIGN_OR_RETURN(c.spec, transport::SpecFromWire(r.getSpec()));
  c.model_fingerprint = r.getModelFingerprint();
  const uint32_t begin = r.getKvHeadBegin();
  const uint32_t end = r.getKvHeadEnd();
  if (begin >= end || end > static_cast<uint32_t>(c.spec.num_kv_heads)) {
    return InvalidArgumentError("KV head range [" + std::to_string(begin) + ", " +
                                std::to_string(end) + ") is empty or outside the model's " +
                                std::to_string(c.spec.num_kv_heads) + " KV heads");
  }
  c.kv_head_begin = static_cast<int>(begin);
  c.kv_head_end = static_cast<int>(end);
  return c;
}

StatusOr<LookupPrefixCall> DecodeLookup(wire::LookupPrefixRequest::Reader r,
                                        const CodecContext& ctx) {
  LookupPrefixCall c;
  c.id = r.getSequenceId();
  auto list = r.getBlockHashes();
  if (list.size() > static_cast<uint32_t>(ctx.limits.max_lookup_hashes)) {
    return InvalidArgumentError(std::to_string(list.size()) + " block hashes (at most " +
                                std::to_string(ctx.limits.max_lookup_hashes) + ")");
  }
  c.hashes.reserve(list.size());
  for (uint64_t h : list) c.hashes.push_back(h);
  return c;
}

Status DecodeSample(wire::AppendKvRequest::Reader r, const CodecContext& ctx, AppendKvCall& c) {
  const uint32_t count = r.getSampleCount();
  auto list = r.getSamplePositions();
  if (count == 0) {
    if (list.size() != 0) {
      return InvalidArgumentError("query sample: " + std::to_string(list.size()) +
                                  " positions for no queries");
    }
    return OkStatus();
  }
  if (count > static_cast<uint32_t>(ctx.limits.max_sample_queries)) {
    return InvalidArgumentError("query sample of " + std::to_string(count) +
                                " queries (at most " +
                                std::to_string(ctx.limits.max_sample_queries) + ")");
  }
  ASSIGN_OR_RETURN(c.sample_dtype, transport::DTypeFromWire(r.getSampleDtype()));
  c.sample_offset = r.getSampleOffset();
  RETURN_IF_ERROR(CheckAligned(c.sample_offset, c.sample_dtype, "query sample"));
  if (list.size() != count) {
    return InvalidArgumentError("query sample: " + std::to_string(list.size()) +
                                " positions for " + std::to_string(count) + " queries");
  }
  c.sample_positions.reserve(count);
  for (uint32_t p : list) {
    if (p >= static_cast<uint32_t>(ctx.limits.max_sequence_tokens) ||
        (!c.sample_positions.empty() && static_cast<int32_t>(p) <= c.sample_positions.back())) {
      return InvalidArgumentError("query sample positions must ascend below " +
                                  std::to_string(ctx.limits.max_sequence_tokens));
    }
    c.sample_positions.push_back(static_cast<int32_t>(p));
  }
  return OkStatus();
}

StatusOr<AppendKvCall> DecodeAppend(wire::AppendKvRequest::Reader r, const CodecContext& ctx) {
  AppendKvCall c;
  c.id = r.getSequenceId();
  RETURN_IF_ERROR(CheckLayer(r.getLayer(), ctx.spec));
  if (r.getNumTokens() > static_cast<uint32_t>(ctx.limits.max_sequence_tokens)) {
    return OutOfRangeError("token count " + std::to_string(r.getNumTokens()) + " above " +
                           std::to_string(ctx.limits.max_sequence_tokens));
  }
  c.layer = static_cast<int>(r.getLayer());
  c.num_tokens = static_cast<int>(r.getNumTokens());
  switch (r.getLayout()) {
    case wire::AppendKvRequest::Layout::BLOCK_MAJOR: c.block_major = true; break;
    case wire::AppendKvRequest::Layout::TOKEN_MAJOR: c.block_major = false; break;
    default:
      return InvalidArgumentError("unknown layout " +
                                  std::to_string(static_cast<int>(r.getLayout())));
  }
  ASSIGN_OR_RETURN(c.dtype, transport::DTypeFromWire(r.getDtype()));
  c.k_offset = r.getKOffset();
  c.v_offset = r.getVOffset();
  RETURN_IF_ERROR(CheckAligned(c.k_offset, c.dtype, "k"));
  RETURN_IF_ERROR(CheckAligned(c.v_offset, c.dtype, "v"));
  RETURN_IF_ERROR(DecodeSample(r, ctx, c));
  c.build_index = r.getBuildIndex();
  ASSIGN_OR_RETURN(c.index_kind, transport::IndexKindFromWire(r.getIndexKind()));
  return c;
}

StatusOr<SparseCall> DecodeSparse(wire::AttendRequest::SparseParams::Reader p,
                                  const CodecContext& ctx) {
  SparseCall s;
  s.sinks = p.getSinks();
  s.window = p.getWindow();
  s.top_k = p.getTopK();
  s.effort = p.getEffort();
  s.exclude_window = p.getExcludeWindow();
  s.force_sparse = p.getForceSparse();
  const int max = ctx.limits.max_selection_tokens;
  if (s.sinks > max || s.window > max || s.top_k > max) {
    return InvalidArgumentError("sparse sinks " + std::to_string(s.sinks) + ", window " +
                                std::to_string(s.window) + " or top-k " +
                                std::to_string(s.top_k) + " above " + std::to_string(max) +
                                " tokens");
  }
  ASSIGN_OR_RETURN(s.index_kind, transport::IndexKindFromWire(p.getIndexKind()));
  return s;
}

AttendItemCall DecodeAttendItem(wire::AttendRequest::Item::Reader it) {
  AttendItemCall c;
  c.id = it.getSequenceId();
  c.q_offset = it.getQOffset();
  c.append_kv = it.getAppendKv();
  c.k_offset = it.getKOffset();
  c.v_offset = it.getVOffset();
  c.token_begin = it.getTokenBegin();
  c.tokens_after = it.getTokensAfter();
  c.status = [&]() -> Status {
    ASSIGN_OR_RETURN(c.q_dtype, transport::DTypeFromWire(it.getQDtype()));
    RETURN_IF_ERROR(CheckAligned(c.q_offset, c.q_dtype, "q"));
    if (!c.append_kv) return OkStatus();
    ASSIGN_OR_RETURN(c.kv_dtype, transport::DTypeFromWire(it.getKvDtype()));
    RETURN_IF_ERROR(CheckAligned(c.k_offset, c.kv_dtype, "k_new"));
    return CheckAligned(c.v_offset, c.kv_dtype, "v_new");
  }();
  return c;
}

StatusOr<AttendCall> DecodeAttend(wire::AttendRequest::Reader r, const CodecContext& ctx) {
  AttendCall c;
  RETURN_IF_ERROR(CheckLayer(r.getLayer(), ctx.spec));
  c.layer = static_cast<int>(r.getLayer());
  switch (r.getMode()) {
    case wire::AttendRequest::Mode::DENSE: break;
    case wire::AttendRequest::Mode::SPARSE: {
      ASSIGN_OR_RETURN(SparseCall sparse, DecodeSparse(r.getSparse(), ctx));
      c.sparse = sparse;
      break;
    }
    default:
      return UnimplementedError("attention mode " +
                                std::to_string(static_cast<int>(r.getMode())));
  }
  auto items = r.getItems();
  if (items.size() > static_cast<uint32_t>(ctx.limits.max_attend_items)) {
    return InvalidArgumentError(std::to_string(items.size()) + " items (at most " +
                                std::to_string(ctx.limits.max_attend_items) + ")");
  }
  c.items.reserve(items.size());
  std::unordered_set<uint64_t> seen;
  for (auto it : items) {
    AttendItemCall item = DecodeAttendItem(it);
    if (!seen.insert(item.id).second && item.status.ok()) {
      item.status = InvalidArgumentError("sequence appears twice in one Attend request");
    }
    c.items.push_back(std::move(item));
  }
  return c;
}

// The sequence a request names, for its error messages.
template <typename Reader>
std::string Context(Reader r) {
  return SeqName(r.getSequenceId());
}

template <typename T, typename F>
StatusOr<WorkerCall> DecodeRoot(const char* what, F&& decode) {
  StatusOr<WorkerCall> out = InternalError("unset");
  Status s = CatchKj(what, [&]() -> Status {
    StatusOr<T> call = decode();
    if (!call.ok()) return call.status();
    out = WorkerCall(std::move(call).value());
    return OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace

StatusOr<WorkerCall> DecodeCall(transport::Method method, std::span<const std::byte> header,
                                const CodecContext& ctx) {
  using transport::Method;
  switch (method) {
    case Method::kStats:
      return WorkerCall(StatsCall{});
    case Method::kOpenSequence:
    case Method::kLookupPrefix:
    case Method::kAppendKv:
    case Method::kAttend:
    case Method::kCloseSequence:
      break;
    default:
      return UnimplementedError("the worker does not serve method " +
                                std::to_string(static_cast<int>(method)));
  }
  ASSIGN_OR_RETURN(const CapnpMessage msg, CapnpMessage::Parse(header));
  std::string context;
  StatusOr<WorkerCall> call = InternalError("unset");
  switch (method) {
    case Method::kOpenSequence:
      call = DecodeRoot<OpenSequenceCall>("OpenSequenceRequest", [&] {
        auto r = msg.Root<wire::OpenSequenceRequest>();
        context = Context(r);
        return DecodeOpen(r, ctx);
      });
      break;
    case Method::kLookupPrefix:
      call = DecodeRoot<LookupPrefixCall>("LookupPrefixRequest", [&] {
        auto r = msg.Root<wire::LookupPrefixRequest>();
        context = Context(r);
        return DecodeLookup(r, ctx);
      });
      break;
    case Method::kAppendKv:
      call = DecodeRoot<AppendKvCall>("AppendKvRequest", [&] {
        auto r = msg.Root<wire::AppendKvRequest>();
        context = Context(r);
        return DecodeAppend(r, ctx);
      });
      break;
    case Method::kAttend:
      call = DecodeRoot<AttendCall>("AttendRequest", [&] {
        context = "Attend";
        return DecodeAttend(msg.Root<wire::AttendRequest>(), ctx);
      });
      break;
    case Method::kCloseSequence:
      call = DecodeRoot<CloseSequenceCall>("CloseSequenceRequest", [&] {
        auto r = msg.Root<wire::CloseSequenceRequest>();
        context = Context(r);
        return StatusOr<CloseSequenceCall>(CloseSequenceCall{.id = r.getSequenceId()});
      });
      break;
    default:
      return UnimplementedError("the worker does not serve method " +
                                std::to_string(static_cast<int>(method)));
  }
  if (!call.ok() && !context.empty()) return call.status().WithContext(context);
  return call;
}

void CallSequences(const WorkerCall& call, std::vector<uint64_t>* out) {
  out->clear();
  std::visit(
      [out](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, AttendCall>) {
          for (const AttendItemCall& item : c.items) out->push_back(item.id);
        } else if constexpr (!std::is_same_v<T, StatsCall>) {
          out->push_back(c.id);
        }
      },
      call);
}

StatusOr<const std::byte*> PayloadSlice(std::span<const std::byte> payload, uint64_t offset,
                                        uint64_t bytes, std::string_view what) {
  if (offset > payload.size() || bytes > payload.size() - offset) {
    return InvalidArgumentError(std::string(what) + " at payload offset " +
                                std::to_string(offset) + " (" + std::to_string(bytes) +
                                " bytes) lies outside the " + std::to_string(payload.size()) +
                                "-byte payload");
  }
  return payload.data() + offset;
}

}  // namespace attic::worker_codec
