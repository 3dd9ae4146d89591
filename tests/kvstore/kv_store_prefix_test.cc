// KvStore's prefix cache: lookup, dedupe, reference counts, reuse after close, LRU eviction
// order and tenant isolation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "kvstore/kv_store.h"
#include "tests/kvstore/kv_test_util.h"

namespace attic::kv_test {
namespace {

// SmallSpec: 2 layers x 2 KV heads, so one prompt block is 4 block pairs (per pool).
constexpr int kPairsPerBlock = 4;

class KvStorePrefixTest : public StoreTest {
 protected:
  StatusOr<PrefixMatch> Lookup(uint64_t id, const std::vector<uint64_t>& hashes) {
    return store_->LookupPrefix(id, hashes);
  }

  // Opens `id`, looks up `hashes` and appends the rest of a prompt of `tokens` tokens whose
  // content is `fn`. Returns the match.
  PrefixMatch RunPrompt(uint64_t id, const std::vector<uint64_t>& hashes, const KvFn& fn,
                        int tokens, const std::string& tenant = "acme") {
    EXPECT_OK(Open(id, tenant));
    StatusOr<PrefixMatch> m = Lookup(id, hashes);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return {};
    EXPECT_OK(PrefillAll(id, fn, m->matched_tokens, tokens - m->matched_tokens));
    return *m;
  }
};

TEST_F(KvStorePrefixTest, EmptyCacheMatchesNothing) {
  ASSERT_OK(Open(1));
  StatusOr<PrefixMatch> m = Lookup(1, Chain(1, 3));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->matched_blocks, 0);
  EXPECT_EQ(m->matched_tokens, 0);
  StatusOr<SequenceInfo> info = store_->GetSequence(1);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->prefix_hashes, 3);
}

TEST_F(KvStorePrefixTest, VisitPrefixEntriesListsEntriesHoldingBlocks) {
  const std::vector<uint64_t> hashes = Chain(700, 3);
  RunPrompt(1, hashes, SeededContent(700), 56);
  StatusOr<SequenceInfo> info = store_->GetSequence(1);
  ASSERT_TRUE(info.ok());
  // Sequence 2's lookup creates entries for its hashes, but nothing was written to them.
  ASSERT_OK(Open(2));
  ASSERT_TRUE(Lookup(2, Chain(701, 2)).ok());
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  store_->VisitPrefixEntries(
      [&seen](uint64_t scope, uint64_t hash) { seen.emplace_back(scope, hash); });
  std::sort(seen.begin(), seen.end());
  std::vector<std::pair<uint64_t, uint64_t>> expected;
  for (const uint64_t h : hashes) expected.emplace_back(info->scope, h);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(seen, expected);
  std::vector<uint64_t> ids = store_->SequenceIds();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<uint64_t>{1, 2}));
  ASSERT_OK(store_->CloseSequence(1));
  EXPECT_EQ(store_->SequenceIds(), std::vector<uint64_t>{2});
}

TEST_F(KvStorePrefixTest, ClosedPromptIsReusedFromTheCache) {
  const KvFn prompt = SeededContent(100);
  const std::vector<uint64_t> hashes = Chain(100, 3);
  EXPECT_EQ(RunPrompt(1, hashes, prompt, 56).matched_blocks, 0);  // 3 full blocks + 8 tokens
  ASSERT_OK(store_->CloseSequence(1));
  KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.private_blocks, 0);  // the partial tail was freed
  EXPECT_EQ(s.prefix_blocks, 3 * kPairsPerBlock);
  EXPECT_EQ(s.cached_blocks, 3 * kPairsPerBlock);
  ExpectBalanced();

  ASSERT_OK(Open(2));
  StatusOr<PrefixMatch> m = Lookup(2, hashes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 3);
  EXPECT_EQ(m->matched_tokens, 48);
  EXPECT_EQ(*store_->Length(2, 0), 48);
  EXPECT_EQ(*store_->Length(2, 1), 48);
  ExpectAll(2, prompt, 48);
  ASSERT_OK(PrefillAll(2, prompt, 48, 8));
  ExpectAll(2, prompt, 56);
  s = store_->Stats();
  EXPECT_EQ(s.cached_blocks, 0);
  EXPECT_EQ(s.prefix_hits, 3);
  ExpectBalanced();
}

TEST_F(KvStorePrefixTest, LongestPrefixStopsAtTheFirstDifference) {
  const KvFn prompt = SeededContent(101);
  RunPrompt(1, Chain(101, 4), prompt, 64);
  ASSERT_OK(store_->CloseSequence(1));
  // Same first two blocks, then a different continuation.
  std::vector<uint64_t> other = Chain(101, 2);
  const std::vector<uint64_t> tail = Chain(555, 2, other.back());
  other.insert(other.end(), tail.begin(), tail.end());
  ASSERT_OK(Open(2));
  StatusOr<PrefixMatch> m = Lookup(2, other);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 2);
  ExpectAll(2, prompt, 32);
}

TEST_F(KvStorePrefixTest, ShorterPromptMatchesOnlyItsBlocks) {
  RunPrompt(1, Chain(102, 4), SeededContent(102), 64);
  ASSERT_OK(Open(2));
  StatusOr<PrefixMatch> m = Lookup(2, Chain(102, 2));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 2);  // sequence 1 is still open: its sealed blocks are shared
}

TEST_F(KvStorePrefixTest, SameContentWrittenTwiceIsStoredOnce) {
  const KvFn prompt = SeededContent(103);
  const std::vector<uint64_t> hashes = Chain(103, 2);
  ASSERT_OK(Open(1));
  ASSERT_OK(Open(2));
  ASSERT_TRUE(Lookup(1, hashes).ok());
  ASSERT_TRUE(Lookup(2, hashes).ok());  // both miss: neither has written yet
  ASSERT_OK(PrefillAll(1, prompt, 0, 40));
  ASSERT_OK(PrefillAll(2, prompt, 0, 40));
  const KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.dedupe_hits, 2 * kPairsPerBlock);
  EXPECT_EQ(s.prefix_blocks, 2 * kPairsPerBlock);
  EXPECT_EQ(s.shared_blocks, 2 * kPairsPerBlock);
  EXPECT_EQ(s.private_blocks, 2 * kPairsPerBlock);  // each sequence's partial tail block
  EXPECT_EQ(s.k.used_blocks, 4 * kPairsPerBlock);
  for (int layer = 0; layer < 2; ++layer) {
    for (int h = 0; h < 2; ++h) {
      const std::vector<BlockView> a = Read(1, layer, h);
      const std::vector<BlockView> b = Read(2, layer, h);
      ASSERT_EQ(a.size(), 3u);
      ASSERT_EQ(b.size(), 3u);
      EXPECT_EQ(a[0].k, b[0].k);
      EXPECT_EQ(a[1].v, b[1].v);
      EXPECT_NE(a[2].k, b[2].k);  // partial blocks are never shared
    }
  }
  ExpectAll(1, prompt, 40);
  ExpectAll(2, prompt, 40);
  ExpectBalanced();
}

TEST_F(KvStorePrefixTest, ClosingOneSharerKeepsTheOthersBlocks) {
  const KvFn prompt = SeededContent(104);
  const std::vector<uint64_t> hashes = Chain(104, 2);
  RunPrompt(1, hashes, prompt, 32);
  EXPECT_EQ(RunPrompt(2, hashes, prompt, 40).matched_blocks, 2);
  EXPECT_EQ(store_->Stats().shared_blocks, 2 * kPairsPerBlock);
  ASSERT_OK(store_->CloseSequence(1));
  KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.shared_blocks, 0);
  EXPECT_EQ(s.cached_blocks, 0);  // still pinned by sequence 2
  EXPECT_EQ(s.prefix_blocks, 2 * kPairsPerBlock);
  ExpectAll(2, prompt, 40);
  ASSERT_OK(store_->CloseSequence(2));
  s = store_->Stats();
  EXPECT_EQ(s.cached_blocks, 2 * kPairsPerBlock);
  EXPECT_EQ(s.k.used_blocks, 2 * kPairsPerBlock);
  ExpectBalanced();
}

TEST_F(KvStorePrefixTest, DecodeBlocksPastThePromptAreNeverShared) {
  const KvFn fn = SeededContent(105);
  const std::vector<uint64_t> hashes = Chain(105, 1);
  RunPrompt(1, hashes, fn, 16);
  ASSERT_OK(TokensAll(1, fn, 16, 16, DType::kFloat32));  // fills block 1, not a prompt block
  ASSERT_OK(store_->CloseSequence(1));
  const KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.prefix_blocks, kPairsPerBlock);
  EXPECT_EQ(s.k.used_blocks, kPairsPerBlock);
}

TEST_F(KvStorePrefixTest, PromptBlocksFilledByTokenAppendsAreShared) {
  const KvFn fn = SeededContent(106);
  const std::vector<uint64_t> hashes = Chain(106, 2);
  ASSERT_OK(Open(1));
  ASSERT_TRUE(Lookup(1, hashes).ok());
  ASSERT_OK(TokensAll(1, fn, 0, 7, DType::kFloat16));
  ASSERT_OK(TokensAll(1, fn, 7, 30, DType::kFloat32));
  ASSERT_OK(store_->CloseSequence(1));
  ASSERT_OK(Open(2));
  StatusOr<PrefixMatch> m = Lookup(2, hashes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 2);
  ExpectAll(2, fn, 32);
}

TEST_F(KvStorePrefixTest, IncompleteEntriesAreFreedOnClose) {
  const KvFn fn = SeededContent(107);
  ASSERT_OK(Open(1));
  ASSERT_TRUE(Lookup(1, Chain(107, 2)).ok());
  KvTensors c = BlockChunk(fn, 0, 0, 32, 0, 2, 16, spec_.head_dim, spec_.dtype);
  ASSERT_OK(store_->AppendPrefill(1, 0, c.k.view(), c.v.view(), 32));  // layer 1 never written
  EXPECT_EQ(store_->Stats().prefix_blocks, 4);
  ASSERT_OK(store_->CloseSequence(1));
  const KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.prefix_blocks, 0);
  EXPECT_EQ(s.prefix_entries, 0);
  EXPECT_EQ(s.k.used_blocks, 0);
  ExpectBalanced();
}

TEST_F(KvStorePrefixTest, HeadShardsShareWithFullSequences) {
  const KvFn fn = SeededContent(108);
  const std::vector<uint64_t> hashes = Chain(108, 2);
  RunPrompt(1, hashes, fn, 32);
  ASSERT_OK(store_->CloseSequence(1));
  ASSERT_OK(Open(2, "acme", 1, 2));
  StatusOr<PrefixMatch> m = Lookup(2, hashes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 2);
  ExpectAll(2, fn, 32, 1, 2);
  // A shard alone does not complete the other head's slots for a full-range lookup.
  ASSERT_OK(Open(3, "acme", 0, 1));
  const std::vector<uint64_t> fresh = Chain(1108, 1);
  ASSERT_TRUE(Lookup(3, fresh).ok());
  ASSERT_OK(PrefillAll(3, fn, 0, 16, 0, 1));
  ASSERT_OK(Open(4));
  m = Lookup(4, fresh);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 0);
}

TEST_F(KvStorePrefixTest, TenantsNeverShare) {
  const KvFn fn = SeededContent(109);
  const std::vector<uint64_t> hashes = Chain(109, 2);
  RunPrompt(1, hashes, fn, 32, "tenant-a");
  ASSERT_OK(store_->CloseSequence(1));
  ASSERT_OK(Open(2, "tenant-b"));
  StatusOr<PrefixMatch> m = Lookup(2, hashes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 0);
  // Even writing the same hashes side by side stores two copies.
  const KvFn other = SeededContent(9109);
  ASSERT_OK(PrefillAll(2, other, 0, 32));
  EXPECT_EQ(store_->Stats().dedupe_hits, 0);
  EXPECT_EQ(store_->Stats().prefix_blocks, 4 * kPairsPerBlock);
  ASSERT_OK(Open(3, "tenant-a"));
  m = Lookup(3, hashes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 2);
  ExpectAll(3, fn, 32);
  ExpectAll(2, other, 32);
}

TEST_F(KvStorePrefixTest, ModelFingerprintsNeverShare) {
  const std::vector<uint64_t> hashes = Chain(110, 1);
  ASSERT_OK(store_->OpenSequence({.id = 1, .tenant = "t", .spec = spec_, .model_fingerprint = 5}));
  ASSERT_TRUE(Lookup(1, hashes).ok());
  ASSERT_OK(PrefillAll(1, SeededContent(110), 0, 16));
  ASSERT_OK(store_->OpenSequence({.id = 2, .tenant = "t", .spec = spec_, .model_fingerprint = 6}));
  StatusOr<PrefixMatch> m = Lookup(2, hashes);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 0);
}

class KvStoreEvictionTest : public KvStorePrefixTest {
 protected:
  void SetUp() override { MakeStore(int64_t{4} * kPairsPerBlock); }  // room for 4 prompt blocks
};

TEST_F(KvStoreEvictionTest, LaterChainBlocksAreEvictedFirst) {
  RunPrompt(1, Chain(200, 4), SeededContent(200), 64);
  ASSERT_OK(store_->CloseSequence(1));
  EXPECT_EQ(store_->Stats().cached_blocks, 4 * kPairsPerBlock);
  ASSERT_OK(Open(2));
  ASSERT_OK(PrefillAll(2, SeededContent(201), 0, 16));  // needs one block's worth
  KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.evicted_blocks, kPairsPerBlock);
  ASSERT_OK(store_->CloseSequence(2));
  ASSERT_OK(Open(3));
  StatusOr<PrefixMatch> m = Lookup(3, Chain(200, 4));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->matched_blocks, 3);
  ExpectAll(3, SeededContent(200), 48);
  ExpectBalanced();
}

TEST_F(KvStoreEvictionTest, LeastRecentlyReleasedChainGoesFirst) {
  RunPrompt(1, Chain(300, 2), SeededContent(300), 32);
  RunPrompt(2, Chain(301, 2), SeededContent(301), 32);
  ASSERT_OK(store_->CloseSequence(1));
  ASSERT_OK(store_->CloseSequence(2));
  ASSERT_OK(Open(3));
  ASSERT_OK(PrefillAll(3, SeededContent(302), 0, 32));  // two blocks' worth: chain 300 goes
  EXPECT_EQ(store_->Stats().evictions, 2);
  ASSERT_OK(store_->CloseSequence(3));
  ASSERT_OK(Open(4));
  ASSERT_OK(Open(5));
  EXPECT_EQ(Lookup(4, Chain(300, 2))->matched_blocks, 0);
  EXPECT_EQ(Lookup(5, Chain(301, 2))->matched_blocks, 2);
}

TEST_F(KvStoreEvictionTest, ReuseMakesAChainRecent) {
  RunPrompt(1, Chain(400, 2), SeededContent(400), 32);
  RunPrompt(2, Chain(401, 2), SeededContent(401), 32);
  ASSERT_OK(store_->CloseSequence(1));
  ASSERT_OK(store_->CloseSequence(2));
  // Reusing chain 400 moves it behind chain 401 in the LRU order.
  EXPECT_EQ(RunPrompt(3, Chain(400, 2), SeededContent(400), 32).matched_blocks, 2);
  ASSERT_OK(store_->CloseSequence(3));
  ASSERT_OK(Open(4));
  ASSERT_OK(PrefillAll(4, SeededContent(402), 0, 32));
  ASSERT_OK(store_->CloseSequence(4));
  ASSERT_OK(Open(5));
  ASSERT_OK(Open(6));
  EXPECT_EQ(Lookup(5, Chain(400, 2))->matched_blocks, 2);
  EXPECT_EQ(Lookup(6, Chain(401, 2))->matched_blocks, 0);
}

TEST_F(KvStoreEvictionTest, PinnedEntriesAreNeverEvicted) {
  RunPrompt(1, Chain(500, 2), SeededContent(500), 32);  // open: pins 2 blocks' worth
  RunPrompt(2, Chain(501, 2), SeededContent(501), 32);
  ASSERT_OK(store_->CloseSequence(2));
  ASSERT_OK(Open(3));
  const Status s = PrefillAll(3, SeededContent(502), 0, 48);  // 3 blocks' worth: too many
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  ExpectAll(1, SeededContent(500), 32);
  ExpectBalanced();
}

}  // namespace
}  // namespace attic::kv_test
