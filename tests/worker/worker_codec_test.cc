// The worker's codec: every request the client's encoder writes decodes to what it said, and
// every field out of range, malformed header or over-long list is refused with its own code,
// naming the field; replies decode on the client side to what the worker encoded.
#include "services/worker/codec/worker_codec.h"

#include <gtest/gtest.h>

#include <capnp/message.h>

#include <string>
#include <vector>

#include "client/internal/wire_codec.h"
#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"
#include "transport/wire_types.h"

namespace attic::worker_codec {
namespace {

using transport::Method;

ModelSpec Spec() {
  return ModelSpec{.name = "m", .num_layers = 4, .num_q_heads = 8, .num_kv_heads = 2,
                   .head_dim = 64, .dtype = DType::kBFloat16, .block_size = 16};
}

CodecContext Ctx() { return CodecContext{.spec = Spec()}; }

std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

template <typename T>
T Decode(Method m, const std::string& header, const CodecContext& ctx = Ctx()) {
  StatusOr<WorkerCall> call = DecodeCall(m, Bytes(header), ctx);
  EXPECT_TRUE(call.ok()) << call.status();
  if (!call.ok()) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*call));
  return std::get<T>(*call);
}

Status DecodeError(Method m, const std::string& header, const CodecContext& ctx = Ctx()) {
  StatusOr<WorkerCall> call = DecodeCall(m, Bytes(header), ctx);
  EXPECT_FALSE(call.ok());
  return call.ok() ? OkStatus() : call.status();
}

TEST(WorkerCodec, OpenSequenceRoundTrip) {
  const std::string h = client_internal::EncodeOpenSequence(
      42, "acme", Spec(), 99, Shard{.kv_head_begin = 1, .kv_head_end = 2, .token_begin = 640},
      /*resume=*/true);
  const auto c = Decode<OpenSequenceCall>(Method::kOpenSequence, h);
  EXPECT_EQ(c.id, 42u);
  EXPECT_EQ(c.tenant, "acme");
  EXPECT_TRUE(c.spec == Spec());
  EXPECT_EQ(c.model_fingerprint, 99u);
  EXPECT_EQ(c.kv_head_begin, 1);
  EXPECT_EQ(c.kv_head_end, 2);
  EXPECT_EQ(c.token_begin, 640u);
  EXPECT_TRUE(c.resume);
}

TEST(WorkerCodec, OpenSequenceRefusesHeadsOutsideTheModel) {
  for (auto [begin, end] : {std::pair{1u, 1u}, std::pair{2u, 1u}, std::pair{0u, 3u}}) {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<wire::OpenSequenceRequest>();
    r.setSequenceId(5);
    transport::SpecToWire(Spec(), r.initSpec());
    r.setKvHeadBegin(begin);
    r.setKvHeadEnd(end);
    const Status s = DecodeError(Method::kOpenSequence, transport::EncodeCapnp(b));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("sequence 5"), std::string_view::npos) << s;
    EXPECT_NE(s.message().find("KV head range"), std::string_view::npos) << s;
  }
}

TEST(WorkerCodec, OpenSequenceRefusesAHugeTenant) {
  CodecContext ctx = Ctx();
  ctx.limits.max_tenant_bytes = 8;
  const std::string h = client_internal::EncodeOpenSequence(
      1, "a-tenant-name-too-long", Spec(), 0, Shard{.kv_head_begin = 0, .kv_head_end = 2});
  EXPECT_EQ(DecodeError(Method::kOpenSequence, h, ctx).code(), StatusCode::kInvalidArgument);
}

TEST(WorkerCodec, LookupPrefixAndItsLimit) {
  const std::vector<uint64_t> hashes = {3, 1, 4, 1, 5};
  const std::string h = client_internal::EncodeLookupPrefix(8, hashes);
  const auto c = Decode<LookupPrefixCall>(Method::kLookupPrefix, h);
  EXPECT_EQ(c.id, 8u);
  EXPECT_EQ(c.hashes, hashes);
  CodecContext ctx = Ctx();
  ctx.limits.max_lookup_hashes = 4;
  const Status s = DecodeError(Method::kLookupPrefix, h, ctx);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("5 block hashes"), std::string_view::npos) << s;
}

client_internal::AppendKvHeader Append() {
  return {.id = 9,
          .layer = 3,
          .block_major = false,
          .num_tokens = 17,
          .dtype = DType::kFloat16,
          .k_offset = 0,
          .v_offset = 4352,
          .sample_dtype = DType::kFloat32,
          .sample_offset = 8704,
          .sample_positions = {0, 5, 16},
          .build_index = true,
          .index_kind = IndexKind::kCluster};
}

TEST(WorkerCodec, AppendKvRoundTrip) {
  const auto c = Decode<AppendKvCall>(Method::kAppendKv, client_internal::EncodeAppendKv(Append()));
  EXPECT_EQ(c.id, 9u);
  EXPECT_EQ(c.layer, 3);
  EXPECT_FALSE(c.block_major);
  EXPECT_EQ(c.num_tokens, 17);
  EXPECT_EQ(c.dtype, DType::kFloat16);
  EXPECT_EQ(c.v_offset, 4352u);
  EXPECT_EQ(c.sample_dtype, DType::kFloat32);
  EXPECT_EQ(c.sample_offset, 8704u);
  EXPECT_EQ(c.sample_positions, (std::vector<int32_t>{0, 5, 16}));
  EXPECT_TRUE(c.build_index);
  ASSERT_TRUE(c.index_kind.has_value());
  EXPECT_EQ(*c.index_kind, IndexKind::kCluster);
  client_internal::AppendKvHeader plain = Append();
  plain.index_kind = std::nullopt;
  EXPECT_FALSE(Decode<AppendKvCall>(Method::kAppendKv, client_internal::EncodeAppendKv(plain))
                   .index_kind.has_value());
}

TEST(WorkerCodec, AppendKvRefusesEachBadField) {
  {
    auto h = Append();
    h.layer = 4;  // a 4-layer model
    const Status s = DecodeError(Method::kAppendKv, client_internal::EncodeAppendKv(h));
    EXPECT_EQ(s.code(), StatusCode::kOutOfRange) << s;
    EXPECT_NE(s.message().find("sequence 9"), std::string_view::npos) << s;
  }
  {
    auto h = Append();
    h.v_offset = 4353;  // not a multiple of fp16's 2 bytes
    const Status s = DecodeError(Method::kAppendKv, client_internal::EncodeAppendKv(h));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("v offset 4353"), std::string_view::npos) << s;
  }
  {
    auto h = Append();
    h.sample_positions = {0, 5, 5};
    EXPECT_EQ(DecodeError(Method::kAppendKv, client_internal::EncodeAppendKv(h)).code(),
              StatusCode::kInvalidArgument);
  }
  {
    auto h = Append();
    h.sample_offset = 8706;  // fp32 sample
    EXPECT_EQ(DecodeError(Method::kAppendKv, client_internal::EncodeAppendKv(h)).code(),
              StatusCode::kInvalidArgument);
  }
  {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<wire::AppendKvRequest>();
    r.setSequenceId(9);
    r.setIndexKind(static_cast<wire::IndexKind>(77));
    const Status s = DecodeError(Method::kAppendKv, transport::EncodeCapnp(b));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("index kind"), std::string_view::npos) << s;
  }
  {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<wire::AppendKvRequest>();
    r.setSequenceId(9);
    r.setSampleCount(2);
    r.initSamplePositions(3);
    EXPECT_EQ(DecodeError(Method::kAppendKv, transport::EncodeCapnp(b)).code(),
              StatusCode::kInvalidArgument);
  }
  {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<wire::AppendKvRequest>();
    r.setNumTokens(uint32_t{1} << 30);
    EXPECT_EQ(DecodeError(Method::kAppendKv, transport::EncodeCapnp(b)).code(),
              StatusCode::kOutOfRange);
  }
}

TEST(WorkerCodec, AttendItemsFailAloneAndTheBatchAsAWhole) {
  std::vector<client_internal::AttendWireItem> items = {
      {.id = 1, .q_dtype = DType::kBFloat16, .q_offset = 0},
      {.id = 2, .q_dtype = DType::kBFloat16, .q_offset = 3},  // unaligned
      {.id = 1, .q_dtype = DType::kBFloat16, .q_offset = 256},  // a duplicate
      {.id = 4, .q_dtype = DType::kFloat32, .q_offset = 512, .append_kv = true,
       .kv_dtype = DType::kFloat32, .k_offset = 1024, .v_offset = 1280, .token_begin = 7,
       .tokens_after = 9}};
  const SparseOptions sparse{.sinks = 4, .window = -1, .top_k = 100,
                             .index = IndexKind::kGraph, .exclude_window = true,
                             .force = true};
  const auto c = Decode<AttendCall>(
      Method::kAttend, client_internal::EncodeAttend(2, items, AttendMode::kSparse, sparse));
  EXPECT_EQ(c.layer, 2);
  ASSERT_TRUE(c.sparse.has_value());
  EXPECT_EQ(c.sparse->sinks, 4);
  EXPECT_EQ(c.sparse->window, -1);
  EXPECT_EQ(c.sparse->top_k, 100);
  EXPECT_EQ(c.sparse->index_kind, IndexKind::kGraph);
  EXPECT_TRUE(c.sparse->exclude_window);
  EXPECT_TRUE(c.sparse->force_sparse);
  ASSERT_EQ(c.items.size(), 4u);
  EXPECT_TRUE(c.items[0].status.ok());
  EXPECT_EQ(c.items[1].status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.items[2].status.message().find("twice"), std::string_view::npos);
  EXPECT_TRUE(c.items[3].status.ok()) << c.items[3].status;
  EXPECT_TRUE(c.items[3].append_kv);
  EXPECT_EQ(c.items[3].v_offset, 1280u);
  EXPECT_EQ(c.items[3].token_begin, 7u);
  EXPECT_EQ(c.items[3].tokens_after, 9u);
  std::vector<uint64_t> seqs;
  CallSequences(WorkerCall(c), &seqs);
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 1, 4}));

  CodecContext ctx = Ctx();
  ctx.limits.max_attend_items = 3;
  EXPECT_EQ(DecodeError(Method::kAttend, client_internal::EncodeAttend(2, items), ctx).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeError(Method::kAttend, client_internal::EncodeAttend(4, items)).code(),
            StatusCode::kOutOfRange);
  const SparseOptions huge{.top_k = 1 << 21};
  EXPECT_EQ(DecodeError(Method::kAttend,
                        client_internal::EncodeAttend(0, items, AttendMode::kSparse, huge))
                .code(),
            StatusCode::kInvalidArgument);
}

TEST(WorkerCodec, MalformedHeadersAndUnknownMethods) {
  const std::string garbage = "\x01\x00\x00\x00\xff\xff\xff\x7f";
  for (Method m : {Method::kOpenSequence, Method::kLookupPrefix, Method::kAppendKv,
                   Method::kAttend, Method::kCloseSequence}) {
    EXPECT_EQ(DecodeError(m, garbage).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(DecodeError(m, "abc").code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(DecodeError(Method::kEcho, "").code(), StatusCode::kUnimplemented);
  EXPECT_TRUE(std::holds_alternative<StatsCall>(*DecodeCall(Method::kStats, {}, Ctx())));
  const auto close =
      Decode<CloseSequenceCall>(Method::kCloseSequence, client_internal::EncodeCloseSequence(31));
  EXPECT_EQ(close.id, 31u);
}

TEST(WorkerCodec, RepliesDecodeOnTheClientSide) {
  const ResumedReply shard{.lengths = {10, 20, 30, 40}, .durable = {10, 16, 30, 0}};
  const std::string resumed = EncodeOpenSequenceReply(&shard);
  StatusOr<client_internal::ResumedShard> r =
      client_internal::ParseResumeReply(Bytes(resumed), 4);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->lengths, (std::vector<int64_t>{10, 20, 30, 40}));
  EXPECT_EQ(r->durable, (std::vector<int64_t>{10, 16, 30, 0}));

  StatusOr<int64_t> matched =
      client_internal::ParseLookupPrefixReply(Bytes(EncodeLookupPrefixReply(2, 32)), 3, 16);
  ASSERT_TRUE(matched.ok()) << matched.status();
  EXPECT_EQ(*matched, 32);

  StatusOr<client_internal::AppendAck> ack =
      client_internal::ParseAppendKvReply(Bytes(EncodeAppendKvReply(77, 64)));
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->length, 77);
  EXPECT_EQ(ack->durable, 64);

  // Two items: one OK with its partial state, one failed.
  const int d = 64, heads = 4;
  std::vector<float> payload(static_cast<size_t>(heads) * (d + 1), 0.5f);
  const std::vector<AttendItemReply> items = {
      {.id = 3, .status = OkStatus(), .out_offset = 0, .num_q_heads = heads, .keys_scanned = 99,
       .length = 100, .selected_tokens = 80, .bytes_read = 1000, .dense_heads = 1,
       .durable_tokens = 64, .ssd_bytes_read = 512, .recall_heads = 2, .recall_exact = 200,
       .recall_hits = 190},
      {.id = 5, .status = NotFoundError("sequence 5 is not open")}};
  const std::string header = EncodeAttendReply(items);
  const std::vector<client_internal::AttendExpect> expect = {{.id = 3, .num_q_heads = heads},
                                                             {.id = 5, .num_q_heads = heads}};
  StatusOr<std::vector<client_internal::AttendPart>> parts = client_internal::ParseAttendReply(
      Bytes(header), std::as_bytes(std::span<const float>(payload)), expect, d);
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_TRUE((*parts)[0].status.ok());
  EXPECT_EQ((*parts)[0].keys_scanned, 99u);
  EXPECT_EQ((*parts)[0].length, 100);
  EXPECT_EQ((*parts)[0].durable_tokens, 64);
  EXPECT_EQ((*parts)[0].dense_heads, 1u);
  EXPECT_EQ((*parts)[0].ssd_bytes_read, 512u);
  EXPECT_EQ((*parts)[0].recall_heads, 2u);
  EXPECT_EQ((*parts)[0].recall_exact, 200u);
  EXPECT_EQ((*parts)[0].recall_hits, 190u);
  EXPECT_EQ((*parts)[1].status.code(), StatusCode::kNotFound);
  // More hits than exact keys is a bad reply.
  std::vector<AttendItemReply> bad = {items[0]};
  bad[0].recall_hits = 201;
  EXPECT_EQ(client_internal::ParseAttendReply(Bytes(EncodeAttendReply(bad)),
                                              std::as_bytes(std::span<const float>(payload)),
                                              std::span(expect).first(1), d)
                .status()
                .code(),
            StatusCode::kInternal);
}

TEST(WorkerCodec, PayloadSliceIsOverflowSafe) {
  std::vector<std::byte> payload(100);
  EXPECT_TRUE(PayloadSlice(payload, 0, 100, "k").ok());
  EXPECT_TRUE(PayloadSlice(payload, 100, 0, "k").ok());
  EXPECT_EQ(PayloadSlice(payload, 1, 100, "k").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PayloadSlice(payload, 101, 0, "k").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PayloadSlice(payload, 8, ~uint64_t{0}, "k").status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attic::worker_codec
