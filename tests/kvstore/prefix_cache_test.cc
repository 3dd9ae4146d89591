// PrefixCache on its own: pinning, publishing (store, dedupe, conflict), unpinning into the
// LRU, eviction order, incomplete heads, shape collisions and the block figures.
#include "kvstore/internal/prefix_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/hash.h"

namespace attic::kv_internal {
namespace {

constexpr size_t kBytes = 256;

class PrefixCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    k_ = std::move(BlockPool::Create(PoolKind::kKey, kBytes, 64, &alloc_, false)).value();
    v_ = std::move(BlockPool::Create(PoolKind::kValue, kBytes, 64, &alloc_, false)).value();
    cache_ = std::make_unique<PrefixCache>(k_.get(), v_.get());
  }

  // A sealed private pair whose bytes are all `fill`.
  BlockRef Sealed(int fill) {
    std::vector<BlockId> ks;
    std::vector<BlockId> vs;
    EXPECT_TRUE(k_->TryAllocate(1, &ks));
    EXPECT_TRUE(v_->TryAllocate(1, &vs));
    std::memset(k_->block(ks[0]), fill, kBytes);
    std::memset(v_->block(vs[0]), fill + 1, kBytes);
    return BlockRef{.k = ks[0],
                    .v = vs[0],
                    .k_crc = Crc32c(k_->block(ks[0]), kBytes),
                    .v_crc = Crc32c(v_->block(vs[0]), kBytes)};
  }

  // Two layers, two heads; the asking sequence holds heads [head_begin, head_end).
  ChainRequest Request(const std::vector<uint64_t>& hashes, int head_begin = 0, int head_end = 2,
                       uint64_t scope = 1) {
    return ChainRequest{.scope = scope,
                        .num_layers = 2,
                        .num_kv_heads = 2,
                        .head_begin = head_begin,
                        .head_end = head_end,
                        .block_bytes = kBytes,
                        .hashes = hashes};
  }

  // Publishes a block filled with `fill` in every (layer, head) of [head_begin, head_end)
  // of entry `e` (chain index `index`). Returns the outcomes.
  std::vector<PublishItem> Fill(PrefixEntry* e, int index, int fill, int head_begin = 0,
                                int head_end = 2, int layers = 2) {
    std::vector<PublishItem> items;
    for (int layer = 0; layer < layers; ++layer) {
      for (int h = head_begin; h < head_end; ++h) {
        items.push_back(PublishItem{
            .entry = e, .layer = layer, .kv_head = h, .block_index = index, .ref = Sealed(fill)});
      }
    }
    cache_->Publish(items);
    return items;
  }

  MmapSlabAllocator alloc_;
  std::unique_ptr<BlockPool> k_;
  std::unique_ptr<BlockPool> v_;
  std::unique_ptr<PrefixCache> cache_;
};

TEST_F(PrefixCacheTest, PublishedChainIsMatchedAfterUnpin) {
  const std::vector<uint64_t> hashes = {11, 12};
  PinResult pin = cache_->PinChain(Request(hashes));
  EXPECT_EQ(pin.matched_blocks, 0);
  ASSERT_EQ(pin.entries.size(), 2u);
  for (const PublishItem& item : Fill(pin.entries[0], 0, 1)) {
    EXPECT_EQ(item.outcome, PublishOutcome::kStored);
    EXPECT_TRUE(item.ref.shared);
  }
  Fill(pin.entries[1], 1, 3);
  cache_->Unpin(pin.entries);
  PrefixCacheStats s = cache_->Stats();
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.blocks, 8);
  EXPECT_EQ(s.cached_blocks, 8);

  PinResult again = cache_->PinChain(Request(hashes));
  EXPECT_EQ(again.matched_blocks, 2);
  ASSERT_EQ(again.matched.size(), 8u);  // [block][layer][head]
  EXPECT_EQ(static_cast<int>(k_->block(again.matched[0].k)[0]), 1);
  EXPECT_EQ(static_cast<int>(k_->block(again.matched[7].k)[0]), 3);
  for (const BlockRef& r : again.matched) EXPECT_TRUE(r.shared);
  s = cache_->Stats();
  EXPECT_EQ(s.cached_blocks, 0);
  EXPECT_EQ(s.prefix_hits, 2);
  cache_->Unpin(again.entries);
}

TEST_F(PrefixCacheTest, SecondWriterOfTheSameBytesIsDeduped) {
  const std::vector<uint64_t> hashes = {21};
  PinResult a = cache_->PinChain(Request(hashes));
  PinResult b = cache_->PinChain(Request(hashes));
  EXPECT_EQ(cache_->Stats().shared_blocks, 0);  // nothing stored yet
  const std::vector<PublishItem> first = Fill(a.entries[0], 0, 5);
  EXPECT_EQ(cache_->Stats().shared_blocks, 4);
  const int64_t used = k_->used_blocks();
  const std::vector<PublishItem> second = Fill(b.entries[0], 0, 5);
  for (size_t i = 0; i < second.size(); ++i) {
    EXPECT_EQ(second[i].outcome, PublishOutcome::kDeduped);
    EXPECT_EQ(second[i].ref.k, first[i].ref.k);
    EXPECT_EQ(second[i].ref.v, first[i].ref.v);
  }
  EXPECT_EQ(k_->used_blocks(), used);  // the second copies went back to the pool
  EXPECT_EQ(v_->used_blocks(), used);
  EXPECT_EQ(cache_->Stats().dedupe_hits, 4);
  cache_->Unpin(a.entries);
  cache_->Unpin(b.entries);
}

TEST_F(PrefixCacheTest, DifferentBytesUnderOneHashStayPrivate) {
  const std::vector<uint64_t> hashes = {31};
  PinResult a = cache_->PinChain(Request(hashes));
  Fill(a.entries[0], 0, 5);
  const std::vector<PublishItem> other = Fill(a.entries[0], 0, 6);
  for (const PublishItem& item : other) {
    EXPECT_EQ(item.outcome, PublishOutcome::kConflict);
    EXPECT_FALSE(item.ref.shared);
    EXPECT_EQ(static_cast<int>(k_->block(item.ref.k)[0]), 6);
  }
  EXPECT_EQ(cache_->Stats().dedupe_conflicts, 4);
  cache_->Unpin(a.entries);
}

TEST_F(PrefixCacheTest, EvictionTakesLaterChainBlocksAndOlderChainsFirst) {
  const std::vector<uint64_t> x = {41, 42, 43};
  const std::vector<uint64_t> y = {51};
  PinResult px = cache_->PinChain(Request(x));
  PinResult py = cache_->PinChain(Request(y));
  for (int i = 0; i < 3; ++i) Fill(px.entries[static_cast<size_t>(i)], i, 10 + i);
  Fill(py.entries[0], 0, 20);
  cache_->Unpin(px.entries);
  cache_->Unpin(py.entries);
  auto matched = [&](const std::vector<uint64_t>& h) {
    PinResult p = cache_->PinChain(Request(h));
    const int m = p.matched_blocks;
    cache_->Unpin(p.entries);
    return m;
  };
  ASSERT_TRUE(cache_->EvictOne());
  EXPECT_EQ(cache_->Stats().evicted_blocks, 4);
  // Probing re-inserts the probed chain at the back, so probe y (not x) to keep x oldest.
  EXPECT_EQ(matched(y), 1);
  ASSERT_TRUE(cache_->EvictOne());
  ASSERT_TRUE(cache_->EvictOne());
  EXPECT_EQ(matched(y), 1);  // x went first, block by block from its end
  EXPECT_EQ(matched(x), 0);
  ASSERT_TRUE(cache_->EvictOne());
  EXPECT_FALSE(cache_->EvictOne());
  EXPECT_EQ(cache_->Stats().entries, 0);
  EXPECT_EQ(k_->used_blocks(), 0);
  EXPECT_EQ(v_->used_blocks(), 0);
}

TEST_F(PrefixCacheTest, PinnedEntriesAreNotEvictable) {
  const std::vector<uint64_t> hashes = {61};
  PinResult p = cache_->PinChain(Request(hashes));
  Fill(p.entries[0], 0, 1);
  EXPECT_FALSE(cache_->EvictOne());
  cache_->Unpin(p.entries);
  EXPECT_TRUE(cache_->EvictOne());
}

TEST_F(PrefixCacheTest, HeadsMissingALayerAreDroppedWhenUnpinned) {
  const std::vector<uint64_t> hashes = {71};
  PinResult p = cache_->PinChain(Request(hashes));
  Fill(p.entries[0], 0, 1, 0, 1, 2);  // head 0: both layers
  Fill(p.entries[0], 0, 2, 1, 2, 1);  // head 1: layer 0 only
  EXPECT_EQ(cache_->Stats().blocks, 3);
  cache_->Unpin(p.entries);
  EXPECT_EQ(cache_->Stats().blocks, 2);
  EXPECT_EQ(k_->used_blocks(), 2);
  PinResult head0 = cache_->PinChain(Request(hashes, 0, 1));
  EXPECT_EQ(head0.matched_blocks, 1);
  PinResult both = cache_->PinChain(Request(hashes, 0, 2));
  EXPECT_EQ(both.matched_blocks, 0);
  cache_->Unpin(head0.entries);
  cache_->Unpin(both.entries);
}

TEST_F(PrefixCacheTest, EmptyEntriesVanishWhenUnpinned) {
  const std::vector<uint64_t> hashes = {81, 82};
  PinResult p = cache_->PinChain(Request(hashes));
  EXPECT_EQ(cache_->Stats().entries, 2);
  cache_->Unpin(p.entries);
  EXPECT_EQ(cache_->Stats().entries, 0);
}

TEST_F(PrefixCacheTest, ScopesAreSeparateAndShapeCollisionsAreNotShared) {
  const std::vector<uint64_t> hashes = {91};
  PinResult p = cache_->PinChain(Request(hashes, 0, 2, /*scope=*/1));
  Fill(p.entries[0], 0, 1);
  PinResult other_scope = cache_->PinChain(Request(hashes, 0, 2, /*scope=*/2));
  EXPECT_EQ(other_scope.matched_blocks, 0);
  ChainRequest odd = Request(hashes);
  odd.num_layers = 3;  // same scope and hash, different shape: a fingerprint collision
  PinResult collided = cache_->PinChain(odd);
  EXPECT_EQ(collided.matched_blocks, 0);
  ASSERT_EQ(collided.entries.size(), 1u);
  EXPECT_EQ(collided.entries[0], nullptr);
  cache_->Unpin(collided.entries);
  cache_->Unpin(other_scope.entries);
  cache_->Unpin(p.entries);
  EXPECT_EQ(cache_->Stats().entries, 1);
}

TEST_F(PrefixCacheTest, VerifyFindsACorruptedCachedBlock) {
  const std::vector<uint64_t> hashes = {101};
  PinResult p = cache_->PinChain(Request(hashes));
  const std::vector<PublishItem> items = Fill(p.entries[0], 0, 1);
  cache_->Unpin(p.entries);
  EXPECT_TRUE(cache_->Verify().ok());
  k_->block(items[3].ref.k)[17] = std::byte{0xff};
  const Status s = cache_->Verify();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("layer 1 kv head 1: K block"), std::string_view::npos) << s;
}

TEST_F(PrefixCacheTest, DestructionReturnsEveryBlock) {
  const std::vector<uint64_t> hashes = {111, 112};
  PinResult p = cache_->PinChain(Request(hashes));
  Fill(p.entries[0], 0, 1);
  Fill(p.entries[1], 1, 2);
  cache_->Unpin(p.entries);
  EXPECT_EQ(k_->used_blocks(), 8);
  cache_.reset();
  EXPECT_EQ(k_->used_blocks(), 0);
  EXPECT_EQ(v_->used_blocks(), 0);
  EXPECT_EQ(k_->bad_frees(), 0);
}

}  // namespace
}  // namespace attic::kv_internal
