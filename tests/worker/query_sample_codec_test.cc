// The query-sample encoding the worker stores on the SSD tier: round trips, appending, and
// refusal of every kind of damage.
#include "services/worker/query_sample_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace attic::worker_internal {
namespace {

QuerySampleRecord Sample(int n, DType dtype, int seed) {
  QuerySampleRecord r{.q_heads = 8, .head_dim = 32, .dtype = dtype};
  for (int i = 0; i < n; ++i) r.positions.push_back(i * 64 + seed);
  r.q.resize(static_cast<size_t>(n) * 8 * 32 * DTypeSize(dtype));
  for (size_t i = 0; i < r.q.size(); ++i) r.q[i] = static_cast<char>((i * 7 + seed) & 0xff);
  return r;
}

void ExpectEqual(const QuerySampleRecord& a, const QuerySampleRecord& b) {
  EXPECT_EQ(a.q_heads, b.q_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.build, b.build);
  EXPECT_EQ(a.index_kind, b.index_kind);
}

TEST(QuerySampleCodecTest, RecordsRoundTripInOrder) {
  std::vector<QuerySampleRecord> records = {Sample(3, DType::kBFloat16, 1),
                                            Sample(5, DType::kFloat32, 2),
                                            QuerySampleRecord{.build = true, .index_kind = 2}};
  records[1].build = true;
  records[1].index_kind = 4;
  std::string blob;
  for (const QuerySampleRecord& r : records) AppendQuerySample(r, &blob);
  StatusOr<std::vector<QuerySampleRecord>> decoded = DecodeQuerySamples(blob);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) ExpectEqual((*decoded)[i], records[i]);
  EXPECT_TRUE(DecodeQuerySamples("")->empty());
}

TEST(QuerySampleCodecTest, DamageIsDataLossNamingTheRecord) {
  std::string blob;
  AppendQuerySample(Sample(2, DType::kFloat16, 0), &blob);
  const size_t first = blob.size();
  AppendQuerySample(Sample(4, DType::kBFloat16, 9), &blob);
  auto expect_loss = [](const std::string& bytes, const std::string& what) {
    StatusOr<std::vector<QuerySampleRecord>> r = DecodeQuerySamples(bytes);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status();
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status();
  };
  expect_loss(blob.substr(0, blob.size() - 1), "record 1 at byte " + std::to_string(first));
  expect_loss(blob.substr(0, first + 10), "truncated header");
  std::string flipped = blob;
  flipped[first + 40] ^= 0x10;
  expect_loss(flipped, "record 1 at byte " + std::to_string(first) + ": checksum mismatch");
  std::string magic = blob;
  magic[0] = 'X';
  expect_loss(magic, "record 0 at byte 0: bad magic");
  std::string dtype = blob;
  dtype[16] = 9;
  expect_loss(dtype, "unknown dtype");
  std::string huge = blob;
  huge[7] = 0x7f;  // count near 2^31
  expect_loss(huge, "sizes out of range");
}

}  // namespace
}  // namespace attic::worker_internal
