// A randomized race of deadlines against replies: several threads issue calls whose handler
// answers after a random delay (some after the call's deadline), over several connections,
// with payloads that cross the rendezvous threshold. Every callback must run exactly once
// and end OK with the right bytes or DEADLINE_EXCEEDED; replies that lose the race must be
// counted as late, never delivered.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"
#include "tests/transport/rpc_fixture.h"

namespace attic::transport::testing {

struct StressParams {
  int threads = 4;
  int calls_per_thread = 100;
  int connections = 2;
};

// Three kinds of calls, mixed at random:
//   kSure:  the handler answers at once and the deadline is 10 s: must end OK;
//   kLost:  the deadline (1-5 ms) ends before the handler's delay (10-15 ms) does: must end
//           DEADLINE_EXCEEDED;
//   kRace:  deadline and delay both 0-10 ms: either outcome, but exactly once.
enum class CallKind { kSure, kLost, kRace };

inline void RunDeadlineRace(RpcClient& client, const std::string& address, const StressParams& p) {
  std::vector<std::shared_ptr<Connection>> conns;
  for (int i = 0; i < p.connections; ++i) {
    auto c = client.Connect(address, DeadlineAfter(5s));
    ASSERT_TRUE(c.ok()) << c.status();
    conns.push_back(*c);
  }
  std::atomic<int> ok{0}, deadline{0}, unsent{0}, wrong{0}, calls_done{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < p.threads; ++th) {
    threads.emplace_back([&, th] {
      std::mt19937 rng(1234 + th);
      for (int i = 0; i < p.calls_per_thread; ++i) {
        const auto kind = static_cast<CallKind>(rng() % 3);
        int delay_ms = 0;
        int deadline_ms = 10000;
        if (kind == CallKind::kLost) {
          delay_ms = 10 + static_cast<int>(rng() % 6);
          deadline_ms = 1 + static_cast<int>(rng() % 5);
        } else if (kind == CallKind::kRace) {
          delay_ms = static_cast<int>(rng() % 11);
          deadline_ms = 1 + static_cast<int>(rng() % 10);
        }
        // Mostly small (eager) payloads, some large enough for rendezvous.
        const size_t n = rng() % 8 == 0 ? 100000 + rng() % 50000 : rng() % 3000;
        auto payload = std::make_shared<std::string>(Pattern(n, uint8_t(rng())));
        OutgoingMessage m;
        m.method = Method::kAttend;
        m.header = Header("delay:" + std::to_string(delay_ms));
        m.payload = {AsBytes(*payload)};
        m.keepalive = payload;
        auto once = std::make_shared<std::atomic<int>>(0);
        auto& conn = conns[static_cast<size_t>(i) % conns.size()];
        conn->Call(std::move(m), DeadlineAfter(std::chrono::milliseconds(deadline_ms)),
                   [&, payload, once, kind](StatusOr<IncomingMessage> r) {
                     if (once->fetch_add(1) != 0) wrong.fetch_add(1);  // ran twice
                     if (r.ok()) {
                       const bool good =
                           kind != CallKind::kLost && ToString(r->payload()) == *payload;
                       (good ? ok : wrong).fetch_add(1);
                     } else if (r.status().code() == StatusCode::kDeadlineExceeded &&
                                kind != CallKind::kSure) {
                       deadline.fetch_add(1);
                       // Expired before it was sent: no request, so no late reply either.
                       if (r.status().message().find("before") != std::string::npos) {
                         unsent.fetch_add(1);
                       }
                     } else {
                       ADD_FAILURE() << r.status();
                       wrong.fetch_add(1);
                     }
                     calls_done.fetch_add(1);
                   });
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
      }
    });
  }
  for (auto& th : threads) th.join();
  const int total = p.threads * p.calls_per_thread;
  ASSERT_TRUE(WaitFor([&] { return calls_done.load() == total; }, 30s))
      << calls_done.load() << " of " << total << " calls ended";
  std::printf("race: %d ok, %d deadline exceeded (%d before sending)\n", ok.load(), deadline.load(),
              unsent.load());
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(ok.load() + deadline.load(), total);
  // The handler answers every request it got, so every call that timed out after being
  // sent gets exactly one reply, which must be dropped and counted as late.
  const uint64_t expected_late = static_cast<uint64_t>(deadline.load() - unsent.load());
  EXPECT_TRUE(WaitFor([&] { return client.stats().late_replies.load() == expected_late; }))
      << client.stats().late_replies.load() << " late replies, expected " << expected_late;
}

// Runs callbacks after a delay on one timer thread. A thread per delayed reply would make the
// stress test measure thread creation, which under ThreadSanitizer costs more than the
// transport itself and starves the server of CPU on small machines.
class DelayedRunner {
 public:
  static DelayedRunner& Get() {
    static DelayedRunner runner;
    return runner;
  }

  void After(std::chrono::milliseconds delay, std::function<void()> fn) EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      due_.emplace(std::chrono::steady_clock::now() + delay, std::move(fn));
    }
    wake_.NotifyOne();
  }

  ~DelayedRunner() {
    {
      MutexLock lock(&mu_);
      stop_ = true;
    }
    wake_.NotifyOne();
    thread_.join();
  }

 private:
  DelayedRunner() : thread_([this] { Loop(); }) {}

  void Loop() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (!stop_) {
      if (due_.empty()) {
        wake_.Wait(&mu_);
        continue;
      }
      const auto next = due_.begin()->first;
      if (std::chrono::steady_clock::now() < next) {
        wake_.WaitUntil(&mu_, next);
        continue;
      }
      std::function<void()> fn = std::move(due_.begin()->second);
      due_.erase(due_.begin());
      mu_.Unlock();
      fn();
      mu_.Lock();
    }
  }

  Mutex mu_;
  CondVar wake_;
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> due_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// The handler for the race: answers with the request's payload after the delay its header
// names, from the timer thread.
inline void DelayedEchoHandler(IncomingMessage m, Responder r) {
  const std::string h = ToString(m.header());
  const int delay_ms = std::atoi(h.c_str() + 6);
  // std::function needs a copyable callable: the move-only parts travel in a shared_ptr.
  auto state = std::make_shared<std::pair<IncomingMessage, Responder>>(std::move(m), std::move(r));
  DelayedRunner::Get().After(std::chrono::milliseconds(delay_ms), [state] {
    OutgoingMessage reply;
    reply.method = state->first.method();
    reply.payload = {state->first.payload()};
    reply.keepalive = std::make_shared<IncomingMessage>(std::move(state->first));
    state->second.Reply(std::move(reply));
  });
}

}  // namespace attic::transport::testing
