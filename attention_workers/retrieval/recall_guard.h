// The recall guard: what a head's served searches reach, checked on sampled decode steps, and
// what to do when it falls below target. The build-time check (calibration.h) sees prefill
// queries only; a decode stretch can attend differently (to text far back, say), so a head can
// pass at build and serve below target. The guard takes the sampled exact checks the worker
// makes anyway (online recall) and, once `checks` of them are in and their pooled recall is
// below the target, raises the head's search effort by half (at most to max_effort). Once at
// max_effort, the next miss answers kDense: this index cannot serve the head at the target,
// and the caller serves it another way (the worker: a graph gives way to the 4-bit scan, a
// scan to dense attention). kDense is answered once; the guard is spent after it.
//
//   RecallGuard guard({.target = 0.96f, .base_effort = 480, .max_effort = 1280});
//   ... search with guard.effort() ...
//   if (sampled) switch (guard.Report(exact_k, hits)) { case kDense: ...; }
//
// Thread safety: effort() and dense() are lock-free reads; Report may be called from any
// thread.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/thread_annotations.h"

namespace attic::retrieval {

struct RecallGuardOptions {
  float target = 0.96f;
  int checks = 4;        // sampled checks pooled before a decision
  int base_effort = 0;   // the effort the head is served at now (the calibrated one)
  int max_effort = 0;    // the most it may be raised to; <= base_effort: never raised
};

class RecallGuard {
 public:
  enum class Action { kNone, kRaised, kDense };

  explicit RecallGuard(const RecallGuardOptions& options) : options_(options) {}

  // The effort searches should use: 0 until raised (the index's own), then the raised one.
  int effort() const { return effort_.load(std::memory_order_relaxed); }
  // Whether Report has answered kDense (the guard is spent).
  bool dense() const { return dense_.load(std::memory_order_relaxed); }

  // One sampled check: of the exact top `exact` keys, `hits` were retrieved.
  Action Report(int64_t exact, int64_t hits) EXCLUDES(mu_);

 private:
  const RecallGuardOptions options_;
  std::atomic<int> effort_{0};
  std::atomic<bool> dense_{false};
  Mutex mu_;
  int pending_ GUARDED_BY(mu_) = 0;
  int64_t exact_ GUARDED_BY(mu_) = 0;
  int64_t hits_ GUARDED_BY(mu_) = 0;
};

}  // namespace attic::retrieval
