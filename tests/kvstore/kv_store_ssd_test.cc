// The KV store with its SSD tier, against a real RocksDB directory: write-through, spilling
// values while keys stay, reloads (streamed and resident), restart recovery, the prefix cache
// found again on SSD, corruption and disk-full paths, and a randomized model of all of it.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/kv_store.h"
#include "tests/kvstore/kv_test_util.h"
#include "tests/kvstore/ssd_test_util.h"

namespace attic::kv_test {
namespace {

using ssd_test::ScratchDir;

class SsdStoreTest : public ::testing::Test {
 protected:
  // 4 KiB blocks (B = 16, D = 128, bf16) so that spilling really gives pages back.
  ModelSpec spec_{.name = "tiny-ssd",
                  .num_layers = 2,
                  .num_q_heads = 4,
                  .num_kv_heads = 2,
                  .head_dim = 128,
                  .dtype = DType::kBFloat16,
                  .block_size = 16};

  void OpenStore(int64_t value_dram_blocks = 0, FaultInjector* faults = nullptr) {
    store_.reset();
    KvStoreOptions o;
    o.block_bytes = spec_.block_bytes();
    o.k_pool_blocks = 512;
    o.v_pool_blocks = 512;
    o.ssd.path = dir_.db();
    o.ssd.faults = faults;
    o.ssd.block_cache_bytes = size_t{4} << 20;
    o.ssd.write_buffer_bytes = size_t{8} << 20;
    o.ssd.flush_bytes = size_t{256} << 10;
    o.value_dram_blocks = value_dram_blocks;
    StatusOr<std::unique_ptr<KvStore>> s = KvStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(s).value();
  }

  // One request's worth of the worker's upkeep: a tick of the use clock, then Maintain.
  MaintainStats Tick() {
    store_->TickValueClock();
    return store_->Maintain();
  }

  Status Open(uint64_t id, const std::string& tenant = "acme") {
    return store_->OpenSequence({.id = id, .tenant = tenant, .spec = spec_});
  }

  Status Prefill(uint64_t id, const KvFn& fn, int t0, int n) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      KvTensors c = BlockChunk(fn, layer, t0, n, 0, 2, spec_.block_size, spec_.head_dim,
                               spec_.dtype);
      RETURN_IF_ERROR(store_->AppendPrefill(id, layer, c.k.view(), c.v.view(), n));
    }
    return OkStatus();
  }

  Status Decode(uint64_t id, const KvFn& fn, int t) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      KvTensors r = DecodeRow(fn, layer, t, 0, 2, spec_.head_dim, DType::kFloat32);
      RETURN_IF_ERROR(store_->AppendDecodeToken(id, layer, r.k.view(), r.v.view()));
    }
    return OkStatus();
  }

  // Reads every block of (layer, head) with spilled values streamed into buffers, and checks
  // the bytes against fn.
  std::string Check(uint64_t id, int layer, int head, const KvFn& fn, int len) {
    std::vector<BlockView> views;
    Status s = store_->ReadBlocks(id, layer, head, &views);
    if (!s.ok()) return s.ToString();
    std::vector<int> spilled;
    for (size_t b = 0; b < views.size(); ++b) {
      if (views[b].v == nullptr) spilled.push_back(static_cast<int>(b));
    }
    std::vector<std::vector<std::byte>> bufs(spilled.size(),
                                             std::vector<std::byte>(spec_.block_bytes()));
    std::vector<std::byte*> dst;
    for (auto& b : bufs) dst.push_back(b.data());
    s = store_->LoadValues(id, layer, head, spilled, dst);
    if (!s.ok()) return s.ToString();
    for (size_t i = 0; i < spilled.size(); ++i) {
      views[static_cast<size_t>(spilled[i])].v = bufs[i].data();
    }
    return CompareViews(views, fn, layer, head, len, spec_);
  }

  void ExpectAll(uint64_t id, const KvFn& fn, int len) {
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      for (int h = 0; h < 2; ++h) {
        EXPECT_EQ(Check(id, layer, h, fn, len), "") << "seq " << id << " layer " << layer
                                                    << " head " << h;
      }
    }
  }

  int SpilledViews(uint64_t id, int layer, int head) {
    std::vector<BlockView> views;
    EXPECT_OK(store_->ReadBlocks(id, layer, head, &views));
    int n = 0;
    for (const BlockView& v : views) n += v.v == nullptr ? 1 : 0;
    return n;
  }

  ScratchDir dir_;
  FaultInjector faults_;  // outlives the store that may use it
  std::unique_ptr<KvStore> store_;
};

TEST_F(SsdStoreTest, PrefillIsDurableAtOnce) {
  OpenStore();
  const KvFn fn = SeededContent(1);
  ASSERT_OK(Open(1));
  ASSERT_OK(Prefill(1, fn, 0, 100));
  StatusOr<SequenceInfo> info = store_->GetSequence(1);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->durable_lengths, (std::vector<int>{100, 100}));
  EXPECT_GT(store_->Stats().tier.block_bytes_written, 0u);
}

TEST_F(SsdStoreTest, DecodeTokensAreDurableAtEachBlockSeal) {
  OpenStore();
  const KvFn fn = SeededContent(2);
  ASSERT_OK(Open(1));
  ASSERT_OK(Prefill(1, fn, 0, 32));
  for (int t = 32; t < 40; ++t) ASSERT_OK(Decode(1, fn, t));
  EXPECT_EQ(store_->GetSequence(1)->durable_lengths[0], 32);
  for (int t = 40; t < 48; ++t) ASSERT_OK(Decode(1, fn, t));
  EXPECT_EQ(store_->GetSequence(1)->durable_lengths[0], 48);
  EXPECT_EQ(store_->GetSequence(1)->durable_lengths[1], 48);
}

TEST_F(SsdStoreTest, ValuesSpillKeysStayAndReloadsGiveTheSameBytes) {
  OpenStore(/*value_dram_blocks=*/16);
  const KvFn fn = SeededContent(3);
  ASSERT_OK(Open(1));
  ASSERT_OK(Prefill(1, fn, 0, 16 * 40));  // 40 blocks per (layer, head): 160 V blocks
  const MaintainStats m = store_->Maintain();
  EXPECT_OK(m.durability);
  EXPECT_GT(m.spilled_blocks, 0);
  const KvStoreStats s = store_->Stats();
  EXPECT_LE(s.v_resident_blocks, 16);
  EXPECT_EQ(s.v_resident_blocks + s.v_spilled_blocks, s.v.used_blocks);
  EXPECT_GT(SpilledViews(1, 0, 0), 0);
  // Keys never spill: every view has its K.
  std::vector<BlockView> views;
  ASSERT_OK(store_->ReadBlocks(1, 1, 1, &views));
  for (const BlockView& v : views) EXPECT_NE(v.k, nullptr);
  ExpectAll(1, fn, 16 * 40);
  ASSERT_OK(store_->Verify());

  // FetchValues makes them resident again, with the same bytes.
  std::vector<int> all(40);
  for (int b = 0; b < 40; ++b) all[static_cast<size_t>(b)] = b;
  std::vector<const std::byte*> values;
  FetchStats fs;
  ASSERT_OK(store_->FetchValues(1, 0, 1, all, &values, &fs));
  EXPECT_GT(fs.blocks_read, 0);
  EXPECT_EQ(fs.blocks_read + fs.blocks_resident, 40);
  EXPECT_EQ(SpilledViews(1, 0, 1), 0);
  EXPECT_EQ(Check(1, 0, 1, fn, 16 * 40), "");
  // Decode continues on a partly spilled sequence.
  for (int t = 640; t < 660; ++t) ASSERT_OK(Decode(1, fn, t));
  store_->Maintain();
  ExpectAll(1, fn, 660);
}

TEST_F(SsdStoreTest, LeastRecentlyUsedValuesSpillFirst) {
  // Budget 40 V blocks: Maintain spills above 36 down to 30. Each Tick() is one tick of the use
  // clock, as one request is in the worker.
  OpenStore(/*value_dram_blocks=*/40);
  const KvFn fn = SeededContent(4);
  ASSERT_OK(Open(1));
  ASSERT_OK(Prefill(1, fn, 0, 16 * 20));  // 80 V blocks, used at tick 1
  Tick();                      // 30 left
  ASSERT_OK(Open(2));
  ASSERT_OK(Prefill(2, fn, 0, 16 * 2));  // 8 blocks at tick 2
  Tick();                     // 38 -> 30: only tick-1 blocks go
  std::vector<const std::byte*> values;
  ASSERT_OK(store_->FetchValues(1, 0, 0, std::vector<int>{0, 1, 2, 3, 4}, &values));  // tick 3
  Tick();
  ASSERT_OK(Open(3));
  ASSERT_OK(Prefill(3, fn, 0, 16 * 2));  // 8 more at tick 4: about 43 resident
  const MaintainStats m = Tick();
  EXPECT_GT(m.spilled_blocks, 0);
  EXPECT_EQ(SpilledViews(2, 0, 0) + SpilledViews(2, 1, 1), 0);  // tick 2 outlives tick 1
  std::vector<BlockView> views;
  ASSERT_OK(store_->ReadBlocks(1, 0, 0, &views));
  for (int b = 0; b < 5; ++b) EXPECT_NE(views[static_cast<size_t>(b)].v, nullptr) << b;
}

TEST_F(SsdStoreTest, RestartRecoversSequencesAndTheyContinue) {
  OpenStore(/*value_dram_blocks=*/32);
  const KvFn fn = SeededContent(5);
  ASSERT_OK(Open(7));
  ASSERT_OK(Prefill(7, fn, 0, 100));
  for (int t = 100; t < 130; ++t) ASSERT_OK(Decode(7, fn, t));  // sealed at 112 and 128
  ASSERT_OK(Open(8));
  ASSERT_OK(Prefill(8, fn, 0, 20));
  store_->Maintain();
  OpenStore(/*value_dram_blocks=*/32);  // a new process on the same directory
  EXPECT_EQ(store_->RecoveredSequences(), (std::vector<uint64_t>{7, 8}));
  StatusOr<SequenceInfo> info = store_->GetSequence(7);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->recovered);
  EXPECT_EQ(info->layer_lengths, (std::vector<int>{128, 128}));
  ExpectAll(7, fn, 128);
  ExpectAll(8, fn, 20);
  // Re-send what was lost and continue; a second restart keeps it all.
  for (int t = 128; t < 150; ++t) ASSERT_OK(Decode(7, fn, t));
  for (int t = 20; t < 40; ++t) ASSERT_OK(Decode(8, fn, t));
  ExpectAll(7, fn, 150);
  OpenStore(/*value_dram_blocks=*/32);
  ExpectAll(7, fn, 144);
  ExpectAll(8, fn, 32);
  ASSERT_OK(store_->Verify());
  // Closing deletes it on SSD too.
  ASSERT_OK(store_->CloseSequence(8));
  OpenStore();
  EXPECT_EQ(store_->RecoveredSequences(), (std::vector<uint64_t>{7}));
}

TEST_F(SsdStoreTest, SamplesAreKeptWithTheSequence) {
  OpenStore();
  ASSERT_OK(Open(3));
  ASSERT_OK(Prefill(3, SeededContent(6), 0, 32));
  ASSERT_OK(store_->StoreSample(3, 1, "sample-of-layer-1"));
  OpenStore();
  auto samples = store_->LoadSamples(3);
  ASSERT_TRUE(samples.ok()) << samples.status();
  ASSERT_EQ(samples->size(), 1u);
  EXPECT_EQ((*samples)[0].first, 1);
  EXPECT_EQ((*samples)[0].second, "sample-of-layer-1");
}

TEST_F(SsdStoreTest, PrefixCacheIsFoundOnSsdAfterRestart) {
  OpenStore();
  const KvFn fn = SeededContent(8);
  const std::vector<uint64_t> hashes = Chain(11, 4);  // 4 prompt blocks = 64 tokens
  ASSERT_OK(Open(1));
  ASSERT_OK(store_->LookupPrefix(1, hashes).status());
  ASSERT_OK(Prefill(1, fn, 0, 70));
  ASSERT_OK(store_->CloseSequence(1));
  OpenStore();  // DRAM is empty: the entries are only on SSD now
  EXPECT_TRUE(store_->RecoveredSequences().empty());
  EXPECT_GE(store_->Stats().ssd_prefix_entries, 4);
  ASSERT_OK(Open(2));
  StatusOr<PrefixMatch> m = store_->LookupPrefix(2, hashes);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->matched_tokens, 64);
  EXPECT_EQ(store_->Stats().ssd_prefix_hits, 4);
  ExpectAll(2, fn, 64);
  // Another tenant gets nothing.
  ASSERT_OK(Open(3, "other"));
  EXPECT_EQ(store_->LookupPrefix(3, hashes)->matched_tokens, 0);
  // The matching sequence survives a restart with its shared blocks.
  ASSERT_OK(Prefill(2, fn, 64, 16));
  OpenStore();
  ExpectAll(2, fn, 80);
}

TEST_F(SsdStoreTest, CorruptedValueIsDataLossNeverWrongAttention) {
  FaultInjector& faults = faults_;
  OpenStore(/*value_dram_blocks=*/8, &faults);
  const KvFn fn = SeededContent(9);
  ASSERT_OK(Open(1));
  ASSERT_OK(Prefill(1, fn, 0, 16 * 30));
  store_->Maintain();
  ASSERT_GT(SpilledViews(1, 0, 0), 0);
  std::vector<BlockView> views;
  ASSERT_OK(store_->ReadBlocks(1, 0, 0, &views));
  int spilled = -1;
  for (size_t b = 0; b < views.size(); ++b) {
    if (views[b].v == nullptr) spilled = static_cast<int>(b);
  }
  faults.Set(FaultInjector::Fault::kCorruptReads);
  std::vector<const std::byte*> values;
  Status s = store_->FetchValues(1, 0, 0, std::vector<int>{spilled}, &values);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_NE(std::string(s.message()).find("layer 0"), std::string::npos) << s;
  std::vector<std::byte> buf(spec_.block_bytes());
  std::vector<std::byte*> dst{buf.data()};
  EXPECT_EQ(store_->LoadValues(1, 0, 0, std::vector<int>{spilled}, dst).code(),
            StatusCode::kDataLoss);
  faults.Set(FaultInjector::Fault::kNone);
  // Nothing was marked resident by the failed load: a clean read works.
  EXPECT_EQ(Check(1, 0, 0, fn, 16 * 30), "");
}

TEST_F(SsdStoreTest, DiskFullFailsThePrefillAndLosesNothing) {
  FaultInjector& faults = faults_;
  OpenStore(0, &faults);
  const KvFn fn = SeededContent(10);
  ASSERT_OK(Open(1));
  ASSERT_OK(Prefill(1, fn, 0, 32));
  faults.Set(FaultInjector::Fault::kNoSpace);
  KvTensors c = BlockChunk(fn, 0, 32, 32, 0, 2, spec_.block_size, spec_.head_dim, spec_.dtype);
  Status s = store_->AppendPrefill(1, 0, c.k.view(), c.v.view(), 32);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(*store_->Length(1, 0), 32);  // unchanged
  faults.Set(FaultInjector::Fault::kNone);
  ASSERT_OK(Prefill(1, fn, 32, 32));  // the disk is back: the same append works
  EXPECT_EQ(store_->GetSequence(1)->durable_lengths[0], 64);
  EXPECT_GE(store_->Stats().durability_errors, 1);
  OpenStore();
  ExpectAll(1, fn, 64);
}

TEST_F(SsdStoreTest, FailedDecodeWriteThroughIsRetriedByMaintain) {
  FaultInjector& faults = faults_;
  OpenStore(0, &faults);
  const KvFn fn = SeededContent(12);
  ASSERT_OK(Open(1));
  ASSERT_OK(Prefill(1, fn, 0, 16));
  faults.Set(FaultInjector::Fault::kIoError);
  for (int t = 16; t < 40; ++t) ASSERT_OK(Decode(1, fn, t));  // seals block 1 (and fails)
  EXPECT_EQ(store_->GetSequence(1)->durable_lengths[0], 16);
  EXPECT_GT(store_->Stats().pending_durable_blocks, 0);
  MaintainStats m = store_->Maintain();
  EXPECT_FALSE(m.durability.ok());
  faults.Set(FaultInjector::Fault::kNone);
  m = store_->Maintain();
  EXPECT_OK(m.durability);
  EXPECT_GT(m.durable_retries, 0);
  EXPECT_EQ(store_->Stats().pending_durable_blocks, 0);
  EXPECT_EQ(store_->GetSequence(1)->durable_lengths[0], 32);
  ExpectAll(1, fn, 40);
  OpenStore();
  ExpectAll(1, fn, 32);
}

// Sequences sharing a prompt share its value blocks: concurrent fetches of one spilled shared
// block load it once (the others wait for that load) and every thread sees the right bytes.
TEST_F(SsdStoreTest, ConcurrentFetchesOfSharedBlocks) {
  OpenStore(/*value_dram_blocks=*/8);
  const KvFn fn = SeededContent(13);
  const std::vector<uint64_t> hashes = Chain(21, 8);  // 128 tokens
  for (uint64_t id : {1u, 2u, 3u, 4u}) {
    ASSERT_OK(Open(id));
    ASSERT_OK(store_->LookupPrefix(id, hashes).status());
    ASSERT_OK(Prefill(id, fn, id == 1 ? 0 : 128, id == 1 ? 160 : 32));
  }
  store_->Maintain();
  ASSERT_GT(store_->Stats().v_spilled_blocks, 0);
  std::vector<std::thread> threads;
  std::vector<Status> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      const uint64_t id = 1 + static_cast<uint64_t>(i % 4);
      std::vector<const std::byte*> values;
      results[static_cast<size_t>(i)] =
          store_->FetchValues(id, i % 2, (i / 2) % 2, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7},
                              &values);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const Status& r : results) EXPECT_OK(r);
  EXPECT_LE(store_->Stats().reloaded_total, 32);  // 8 blocks x 2 layers x 2 heads, at most once
  for (uint64_t id : {1u, 2u, 3u, 4u}) ExpectAll(id, fn, 160);
}

// Random opens, prefills, decode tokens, closes, spills, reloads and restarts against a model
// of what every sequence holds and what is durable.
TEST_F(SsdStoreTest, RandomizedOperationsMatchTheModel) {
  OpenStore(/*value_dram_blocks=*/24);
  std::mt19937 rng(20261122);
  struct Model {
    KvFn fn;
    int length = 0;
    int durable = 0;
  };
  std::map<uint64_t, Model> model;
  uint64_t next_id = 1;
  for (int op = 0; op < 160; ++op) {
    const int what = static_cast<int>(rng() % 10);
    if (model.empty() || what == 0) {
      const uint64_t id = next_id++;
      ASSERT_OK(Open(id));
      model[id] = Model{SeededContent(100 + id)};
      continue;
    }
    auto it = model.begin();
    std::advance(it, static_cast<long>(rng() % model.size()));
    const uint64_t id = it->first;
    Model& m = it->second;
    const int b = spec_.block_size;
    if (what <= 3 && m.length % b == 0) {
      const int n = 1 + static_cast<int>(rng() % 40);
      ASSERT_OK(Prefill(id, m.fn, m.length, n));
      m.length += n;
      m.durable = m.length;
    } else if (what <= 6) {
      ASSERT_OK(Decode(id, m.fn, m.length));
      ++m.length;
      if (m.length % b == 0) m.durable = m.length;
    } else if (what == 7) {
      store_->Maintain();
    } else if (what == 8 && model.size() > 2) {
      ASSERT_OK(store_->CloseSequence(id));
      model.erase(it);
      continue;
    } else if (what == 9 && op % 3 == 0) {
      OpenStore(/*value_dram_blocks=*/24);  // restart: back to the durable lengths
      for (auto& [sid, sm] : model) sm.length = sm.durable;
      std::vector<uint64_t> want;
      for (const auto& [sid, sm] : model) {
        if (sm.durable > 0) want.push_back(sid);
      }
      std::vector<uint64_t> got = store_->RecoveredSequences();
      for (auto& [sid, sm] : model) {
        if (sm.durable == 0 && !store_->GetSequence(sid).ok()) ASSERT_OK(Open(sid));
      }
      EXPECT_EQ(got, want);
    }
    for (const auto& [sid, sm] : model) {
      ASSERT_EQ(*store_->Length(sid, 0), sm.length) << "seq " << sid << " op " << op;
      ASSERT_EQ(store_->GetSequence(sid)->durable_lengths[1], sm.durable) << "seq " << sid;
    }
  }
  for (const auto& [sid, sm] : model) ExpectAll(sid, sm.fn, sm.length);
  ASSERT_OK(store_->Verify());
  EXPECT_GT(store_->Stats().spilled_total, 0);
}

}  // namespace
}  // namespace attic::kv_test
