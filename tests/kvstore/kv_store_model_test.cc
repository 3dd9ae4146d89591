// The randomized model test, short enough for every build (see kv_store_model.h).
#include "tests/kvstore/kv_store_model.h"

#include <gtest/gtest.h>

namespace attic::kv_test {
namespace {

class KvStoreModelTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(KvStoreModelTest, RandomOperationsAgreeWithTheModel) {
  StoreModel model({.seed = GetParam(), .steps = 6000});
  model.Run();
  const ModelFigures& f = model.figures();
  // The run must have exercised the interesting paths, not just passed.
  EXPECT_GT(f.matched_blocks, 0);
  EXPECT_GT(f.dedupe_hits, 0);
  EXPECT_GT(f.evictions, 0);
  EXPECT_GT(f.exhausted, 0);
  EXPECT_GT(f.reads, 100);
}

INSTANTIATE_TEST_SUITE_P(Seeds, KvStoreModelTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace attic::kv_test
