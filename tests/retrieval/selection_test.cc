#include "attention_workers/retrieval/selection.h"

#include <gtest/gtest.h>

#include <vector>

namespace attic::retrieval {
namespace {

using V = std::vector<int32_t>;

TEST(BuildSelection, SinksWindowAndRetrievedDeduplicated) {
  const V retrieved = {50, 3, 97, 50, 20};
  const V sel = BuildSelection({.length = 100, .indexed = 100, .retrieved = retrieved},
                               {.sinks = 4, .window = 5});
  EXPECT_EQ(sel, (V{0, 1, 2, 3, 20, 50, 95, 96, 97, 98, 99}));
}

TEST(BuildSelection, UnfoldedKeysAreAlwaysSelected) {
  // Positions 80..99 are not indexed yet: all of them are part of the window.
  const V sel = BuildSelection({.length = 100, .indexed = 80, .retrieved = {}},
                               {.sinks = 2, .window = 4});
  V want = {0, 1};
  for (int32_t t = 80; t < 100; ++t) want.push_back(t);
  EXPECT_EQ(sel, want);
}

TEST(BuildSelection, ExcludeWindowLeavesTheLastWTokensToTheCaller) {
  const V retrieved = {10, 97, 60};
  const V sel = BuildSelection({.length = 100, .indexed = 90, .retrieved = retrieved},
                               {.sinks = 2, .window = 8, .exclude_window = true});
  // Window [92, 100) belongs to the caller; unfolded 90, 91 stay; retrieved 97 is dropped.
  EXPECT_EQ(sel, (V{0, 1, 10, 60, 90, 91}));
}

TEST(BuildSelection, ShortContexts) {
  EXPECT_EQ(BuildSelection({.length = 3, .indexed = 3, .retrieved = {}}, {.sinks = 4, .window = 2}),
            (V{0, 1, 2}));
  EXPECT_TRUE(BuildSelection({.length = 0, .indexed = 0, .retrieved = {}}, {}).empty());
  EXPECT_TRUE(BuildSelection({.length = 5, .indexed = 5, .retrieved = {}},
                             {.sinks = 4, .window = 8, .exclude_window = true})
                  .empty());
}

TEST(ValidateSelectionParams, NegativeValuesAreRefused) {
  EXPECT_TRUE(ValidateSelectionParams({}).ok());
  EXPECT_EQ(ValidateSelectionParams({.sinks = -1}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateSelectionParams({.top_k = -5}).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace attic::retrieval
