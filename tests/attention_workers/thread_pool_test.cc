#include "attention_workers/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace attic {
namespace {

// Every behaviour holds with threads that sleep at once and with threads that poll first.
class ThreadPoolSpin : public ::testing::TestWithParam<int> {};

TEST_P(ThreadPoolSpin, RunsEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool({.num_threads = threads, .spin_us = GetParam()});
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 3, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.ParallelFor(n, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
  }
}

TEST_P(ThreadPoolSpin, ManyBatchesAndConcurrentCallers) {
  ThreadPool pool({.num_threads = 3, .spin_us = GetParam()});
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

TEST_P(ThreadPoolSpin, NestedAndOverlappingBatchesAllFinish) {
  // A request's batch may itself fan out, while other requests' batches are open.
  ThreadPool pool({.num_threads = 4, .spin_us = GetParam()});
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

// Pool threads help with batches posted while they poll and after they went to sleep (a
// batch posted later than the spin lasts must still wake them).
TEST_P(ThreadPoolSpin, ThreadsHelpWhetherPollingOrAsleep) {
  ThreadPool pool({.num_threads = 3, .spin_us = GetParam()});
  std::mutex mu;
  std::set<std::thread::id> helpers;
  for (int round = 0; round < 20; ++round) {
    // Odd rounds: longer than the spin, so the threads are asleep when the batch comes.
    if (round % 2 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    pool.ParallelFor(30, [&](int64_t) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      std::lock_guard<std::mutex> lock(mu);
      helpers.insert(std::this_thread::get_id());
    });
  }
  EXPECT_EQ(helpers.size(), 3u) << "the caller and both pool threads run tasks";
}

INSTANTIATE_TEST_SUITE_P(SleepOrPoll, ThreadPoolSpin, ::testing::Values(0, 50),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return p.param == 0 ? std::string("Sleep") : std::string("Poll");
                         });

TEST(ThreadPool, DefaultSizeIsCoreCount) {
  ThreadPool pool;
  EXPECT_EQ(pool.num_threads(), static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace
}  // namespace attic
