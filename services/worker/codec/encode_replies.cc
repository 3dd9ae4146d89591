// Reply headers from plain structs (worker_codec.h).
#include <string>

#include "services/worker/codec/worker_codec.h"
#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"
#include "transport/wire_types.h"

namespace attic::worker_codec {

namespace {

template <typename List>
void FillInts(List list, const std::vector<int>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    list.set(static_cast<unsigned>(i), static_cast<uint32_t>(values[i]));
  }
}

}  // namespace

std::string EncodeOpenSequenceReply(const ResumedReply* resumed) {
  capnp::MallocMessageBuilder builder;
  auto reply = builder.initRoot<wire::OpenSequenceReply>();
  if (resumed != nullptr) {
    reply.setResumed(true);
    FillInts(reply.initLayerLengths(static_cast<unsigned>(resumed->lengths.size())),
             resumed->lengths);
    FillInts(reply.initDurableLengths(static_cast<unsigned>(resumed->durable.size())),
             resumed->durable);
  }
  return transport::EncodeCapnp(builder);
}

std::string EncodeLookupPrefixReply(int matched_blocks, int matched_tokens) {
  capnp::MallocMessageBuilder builder;
  auto reply = builder.initRoot<wire::LookupPrefixReply>();
  reply.setMatchedBlocks(static_cast<uint32_t>(matched_blocks));
  reply.setMatchedTokens(static_cast<uint32_t>(matched_tokens));
  return transport::EncodeCapnp(builder);
}

std::string EncodeAppendKvReply(int length, int durable) {
  capnp::MallocMessageBuilder builder;
  auto reply = builder.initRoot<wire::AppendKvReply>();
  reply.setLength(static_cast<uint32_t>(length));
  reply.setDurableTokens(static_cast<uint32_t>(durable));
  return transport::EncodeCapnp(builder);
}

std::string EncodeCloseSequenceReply() {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<wire::CloseSequenceReply>();
  return transport::EncodeCapnp(builder);
}

std::string EncodeAttendReply(std::span<const AttendItemReply> items) {
  capnp::MallocMessageBuilder builder;
  auto results =
      builder.initRoot<wire::AttendReply>().initItems(static_cast<unsigned>(items.size()));
  for (size_t i = 0; i < items.size(); ++i) {
    const AttendItemReply& item = items[i];
    auto r = results[static_cast<unsigned>(i)];
    r.setSequenceId(item.id);
    r.setCode(item.status.code_number());
    if (!item.status.ok()) {
      r.setMessage(std::string(item.status.message()));
      continue;
    }
    r.setOutOffset(item.out_offset);
    r.setNumQHeads(static_cast<uint32_t>(item.num_q_heads));
    r.setKeysScanned(item.keys_scanned);
    r.setLength(static_cast<uint32_t>(item.length));
    r.setSelectedTokens(item.selected_tokens);
    r.setBytesRead(item.bytes_read);
    r.setDenseHeads(static_cast<uint32_t>(item.dense_heads));
    r.setDurableTokens(static_cast<uint32_t>(item.durable_tokens));
    r.setSsdBytesRead(item.ssd_bytes_read);
    r.setRecallHeads(static_cast<uint32_t>(item.recall_heads));
    r.setRecallExact(item.recall_exact);
    r.setRecallHits(item.recall_hits);
    r.setStandInHeads(static_cast<uint32_t>(item.stand_in_heads));
  }
  return transport::EncodeCapnp(builder);
}

std::string EncodeStatsReply(const StatsFigures& s) {
  capnp::MallocMessageBuilder builder;
  auto r = builder.initRoot<wire::StatsReply>();
  r.setSequences(s.sequences);
  r.setKBlocksUsed(s.k_blocks_used);
  r.setKBlocksCapacity(s.k_blocks_capacity);
  r.setVBlocksUsed(s.v_blocks_used);
  r.setVBlocksCapacity(s.v_blocks_capacity);
  r.setBlockBytes(s.block_bytes);
  r.setPrefixBlocks(s.prefix_blocks);
  r.setCachedBlocks(s.cached_blocks);
  r.setPrefixHits(s.prefix_hits);
  r.setWorkerName(s.worker_name);
  r.setSsdTier(s.ssd_tier);
  r.setValueDramBlocks(s.value_dram_blocks);
  r.setVResidentBlocks(s.v_resident_blocks);
  r.setVSpilledBlocks(s.v_spilled_blocks);
  r.setSpilledBlocksTotal(s.spilled_blocks_total);
  r.setSsdBytesRead(s.ssd_bytes_read);
  r.setSsdBytesWritten(s.ssd_bytes_written);
  r.setDurabilityErrors(s.durability_errors);
  r.setPendingDurableBlocks(s.pending_durable_blocks);
  r.setRecoveredSequences(s.recovered_sequences);
  return transport::EncodeCapnp(builder);
}

std::string EncodeHelloReply(uint32_t protocol_version, const std::string& worker_name,
                             uint64_t model_fingerprint, const ModelSpec& spec) {
  capnp::MallocMessageBuilder builder;
  auto hello = builder.initRoot<wire::HelloReply>();
  hello.setProtocolVersion(protocol_version);
  hello.setWorkerName(worker_name);
  hello.setModelFingerprint(model_fingerprint);
  transport::SpecToWire(spec, hello.initSpec());
  return transport::EncodeCapnp(builder);
}

}  // namespace attic::worker_codec
