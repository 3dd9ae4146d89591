#include "client/internal/wire_codec.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "transport/capnp_codec.h"
#include "transport/proto/attic.capnp.h"
#include "transport/wire_types.h"

namespace attic::client_internal {
namespace {

constexpr int kD = 32;

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

struct ReplyItem {
  uint64_t id = 0;
  int code = 0;
  std::string message;
  uint64_t out_offset = 0;
  uint32_t heads = 0;
};

std::string EncodeReply(const std::vector<ReplyItem>& items) {
  capnp::MallocMessageBuilder b;
  auto list = b.initRoot<wire::AttendReply>().initItems(static_cast<unsigned>(items.size()));
  for (size_t i = 0; i < items.size(); ++i) {
    auto r = list[static_cast<unsigned>(i)];
    r.setSequenceId(items[i].id);
    r.setCode(items[i].code);
    r.setMessage(items[i].message);
    r.setOutOffset(items[i].out_offset);
    r.setNumQHeads(items[i].heads);
    r.setKeysScanned(100 + i);
    r.setLength(7);
  }
  return transport::EncodeCapnp(b);
}

// Payload of two OK items: item 0 (2 heads) at 0, item 1 (4 heads) right after; o then lse.
std::vector<float> Payload() {
  std::vector<float> p;
  for (int h = 0; h < 2 * kD + 2 + 4 * kD + 4; ++h) p.push_back(static_cast<float>(h));
  return p;
}
std::span<const std::byte> Bytes(const std::vector<float>& p) {
  return std::as_bytes(std::span<const float>(p));
}

const uint64_t kSecond = (2 * kD + 2) * sizeof(float);
const std::vector<AttendExpect> kExpected = {{.id = 5, .num_q_heads = 2},
                                             {.id = 9, .num_q_heads = 4}};

TEST(AttendReplyTest, ParsesOutputsAndItemErrors) {
  const std::vector<float> payload = Payload();
  auto parts = ParseAttendReply(Bytes(EncodeReply({{.id = 5, .out_offset = 0, .heads = 2},
                                                   {.id = 9, .out_offset = kSecond, .heads = 4}})),
                                Bytes(payload), kExpected, kD);
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ((*parts)[0].o.size(), 2u * kD);
  EXPECT_EQ((*parts)[0].lse[1], static_cast<float>(2 * kD + 1));
  EXPECT_EQ((*parts)[1].o[0], static_cast<float>(2 * kD + 2));
  EXPECT_EQ((*parts)[1].lse[3], payload.back());
  EXPECT_EQ((*parts)[1].keys_scanned, 101u);
  EXPECT_EQ((*parts)[1].length, 7);

  // A per-item error is the item's status, not a bad reply; its offsets are not read.
  parts = ParseAttendReply(
      Bytes(EncodeReply({{.id = 5, .code = 5, .message = "gone", .out_offset = 1u << 30},
                         {.id = 9, .out_offset = kSecond, .heads = 4}})),
      Bytes(payload), kExpected, kD);
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ((*parts)[0].status, NotFoundError("gone"));
  EXPECT_TRUE((*parts)[1].status.ok());
}

TEST(AttendReplyTest, UnalignedPayloadIsRead) {
  const std::vector<float> payload = Payload();
  std::vector<std::byte> shifted(payload.size() * sizeof(float) + 1);
  std::memcpy(shifted.data() + 1, payload.data(), payload.size() * sizeof(float));
  auto parts =
      ParseAttendReply(Bytes(EncodeReply({{.id = 5, .out_offset = 1, .heads = 2},
                                          {.id = 9, .out_offset = kSecond + 1, .heads = 4}})),
                       shifted, kExpected, kD);
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ((*parts)[1].lse[3], payload.back());
}

// Every corruption is INTERNAL with a reason, never a crash or an out-of-bounds read.
TEST(AttendReplyTest, CorruptRepliesAreInternal) {
  const std::vector<float> payload = Payload();
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  struct Case {
    const char* what;
    std::vector<ReplyItem> items;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {"overrun by one float",
       {{.id = 5, .heads = 2}, {.id = 9, .out_offset = kSecond + 4, .heads = 4}},
       "overrun"},
      {"offset past the end",
       {{.id = 5, .heads = 2}, {.id = 9, .out_offset = 1u << 20, .heads = 4}},
       "overrun"},
      {"offset that wraps",
       {{.id = 5, .out_offset = max - 8, .heads = 2}, {.id = 9, .heads = 4}},
       "overrun"},
      {"too few items", {{.id = 5, .heads = 2}}, "1 items for 2 asked"},
      {"wrong sequence", {{.id = 9, .heads = 2}, {.id = 5, .heads = 4}}, "item for sequence 9"},
      {"wrong head count",
       {{.id = 5, .heads = 3}, {.id = 9, .out_offset = kSecond, .heads = 4}},
       "3 query heads where 2"},
      {"unknown code",
       {{.id = 5, .code = 99}, {.id = 9, .out_offset = kSecond, .heads = 4}},
       "unknown status code 99"},
  };
  for (const Case& c : cases) {
    auto parts = ParseAttendReply(Bytes(EncodeReply(c.items)), Bytes(payload), kExpected, kD);
    ASSERT_FALSE(parts.ok()) << c.what;
    EXPECT_EQ(parts.status().code(), StatusCode::kInternal) << c.what;
    EXPECT_NE(parts.status().message().find(c.needle), std::string::npos)
        << c.what << ": " << parts.status();
  }
  // Not a Cap'n Proto message at all, and an empty one.
  const std::string garbage(24, '\xff');
  EXPECT_EQ(ParseAttendReply(Bytes(garbage), Bytes(payload), kExpected, kD).status().code(),
            StatusCode::kInternal);
  EXPECT_EQ(ParseAttendReply({}, Bytes(payload), kExpected, kD).status().code(),
            StatusCode::kInternal);
}

TEST(WireCodecTest, AttendRequestRoundTrips) {
  const std::vector<AttendWireItem> items = {{.id = 3, .q_dtype = DType::kBFloat16, .q_offset = 0},
                                             {.id = 4,
                                              .q_dtype = DType::kFloat32,
                                              .q_offset = 256,
                                              .append_kv = true,
                                              .kv_dtype = DType::kFloat16,
                                              .k_offset = 512,
                                              .v_offset = 640}};
  const std::string header = EncodeAttend(6, items);
  auto msg = transport::CapnpMessage::Parse(Bytes(header));
  ASSERT_TRUE(msg.ok());
  auto r = msg->Root<wire::AttendRequest>();
  EXPECT_EQ(r.getLayer(), 6u);
  EXPECT_EQ(r.getMode(), wire::AttendRequest::Mode::DENSE);
  ASSERT_EQ(r.getItems().size(), 2u);
  EXPECT_EQ(r.getItems()[0].getQDtype(), wire::DType::BFLOAT16);
  EXPECT_FALSE(r.getItems()[0].getAppendKv());
  EXPECT_TRUE(r.getItems()[1].getAppendKv());
  EXPECT_EQ(r.getItems()[1].getKvDtype(), wire::DType::FLOAT16);
  EXPECT_EQ(r.getItems()[1].getVOffset(), 640u);
}

TEST(WireCodecTest, OpenAndAppendRequestsCarryTheShard) {
  const ModelSpec spec{.name = "m",
                       .num_layers = 2,
                       .num_q_heads = 16,
                       .num_kv_heads = 8,
                       .head_dim = 64,
                       .dtype = DType::kBFloat16,
                       .block_size = 64};
  const Shard shard{.worker = 1, .kv_head_begin = 2, .kv_head_end = 6, .token_begin = 1024};
  const std::string open = EncodeOpenSequence(42, "acme", spec, 77, shard);
  auto msg = transport::CapnpMessage::Parse(Bytes(open));
  ASSERT_TRUE(msg.ok());
  auto o = msg->Root<wire::OpenSequenceRequest>();
  EXPECT_EQ(o.getSequenceId(), 42u);
  EXPECT_EQ(std::string(o.getTenant().cStr()), "acme");
  EXPECT_EQ(o.getKvHeadBegin(), 2u);
  EXPECT_EQ(o.getKvHeadEnd(), 6u);
  EXPECT_EQ(o.getTokenBegin(), 1024u);
  EXPECT_EQ(o.getModelFingerprint(), 77u);
  auto back = transport::SpecFromWire(o.getSpec());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, spec);

  const std::string append = EncodeAppendKv({.id = 42,
                                             .layer = 1,
                                             .block_major = false,
                                             .num_tokens = 1,
                                             .dtype = DType::kFloat16,
                                             .k_offset = 0,
                                             .v_offset = 1024});
  msg = transport::CapnpMessage::Parse(Bytes(append));
  ASSERT_TRUE(msg.ok());
  auto a = msg->Root<wire::AppendKvRequest>();
  EXPECT_EQ(a.getLayout(), wire::AppendKvRequest::Layout::TOKEN_MAJOR);
  EXPECT_EQ(a.getDtype(), wire::DType::FLOAT16);
  EXPECT_EQ(a.getVOffset(), 1024u);
}

TEST(WireCodecTest, LookupReplyIsCheckedAgainstTheBlocksAsked) {
  auto encode = [](uint32_t matched) {
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::LookupPrefixReply>().setMatchedTokens(matched);
    return transport::EncodeCapnp(b);
  };
  auto m = ParseLookupPrefixReply(Bytes(encode(128)), 3, 64);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, 128);
  EXPECT_EQ(ParseLookupPrefixReply(Bytes(encode(256)), 3, 64).status().code(),
            StatusCode::kInternal);
  EXPECT_EQ(ParseLookupPrefixReply(Bytes(encode(100)), 3, 64).status().code(),
            StatusCode::kInternal);
}

TEST(WireCodecTest, ResumeRequestAndReply) {
  const ModelSpec spec{.name = "m",
                       .num_layers = 2,
                       .num_q_heads = 16,
                       .num_kv_heads = 8,
                       .head_dim = 64,
                       .dtype = DType::kBFloat16,
                       .block_size = 64};
  const Shard shard{.worker = 0, .kv_head_begin = 0, .kv_head_end = 8};
  const std::string open = EncodeOpenSequence(7, "t", spec, 0, shard);
  auto msg = transport::CapnpMessage::Parse(Bytes(open));
  ASSERT_TRUE(msg.ok());
  EXPECT_FALSE(msg->Root<wire::OpenSequenceRequest>().getResume());
  const std::string resume = EncodeOpenSequence(7, "t", spec, 0, shard, true);
  msg = transport::CapnpMessage::Parse(Bytes(resume));
  ASSERT_TRUE(msg.ok());
  EXPECT_TRUE(msg->Root<wire::OpenSequenceRequest>().getResume());

  auto encode = [](bool resumed, std::vector<uint32_t> lengths, std::vector<uint32_t> durable) {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<wire::OpenSequenceReply>();
    r.setResumed(resumed);
    auto l = r.initLayerLengths(static_cast<unsigned>(lengths.size()));
    for (unsigned i = 0; i < lengths.size(); ++i) l.set(i, lengths[i]);
    auto d = r.initDurableLengths(static_cast<unsigned>(durable.size()));
    for (unsigned i = 0; i < durable.size(); ++i) d.set(i, durable[i]);
    return transport::EncodeCapnp(b);
  };
  const std::string good = encode(true, {2000, 1984}, {2000, 1984});
  StatusOr<ResumedShard> r = ParseResumeReply(Bytes(good), 2);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->lengths, (std::vector<int64_t>{2000, 1984}));
  EXPECT_EQ(r->durable, (std::vector<int64_t>{2000, 1984}));
  for (const std::string& bad : {encode(false, {1, 1}, {1, 1}), encode(true, {1}, {1}),
                                 encode(true, {1, 1}, {1}), encode(true, {5, 5}, {5, 6})}) {
    EXPECT_EQ(ParseResumeReply(Bytes(bad), 2).status().code(), StatusCode::kInternal);
  }
}

TEST(WireCodecTest, AppendReplyCarriesTheDurableLength) {
  auto encode = [](uint32_t length, uint32_t durable) {
    capnp::MallocMessageBuilder b;
    auto r = b.initRoot<wire::AppendKvReply>();
    r.setLength(length);
    r.setDurableTokens(durable);
    return transport::EncodeCapnp(b);
  };
  const std::string good = encode(130, 128);
  StatusOr<AppendAck> ack = ParseAppendKvReply(Bytes(good));
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->length, 130);
  EXPECT_EQ(ack->durable, 128);
  const std::string bad = encode(10, 11);
  EXPECT_EQ(ParseAppendKvReply(Bytes(bad)).status().code(), StatusCode::kInternal);
}

TEST(WireCodecTest, HelloReplyWithABadSpecIsInternal) {
  capnp::MallocMessageBuilder b;
  auto r = b.initRoot<wire::HelloReply>();
  r.setWorkerName("w1");
  r.initSpec().setNumLayers(0);
  auto info = ParseHelloReply(Bytes(transport::EncodeCapnp(b)));
  EXPECT_EQ(info.status().code(), StatusCode::kInternal) << info.status();
}

}  // namespace
}  // namespace attic::client_internal
