#include "attention_workers/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace attic {
namespace {

TEST(ThreadPool, RunsEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool({.num_threads = threads});
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 3, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.ParallelFor(n, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, ManyBatchesAndConcurrentCallers) {
  ThreadPool pool({.num_threads = 3});
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int b = 0; b < 200; ++b) pool.ParallelFor(17, [&](int64_t i) { total += i; });
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 200 * (16 * 17 / 2));
}

TEST(ThreadPool, NestedAndOverlappingBatchesAllFinish) {
  // A request's batch may itself fan out, while other requests' batches are open.
  ThreadPool pool({.num_threads = 4});
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&] {
      for (int b = 0; b < 50; ++b) {
        pool.ParallelFor(5, [&](int64_t) {
          pool.ParallelFor(7, [&](int64_t i) { total += i; });
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 3 * 50 * 5 * 21);
}

TEST(ThreadPool, DefaultSizeIsCoreCount) {
  ThreadPool pool;
  EXPECT_EQ(pool.num_threads(), static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace
}  // namespace attic
