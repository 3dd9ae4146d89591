// KvStore under concurrent use: threads appending to their own sequences that share one prompt
// (so they race on the same prefix entries), readers of other sequences, closes, and a thread
// taking Stats and Verify all along. Meant to run under ThreadSanitizer too.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "kvstore/kv_store.h"
#include "tests/kvstore/kv_test_util.h"

namespace attic::kv_test {
namespace {

constexpr int kPromptBlocks = 4;
constexpr int kPromptTokens = kPromptBlocks * 16 + 8;
constexpr int kDecodeTokens = 12;

// Shared prompt blocks, then tokens unique to the sequence.
KvFn SequenceContent(uint64_t id) {
  const KvFn prompt = SeededContent(7);
  const KvFn own = SeededContent(1000 + id);
  return [=](int layer, int t, int h, int d, bool v) {
    return t < kPromptBlocks * 16 ? prompt(layer, t, h, d, v) : own(layer, t, h, d, v);
  };
}

class KvStoreConcurrencyTest : public StoreTest {
 protected:
  void SetUp() override { MakeStore(4096); }

  // One request's life: open, look up, prefill the rest, decode, read everything back, close.
  void Request(uint64_t id, bool close) {
    const KvFn fn = SequenceContent(id);
    ASSERT_OK(Open(id, "shared"));
    StatusOr<PrefixMatch> m = store_->LookupPrefix(id, Chain(7, kPromptBlocks));
    ASSERT_TRUE(m.ok()) << m.status();
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      const int t0 = m->matched_tokens;
      KvTensors c = BlockChunk(fn, layer, t0, kPromptTokens - t0, 0, 2, 16, 32, spec_.dtype);
      ASSERT_OK(store_->AppendPrefill(id, layer, c.k.view(), c.v.view(), kPromptTokens - t0));
    }
    for (int t = kPromptTokens; t < kPromptTokens + kDecodeTokens; ++t) {
      for (int layer = 0; layer < spec_.num_layers; ++layer) {
        KvTensors r = DecodeRow(fn, layer, t, 0, 2, 32, DType::kFloat32);
        ASSERT_OK(store_->AppendDecodeToken(id, layer, r.k.view(), r.v.view()));
      }
    }
    ExpectAll(id, fn, kPromptTokens + kDecodeTokens);
    if (close) ASSERT_OK(store_->CloseSequence(id));
  }
};

TEST_F(KvStoreConcurrencyTest, RequestsSharingAPromptRunInParallel) {
  constexpr int kThreads = 4;
  constexpr int kRequests = 25;
  std::atomic<bool> done{false};
  std::thread checker([&] {
    while (!done.load()) {
      EXPECT_OK(store_->Verify());
      const KvStoreStats s = store_->Stats();
      EXPECT_LE(s.k.used_blocks, s.k.capacity_blocks);
      EXPECT_EQ(s.dedupe_conflicts, 0);
    }
  });
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([this, w] {
      for (int i = 0; i < kRequests; ++i)
        Request(static_cast<uint64_t>(w) * 1000 + static_cast<uint64_t>(i), true);
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  checker.join();
  const KvStoreStats s = store_->Stats();
  EXPECT_EQ(s.sequences, 0);
  EXPECT_EQ(s.private_blocks, 0);
  EXPECT_EQ(s.prefix_blocks, kPromptBlocks * 4);  // one copy of the prompt: 4 pairs per block
  EXPECT_EQ(s.cached_blocks, s.prefix_blocks);
  EXPECT_GT(s.prefix_hits, 0);
  ExpectBalanced();
}

TEST_F(KvStoreConcurrencyTest, ReadersAndClosersOfOtherSequencesDoNotInterfere) {
  // Long-lived sequences that readers scan while writers open, fill and close others.
  for (uint64_t id = 1; id <= 3; ++id) Request(id, false);
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  readers.reserve(3);
  for (uint64_t id = 1; id <= 3; ++id) {
    readers.emplace_back([&, id] {
      while (!done.load()) ExpectAll(id, SequenceContent(id), kPromptTokens + kDecodeTokens);
    });
  }
  std::vector<std::thread> writers;
  writers.reserve(2);
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([this, w] {
      for (int i = 0; i < 20; ++i)
        Request(100 + static_cast<uint64_t>(w) * 100 + static_cast<uint64_t>(i), true);
    });
  }
  for (std::thread& t : writers) t.join();
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(store_->Stats().sequences, 3);
  EXPECT_EQ(store_->Stats().shared_blocks, kPromptBlocks * 4);
  ExpectBalanced();
}

TEST_F(KvStoreConcurrencyTest, RacingOpensAndClosesOfOneIdResolveCleanly) {
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (Open(42).ok()) ++opened;
        const Status s = store_->CloseSequence(42);
        if (s.ok()) {
          ++closed;
        } else {
          EXPECT_EQ(s.code(), StatusCode::kNotFound) << s;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(opened.load(), closed.load());
  EXPECT_GT(opened.load(), 0);
  EXPECT_EQ(store_->Stats().sequences, 0);
}

}  // namespace
}  // namespace attic::kv_test
