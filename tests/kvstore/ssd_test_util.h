// Helpers shared by the SSD tier tests: a scratch directory removed afterwards, blocks of
// deterministic pseudo-random bytes, and batch builders.
//
//   ScratchDir dir;                                     // under $TMPDIR or /tmp
//   ASSERT_OK_AND_ASSIGN(auto tier, SsdTier::Open({.path = dir.path()}));
//   std::vector<std::byte> block = BlockBytes(/*seed=*/7, 16384);
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/hash.h"
#include "common/status.h"
#include "kvstore/ssd/ssd_tier.h"

#define SSD_ASSERT_OK(expr)                                   \
  do {                                                        \
    const ::attic::Status& assert_ok_status_ = (expr);        \
    ASSERT_TRUE(assert_ok_status_.ok()) << assert_ok_status_; \
  } while (false)
#define SSD_EXPECT_OK(expr)                                   \
  do {                                                        \
    const ::attic::Status& expect_ok_status_ = (expr);        \
    EXPECT_TRUE(expect_ok_status_.ok()) << expect_ok_status_; \
  } while (false)

namespace attic::ssd_test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction
// (kept, for reading RocksDB's LOG, when ATTIC_SSD_TEST_KEEP is set).
class ScratchDir {
 public:
  ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/attic-ssd-test-XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (path_.empty() || std::getenv("ATTIC_SSD_TEST_KEEP") != nullptr) return;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // The RocksDB directory inside (created by the tier).
  std::string db() const { return path_ + "/db"; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// n pseudo-random bytes, a pure function of (seed, n).
inline std::vector<std::byte> BlockBytes(uint64_t seed, size_t n) {
  std::vector<std::byte> out(n);
  uint64_t x = Hash64(&seed, sizeof(seed), n);
  for (size_t i = 0; i < n; i += 8) {
    x = HashCombine(x, i);
    for (size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = static_cast<std::byte>(x >> (8 * j));
  }
  return out;
}

// Blocks kept alive for a batch that points at them.
struct BlockSet {
  std::vector<std::string> keys;
  std::vector<std::vector<std::byte>> bytes;

  void Add(std::string key, uint64_t seed, size_t n) {
    keys.push_back(std::move(key));
    bytes.push_back(BlockBytes(seed, n));
  }
  void Append(const BlockSet& other) {
    keys.insert(keys.end(), other.keys.begin(), other.keys.end());
    bytes.insert(bytes.end(), other.bytes.begin(), other.bytes.end());
  }
  TierBatch Batch() const {
    TierBatch b;
    for (size_t i = 0; i < keys.size(); ++i)
      b.blocks.push_back({.key = keys[i], .bytes = bytes[i]});
    return b;
  }
};

// The private V blocks [0, n) of (seq, layer 0, head 0), each `bytes` long.
inline BlockSet SequenceBlocks(uint64_t seq, int n, size_t bytes) {
  BlockSet set;
  for (int b = 0; b < n; ++b) {
    set.Add(PrivateBlockKey(seq, 0, 0, b, BlockKind::kValue), seq * 1000 + b, bytes);
  }
  return set;
}

// K and V of blocks [0, n) of every (layer, head) stream of a sequence, each `bytes` long: a
// batch shaped like the store's prefill write-through, spread over the tier's block shards.
inline BlockSet StreamBlocks(uint64_t seq, int layers, int heads, int n, size_t bytes) {
  BlockSet set;
  for (int l = 0; l < layers; ++l) {
    for (int h = 0; h < heads; ++h) {
      for (int b = 0; b < n; ++b) {
        for (BlockKind kind : {BlockKind::kKey, BlockKind::kValue}) {
          const uint64_t seed = ((seq * 64 + l) * 64 + h) * 4096 + b * 2 + static_cast<int>(kind);
          set.Add(PrivateBlockKey(seq, l, h, b, kind), seed, bytes);
        }
      }
    }
  }
  return set;
}

// Reads every block of the set back and compares it.
inline void ExpectReadsBack(SsdTier& tier, const BlockSet& set) {
  for (size_t i = 0; i < set.keys.size(); ++i) {
    std::vector<std::byte> got(set.bytes[i].size());
    const Status s = tier.ReadBlock(set.keys[i], got);
    ASSERT_TRUE(s.ok()) << DescribeTierKey(set.keys[i]) << ": " << s;
    EXPECT_TRUE(got == set.bytes[i]) << DescribeTierKey(set.keys[i]);
  }
}

}  // namespace attic::ssd_test
