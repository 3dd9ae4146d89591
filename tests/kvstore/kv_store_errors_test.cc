// KvStore's error paths: unknown sequences, bad specs and head ranges, wrong shapes, dtypes,
// layers and heads, ordering rules, a full store, and corrupted blocks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvstore/kv_store.h"
#include "tests/kvstore/kv_test_util.h"

namespace attic::kv_test {
namespace {

using ::testing::HasSubstr;

using KvStoreErrorsTest = StoreTest;

TEST_F(KvStoreErrorsTest, UnknownSequenceIsNotFoundNamingTheId) {
  KvTensors r = TokenRows(SeededContent(1), 0, 0, 1, 0, 2, 32, DType::kFloat32);
  KvTensors d = DecodeRow(SeededContent(1), 0, 0, 0, 2, 32, DType::kFloat32);
  KvTensors c = BlockChunk(SeededContent(1), 0, 0, 16, 0, 2, 16, 32, DType::kBFloat16);
  std::vector<BlockView> views;
  const std::vector<uint64_t> hashes = Chain(1, 1);
  const Status statuses[] = {
      store_->LookupPrefix(4242, hashes).status(),
      store_->AppendPrefill(4242, 0, c.k.view(), c.v.view(), 16),
      store_->AppendTokens(4242, 0, r.k.view(), r.v.view()),
      store_->AppendDecodeToken(4242, 0, d.k.view(), d.v.view()),
      store_->ReadBlocks(4242, 0, 0, &views),
      store_->Length(4242, 0).status(),
      store_->GetSequence(4242).status(),
      store_->CloseSequence(4242),
  };
  for (const Status& s : statuses) {
    EXPECT_EQ(s.code(), StatusCode::kNotFound) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("4242"));
  }
}

TEST_F(KvStoreErrorsTest, OpenRejectsBadSpecsAndHeadRanges) {
  ModelSpec bad = spec_;
  bad.head_dim = 33;
  EXPECT_EQ(store_->OpenSequence({.id = 1, .spec = bad}).code(), StatusCode::kInvalidArgument);
  ModelSpec big = spec_;
  big.dtype = DType::kFloat32;  // 16 x 32 x 4 = 2048 bytes > 1024-byte slots
  const Status too_big = store_->OpenSequence({.id = 1, .spec = big});
  EXPECT_EQ(too_big.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_big.message()), HasSubstr("2048"));
  EXPECT_THAT(std::string(too_big.message()), HasSubstr("1024"));
  for (auto [b, e] : {std::pair{-1, 2}, {0, 3}, {1, 1}, {2, -1}, {1, 0}}) {
    const Status s = Open(1, "acme", b, e);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << b << " " << e;
    EXPECT_THAT(std::string(s.message()), HasSubstr("kv head range"));
  }
  ASSERT_OK(Open(1));
  const Status dup = Open(1);
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(dup.message()), HasSubstr("1"));
}

TEST_F(KvStoreErrorsTest, LayerOutOfRange) {
  ASSERT_OK(Open(1));
  KvTensors r = TokenRows(SeededContent(2), 0, 0, 1, 0, 2, 32, DType::kFloat32);
  KvTensors c = BlockChunk(SeededContent(2), 0, 0, 16, 0, 2, 16, 32, DType::kBFloat16);
  std::vector<BlockView> views;
  for (int layer : {-1, 2}) {
    const Status statuses[] = {
        store_->AppendTokens(1, layer, r.k.view(), r.v.view()),
        store_->AppendPrefill(1, layer, c.k.view(), c.v.view(), 16),
        store_->ReadBlocks(1, layer, 0, &views),
        store_->Length(1, layer).status(),
    };
    for (const Status& s : statuses) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
      EXPECT_THAT(std::string(s.message()), HasSubstr("[0, 2)"));
    }
  }
}

TEST_F(KvStoreErrorsTest, KvHeadOutsideTheShard) {
  ASSERT_OK(Open(1, "acme", 1, 2));
  std::vector<BlockView> views = {BlockView{nullptr, nullptr, 7}};
  const Status s = store_->ReadBlocks(1, 0, 0, &views);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("[1, 2)"));
  EXPECT_EQ(views.size(), 1u);  // output untouched on error
  EXPECT_EQ(store_->ReadBlocks(1, 0, 2, &views).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ReadBlocks(1, 0, 1, nullptr).code(), StatusCode::kInvalidArgument);
}

TEST_F(KvStoreErrorsTest, PrefillShapeAndDtypeErrorsNameExpectation) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(3);
  auto expect_bad = [&](const KvTensors& c, int n, const char* what) {
    const Status s = store_->AppendPrefill(1, 0, c.k.view(), c.v.view(), n);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("expected")) << what;
  };
  expect_bad(BlockChunk(fn, 0, 0, 16, 0, 2, 16, 32, DType::kFloat32), 16, "fp32 chunk");
  expect_bad(BlockChunk(fn, 0, 0, 16, 0, 1, 16, 32, DType::kBFloat16), 16, "one head");
  expect_bad(BlockChunk(fn, 0, 0, 32, 0, 2, 32, 32, DType::kBFloat16), 32, "B = 32");
  expect_bad(BlockChunk(fn, 0, 0, 16, 0, 2, 16, 64, DType::kBFloat16), 16, "D = 64");
  expect_bad(TokenRows(fn, 0, 0, 16, 0, 2, 32, DType::kBFloat16), 16, "rank 3");
  expect_bad(BlockChunk(fn, 0, 0, 32, 0, 2, 16, 32, DType::kBFloat16), 16, "2 blocks, 16 tokens");
  expect_bad(BlockChunk(fn, 0, 0, 32, 0, 2, 16, 32, DType::kBFloat16), 33, "33 tokens");
  expect_bad(BlockChunk(fn, 0, 0, 16, 0, 2, 16, 32, DType::kBFloat16), 0, "0 tokens");
  expect_bad(BlockChunk(fn, 0, 0, 16, 0, 2, 16, 32, DType::kBFloat16), -3, "-3 tokens");
  expect_bad(BlockChunk(fn, 0, 0, 0, 0, 2, 16, 32, DType::kBFloat16), -3, "no blocks, -3 tokens");
  KvTensors mismatched = BlockChunk(fn, 0, 0, 32, 0, 2, 16, 32, DType::kBFloat16);
  mismatched.v = BlockChunk(fn, 0, 0, 16, 0, 2, 16, 32, DType::kBFloat16).v;
  expect_bad(mismatched, 32, "k and v differ");
  EXPECT_EQ(*store_->Length(1, 0), 0);
}

TEST_F(KvStoreErrorsTest, TokenAndDecodeShapeErrorsNameExpectation) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(4);
  auto expect_bad = [&](const Status& s, const char* what, const char* says = "expected") {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(says)) << what;
  };
  KvTensors one_head = TokenRows(fn, 0, 0, 3, 0, 1, 32, DType::kFloat32);
  expect_bad(store_->AppendTokens(1, 0, one_head.k.view(), one_head.v.view()), "one head");
  KvTensors wide = TokenRows(fn, 0, 0, 3, 0, 2, 64, DType::kFloat32);
  expect_bad(store_->AppendTokens(1, 0, wide.k.view(), wide.v.view()), "D = 64");
  KvTensors a = TokenRows(fn, 0, 0, 3, 0, 2, 32, DType::kFloat32);
  KvTensors b = TokenRows(fn, 0, 0, 4, 0, 2, 32, DType::kFloat32);
  expect_bad(store_->AppendTokens(1, 0, a.k.view(), b.v.view()), "k and v lengths differ");
  KvTensors row = DecodeRow(fn, 0, 0, 0, 2, 32, DType::kFloat32);
  expect_bad(store_->AppendTokens(1, 0, row.k.view(), row.v.view()), "rank 2 to AppendTokens");
  expect_bad(store_->AppendDecodeToken(1, 0, a.k.view(), a.v.view()), "rank 3 to decode");
  // Rows must be contiguous along D.
  const TensorView strided(a.k.bytes.data(), DType::kFloat32, {1, 2, 32}, {64, 1, 2});
  expect_bad(store_->AppendTokens(1, 0, strided, strided), "stride 2 along D");
  const TensorView no_data(nullptr, DType::kFloat32, {3, 2, 32});
  expect_bad(store_->AppendTokens(1, 0, no_data, no_data), "null data", "no data");
  const TensorView bad_dtype(a.k.bytes.data(), static_cast<DType>(9), {3, 2, 32});
  expect_bad(store_->AppendTokens(1, 0, bad_dtype, bad_dtype), "unknown dtype", "dtype number 9");
  EXPECT_EQ(*store_->Length(1, 0), 0);
}

TEST_F(KvStoreErrorsTest, PrefillAfterAPartialBlockIsFailedPrecondition) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(5);
  ASSERT_OK(TokensAll(1, fn, 0, 5, DType::kFloat32));
  KvTensors c = BlockChunk(fn, 0, 0, 16, 0, 2, 16, 32, DType::kBFloat16);
  const Status s = store_->AppendPrefill(1, 0, c.k.view(), c.v.view(), 16);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("5 tokens"));
}

TEST_F(KvStoreErrorsTest, LookupRules) {
  ASSERT_OK(Open(1));
  const std::vector<uint64_t> repeated = {7, 8, 7};
  EXPECT_EQ(store_->LookupPrefix(1, repeated).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->LookupPrefix(1, Chain(6, 2)).ok());
  EXPECT_EQ(store_->LookupPrefix(1, Chain(6, 2)).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_OK(Open(2));
  ASSERT_OK(TokensAll(2, SeededContent(6), 0, 3, DType::kFloat32));
  const Status s = store_->LookupPrefix(2, Chain(6, 2)).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("before appending"));
}

class KvStoreCapacityTest : public StoreTest {
 protected:
  void SetUp() override { MakeStore(8); }
};

TEST_F(KvStoreCapacityTest, FullStoreIsResourceExhaustedWithFiguresAndChangesNothing) {
  ASSERT_OK(Open(1));
  ASSERT_OK(PrefillAll(1, SeededContent(7), 0, 32));  // 2 blocks x 2 layers x 2 heads = 8
  ASSERT_OK(Open(2));
  const Status s = TokensAll(2, SeededContent(8), 0, 1, DType::kFloat32);
  ASSERT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  const std::string msg(s.message());
  EXPECT_THAT(msg, HasSubstr("K pool 8/8 blocks used (8192/8192 bytes)"));
  EXPECT_THAT(msg, HasSubstr("V pool 8/8 blocks used"));
  EXPECT_THAT(msg, HasSubstr("0 cached"));
  EXPECT_EQ(*store_->Length(2, 0), 0);
  ExpectAll(1, SeededContent(7), 32);
  ExpectBalanced();
  ASSERT_OK(store_->CloseSequence(1));
  ASSERT_OK(TokensAll(2, SeededContent(8), 0, 1, DType::kFloat32));
  ExpectAll(2, SeededContent(8), 1);
}

TEST_F(KvStoreCapacityTest, RequestLargerThanThePoolFailsWithoutFlushingTheCache) {
  ASSERT_OK(Open(1));
  ASSERT_TRUE(store_->LookupPrefix(1, Chain(9, 1)).ok());
  ASSERT_OK(PrefillAll(1, SeededContent(9), 0, 16));
  ASSERT_OK(store_->CloseSequence(1));
  ASSERT_OK(Open(2));
  KvTensors c = BlockChunk(SeededContent(10), 0, 0, 80, 0, 2, 16, 32, DType::kBFloat16);
  const Status s = store_->AppendPrefill(2, 0, c.k.view(), c.v.view(), 80);  // 10 pairs
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("4 cached"));
  EXPECT_EQ(store_->Stats().evictions, 0);
}

TEST(KvStoreSmallValuePoolTest, ValuePoolRunsOutFirst) {
  KvStoreOptions o;
  o.block_bytes = 1024;
  o.k_pool_blocks = 16;
  o.v_pool_blocks = 4;
  auto store = KvStore::Open(o);
  ASSERT_TRUE(store.ok());
  const ModelSpec spec = SmallSpec();
  ASSERT_OK((*store)->OpenSequence({.id = 1, .spec = spec}));
  KvTensors c = BlockChunk(SeededContent(11), 0, 0, 48, 0, 2, 16, 32, DType::kBFloat16);
  const Status s = (*store)->AppendPrefill(1, 0, c.k.view(), c.v.view(), 48);  // 6 pairs
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("V pool 0/4"));
  EXPECT_EQ((*store)->Stats().k.used_blocks, 0);
}

class KvStoreCorruptionTest : public StoreTest {
 protected:
  void SetUp() override { MakeStore(64, /*verify_reads=*/true); }

  static void Flip(const std::byte* p) {
    auto* b = const_cast<std::byte*>(p);
    *b ^= std::byte{0x40};
  }
};

TEST_F(KvStoreCorruptionTest, FlippedByteInAPrivateBlockIsDataLoss) {
  ASSERT_OK(Open(5));
  ASSERT_OK(PrefillAll(5, SeededContent(12), 0, 40));
  ASSERT_OK(store_->Verify());
  const std::vector<BlockView> views = Read(5, 1, 0);
  Flip(views[1].k + 100);
  const Status v = store_->Verify();
  EXPECT_EQ(v.code(), StatusCode::kDataLoss);
  EXPECT_THAT(std::string(v.message()), HasSubstr("sequence 5 layer 1 kv head 0 block 1"));
  EXPECT_THAT(std::string(v.message()), HasSubstr("K block"));
  std::vector<BlockView> out;
  const Status r = store_->ReadBlocks(5, 1, 0, &out);
  EXPECT_EQ(r.code(), StatusCode::kDataLoss);
  EXPECT_THAT(std::string(r.message()), HasSubstr("block 1"));
  EXPECT_TRUE(out.empty());
  EXPECT_OK(store_->ReadBlocks(5, 1, 1, &out));  // other heads are fine
  Flip(views[1].k + 100);
  EXPECT_OK(store_->Verify());
}

TEST_F(KvStoreCorruptionTest, FlippedByteInACachedPrefixBlockIsDataLoss) {
  ASSERT_OK(Open(6));
  ASSERT_TRUE(store_->LookupPrefix(6, Chain(13, 2)).ok());
  ASSERT_OK(PrefillAll(6, SeededContent(13), 0, 32));
  const std::vector<BlockView> views = Read(6, 0, 1);
  ASSERT_OK(store_->CloseSequence(6));
  Flip(views[0].v + 7);  // the block lives on in the prefix cache
  const Status v = store_->Verify();
  EXPECT_EQ(v.code(), StatusCode::kDataLoss);
  EXPECT_THAT(std::string(v.message()), HasSubstr("prefix entry"));
  EXPECT_THAT(std::string(v.message()), HasSubstr("layer 0 kv head 1: V block"));
  ASSERT_OK(Open(7));
  ASSERT_EQ(store_->LookupPrefix(7, Chain(13, 2))->matched_blocks, 2);
  std::vector<BlockView> out;
  const Status r = store_->ReadBlocks(7, 0, 1, &out);
  EXPECT_EQ(r.code(), StatusCode::kDataLoss);
  EXPECT_THAT(std::string(r.message()), HasSubstr("shared prefix block"));
}

TEST_F(KvStoreCorruptionTest, PartialBlocksAreCheckedOnceSealed) {
  ASSERT_OK(Open(8));
  const KvFn fn = SeededContent(14);
  ASSERT_OK(TokensAll(8, fn, 0, 10, DType::kFloat32));
  const std::vector<BlockView> views = Read(8, 0, 0);
  Flip(views[0].k);  // no checksum yet: nothing to compare against
  EXPECT_OK(store_->Verify());
  Flip(views[0].k);
  ASSERT_OK(TokensAll(8, fn, 10, 6, DType::kFloat32));  // seals block 0
  Flip(views[0].k);
  EXPECT_EQ(store_->Verify().code(), StatusCode::kDataLoss);
  Flip(views[0].k);
  ExpectAll(8, fn, 16);
}

}  // namespace
}  // namespace attic::kv_test
