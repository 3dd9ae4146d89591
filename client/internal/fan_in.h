// FanIn: waits for a fixed number of parts that complete on any threads (transport callbacks),
// then runs one finishing function, once, on the thread of the last part.
//
//   auto fan = FanIn::Create(shards.size(), [promise](std::vector<Status> results) {
//     promise->set_value(FirstError(results));
//   });
//   for (size_t i = 0; i < shards.size(); ++i) Send(..., [fan, i](auto r) { fan->Done(i, ...); });
//
// Thread safety: Done may be called from any thread, once per part.
#pragma once

#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace attic::client_internal {

// The first non-OK status in order, or OK.
inline Status FirstError(const std::vector<Status>& results) {
  for (const Status& s : results) {
    if (!s.ok()) return s;
  }
  return OkStatus();
}

class FanIn {
 public:
  using Finish = std::function<void(std::vector<Status> results)>;

  // With parts == 0, finish runs before Create returns.
  static std::shared_ptr<FanIn> Create(size_t parts, Finish finish) {
    auto fan = std::shared_ptr<FanIn>(new FanIn(parts, std::move(finish)));
    if (parts == 0) fan->finish_(std::vector<Status>());
    return fan;
  }

  // Records part `part`'s result; the last one runs finish (outside the lock, so finish may
  // take other locks).
  void Done(size_t part, Status status) EXCLUDES(mu_) {
    std::vector<Status> results;
    {
      MutexLock lock(&mu_);
      results_[part] = std::move(status);
      if (--remaining_ != 0) return;
      results = std::move(results_);
    }
    finish_(std::move(results));
  }

 private:
  FanIn(size_t parts, Finish finish)
      : finish_(std::move(finish)), results_(parts), remaining_(parts) {}

  const Finish finish_;
  Mutex mu_;
  std::vector<Status> results_ GUARDED_BY(mu_);
  size_t remaining_ GUARDED_BY(mu_);
};

// A future that is already ready, for calls refused before anything is sent.
template <typename T>
std::future<T> ReadyFuture(T value) {
  std::promise<T> p;
  p.set_value(std::move(value));
  return p.get_future();
}

}  // namespace attic::client_internal
