// The worker's request queue: requests of different sequences overlap, requests sharing a
// sequence keep their arrival order, exclusive jobs run alone, admission refuses what cannot
// start before its deadline (never a bypass job), expired requests are not run, and shutdown
// answers what waits.
#include "services/worker/request_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace attic::worker_internal {
namespace {

using namespace std::chrono_literals;

transport::Deadline In(std::chrono::milliseconds ms) { return transport::Clock::now() + ms; }

QueuedJob Job(std::vector<uint64_t> seqs, std::function<void()> run,
              std::function<void(Status)> expire = [](Status) {}) {
  return QueuedJob{.sequences = std::move(seqs),
                   .deadline = In(10s),
                   .run = std::move(run),
                   .expire = std::move(expire)};
}

TEST(RequestQueue, DifferentSequencesRunConcurrently) {
  RequestQueue queue({.runners = 4}, "w");
  std::atomic<int> inside{0};
  std::atomic<int> peak{0};
  std::atomic<int> done{0};
  for (uint64_t s = 0; s < 4; ++s) {
    ASSERT_TRUE(queue
                    .Submit(Job({s},
                                [&] {
                                  const int now = ++inside;
                                  int p = peak.load();
                                  while (now > p && !peak.compare_exchange_weak(p, now)) {
                                  }
                                  // Stay until all four are in (or give up after a while).
                                  for (int i = 0; i < 2000 && peak.load() < 4; ++i) {
                                    std::this_thread::sleep_for(1ms);
                                  }
                                  --inside;
                                  ++done;
                                }))
                    .ok());
  }
  ASSERT_TRUE(queue.WaitIdle(In(10s)));
  EXPECT_EQ(done.load(), 4);
  EXPECT_EQ(peak.load(), 4);
}

TEST(RequestQueue, ASequenceKeepsItsOrder) {
  RequestQueue queue({.runners = 4}, "w");
  Mutex mu;
  std::vector<int> order_a, order_b;
  std::atomic<int> inside_a{0};
  bool overlapped = false;
  for (int i = 0; i < 200; ++i) {
    // Sequence 1 alone, sequence 2 alone, and some requests naming both (an Attend batch).
    std::vector<uint64_t> seqs = i % 3 == 0 ? std::vector<uint64_t>{1}
                                 : i % 3 == 1 ? std::vector<uint64_t>{2}
                                              : std::vector<uint64_t>{2, 1};
    ASSERT_TRUE(queue
                    .Submit(Job(seqs,
                                [&, i, seqs] {
                                  const bool has1 =
                                      std::find(seqs.begin(), seqs.end(), 1) != seqs.end();
                                  if (has1 && ++inside_a > 1) overlapped = true;
                                  std::this_thread::sleep_for(std::chrono::microseconds(50));
                                  {
                                    MutexLock l(&mu);
                                    if (has1) order_a.push_back(i);
                                    if (seqs[0] == 2) order_b.push_back(i);
                                  }
                                  if (has1) --inside_a;
                                }))
                    .ok());
  }
  ASSERT_TRUE(queue.WaitIdle(In(20s)));
  EXPECT_FALSE(overlapped);
  EXPECT_TRUE(std::is_sorted(order_a.begin(), order_a.end()));
  EXPECT_TRUE(std::is_sorted(order_b.begin(), order_b.end()));
  EXPECT_EQ(order_a.size() + order_b.size(), 200u + 66u);  // the 66 pairs count in both
}

TEST(RequestQueue, ALaterFreeSequenceOvertakesABlockedOne) {
  RequestQueue queue({.runners = 2}, "w");
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> second_of_1_ran{false};
  std::promise<void> other_ran;
  ASSERT_TRUE(queue.Submit(Job({1}, [&] { released.wait(); })).ok());
  ASSERT_TRUE(queue.Submit(Job({1}, [&] { second_of_1_ran = true; })).ok());
  ASSERT_TRUE(queue.Submit(Job({2}, [&] { other_ran.set_value(); })).ok());
  // Sequence 2 does not wait behind sequence 1's second request.
  EXPECT_EQ(other_ran.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(second_of_1_ran.load());
  release.set_value();
  ASSERT_TRUE(queue.WaitIdle(In(10s)));
  EXPECT_TRUE(second_of_1_ran.load());
}

TEST(RequestQueue, ExclusiveJobsRunAlone) {
  RequestQueue queue({.runners = 4}, "w");
  std::atomic<int> inside{0};
  std::atomic<bool> violated{false};
  std::atomic<int> exclusives{0};
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(queue
                    .Submit(Job({static_cast<uint64_t>(i % 7)},
                                [&] {
                                  ++inside;
                                  std::this_thread::sleep_for(std::chrono::microseconds(100));
                                  --inside;
                                }))
                    .ok());
    if (i % 10 == 0) {
      queue.RunExclusive([&] {
        if (inside.load() != 0) violated = true;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        if (inside.load() != 0) violated = true;
        ++exclusives;
      });
    }
  }
  ASSERT_TRUE(queue.WaitIdle(In(20s)));
  EXPECT_FALSE(violated.load());
  EXPECT_GE(exclusives.load(), 1);
}

TEST(RequestQueue, AdmissionRefusesBeyondTheQueueLimitButNeverABypass) {
  RequestQueue queue({.runners = 1, .max_queued = 3}, "w7");
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_TRUE(queue.Submit(Job({1}, [&] { released.wait(); })).ok());
  // Wait until the first one runs, so exactly three can wait.
  for (int i = 0; i < 1000 && queue.running() == 0; ++i) std::this_thread::sleep_for(1ms);
  std::atomic<int> ran{0};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(queue.Submit(Job({2}, [&] { ++ran; })).ok());
  const Status refused = queue.Submit(Job({3}, [&] { ++ran; }));
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("w7"), std::string_view::npos) << refused;
  QueuedJob close = Job({3}, [&] { ++ran; });
  close.bypass = true;
  EXPECT_TRUE(queue.Submit(std::move(close)).ok());
  EXPECT_EQ(queue.refused(), 1u);
  release.set_value();
  ASSERT_TRUE(queue.WaitIdle(In(10s)));
  EXPECT_EQ(ran.load(), 4);
}

TEST(RequestQueue, AdmissionRefusesWhatWouldStartAfterItsDeadline) {
  RequestQueue queue({.runners = 1}, "w");
  // Teach the queue that class 5 takes about 30 ms.
  for (int i = 0; i < 3; ++i) {
    QueuedJob j = Job({1}, [] { std::this_thread::sleep_for(30ms); });
    j.cost_class = 5;
    ASSERT_TRUE(queue.Submit(std::move(j)).ok());
  }
  ASSERT_TRUE(queue.WaitIdle(In(10s)));
  for (int i = 0; i < 5; ++i) {
    QueuedJob j = Job({static_cast<uint64_t>(10 + i)}, [] { std::this_thread::sleep_for(30ms); });
    j.cost_class = 5;
    ASSERT_TRUE(queue.Submit(std::move(j)).ok());
  }
  // About 120-150 ms of work waits ahead: a request with 20 ms left is shed at once.
  std::atomic<bool> ran{false};
  QueuedJob tight = Job({99}, [&] { ran = true; });
  tight.deadline = In(20ms);
  const auto t0 = transport::Clock::now();
  const Status s = queue.Submit(std::move(tight));
  EXPECT_LT(transport::Clock::now() - t0, 10ms);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("deadline"), std::string_view::npos) << s;
  // One with time enough is admitted.
  QueuedJob loose = Job({98}, [&] { ran = true; });
  loose.deadline = In(5s);
  EXPECT_TRUE(queue.Submit(std::move(loose)).ok());
  ASSERT_TRUE(queue.WaitIdle(In(10s)));
  EXPECT_TRUE(ran.load());
}

TEST(RequestQueue, ExpiredRequestsAreAnsweredNotRun) {
  RequestQueue queue({.runners = 1}, "w");
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_TRUE(queue.Submit(Job({1}, [&] { released.wait(); })).ok());
  std::atomic<bool> ran{false};
  std::promise<Status> expired;
  QueuedJob j = Job({2}, [&] { ran = true; }, [&](Status s) { expired.set_value(s); });
  j.deadline = In(30ms);
  ASSERT_TRUE(queue.Submit(std::move(j)).ok());
  std::this_thread::sleep_for(60ms);
  release.set_value();
  auto f = expired.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get().code(), StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(ran.load());
}

TEST(RequestQueue, ShutdownAnswersWhatWaits) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> unavailable{0};
  std::thread releaser;
  {
    RequestQueue queue({.runners = 1}, "w");
    ASSERT_TRUE(queue.Submit(Job({1}, [&] { released.wait(); })).ok());
    for (int i = 0; i < 1000 && queue.running() == 0; ++i) std::this_thread::sleep_for(1ms);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(queue
                      .Submit(Job({1}, [] {},
                                  [&](Status s) {
                                    if (s.code() == StatusCode::kUnavailable) ++unavailable;
                                  }))
                      .ok());
    }
    releaser = std::thread([&] {
      std::this_thread::sleep_for(50ms);
      release.set_value();
    });
  }  // the destructor waits for the running job, then answers the three
  releaser.join();
  EXPECT_EQ(unavailable.load(), 3);
}

}  // namespace
}  // namespace attic::worker_internal
