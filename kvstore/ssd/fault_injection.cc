#include "kvstore/ssd/fault_injection.h"

#include <rocksdb/file_system.h>
#include <rocksdb/io_status.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvstore/ssd/ssd_tier.h"

namespace attic {

using rocksdb::DataVerificationInfo;
using rocksdb::FileOptions;
using rocksdb::FSRandomAccessFile;
using rocksdb::FSRandomRWFile;
using rocksdb::FSReadRequest;
using rocksdb::FSSequentialFile;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOHandleDeleter;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

struct FaultInjector::State {
  std::atomic<Fault> fault{Fault::kNone};
  std::atomic<uint64_t> injected{0};
  std::atomic<int64_t> read_delay_us{0};
  std::atomic<int64_t> write_delay_us{0};
  std::atomic<uint64_t> delayed{0};
  std::atomic<int> reads_in_flight{0};
  std::atomic<int> peak_reads_in_flight{0};
};

FaultInjector::FaultInjector() : state_(std::make_unique<State>()) {}
FaultInjector::~FaultInjector() = default;
void FaultInjector::Set(Fault fault) { state_->fault.store(fault, std::memory_order_release); }
FaultInjector::Fault FaultInjector::fault() const {
  return state_->fault.load(std::memory_order_acquire);
}
uint64_t FaultInjector::injected() const {
  return state_->injected.load(std::memory_order_relaxed);
}

Status FaultInjector::SetLatency(std::chrono::microseconds read, std::chrono::microseconds write) {
  for (const std::chrono::microseconds d : {read, write}) {
    if (d.count() < 0 || d > kMaxLatency) {
      return InvalidArgumentError("FaultInjector::SetLatency: delays must be in [0, " +
                                  std::to_string(kMaxLatency.count()) + "] us, got read " +
                                  std::to_string(read.count()) + " us, write " +
                                  std::to_string(write.count()) + " us");
    }
  }
  state_->read_delay_us.store(read.count(), std::memory_order_release);
  state_->write_delay_us.store(write.count(), std::memory_order_release);
  return OkStatus();
}

uint64_t FaultInjector::delayed() const {
  return state_->delayed.load(std::memory_order_relaxed);
}

int FaultInjector::peak_reads_in_flight() const {
  return state_->peak_reads_in_flight.load(std::memory_order_acquire);
}

void FaultInjector::ResetPeakReadsInFlight() {
  state_->peak_reads_in_flight.store(0, std::memory_order_release);
}

// The file system, and the one place that reads the injector (FaultInjector's friend).
class FaultInjectingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  enum class Op { kOpenRead, kOpenWrite, kRead, kWrite };

  FaultInjectingFileSystem(std::shared_ptr<rocksdb::FileSystem> base, FaultInjector* faults)
      : FileSystemWrapper(std::move(base)), faults_(faults) {}

  static const char* kClassName() { return "AtticFaultInjectingFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // The injected error for one operation on fname, or OK.
  static IOStatus Check(FaultInjector* faults, Op op, const std::string& fname);
  // Whether reads are to be corrupted now (and counts one injection when so).
  static bool CorruptNow(FaultInjector* faults);
  // Sleeps the configured delay of op's kind (reads or writes; opens are not delayed).
  static void Delay(FaultInjector* faults, Op op);
  // Counts a read entering (+1) or leaving (-1) the file system, for the in-flight peak.
  static void CountRead(FaultInjector* faults, int delta);

  IOStatus NewSequentialFile(const std::string& f, const FileOptions& o,
                             std::unique_ptr<FSSequentialFile>* r, IODebugContext* dbg) override;
  IOStatus NewRandomAccessFile(const std::string& f, const FileOptions& o,
                               std::unique_ptr<FSRandomAccessFile>* r,
                               IODebugContext* dbg) override;
  IOStatus NewWritableFile(const std::string& f, const FileOptions& o,
                           std::unique_ptr<FSWritableFile>* r, IODebugContext* dbg) override;
  IOStatus ReopenWritableFile(const std::string& f, const FileOptions& o,
                              std::unique_ptr<FSWritableFile>* r, IODebugContext* dbg) override;
  IOStatus ReuseWritableFile(const std::string& f, const std::string& old_f, const FileOptions& o,
                             std::unique_ptr<FSWritableFile>* r, IODebugContext* dbg) override;
  IOStatus NewRandomRWFile(const std::string& f, const FileOptions& o,
                           std::unique_ptr<FSRandomRWFile>* r, IODebugContext* dbg) override;
  // Passed on (RocksDB 7's wrapper does not): the POSIX file system caches the directories'
  // logical block sizes (internal/sync_policy.cc).
  rocksdb::Status RegisterDbPaths(const std::vector<std::string>& paths) override {
    return target()->RegisterDbPaths(paths);
  }
  rocksdb::Status UnregisterDbPaths(const std::vector<std::string>& paths) override {
    return target()->UnregisterDbPaths(paths);
  }

 private:
  FaultInjector* faults_;
};

namespace {

using Op = FaultInjectingFileSystem::Op;

IOStatus Check(FaultInjector* faults, Op op, const std::string& fname) {
  return FaultInjectingFileSystem::Check(faults, op, fname);
}

// Flips one bit in every 4 KiB of the data a read returned, so each blob record of a merged
// (MultiRead) read is hit. Copies into scratch first when the data lives elsewhere.
void FlipBits(Slice* result, char* scratch) {
  constexpr size_t kStride = 4096;
  if (result->empty() || scratch == nullptr) return;
  if (result->data() != scratch) {
    std::memmove(scratch, result->data(), result->size());
    *result = Slice(scratch, result->size());
  }
  for (size_t at = std::min(result->size() / 2, kStride / 2); at < result->size(); at += kStride) {
    scratch[at] = static_cast<char>(scratch[at] ^ 0x10);
  }
}

bool IsBlobFile(const std::string& fname) { return fname.ends_with(".blob"); }

// One read inside the file system, from its injector's say (delay, fault) to its return.
class ReadScope {
 public:
  explicit ReadScope(FaultInjector* faults) : faults_(faults) {
    FaultInjectingFileSystem::CountRead(faults_, +1);
  }
  ~ReadScope() { FaultInjectingFileSystem::CountRead(faults_, -1); }
  ReadScope(const ReadScope&) = delete;
  ReadScope& operator=(const ReadScope&) = delete;

 private:
  FaultInjector* faults_;
};

class InjectingWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  InjectingWritableFile(std::unique_ptr<FSWritableFile> f, FaultInjector* faults, std::string fname)
      : FSWritableFileOwnerWrapper(std::move(f)), faults_(faults), fname_(std::move(fname)) {}

  IOStatus Append(const Slice& data, const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Append(data, o, dbg) : s;
  }
  IOStatus Append(const Slice& data, const IOOptions& o, const DataVerificationInfo& info,
                  IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Append(data, o, info, dbg) : s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->PositionedAppend(data, offset, o, dbg) : s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            const DataVerificationInfo& info, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->PositionedAppend(data, offset, o, info, dbg) : s;
  }
  IOStatus Flush(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Flush(o, dbg) : s;
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Sync(o, dbg) : s;
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Fsync(o, dbg) : s;
  }
  IOStatus RangeSync(uint64_t offset, uint64_t n, const IOOptions& o,
                     IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->RangeSync(offset, n, o, dbg) : s;
  }
  IOStatus Allocate(uint64_t offset, uint64_t n, const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Allocate(offset, n, o, dbg) : s;
  }

 private:
  FaultInjector* faults_;
  std::string fname_;
};

class InjectingRandomAccessFile : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  InjectingRandomAccessFile(std::unique_ptr<FSRandomAccessFile> f, FaultInjector* faults,
                            std::string fname)
      : FSRandomAccessFileOwnerWrapper(std::move(f)),
        faults_(faults),
        fname_(std::move(fname)),
        blob_(IsBlobFile(fname_)) {}

  IOStatus Read(uint64_t offset, size_t n, const IOOptions& o, Slice* result, char* scratch,
                IODebugContext* dbg) const override {
    const ReadScope scope(faults_);
    IOStatus s = Check(faults_, Op::kRead, fname_);
    if (s.ok()) s = target()->Read(offset, n, o, result, scratch, dbg);
    if (s.ok() && blob_ && FaultInjectingFileSystem::CorruptNow(faults_)) {
      FlipBits(result, scratch);
    }
    return s;
  }
  IOStatus MultiRead(FSReadRequest* reqs, size_t num_reqs, const IOOptions& o,
                     IODebugContext* dbg) override {
    const ReadScope scope(faults_);
    IOStatus s = Check(faults_, Op::kRead, fname_);
    if (!s.ok()) {
      for (size_t i = 0; i < num_reqs; ++i) reqs[i].status = s;
      return s;
    }
    s = target()->MultiRead(reqs, num_reqs, o, dbg);
    if (!s.ok() || !blob_ || !FaultInjectingFileSystem::CorruptNow(faults_)) return s;
    for (size_t i = 0; i < num_reqs; ++i) {
      if (reqs[i].status.ok()) FlipBits(&reqs[i].result, reqs[i].scratch);
    }
    return s;
  }
  IOStatus Prefetch(uint64_t offset, size_t n, const IOOptions& o, IODebugContext* dbg) override {
    const ReadScope scope(faults_);
    IOStatus s = Check(faults_, Op::kRead, fname_);
    return s.ok() ? target()->Prefetch(offset, n, o, dbg) : s;
  }
  IOStatus ReadAsync(FSReadRequest& req, const IOOptions& o,
                     std::function<void(const FSReadRequest&, void*)> cb, void* cb_arg,
                     void** io_handle, IOHandleDeleter* del_fn, IODebugContext* dbg) override {
    const ReadScope scope(faults_);
    IOStatus s = Check(faults_, Op::kRead, fname_);
    return s.ok() ? target()->ReadAsync(req, o, std::move(cb), cb_arg, io_handle, del_fn, dbg) : s;
  }

 private:
  FaultInjector* faults_;
  std::string fname_;
  bool blob_;
};

class InjectingSequentialFile : public rocksdb::FSSequentialFileOwnerWrapper {
 public:
  InjectingSequentialFile(std::unique_ptr<FSSequentialFile> f, FaultInjector* faults,
                          std::string fname)
      : FSSequentialFileOwnerWrapper(std::move(f)), faults_(faults), fname_(std::move(fname)) {}

  IOStatus Read(size_t n, const IOOptions& o, Slice* result, char* scratch,
                IODebugContext* dbg) override {
    const ReadScope scope(faults_);
    IOStatus s = Check(faults_, Op::kRead, fname_);
    return s.ok() ? target()->Read(n, o, result, scratch, dbg) : s;
  }
  IOStatus PositionedRead(uint64_t offset, size_t n, const IOOptions& o, Slice* result,
                          char* scratch, IODebugContext* dbg) override {
    const ReadScope scope(faults_);
    IOStatus s = Check(faults_, Op::kRead, fname_);
    return s.ok() ? target()->PositionedRead(offset, n, o, result, scratch, dbg) : s;
  }

 private:
  FaultInjector* faults_;
  std::string fname_;
};

class InjectingRandomRWFile : public rocksdb::FSRandomRWFileOwnerWrapper {
 public:
  InjectingRandomRWFile(std::unique_ptr<FSRandomRWFile> f, FaultInjector* faults, std::string fname)
      : FSRandomRWFileOwnerWrapper(std::move(f)), faults_(faults), fname_(std::move(fname)) {}

  IOStatus Write(uint64_t offset, const Slice& data, const IOOptions& o,
                 IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Write(offset, data, o, dbg) : s;
  }
  IOStatus Read(uint64_t offset, size_t n, const IOOptions& o, Slice* result, char* scratch,
                IODebugContext* dbg) const override {
    const ReadScope scope(faults_);
    IOStatus s = Check(faults_, Op::kRead, fname_);
    return s.ok() ? target()->Read(offset, n, o, result, scratch, dbg) : s;
  }
  IOStatus Flush(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Flush(o, dbg) : s;
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Sync(o, dbg) : s;
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = Check(faults_, Op::kWrite, fname_);
    return s.ok() ? target()->Fsync(o, dbg) : s;
  }

 private:
  FaultInjector* faults_;
  std::string fname_;
};

// Opens through the base file system (after the injector's say) and wraps the result.
template <typename Wrapper, typename File, typename OpenFn>
IOStatus OpenWrapped(FaultInjector* faults, Op op, const std::string& fname,
                     std::unique_ptr<File>* result, OpenFn open) {
  IOStatus s = Check(faults, op, fname);
  if (!s.ok()) return s;
  std::unique_ptr<File> file;
  s = open(&file);
  if (!s.ok()) return s;
  *result = std::make_unique<Wrapper>(std::move(file), faults, fname);
  return s;
}

}  // namespace

void FaultInjectingFileSystem::Delay(FaultInjector* faults, Op op) {
  FaultInjector::State& state = *faults->state_;
  int64_t us = 0;
  if (op == Op::kRead) us = state.read_delay_us.load(std::memory_order_acquire);
  if (op == Op::kWrite) us = state.write_delay_us.load(std::memory_order_acquire);
  if (us <= 0) return;
  state.delayed.fetch_add(1, std::memory_order_relaxed);
  std::this_thread::sleep_for(std::chrono::microseconds(us));
}

void FaultInjectingFileSystem::CountRead(FaultInjector* faults, int delta) {
  FaultInjector::State& state = *faults->state_;
  const int now = state.reads_in_flight.fetch_add(delta, std::memory_order_acq_rel) + delta;
  int peak = state.peak_reads_in_flight.load(std::memory_order_acquire);
  while (now > peak &&
         !state.peak_reads_in_flight.compare_exchange_weak(peak, now, std::memory_order_acq_rel)) {
  }
}

IOStatus FaultInjectingFileSystem::Check(FaultInjector* faults, Op op, const std::string& fname) {
  Delay(faults, op);
  FaultInjector::State& state = *faults->state_;
  const FaultInjector::Fault f = state.fault.load(std::memory_order_acquire);
  const bool is_write = op == Op::kWrite || op == Op::kOpenWrite;
  const bool is_read = op == Op::kRead;
  IOStatus s;
  if (f == FaultInjector::Fault::kNoSpace && is_write) {
    s = IOStatus::NoSpace("injected fault: no space left on device", fname);
  } else if (f == FaultInjector::Fault::kIoError ||
             (f == FaultInjector::Fault::kReadIoError && is_read)) {
    s = IOStatus::IOError("injected fault: input/output error", fname);
  }
  if (!s.ok()) state.injected.fetch_add(1, std::memory_order_relaxed);
  return s;
}

bool FaultInjectingFileSystem::CorruptNow(FaultInjector* faults) {
  FaultInjector::State& state = *faults->state_;
  if (state.fault.load(std::memory_order_acquire) != FaultInjector::Fault::kCorruptReads) {
    return false;
  }
  state.injected.fetch_add(1, std::memory_order_relaxed);
  return true;
}

IOStatus FaultInjectingFileSystem::NewSequentialFile(const std::string& f, const FileOptions& o,
                                                     std::unique_ptr<FSSequentialFile>* r,
                                                     IODebugContext* dbg) {
  return OpenWrapped<InjectingSequentialFile>(faults_, Op::kOpenRead, f, r, [&](auto* file) {
    return target()->NewSequentialFile(f, o, file, dbg);
  });
}

IOStatus FaultInjectingFileSystem::NewRandomAccessFile(const std::string& f, const FileOptions& o,
                                                       std::unique_ptr<FSRandomAccessFile>* r,
                                                       IODebugContext* dbg) {
  return OpenWrapped<InjectingRandomAccessFile>(faults_, Op::kOpenRead, f, r, [&](auto* file) {
    return target()->NewRandomAccessFile(f, o, file, dbg);
  });
}

IOStatus FaultInjectingFileSystem::NewWritableFile(const std::string& f, const FileOptions& o,
                                                   std::unique_ptr<FSWritableFile>* r,
                                                   IODebugContext* dbg) {
  return OpenWrapped<InjectingWritableFile>(faults_, Op::kOpenWrite, f, r, [&](auto* file) {
    return target()->NewWritableFile(f, o, file, dbg);
  });
}

IOStatus FaultInjectingFileSystem::ReopenWritableFile(const std::string& f, const FileOptions& o,
                                                      std::unique_ptr<FSWritableFile>* r,
                                                      IODebugContext* dbg) {
  return OpenWrapped<InjectingWritableFile>(faults_, Op::kOpenWrite, f, r, [&](auto* file) {
    return target()->ReopenWritableFile(f, o, file, dbg);
  });
}

IOStatus FaultInjectingFileSystem::ReuseWritableFile(const std::string& f, const std::string& old_f,
                                                     const FileOptions& o,
                                                     std::unique_ptr<FSWritableFile>* r,
                                                     IODebugContext* dbg) {
  return OpenWrapped<InjectingWritableFile>(faults_, Op::kOpenWrite, f, r, [&](auto* file) {
    return target()->ReuseWritableFile(f, old_f, o, file, dbg);
  });
}

IOStatus FaultInjectingFileSystem::NewRandomRWFile(const std::string& f, const FileOptions& o,
                                                   std::unique_ptr<FSRandomRWFile>* r,
                                                   IODebugContext* dbg) {
  return OpenWrapped<InjectingRandomRWFile>(faults_, Op::kOpenWrite, f, r, [&](auto* file) {
    return target()->NewRandomRWFile(f, o, file, dbg);
  });
}

std::shared_ptr<rocksdb::FileSystem> NewFaultInjectingFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base, FaultInjector* faults) {
  return std::make_shared<FaultInjectingFileSystem>(std::move(base), faults);
}

}  // namespace attic
