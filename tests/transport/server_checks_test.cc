// The server's frame and handshake checks as pure functions: order of the checks, limits
// at their edges, and what the messages say (and do not say).
#include "transport/internal/server_checks.h"

#include <gtest/gtest.h>

namespace attic::transport::internal {
namespace {

FrameHeader Echo(uint32_t header_bytes, uint64_t payload_bytes) {
  FrameHeader f;
  f.method = static_cast<uint16_t>(Method::kEcho);
  f.header_bytes = header_bytes;
  f.payload_bytes = payload_bytes;
  return f;
}

RequestLimits Limits() { return {"w", 64, 1000, true, true}; }

TEST(CheckRequestFrameTest, AcceptsSizesExactlyAtTheLimits) {
  EXPECT_TRUE(CheckRequestFrame(Echo(64, 1000), 1064, Limits()).ok());
  EXPECT_TRUE(CheckRequestFrame(Echo(0, 0), 0, Limits()).ok());
}

TEST(CheckRequestFrameTest, OneByteOverALimitIsResourceExhausted) {
  EXPECT_EQ(CheckRequestFrame(Echo(65, 0), 65, Limits()).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(CheckRequestFrame(Echo(0, 1001), 1001, Limits()).code(),
            StatusCode::kResourceExhausted);
}

TEST(CheckRequestFrameTest, HugeClaimsDoNotOverflowIntoAMatch) {
  // header + payload would wrap around to the data length in 64 bits.
  FrameHeader f = Echo(16, ~uint64_t{0} - 15);
  RequestLimits l = Limits();
  l.max_payload_bytes = ~size_t{0};
  l.max_header_bytes = ~size_t{0};
  EXPECT_EQ(CheckRequestFrame(f, 0, l).code(), StatusCode::kInvalidArgument);
}

TEST(CheckRequestFrameTest, DiscardIsAKnownMethodThatNeedsTheHandshake) {
  FrameHeader f = Echo(8, 100);
  f.method = static_cast<uint16_t>(Method::kDiscard);
  EXPECT_TRUE(CheckRequestFrame(f, 108, Limits()).ok());
  RequestLimits before_hello = Limits();
  before_hello.hello_done = false;
  EXPECT_EQ(CheckRequestFrame(f, 108, before_hello).code(), StatusCode::kFailedPrecondition);
  f.method = kMaxMethod + 1;
  EXPECT_EQ(CheckRequestFrame(f, 108, Limits()).code(), StatusCode::kUnimplemented);
}

TEST(CheckRequestFrameTest, MagicAndVersionComeFirst) {
  FrameHeader f = Echo(1u << 30, 0);  // also oversized, but the magic is checked first
  f.magic = 1;
  RequestLimits l = Limits();
  l.accepting = false;
  EXPECT_EQ(CheckRequestFrame(f, 0, l).code(), StatusCode::kFailedPrecondition);
  f.magic = kFrameMagic;
  f.version = 0;
  EXPECT_EQ(CheckRequestFrame(f, 0, l).code(), StatusCode::kFailedPrecondition);
}

TEST(CheckRequestFrameTest, NotAcceptingIsUnavailableEvenForHello) {
  FrameHeader f = Echo(8, 0);
  f.method = static_cast<uint16_t>(Method::kHello);
  RequestLimits l = Limits();
  l.accepting = false;
  l.hello_done = false;
  Status s = CheckRequestFrame(f, 8, l);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "w is shutting down");
}

TEST(CheckRequestFrameTest, OnlyHelloBeforeTheHandshake) {
  RequestLimits l = Limits();
  l.hello_done = false;
  EXPECT_EQ(CheckRequestFrame(Echo(8, 0), 8, l).code(), StatusCode::kFailedPrecondition);
  FrameHeader hello = Echo(8, 0);
  hello.method = static_cast<uint16_t>(Method::kHello);
  EXPECT_TRUE(CheckRequestFrame(hello, 8, l).ok());
}

TEST(CheckHelloTest, FingerprintsNamedInHexAndZeroMeansAny) {
  HelloPolicy policy{"w", 0xabc, ""};
  HelloFields hello{kProtocolVersion, 0xdef, "", "c"};
  Status s = CheckHello(hello, policy);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("0x0000000000000def"), std::string::npos) << s;
  EXPECT_NE(s.message().find("0x0000000000000abc"), std::string::npos) << s;
  hello.model_fingerprint = 0;
  EXPECT_TRUE(CheckHello(hello, policy).ok());
  policy.model_fingerprint = 0;
  hello.model_fingerprint = 0x123;
  EXPECT_TRUE(CheckHello(hello, policy).ok());
}

TEST(CheckHelloTest, VersionMismatchNamesBothVersions) {
  Status s = CheckHello({kProtocolVersion + 5, 0, "", "c"}, {"w", 0, ""});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("client speaks 6, worker speaks 1"), std::string::npos) << s;
}

TEST(CheckHelloTest, TokenMismatchNeverPrintsTokens) {
  Status s = CheckHello({kProtocolVersion, 0, "guess", "c"}, {"w", 0, "secret"});
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message().find("guess"), std::string::npos);
  EXPECT_EQ(s.message().find("secret"), std::string::npos);
  EXPECT_TRUE(CheckHello({kProtocolVersion, 0, "secret", "c"}, {"w", 0, "secret"}).ok());
}

TEST(HelloCodecTest, RoundTripsAndRejectsGarbage) {
  HelloFields in{kProtocolVersion, 42, "t", "engine"};
  const std::string bytes = EncodeHello(in);
  auto out = ParseHello({reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->model_fingerprint, 42u);
  EXPECT_EQ(out->token, "t");
  EXPECT_EQ(out->client_name, "engine");
  const std::string junk = "12345678";
  EXPECT_EQ(
      ParseHello({reinterpret_cast<const std::byte*>(junk.data()), junk.size()}).status().code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attic::transport::internal
