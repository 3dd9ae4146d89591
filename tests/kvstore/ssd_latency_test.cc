// SsdTier against a slow disk (FaultInjector::SetLatency) and its parallel block reads: the
// latency fault's argument checks and effect, ReadBlocks keeping many reads in flight (the
// injector counts them) with every block read back right, and per-key answers in key order
// when some keys are missing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "kvstore/ssd/ssd_tier.h"
#include "tests/kvstore/ssd_test_util.h"

namespace attic::ssd_test {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

constexpr size_t kBlock = 16384;

class SsdLatencyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "no scratch directory"; }
  void Open(int read_threads) {
    tier_.reset();
    auto tier = SsdTier::Open({.path = dir_.db(),
                               .block_cache_bytes = size_t{8} << 20,
                               .write_buffer_bytes = size_t{16} << 20,
                               .read_threads = read_threads,
                               .faults = &faults_});
    ASSERT_TRUE(tier.ok()) << tier.status();
    tier_ = std::move(*tier);
  }
  // Reads keys in one ReadBlocks call; the bytes and per-key statuses come back.
  Status ReadAll(std::span<const std::string> keys, std::vector<std::vector<std::byte>>* bufs,
                 std::vector<Status>* statuses) {
    bufs->assign(keys.size(), std::vector<std::byte>(kBlock));
    std::vector<std::span<std::byte>> dsts(bufs->begin(), bufs->end());
    return tier_->ReadBlocks(keys, dsts, statuses);
  }

  FaultInjector faults_;
  ScratchDir dir_;
  std::unique_ptr<SsdTier> tier_;
};

TEST_F(SsdLatencyTest, SetLatencyRefusesNegativeAndHugeDelays) {
  const Status negative = faults_.SetLatency(microseconds(-1), {});
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument) << negative;
  EXPECT_THAT(std::string(negative.message()), HasSubstr("read -1 us"));
  const Status huge = faults_.SetLatency({}, FaultInjector::kMaxLatency + microseconds(1));
  EXPECT_EQ(huge.code(), StatusCode::kInvalidArgument) << huge;
  SSD_EXPECT_OK(faults_.SetLatency(FaultInjector::kMaxLatency, {}));
  SSD_EXPECT_OK(faults_.SetLatency({}, {}));
}

TEST_F(SsdLatencyTest, DelayedReadsAndWritesStillReturnTheRightBytes) {
  Open(16);
  SSD_ASSERT_OK(faults_.SetLatency(milliseconds(1), milliseconds(1)));
  const uint64_t before = faults_.delayed();
  const BlockSet small = SequenceBlocks(1, 8, kBlock);  // through the WAL
  SSD_ASSERT_OK(tier_->Write(small.Batch()));
  const BlockSet large = StreamBlocks(2, 2, 2, 40, kBlock);  // flushed
  SSD_ASSERT_OK(tier_->Write(large.Batch()));
  EXPECT_GT(faults_.delayed(), before) << "writes were not delayed";
  const uint64_t written = faults_.delayed();
  ExpectReadsBack(*tier_, small);
  ExpectReadsBack(*tier_, large);
  EXPECT_GT(faults_.delayed(), written) << "reads were not delayed";
  EXPECT_EQ(faults_.injected(), 0u) << "a delay is not a failure";

  SSD_ASSERT_OK(faults_.SetLatency({}, {}));
  const uint64_t off = faults_.delayed();
  ExpectReadsBack(*tier_, small);
  EXPECT_EQ(faults_.delayed(), off);
}

TEST_F(SsdLatencyTest, ReadBlocksKeepsManyReadsInFlight) {
  Open(16);
  const BlockSet set = StreamBlocks(3, 4, 4, 16, kBlock);  // 512 blocks
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  // Every 16th block: scattered, as a sparse step's selection is.
  std::vector<std::string> keys;
  std::vector<size_t> index;
  for (size_t i = 0; i < set.keys.size(); i += 16) {
    keys.push_back(set.keys[i]);
    index.push_back(i);
  }
  ASSERT_EQ(keys.size(), 32u);
  SSD_ASSERT_OK(faults_.SetLatency(milliseconds(20), {}));
  faults_.ResetPeakReadsInFlight();
  std::vector<std::vector<std::byte>> bufs;
  std::vector<Status> statuses;
  SSD_ASSERT_OK(ReadAll(keys, &bufs, &statuses));
  EXPECT_GE(faults_.peak_reads_in_flight(), 8);
  for (size_t j = 0; j < keys.size(); ++j) {
    SSD_EXPECT_OK(statuses[j]);
    EXPECT_TRUE(bufs[j] == set.bytes[index[j]]) << DescribeTierKey(keys[j]);
  }
}

TEST_F(SsdLatencyTest, OneReadThreadReadsAlone) {
  Open(1);
  const BlockSet set = StreamBlocks(4, 2, 2, 16, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  SSD_ASSERT_OK(tier_->Flush());
  SSD_ASSERT_OK(faults_.SetLatency(milliseconds(2), {}));
  faults_.ResetPeakReadsInFlight();
  std::vector<std::vector<std::byte>> bufs;
  std::vector<Status> statuses;
  SSD_ASSERT_OK(ReadAll(std::span(set.keys).first(24), &bufs, &statuses));
  // RocksDB's own background work (a compaction) may read beside the caller, never 8 at once.
  EXPECT_LT(faults_.peak_reads_in_flight(), 8);
  for (size_t j = 0; j < 24; ++j) EXPECT_TRUE(bufs[j] == set.bytes[j]);
}

TEST_F(SsdLatencyTest, MissingKeysAnswerInKeyOrder) {
  Open(16);
  const BlockSet set = SequenceBlocks(5, 40, kBlock);
  SSD_ASSERT_OK(tier_->Write(set.Batch()));
  std::vector<std::string> keys(set.keys.begin(), set.keys.end());
  keys[7] = PrivateBlockKey(99, 0, 0, 7, BlockKind::kValue);
  keys[30] = PrivateBlockKey(99, 0, 0, 30, BlockKind::kValue);
  std::vector<std::vector<std::byte>> bufs;
  std::vector<Status> statuses;
  const Status first = ReadAll(keys, &bufs, &statuses);
  EXPECT_EQ(first.code(), StatusCode::kNotFound) << first;
  EXPECT_THAT(std::string(first.message()), HasSubstr("seq 99 layer 0 head 0 block 7 "));
  ASSERT_EQ(statuses.size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i == 7 || i == 30) {
      EXPECT_EQ(statuses[i].code(), StatusCode::kNotFound) << i;
      continue;
    }
    SSD_EXPECT_OK(statuses[i]);
    EXPECT_TRUE(bufs[i] == set.bytes[i]) << i;
  }
}

TEST_F(SsdLatencyTest, ReadThreadsOutOfRangeAreInvalidArgument) {
  for (int bad : {-1, 257}) {
    auto tier = SsdTier::Open({.path = dir_.db(), .read_threads = bad});
    ASSERT_FALSE(tier.ok());
    EXPECT_EQ(tier.status().code(), StatusCode::kInvalidArgument) << tier.status();
    EXPECT_THAT(std::string(tier.status().message()), HasSubstr("read_threads"));
  }
}

}  // namespace
}  // namespace attic::ssd_test
