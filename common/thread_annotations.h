// Clang thread-safety annotations (checked with -Wthread-safety; no-ops under GCC), the
// project's mutexes, scoped locks and condition variable.
//
//   class Counter {
//     Mutex mu_;
//     CondVar changed_;
//     int n_ GUARDED_BY(mu_) = 0;
//    public:
//     void Add() EXCLUDES(mu_) {
//       { MutexLock l(&mu_); ++n_; }
//       changed_.NotifyAll();
//     }
//     void WaitFor(int n) EXCLUDES(mu_) {
//       MutexLock l(&mu_);
//       while (n_ < n) changed_.Wait(&mu_);
//     }
//   };
//
// Write waits as loops over CondVar::Wait rather than std predicates: a lambda is analysed as a
// function of its own, which does not hold the caller's lock (annotate it REQUIRES(mu_) when a
// predicate is unavoidable). The lowercase lock()/unlock() spellings exist so std::unique_lock,
// std::shared_lock and std::condition_variable_any accept these mutexes, for the rare lock that
// must outlive a scope; the analysis does not see those std types, so prefer the scoped locks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define ATTIC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define ATTIC_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) ATTIC_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY ATTIC_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) ATTIC_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) ATTIC_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) ATTIC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) ATTIC_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) ATTIC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) ATTIC_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) ATTIC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define TRY_ACQUIRE_SHARED(...) ATTIC_THREAD_ANNOTATION(try_acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) ATTIC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) ATTIC_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define EXCLUDES(...) ATTIC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) ATTIC_THREAD_ANNOTATION(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) ATTIC_THREAD_ANNOTATION(assert_shared_capability(x))
#define NO_THREAD_SAFETY_ANALYSIS ATTIC_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace attic {

// std::mutex with capability annotations.
class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis that the calling thread holds the lock (checks nothing at run time):
  // for a lock taken where the analysis cannot see it, e.g. by a std::unique_lock.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}
  // BasicLockable, so std::condition_variable_any can wait on it: cv.wait(mu, pred) with mu
  // held (REQUIRES(mu) on the waiting function). Lockable, for std::unique_lock.
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return TryLock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// std::shared_mutex with capability annotations.
class CAPABILITY("shared_mutex") SharedMutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  void LockShared() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void UnlockShared() RELEASE_SHARED() { mu_.unlock_shared(); }
  bool TryLockShared() TRY_ACQUIRE_SHARED(true) { return mu_.try_lock_shared(); }
  // As Mutex::AssertHeld, for the exclusive and the shared lock.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}
  void AssertReaderHeld() const ASSERT_SHARED_CAPABILITY(this) {}

  // Lockable and SharedLockable spellings, for std::unique_lock and std::shared_lock.
  void lock() ACQUIRE() { Lock(); }
  void unlock() RELEASE() { Unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return TryLock(); }
  void lock_shared() ACQUIRE_SHARED() { LockShared(); }
  void unlock_shared() RELEASE_SHARED() { UnlockShared(); }
  bool try_lock_shared() TRY_ACQUIRE_SHARED(true) { return TryLockShared(); }

 private:
  std::shared_mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~WriterLock() RELEASE() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* mu_;
};

class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_->LockShared(); }
  ~ReaderLock() RELEASE() { mu_->UnlockShared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* mu_;
};

// A condition variable waited on with a Mutex held (std::condition_variable_any underneath).
// Every wait may wake spuriously: wait in a loop that tests the condition. Notify with or
// without the mutex held.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases *mu, blocks until notified, takes *mu again.
  void Wait(Mutex* mu) REQUIRES(mu) { cv_.wait(*mu); }
  // As Wait, until deadline at the latest. Returns false when it returned because the deadline
  // passed.
  template <class Clock, class Duration>
  bool WaitUntil(Mutex* mu, const std::chrono::time_point<Clock, Duration>& deadline) REQUIRES(mu) {
    return cv_.wait_until(*mu, deadline) == std::cv_status::no_timeout;
  }
  // As Wait, for timeout at most.
  template <class Rep, class Period>
  bool WaitFor(Mutex* mu, const std::chrono::duration<Rep, Period>& timeout) REQUIRES(mu) {
    return cv_.wait_for(*mu, timeout) == std::cv_status::no_timeout;
  }

  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace attic
