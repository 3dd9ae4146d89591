// The randomized model test at length: more seeds, longer runs, larger and tighter pools
// (labelled `slow`; run with `ctest -L slow`).
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <tuple>

#include "tests/kvstore/kv_store_model.h"

namespace attic::kv_test {
namespace {

struct SlowRun {
  int64_t pool_blocks;
  int max_open;
};

void PrintTo(const SlowRun& run, std::ostream* os) {
  *os << run.pool_blocks << " blocks, " << run.max_open << " open";
}

std::string RunName(const ::testing::TestParamInfo<std::tuple<uint64_t, SlowRun>>& p) {
  const SlowRun& run = std::get<1>(p.param);
  return "Seed" + std::to_string(std::get<0>(p.param)) + "Pool" + std::to_string(run.pool_blocks) +
         "Open" + std::to_string(run.max_open);
}

class KvStoreModelSlowTest : public ::testing::TestWithParam<std::tuple<uint64_t, SlowRun>> {};

TEST_P(KvStoreModelSlowTest, LongRandomRunsAgreeWithTheModel) {
  const auto [seed, run] = GetParam();
  StoreModel model({.seed = seed,
                    .steps = 30000,
                    .pool_blocks = run.pool_blocks,
                    .max_open = run.max_open,
                    .check_every = 100});
  model.Run();
  EXPECT_GT(model.figures().matched_blocks, 0);
  EXPECT_GT(model.figures().reads, 1000);
}

INSTANTIATE_TEST_SUITE_P(Seeds, KvStoreModelSlowTest,
                         ::testing::Combine(::testing::Range<uint64_t>(100, 108),
                                            ::testing::Values(SlowRun{96, 4}, SlowRun{400, 12})),
                         RunName);

}  // namespace
}  // namespace attic::kv_test
