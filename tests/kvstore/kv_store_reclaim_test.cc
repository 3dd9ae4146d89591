// The SSD tier's capacity (KvStoreOptions::ssd_capacity_bytes), on a real RocksDB directory:
// prefix entries no open sequence pins are reclaimed least recently used first, a reclaimed
// entry is gone from lookups, VisitPrefixEntries and the disk (also across a restart),
// nothing an open sequence needs is ever reclaimed (its spilled values still read back), and
// a tier that cannot make room says it is full and refuses with ResourceExhausted until a
// sequence closes.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvstore/kv_store.h"
#include "tests/kvstore/kv_test_util.h"
#include "tests/kvstore/ssd_test_util.h"

namespace attic::kv_test {
namespace {

using ssd_test::ScratchDir;

// 4 KiB blocks (B = 16, D = 128, bf16), 2 layers, 2 KV heads: a prefix entry is 2 x 2 x 2 K
// and V blocks = 32 KiB; a 4-block prompt is 4 entries = 128 KiB.
constexpr uint64_t kEntryBytes = 8 * 4096;
constexpr int kPromptBlocks = 4;
constexpr int kPromptTokens = kPromptBlocks * 16;
constexpr uint64_t kPromptBytes = kPromptBlocks * kEntryBytes;

class ReclaimTest : public ::testing::Test {
 protected:
  ModelSpec spec_{.name = "tiny-reclaim",
                  .num_layers = 2,
                  .num_q_heads = 4,
                  .num_kv_heads = 2,
                  .head_dim = 128,
                  .dtype = DType::kBFloat16,
                  .block_size = 16};

  void OpenStore(uint64_t capacity, int64_t value_dram_blocks = 0) {
    store_.reset();
    KvStoreOptions o;
    o.block_bytes = spec_.block_bytes();
    o.k_pool_blocks = o.v_pool_blocks = 512;
    o.ssd.path = dir_.db();
    o.ssd.block_cache_bytes = size_t{4} << 20;
    o.ssd.write_buffer_bytes = size_t{8} << 20;
    o.ssd.flush_bytes = size_t{256} << 10;
    o.value_dram_blocks = value_dram_blocks;
    o.ssd_capacity_bytes = capacity;
    o.ssd_reclaim_watermark = 1.0;  // reclaim exactly what a write needs: easy to predict
    StatusOr<std::unique_ptr<KvStore>> s = KvStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(s).value();
  }

  // Opens `id`, looks `chain` up and prefills the rest of its prompt (16 tokens per hash)
  // plus `extra` tokens.
  Status Start(uint64_t id, const std::vector<uint64_t>& chain, int extra = 0) {
    RETURN_IF_ERROR(store_->OpenSequence({.id = id, .tenant = "acme", .spec = spec_}));
    ASSIGN_OR_RETURN(PrefixMatch m, store_->LookupPrefix(id, chain));
    const int n = static_cast<int>(chain.size()) * 16 + extra - m.matched_tokens;
    if (n == 0) return OkStatus();
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      KvTensors c = BlockChunk(fn_, layer, m.matched_tokens, n, 0, 2, spec_.block_size,
                               spec_.head_dim, spec_.dtype);
      RETURN_IF_ERROR(store_->AppendPrefill(id, layer, c.k.view(), c.v.view(), n));
    }
    return OkStatus();
  }

  // A sequence that leaves its prompt in the prefix cache and closes.
  void Cache(uint64_t id, const std::vector<uint64_t>& chain) {
    ASSERT_OK(Start(id, chain));
    ASSERT_OK(store_->CloseSequence(id));
  }

  // Blocks of chain a fresh sequence matches (it is closed again).
  int Matched(const std::vector<uint64_t>& chain) {
    const uint64_t id = next_probe_++;
    EXPECT_OK(store_->OpenSequence({.id = id, .tenant = "acme", .spec = spec_}));
    StatusOr<PrefixMatch> m = store_->LookupPrefix(id, chain);
    EXPECT_TRUE(m.ok()) << m.status();
    EXPECT_OK(store_->CloseSequence(id));
    return m.ok() ? m->matched_blocks : -1;
  }

  std::set<uint64_t> VisitedHashes() {
    std::set<uint64_t> out;
    store_->VisitPrefixEntries([&](uint64_t, uint64_t hash) { out.insert(hash); });
    return out;
  }

  // Every block of the sequence reads back as fn_ wrote it, spilled values streamed.
  void ExpectIntact(uint64_t id, int len) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      for (int h = 0; h < 2; ++h) {
        std::vector<BlockView> views;
        ASSERT_OK(store_->ReadBlocks(id, layer, h, &views));
        std::vector<int> spilled;
        for (size_t b = 0; b < views.size(); ++b) {
          if (views[b].v == nullptr) spilled.push_back(static_cast<int>(b));
        }
        std::vector<std::vector<std::byte>> bufs(spilled.size(),
                                                 std::vector<std::byte>(spec_.block_bytes()));
        std::vector<std::byte*> dst;
        for (auto& b : bufs) dst.push_back(b.data());
        ASSERT_OK(store_->LoadValues(id, layer, h, spilled, dst));
        for (size_t i = 0; i < spilled.size(); ++i) {
          views[static_cast<size_t>(spilled[i])].v = bufs[i].data();
        }
        EXPECT_EQ(CompareViews(views, fn_, layer, h, len, spec_), "")
            << "seq " << id << " layer " << layer << " head " << h;
      }
    }
  }

  const KvFn fn_ = SeededContent(21);
  ScratchDir dir_;
  std::unique_ptr<KvStore> store_;
  uint64_t next_probe_ = 1000;
};

TEST_F(ReclaimTest, LeastRecentlyUsedUnpinnedEntriesAreReclaimed) {
  OpenStore(3 * kPromptBytes);
  const std::vector<uint64_t> a = Chain(100, kPromptBlocks);
  const std::vector<uint64_t> b = Chain(200, kPromptBlocks);
  const std::vector<uint64_t> c = Chain(300, kPromptBlocks);
  Cache(1, a);
  Cache(2, b);
  Cache(3, c);
  EXPECT_EQ(store_->SsdCapacity().prefix_bytes, 3 * kPromptBytes);
  EXPECT_EQ(store_->SsdCapacity().reclaimed_entries, 0u);
  EXPECT_EQ(Matched(a), kPromptBlocks);  // a is now more recently used than b
  Cache(4, Chain(400, kPromptBlocks));   // needs all of b's room

  const SsdCapacityStats cap = store_->SsdCapacity();
  EXPECT_EQ(cap.reclaimed_entries, static_cast<uint64_t>(kPromptBlocks));
  EXPECT_EQ(cap.reclaimed_blocks, static_cast<uint64_t>(kPromptBlocks) * 8);
  EXPECT_EQ(cap.reclaimed_bytes, kPromptBytes);
  EXPECT_LE(cap.used_bytes, cap.capacity_bytes);
  EXPECT_FALSE(cap.full);
  EXPECT_EQ(store_->Stats().ssd_capacity.reclaimed_bytes, kPromptBytes);
  EXPECT_EQ(Matched(b), 0);
  EXPECT_EQ(Matched(a), kPromptBlocks);
  EXPECT_EQ(Matched(c), kPromptBlocks);
  const std::set<uint64_t> visited = VisitedHashes();
  for (uint64_t h : b) EXPECT_EQ(visited.count(h), 0u) << "reclaimed entry still visited";
  for (uint64_t h : a) EXPECT_EQ(visited.count(h), 1u);

  // Gone from the disk too: a restarted store neither knows nor finds b.
  OpenStore(3 * kPromptBytes);
  EXPECT_EQ(store_->Stats().ssd_prefix_entries, 3 * kPromptBlocks);
  EXPECT_EQ(store_->SsdCapacity().prefix_bytes, 3 * kPromptBytes);
  EXPECT_EQ(Matched(b), 0);
  EXPECT_EQ(Matched(a), kPromptBlocks);
}

TEST_F(ReclaimTest, LaterChainBlocksGoBeforeEarlierOnes) {
  OpenStore(2 * kPromptBytes);
  const std::vector<uint64_t> a = Chain(100, kPromptBlocks);
  Cache(1, a);
  Cache(2, Chain(200, kPromptBlocks));
  // Half of a prompt's room: the last two blocks of a go, its first two stay matchable.
  ASSERT_OK(Start(3, Chain(300, kPromptBlocks / 2)));
  EXPECT_EQ(store_->SsdCapacity().reclaimed_entries, 2u);
  ASSERT_OK(store_->CloseSequence(3));
  EXPECT_EQ(Matched(a), kPromptBlocks / 2);
}

TEST_F(ReclaimTest, NothingAnOpenSequenceNeedsIsReclaimed) {
  // One value block in DRAM: every value spills to SSD at Maintain, so the open sequences
  // depend on their SSD copies.
  // Room for both sequences (2 prompts, 2 x 8 private pairs) and 56 KiB more.
  const uint64_t capacity = 2 * kPromptBytes + 32 * 4096 + 14 * 4096;
  OpenStore(capacity, /*value_dram_blocks=*/1);
  const std::vector<uint64_t> a = Chain(100, kPromptBlocks);
  const std::vector<uint64_t> b = Chain(200, kPromptBlocks);
  ASSERT_OK(Start(1, a, /*extra=*/20));  // 4 shared blocks, 2 private ones per (layer, head)
  ASSERT_OK(Start(2, b, /*extra=*/20));
  ASSERT_OK(store_->Maintain().durability);
  EXPECT_GT(store_->Stats().v_spilled_blocks, 0);
  const uint64_t used = store_->SsdCapacity().used_bytes;
  EXPECT_EQ(used, 2 * kPromptBytes + 2 * 2 * 2 * 2 * 2 * 4096);

  // A third prompt does not fit and nothing is reclaimable: refused, and the tier says so.
  ASSERT_OK(store_->OpenSequence({.id = 3, .tenant = "acme", .spec = spec_}));
  ASSERT_OK(store_->LookupPrefix(3, Chain(300, kPromptBlocks)).status());
  KvTensors c = BlockChunk(fn_, 0, 0, kPromptTokens, 0, 2, 16, 128, spec_.dtype);
  const Status refused = store_->AppendPrefill(3, 0, c.k.view(), c.v.view(), kPromptTokens);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("SSD tier full"), std::string::npos) << refused;
  EXPECT_TRUE(store_->ssd_full());
  EXPECT_EQ(store_->SsdCapacity().reclaimed_entries, 0u);
  EXPECT_EQ(store_->SsdCapacity().full_refusals, 1);
  EXPECT_EQ(store_->SsdCapacity().used_bytes, used);
  (void)store_->Maintain();  // reports the refusal; spills what the reads reloaded
  ExpectIntact(1, kPromptTokens + 20);
  ExpectIntact(2, kPromptTokens + 20);

  // Sequence 2 closes: its private blocks go, its prompt becomes reclaimable, and the
  // third prompt fits by reclaiming part of it, never a block of sequence 1.
  ASSERT_OK(store_->CloseSequence(2));
  EXPECT_FALSE(store_->ssd_full());
  EXPECT_OK(store_->AppendPrefill(3, 0, c.k.view(), c.v.view(), kPromptTokens));
  EXPECT_GT(store_->SsdCapacity().reclaimed_entries, 0u);
  ASSERT_OK(store_->Maintain().durability);
  ExpectIntact(1, kPromptTokens + 20);
  EXPECT_EQ(Matched(a), kPromptBlocks);
  // Across a restart sequence 1 is recovered whole.
  ASSERT_OK(store_->CloseSequence(3));
  OpenStore(capacity, 1);
  ExpectIntact(1, kPromptTokens + 20);
}

TEST_F(ReclaimTest, EntriesAnOpenSequenceFoundOnSsdArePinned) {
  OpenStore(2 * kPromptBytes);
  const std::vector<uint64_t> a = Chain(100, kPromptBlocks);
  const std::vector<uint64_t> b = Chain(200, kPromptBlocks);
  Cache(1, a);
  OpenStore(2 * kPromptBytes);  // a is on SSD only now
  ASSERT_OK(Start(2, a));       // matched from SSD and pinned
  EXPECT_EQ(store_->Stats().ssd_prefix_hits, kPromptBlocks);
  Cache(3, b);
  // A third prompt needs a prompt's room: a is pinned by sequence 2, so b goes.
  ASSERT_OK(Start(4, Chain(300, kPromptBlocks)));
  EXPECT_EQ(store_->SsdCapacity().reclaimed_entries, static_cast<uint64_t>(kPromptBlocks));
  EXPECT_EQ(Matched(b), 0);
  EXPECT_EQ(Matched(a), kPromptBlocks);
  ExpectIntact(2, kPromptTokens);
  // Now only open sequences' entries are left: a fourth prompt is refused.
  const Status s = Start(5, Chain(400, kPromptBlocks));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(store_->ssd_full());
}

TEST_F(ReclaimTest, ConcurrentSequencesNeverLoseWhatTheyHold) {
  // Four threads open, check and close sequences over six shared chains, under a capacity of
  // three prompts: writes reclaim each other's closed prompts or are refused, and every open
  // sequence always reads back whole.
  OpenStore(3 * kPromptBytes + 32 * 4096);
  std::vector<std::vector<uint64_t>> chains;
  for (uint64_t c = 0; c < 6; ++c) chains.push_back(Chain(100 * (c + 1), kPromptBlocks));
  std::atomic<int> refused{0};
  std::atomic<int> checked{0};
  auto worker = [&](int t) {
    for (int i = 0; i < 12; ++i) {
      const auto id = static_cast<uint64_t>(t * 100 + i + 1);
      const Status s = Start(id, chains[static_cast<size_t>((t + i) % 6)], /*extra=*/4);
      if (s.code() == StatusCode::kResourceExhausted) {
        ++refused;
      } else {
        EXPECT_OK(s);
        if (s.ok()) {
          ExpectIntact(id, kPromptTokens + 4);
          ++checked;
        }
      }
      EXPECT_OK(store_->CloseSequence(id));
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t);
  for (std::thread& th : threads) th.join();
  EXPECT_GT(checked.load(), 0);
  const SsdCapacityStats cap = store_->SsdCapacity();
  EXPECT_LE(cap.used_bytes, cap.capacity_bytes);
  EXPECT_EQ(cap.private_bytes, 0u) << "every sequence closed";
  EXPECT_GT(cap.reclaimed_entries, 0u);
  EXPECT_OK(store_->Verify());
}

TEST_F(ReclaimTest, NoCapacityMeansNoReclaim) {
  OpenStore(0);
  for (uint64_t i = 0; i < 4; ++i) Cache(i + 1, Chain(100 * (i + 1), kPromptBlocks));
  const SsdCapacityStats cap = store_->SsdCapacity();
  EXPECT_EQ(cap.capacity_bytes, 0u);
  EXPECT_EQ(cap.prefix_bytes, 4 * kPromptBytes);
  EXPECT_EQ(cap.reclaimed_entries, 0u);
  EXPECT_FALSE(store_->ssd_full());
}

TEST_F(ReclaimTest, BadReclaimWatermarkIsInvalidArgument) {
  for (double bad : {0.0, -0.5, 1.5}) {
    KvStoreOptions o;
    o.block_bytes = spec_.block_bytes();
    o.ssd.path = dir_.db();
    o.ssd_capacity_bytes = 1 << 20;
    o.ssd_reclaim_watermark = bad;
    StatusOr<std::unique_ptr<KvStore>> s = KvStore::Open(o);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << s.status();
    EXPECT_NE(s.status().message().find("ssd_reclaim_watermark"), std::string::npos);
  }
}

}  // namespace
}  // namespace attic::kv_test
