// KvStore's basic data path: opening sequences, the three append paths, reads, lengths,
// sequence info, memory regions and allocator hooks.
#include "kvstore/kv_store.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kvstore/slab_allocator.h"
#include "tests/kvstore/kv_test_util.h"

namespace attic::kv_test {
namespace {

using KvStoreTest = StoreTest;

TEST_F(KvStoreTest, PrefillThenReadEveryLayerAndHead) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(11);
  ASSERT_OK(PrefillAll(1, fn, 0, 40));  // 2 full blocks and a partial one
  ExpectAll(1, fn, 40);
  const std::vector<BlockView> views = Read(1, 1, 1);
  ASSERT_EQ(views.size(), 3u);
  EXPECT_EQ(views[0].num_tokens, 16);
  EXPECT_EQ(views[2].num_tokens, 8);
  StatusOr<int> len = store_->Length(1, 0);
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, 40);
  ExpectBalanced();
}

TEST_F(KvStoreTest, PrefillChunksFollowEachOther) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(12);
  ASSERT_OK(PrefillAll(1, fn, 0, 32));
  ASSERT_OK(PrefillAll(1, fn, 32, 16));
  ASSERT_OK(PrefillAll(1, fn, 48, 3));
  ExpectAll(1, fn, 51);
}

TEST_F(KvStoreTest, AppendTokensConvertsEveryDtypeAndFillsTheTailFirst) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(13);
  int len = 0;
  for (DType dt : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat32}) {
    for (int n : {5, 11, 16, 23}) {
      ASSERT_OK(TokensAll(1, fn, len, n, dt));
      len += n;
    }
  }
  ExpectAll(1, fn, len);
  ExpectBalanced();
}

TEST_F(KvStoreTest, DecodeTokensAfterPrefill) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(14);
  ASSERT_OK(PrefillAll(1, fn, 0, 20));
  const DType dtypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
  for (int t = 20; t < 50; ++t) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      KvTensors r = DecodeRow(fn, layer, t, 0, 2, spec_.head_dim, dtypes[t % 3]);
      ASSERT_OK(store_->AppendDecodeToken(1, layer, r.k.view(), r.v.view()));
    }
  }
  ExpectAll(1, fn, 50);
  ExpectBalanced();
}

TEST_F(KvStoreTest, StridedTokenRowsAreAccepted) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(15);
  // [n, heads, D] taken from a [heads, n, D] buffer: token stride D, head stride n * D.
  const int n = 7;
  KvTensors r = TokenRows(fn, 0, 0, n, 0, 2, spec_.head_dim, DType::kFloat32);
  std::vector<float> k_t(static_cast<size_t>(2 * n * spec_.head_dim));
  std::vector<float> v_t(k_t.size());
  const auto* k_src = reinterpret_cast<const float*>(r.k.bytes.data());
  const auto* v_src = reinterpret_cast<const float*>(r.v.bytes.data());
  const int d = spec_.head_dim;
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < d; ++j) {
        const size_t dst = static_cast<size_t>(h * n + t) * d + j;
        const size_t src = static_cast<size_t>(t * 2 + h) * d + j;
        k_t[dst] = k_src[src];
        v_t[dst] = v_src[src];
      }
    }
  }
  const int64_t head_stride = int64_t{n} * d;
  const TensorView k(k_t.data(), DType::kFloat32, {n, 2, d}, {d, head_stride, 1});
  const TensorView v(v_t.data(), DType::kFloat32, {n, 2, d}, {d, head_stride, 1});
  ASSERT_OK(store_->AppendTokens(1, 0, k, v));
  ExpectHolds(*store_, 1, 0, 0, fn, n, spec_);
  ExpectHolds(*store_, 1, 0, 1, fn, n, spec_);
}

TEST_F(KvStoreTest, LayersGrowIndependently) {
  ASSERT_OK(Open(1));
  const KvFn fn = SeededContent(16);
  KvTensors c = BlockChunk(fn, 1, 0, 17, 0, 2, 16, spec_.head_dim, spec_.dtype);
  ASSERT_OK(store_->AppendPrefill(1, 1, c.k.view(), c.v.view(), 17));
  StatusOr<SequenceInfo> info = store_->GetSequence(1);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->layer_lengths, (std::vector<int>{0, 17}));
  EXPECT_TRUE(Read(1, 0, 0).empty());
  ExpectHolds(*store_, 1, 1, 0, fn, 17, spec_);
}

TEST_F(KvStoreTest, GetSequenceReportsWhatWasOpened) {
  ASSERT_OK(store_->OpenSequence(
      {.id = 9, .tenant = "acme", .spec = spec_, .model_fingerprint = 77, .kv_head_begin = 1}));
  StatusOr<SequenceInfo> info = store_->GetSequence(9);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id, 9u);
  EXPECT_EQ(info->tenant, "acme");
  EXPECT_EQ(info->spec, spec_);
  EXPECT_EQ(info->model_fingerprint, 77u);
  EXPECT_EQ(info->scope, ScopeFingerprint("acme", 77, spec_));
  EXPECT_EQ(info->kv_head_begin, 1);
  EXPECT_EQ(info->kv_head_end, 2);
  EXPECT_EQ(info->layer_lengths, (std::vector<int>{0, 0}));
}

TEST_F(KvStoreTest, HeadShardHoldsOnlyItsHeads) {
  ASSERT_OK(Open(1, "acme", 1, 2));
  const KvFn fn = SeededContent(17);
  ASSERT_OK(PrefillAll(1, fn, 0, 20, /*head_begin=*/1, /*heads=*/1));
  ExpectAll(1, fn, 20, 1, 2);
  std::vector<BlockView> views;
  EXPECT_EQ(store_->ReadBlocks(1, 0, 0, &views).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Stats().k.used_blocks, 4);  // 2 layers x 1 head x 2 blocks
}

TEST_F(KvStoreTest, CloseFreesPrivateBlocksAndIdCanBeReused) {
  ASSERT_OK(Open(1));
  ASSERT_OK(PrefillAll(1, SeededContent(18), 0, 40));
  EXPECT_EQ(store_->Stats().k.used_blocks, 12);
  ASSERT_OK(store_->CloseSequence(1));
  KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.k.used_blocks, 0);
  EXPECT_EQ(s.v.used_blocks, 0);
  EXPECT_EQ(s.sequences, 0);
  ASSERT_OK(Open(1));
  EXPECT_EQ(store_->Stats().sequences, 1);
  ExpectBalanced();
}

TEST_F(KvStoreTest, StatsReportBytesPerPool) {
  ASSERT_OK(Open(1));
  ASSERT_OK(PrefillAll(1, SeededContent(19), 0, 16));
  const KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.k.kind, PoolKind::kKey);
  EXPECT_EQ(s.v.kind, PoolKind::kValue);
  EXPECT_EQ(s.k.capacity_blocks, 256);
  EXPECT_EQ(s.k.used_blocks, 4);
  EXPECT_EQ(s.k.free_blocks, 252);
  EXPECT_EQ(s.k.block_bytes, 1024u);
  EXPECT_EQ(s.k.capacity_bytes, 256u * 1024u);
  EXPECT_EQ(s.v.used_bytes, 4u * 1024u);
  EXPECT_EQ(s.private_blocks, 4);
  EXPECT_EQ(s.sequences, 1);
}

TEST_F(KvStoreTest, MemoryRegionsCoverEveryBlockView) {
  const std::vector<MemoryRegion> regions = store_->memory_regions();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].kind, PoolKind::kKey);
  EXPECT_EQ(regions[1].kind, PoolKind::kValue);
  for (const MemoryRegion& r : regions) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.base) % PageSize(), 0u);
    EXPECT_GE(r.bytes, 256u * 1024u);
    EXPECT_EQ(r.bytes % PageSize(), 0u);
  }
  ASSERT_OK(Open(1));
  ASSERT_OK(PrefillAll(1, SeededContent(20), 0, 48));
  auto inside = [](const std::byte* p, const MemoryRegion& r) {
    const auto* base = static_cast<const std::byte*>(r.base);
    return p >= base && p + 1024 <= base + r.bytes;
  };
  for (const BlockView& b : Read(1, 1, 0)) {
    EXPECT_TRUE(inside(b.k, regions[0]));
    EXPECT_TRUE(inside(b.v, regions[1]));
  }
}

// Counts calls and hands out mmap memory, as a transport with pre-registered memory would.
class CountingAllocator : public SlabAllocator {
 public:
  StatusOr<void*> Allocate(size_t bytes) override {
    ++allocations;
    if (fail) return ResourceExhaustedError("counting allocator: out of registered memory");
    return inner_.Allocate(bytes);
  }
  void Deallocate(void* p, size_t bytes) override {
    ++deallocations;
    inner_.Deallocate(p, bytes);
  }
  int allocations = 0;
  int deallocations = 0;
  bool fail = false;

 private:
  MmapSlabAllocator inner_;
};

TEST(KvStoreAllocatorTest, CustomAllocatorProvidesBothSlabs) {
  CountingAllocator alloc;
  {
    KvStoreOptions o;
    o.allocator = &alloc;
    o.populate = true;
    o.k_pool_blocks = 64;
    o.v_pool_blocks = 32;
    StatusOr<std::unique_ptr<KvStore>> store = KvStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(alloc.allocations, 2);
    const std::vector<MemoryRegion> r = (*store)->memory_regions();
    EXPECT_EQ(r[0].bytes, 64u * 16384u);
    EXPECT_EQ(r[1].bytes, 32u * 16384u);
  }
  EXPECT_EQ(alloc.deallocations, 2);
}

TEST(KvStoreAllocatorTest, AllocatorFailureFailsOpen) {
  CountingAllocator alloc;
  alloc.fail = true;
  KvStoreOptions o;
  o.allocator = &alloc;
  StatusOr<std::unique_ptr<KvStore>> store = KvStore::Open(o);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(store.status().message().find("registered memory"), std::string_view::npos);
}

TEST(KvStoreAllocatorTest, DefaultAllocatorWithPopulate) {
  KvStoreOptions o;
  o.populate = true;
  o.k_pool_blocks = 16;
  o.v_pool_blocks = 16;
  StatusOr<std::unique_ptr<KvStore>> store = KvStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->Stats().k.capacity_bytes, 16u * 16384u);
}

TEST(KvStoreOptionsTest, BadOptionsAreInvalidArgument) {
  KvStoreOptions o;
  o.k_pool_blocks = 0;
  EXPECT_EQ(KvStore::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = KvStoreOptions{};
  o.v_pool_blocks = -5;
  EXPECT_EQ(KvStore::Open(o).status().code(), StatusCode::kInvalidArgument);
  o = KvStoreOptions{};
  o.block_bytes = 0;
  EXPECT_EQ(KvStore::Open(o).status().code(), StatusCode::kInvalidArgument);
}

TEST(ScopeFingerprintTest, DependsOnTenantModelAndSpec) {
  const ModelSpec spec = SmallSpec();
  const uint64_t base = ScopeFingerprint("acme", 0, spec);
  EXPECT_EQ(base, ScopeFingerprint("acme", spec.Fingerprint(), spec));
  EXPECT_NE(base, ScopeFingerprint("acme2", 0, spec));
  EXPECT_NE(base, ScopeFingerprint("acme", 1234, spec));
  EXPECT_NE(base, ScopeFingerprint("acme", 0, SmallSpec(DType::kFloat16)));
  EXPECT_NE(ScopeFingerprint("", 0, spec), ScopeFingerprint("a", 0, spec));
}

}  // namespace
}  // namespace attic::kv_test
