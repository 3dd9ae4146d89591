#include "client/internal/wire_codec.h"

#include <capnp/message.h>

#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"
#include "transport/wire_types.h"

namespace attic::client_internal {
namespace {

using transport::CapnpMessage;
using transport::CatchKj;
using transport::DTypeToWire;

// A reply that cannot be read is the worker's fault, not the caller's: INTERNAL.
Status BadReply(std::string_view what, const Status& s) {
  return InternalError("bad " + std::string(what) + ": " + std::string(s.message()));
}
Status BadReply(std::string_view what, const std::string& why) {
  return InternalError("bad " + std::string(what) + ": " + why);
}

// Parses a header and runs `read` on its root inside CatchKj; INTERNAL on any failure.
template <typename T, typename F>
Status ReadReply(std::string_view what, std::span<const std::byte> header, F&& read) {
  StatusOr<CapnpMessage> msg = CapnpMessage::Parse(header);
  if (!msg.ok()) return BadReply(what, msg.status());
  Status s = CatchKj(what, [&]() -> Status { return read(msg->Root<T>()); });
  if (s.ok() || s.code() == StatusCode::kInternal) return s;
  return BadReply(what, s);
}

// Checks one OK item's output range and points o and lse into the payload (copied only when
// the payload leaves them unaligned).
Status ReadOutputs(wire::AttendReply::Result::Reader r, std::span<const std::byte> payload,
                   int head_dim, AttendPart* part) {
  const uint64_t heads = r.getNumQHeads();
  const uint64_t o_bytes = heads * static_cast<uint64_t>(head_dim) * sizeof(float);
  const uint64_t total = o_bytes + heads * sizeof(float);
  const uint64_t offset = r.getOutOffset();
  if (offset > payload.size() || total > payload.size() - offset) {
    return BadReply("AttendReply", "sequence " + std::to_string(part->id) + ": outputs of " +
                                       std::to_string(total) + " bytes at offset " +
                                       std::to_string(offset) + " overrun the " +
                                       std::to_string(payload.size()) + "-byte payload");
  }
  const std::byte* at = payload.data() + offset;
  const size_t floats = heads * static_cast<uint64_t>(head_dim);
  if (reinterpret_cast<uintptr_t>(at) % alignof(float) != 0) {
    part->unaligned.resize(floats + heads);
    std::memcpy(part->unaligned.data(), at, total);
    at = reinterpret_cast<const std::byte*>(part->unaligned.data());
  }
  const auto* f = reinterpret_cast<const float*>(at);
  part->o = std::span<const float>(f, floats);
  part->lse = std::span<const float>(f + floats, heads);
  return OkStatus();
}

// One reply item against the request item it answers.
Status ReadAttendPart(wire::AttendReply::Result::Reader r, const AttendExpect& want,
                      std::span<const std::byte> payload, int head_dim, AttendPart* part) {
  part->id = r.getSequenceId();
  if (part->id != want.id) {
    return BadReply("AttendReply", "item for sequence " + std::to_string(part->id) +
                                       " where sequence " + std::to_string(want.id) + " was asked");
  }
  const std::optional<StatusCode> code = StatusCodeFromNumber(r.getCode());
  if (!code) {
    return BadReply("AttendReply", "sequence " + std::to_string(part->id) +
                                       ": unknown status code " + std::to_string(r.getCode()));
  }
  part->keys_scanned = r.getKeysScanned();
  part->selected_tokens = r.getSelectedTokens();
  part->bytes_read = r.getBytesRead();
  part->dense_heads = r.getDenseHeads();
  part->length = r.getLength();
  part->durable_tokens = r.getDurableTokens();
  part->ssd_bytes_read = r.getSsdBytesRead();
  part->recall_heads = r.getRecallHeads();
  part->recall_exact = r.getRecallExact();
  part->recall_hits = r.getRecallHits();
  part->stand_in_heads = r.getStandInHeads();
  if (part->recall_hits > part->recall_exact) {
    return BadReply("AttendReply", "sequence " + std::to_string(part->id) + ": " +
                                       std::to_string(part->recall_hits) + " recall hits of " +
                                       std::to_string(part->recall_exact));
  }
  if (*code != StatusCode::kOk) {
    std::string message = r.getMessage().cStr();
    if (message.empty()) message = "(no message)";
    part->status = Status(*code, std::move(message));
    return OkStatus();
  }
  if (r.getNumQHeads() != static_cast<uint32_t>(want.num_q_heads)) {
    return BadReply("AttendReply", "sequence " + std::to_string(part->id) + ": " +
                                       std::to_string(r.getNumQHeads()) + " query heads where " +
                                       std::to_string(want.num_q_heads) + " were asked");
  }
  return ReadOutputs(r, payload, head_dim, part);
}

}  // namespace

std::string EncodeOpenSequence(uint64_t id, const std::string& tenant, const ModelSpec& spec,
                               uint64_t model_fingerprint, const Shard& shard, bool resume) {
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<wire::OpenSequenceRequest>();
  req.setSequenceId(id);
  req.setTenant(tenant);
  transport::SpecToWire(spec, req.initSpec());
  req.setModelFingerprint(model_fingerprint);
  req.setKvHeadBegin(static_cast<uint32_t>(shard.kv_head_begin));
  req.setKvHeadEnd(static_cast<uint32_t>(shard.kv_head_end));
  req.setTokenBegin(static_cast<uint64_t>(shard.token_begin));
  req.setResume(resume);
  return transport::EncodeCapnp(b);
}

std::string EncodeLookupPrefix(uint64_t id, std::span<const uint64_t> hashes) {
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<wire::LookupPrefixRequest>();
  req.setSequenceId(id);
  auto list = req.initBlockHashes(static_cast<unsigned>(hashes.size()));
  for (size_t i = 0; i < hashes.size(); ++i) list.set(static_cast<unsigned>(i), hashes[i]);
  return transport::EncodeCapnp(b);
}

std::string EncodeCloseSequence(uint64_t id) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::CloseSequenceRequest>().setSequenceId(id);
  return transport::EncodeCapnp(b);
}

std::string EncodeAppendKv(const AppendKvHeader& h) {
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<wire::AppendKvRequest>();
  req.setSequenceId(h.id);
  req.setLayer(static_cast<uint32_t>(h.layer));
  req.setLayout(h.block_major ? wire::AppendKvRequest::Layout::BLOCK_MAJOR
                              : wire::AppendKvRequest::Layout::TOKEN_MAJOR);
  req.setNumTokens(static_cast<uint32_t>(h.num_tokens));
  req.setDtype(DTypeToWire(h.dtype));
  req.setKOffset(h.k_offset);
  req.setVOffset(h.v_offset);
  if (!h.sample_positions.empty()) {
    req.setSampleCount(static_cast<uint32_t>(h.sample_positions.size()));
    req.setSampleDtype(DTypeToWire(h.sample_dtype));
    req.setSampleOffset(h.sample_offset);
    auto positions = req.initSamplePositions(static_cast<unsigned>(h.sample_positions.size()));
    for (size_t i = 0; i < h.sample_positions.size(); ++i) {
      positions.set(static_cast<unsigned>(i), static_cast<uint32_t>(h.sample_positions[i]));
    }
  }
  req.setBuildIndex(h.build_index);
  req.setIndexKind(transport::IndexKindToWire(h.index_kind));
  return transport::EncodeCapnp(b);
}

std::string EncodeAttend(int layer, std::span<const AttendWireItem> items, AttendMode mode,
                         const SparseOptions& sparse) {
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<wire::AttendRequest>();
  req.setLayer(static_cast<uint32_t>(layer));
  if (mode == AttendMode::kSparse) {
    req.setMode(wire::AttendRequest::Mode::SPARSE);
    auto p = req.initSparse();
    p.setSinks(sparse.sinks);
    p.setWindow(sparse.window);
    p.setTopK(sparse.top_k);
    p.setIndexKind(transport::IndexKindToWire(sparse.index));
    p.setEffort(sparse.effort);
    p.setExcludeWindow(sparse.exclude_window);
    p.setForceSparse(sparse.force);
  } else {
    req.setMode(wire::AttendRequest::Mode::DENSE);
  }
  auto list = req.initItems(static_cast<unsigned>(items.size()));
  for (size_t i = 0; i < items.size(); ++i) {
    auto item = list[static_cast<unsigned>(i)];
    item.setSequenceId(items[i].id);
    item.setQDtype(DTypeToWire(items[i].q_dtype));
    item.setQOffset(items[i].q_offset);
    item.setAppendKv(items[i].append_kv);
    item.setKvDtype(DTypeToWire(items[i].kv_dtype));
    item.setKOffset(items[i].k_offset);
    item.setVOffset(items[i].v_offset);
    item.setTokenBegin(items[i].token_begin);
    item.setTokensAfter(items[i].tokens_after);
  }
  return transport::EncodeCapnp(b);
}

StatusOr<HelloInfo> ParseHelloReply(std::span<const std::byte> header) {
  HelloInfo info;
  const Status read =
      ReadReply<wire::HelloReply>("HelloReply", header, [&](wire::HelloReply::Reader r) -> Status {
        info.worker_name = r.getWorkerName().cStr();
        StatusOr<ModelSpec> spec = transport::SpecFromWire(r.getSpec());
        if (!spec.ok()) return BadReply("HelloReply", spec.status());
        info.spec = *std::move(spec);
        return OkStatus();
      });
  RETURN_IF_ERROR(read);
  return info;
}

StatusOr<int64_t> ParseLookupPrefixReply(std::span<const std::byte> header, size_t num_hashes,
                                         int block_size) {
  int64_t matched = 0;
  const Status read = ReadReply<wire::LookupPrefixReply>(
      "LookupPrefixReply", header, [&](wire::LookupPrefixReply::Reader r) -> Status {
        matched = r.getMatchedTokens();
        return OkStatus();
      });
  RETURN_IF_ERROR(read);
  if (matched % block_size != 0 || matched > static_cast<int64_t>(num_hashes) * block_size) {
    return BadReply("LookupPrefixReply", std::to_string(matched) + " matched tokens for " +
                                             std::to_string(num_hashes) + " blocks of " +
                                             std::to_string(block_size));
  }
  return matched;
}

StatusOr<ResumedShard> ParseResumeReply(std::span<const std::byte> header, int num_layers) {
  ResumedShard shard;
  const Status read = ReadReply<wire::OpenSequenceReply>(
      "OpenSequenceReply", header, [&](wire::OpenSequenceReply::Reader r) -> Status {
        auto lengths = r.getLayerLengths();
        auto durable = r.getDurableLengths();
        if (!r.getResumed() || lengths.size() != static_cast<unsigned>(num_layers) ||
            durable.size() != lengths.size()) {
          return BadReply("OpenSequenceReply",
                          "a resume answered with resumed = " +
                              std::string(r.getResumed() ? "true" : "false") + " and " +
                              std::to_string(lengths.size()) + " layer lengths for " +
                              std::to_string(num_layers) + " layers");
        }
        for (unsigned l = 0; l < lengths.size(); ++l) {
          if (durable[l] > lengths[l]) {
            return BadReply("OpenSequenceReply", "layer " + std::to_string(l) + " has " +
                                                     std::to_string(durable[l]) +
                                                     " durable tokens of " +
                                                     std::to_string(lengths[l]));
          }
          shard.lengths.push_back(lengths[l]);
          shard.durable.push_back(durable[l]);
        }
        return OkStatus();
      });
  RETURN_IF_ERROR(read);
  return shard;
}

StatusOr<AppendAck> ParseAppendKvReply(std::span<const std::byte> header) {
  AppendAck ack;
  const Status read = ReadReply<wire::AppendKvReply>(
      "AppendKvReply", header, [&](wire::AppendKvReply::Reader r) -> Status {
        ack.length = r.getLength();
        ack.durable = r.getDurableTokens();
        if (ack.durable > ack.length) {
          return BadReply("AppendKvReply", std::to_string(ack.durable) + " durable tokens of " +
                                               std::to_string(ack.length));
        }
        return OkStatus();
      });
  RETURN_IF_ERROR(read);
  return ack;
}

StatusOr<std::vector<AttendPart>> ParseAttendReply(std::span<const std::byte> header,
                                                   std::span<const std::byte> payload,
                                                   std::span<const AttendExpect> expected,
                                                   int head_dim) {
  std::vector<AttendPart> parts(expected.size());
  const Status read = ReadReply<wire::AttendReply>(
      "AttendReply", header, [&](wire::AttendReply::Reader r) -> Status {
        auto items = r.getItems();
        if (items.size() != expected.size()) {
          return BadReply("AttendReply", std::to_string(items.size()) + " items for " +
                                             std::to_string(expected.size()) + " asked");
        }
        for (size_t i = 0; i < expected.size(); ++i) {
          RETURN_IF_ERROR(ReadAttendPart(items[static_cast<unsigned>(i)], expected[i], payload,
                                         head_dim, &parts[i]));
        }
        return OkStatus();
      });
  RETURN_IF_ERROR(read);
  return parts;
}

}  // namespace attic::client_internal
