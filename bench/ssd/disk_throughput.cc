#include "bench/ssd/disk_throughput.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace attic::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kAlignment = 4096;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Status Errno(const std::string& what) {
  return UnavailableError(what + ": " + std::strerror(errno));
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::byte, FreeDeleter>;

StatusOr<AlignedBuffer> Allocate(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, kAlignment, bytes) != 0) {
    return ResourceExhaustedError("no memory for a " + std::to_string(bytes) + "-byte buffer");
  }
  // Random contents: a file system or device that compresses must not flatter the figure.
  auto* words = static_cast<uint64_t*>(p);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < bytes / sizeof(uint64_t); ++i) words[i] = rng();
  return AlignedBuffer(static_cast<std::byte*>(p));
}

// A closed-on-exit descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// O_DIRECT when the file system takes it; *direct says which one it got.
int OpenFile(const std::string& path, int flags, bool* direct) {
  int fd = ::open(path.c_str(), flags | O_DIRECT | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EINVAL && errno != EOPNOTSUPP)) {
    *direct = fd >= 0;
    return fd;
  }
  *direct = false;
  return ::open(path.c_str(), flags | O_CLOEXEC, 0600);
}

// Runs fn(begin, end) for `threads` contiguous transfer-aligned ranges of [0, bytes) at once;
// the first error wins.
template <typename Fn>
Status Parallel(size_t bytes, size_t transfer, int threads, Fn fn) {
  const size_t transfers = bytes / transfer;
  std::vector<Status> results(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const size_t begin = transfers * t / threads * transfer;
    const size_t end = transfers * (t + 1) / threads * transfer;
    pool.emplace_back([&, t, begin, end] { results[t] = fn(t, begin, end); });
  }
  for (std::thread& th : pool) th.join();
  for (const Status& s : results) RETURN_IF_ERROR(s);
  return OkStatus();
}

StatusOr<double> WritePass(const std::string& path, const DiskOptions& o, int threads,
                           const std::vector<AlignedBuffer>& bufs, DiskFigures* fig) {
  bool direct = false;
  Fd fd(OpenFile(path, O_CREAT | O_TRUNC | O_WRONLY, &direct));
  if (fd.get() < 0) return Errno("creating " + path);
  fig->direct_io = direct;
  if (!direct) fig->note = "O_DIRECT refused by the file system under " + o.dir;
  const Clock::time_point start = Clock::now();
  RETURN_IF_ERROR(Parallel(
      fig->bytes, o.transfer_bytes, threads, [&](int t, size_t begin, size_t end) -> Status {
        for (size_t off = begin; off < end; off += o.transfer_bytes) {
          if (::pwrite(fd.get(), bufs[t].get(), o.transfer_bytes, static_cast<off_t>(off)) !=
              static_cast<ssize_t>(o.transfer_bytes)) {
            return Errno("writing " + path);
          }
        }
        return OkStatus();
      }));
  if (::fdatasync(fd.get()) != 0) return Errno("fdatasync " + path);
  return static_cast<double>(fig->bytes) / Seconds(start, Clock::now()) / 1e9;
}

StatusOr<double> ReadPass(const std::string& path, const DiskOptions& o, int threads,
                          const std::vector<AlignedBuffer>& bufs, const DiskFigures& fig) {
  bool direct = false;
  Fd fd(OpenFile(path, O_RDONLY, &direct));
  if (fd.get() < 0) return Errno("opening " + path);
  if (!direct) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  const Clock::time_point start = Clock::now();
  RETURN_IF_ERROR(Parallel(
      fig.bytes, o.transfer_bytes, threads, [&](int t, size_t begin, size_t end) -> Status {
        for (size_t off = begin; off < end; off += o.transfer_bytes) {
          if (::pread(fd.get(), bufs[t].get(), o.transfer_bytes, static_cast<off_t>(off)) !=
              static_cast<ssize_t>(o.transfer_bytes)) {
            return Errno("reading " + path);
          }
        }
        return OkStatus();
      }));
  return static_cast<double>(fig.bytes) / Seconds(start, Clock::now()) / 1e9;
}

Status RandomReads(const std::string& path, const DiskOptions& o, std::byte* buf,
                   DiskFigures* fig) {
  bool direct = false;
  Fd fd(OpenFile(path, O_RDONLY, &direct));
  if (fd.get() < 0) return Errno("opening " + path);
  const size_t slots = (fig->bytes - o.random_read_bytes) / kAlignment;
  std::mt19937_64 rng(7);
  std::vector<double> us;
  us.reserve(o.random_reads);
  for (int i = 0; i < o.random_reads; ++i) {
    const auto off = static_cast<off_t>((rng() % slots) * kAlignment);
    const Clock::time_point start = Clock::now();
    if (::pread(fd.get(), buf, o.random_read_bytes, off) !=
        static_cast<ssize_t>(o.random_read_bytes)) {
      return Errno("reading " + path);
    }
    us.push_back(Seconds(start, Clock::now()) * 1e6);
  }
  fig->random_read = Percentiles(&us);
  return OkStatus();
}

// `reads` random reads of `bytes` from `depth` threads at once (each its own buffer).
StatusOr<RandomReadPass> RandomReadsAtDepth(int fd, size_t file_bytes, size_t bytes, int depth,
                                            int reads) {
  std::vector<std::vector<double>> us(static_cast<size_t>(depth));
  std::vector<AlignedBuffer> bufs;
  for (int t = 0; t < depth; ++t) {
    ASSIGN_OR_RETURN(AlignedBuffer b, Allocate(bytes));
    bufs.push_back(std::move(b));
  }
  const size_t slots = (file_bytes - bytes) / kAlignment;
  std::vector<Status> results(static_cast<size_t>(depth));
  std::vector<std::thread> pool;
  const Clock::time_point start = Clock::now();
  for (int t = 0; t < depth; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + static_cast<uint64_t>(t));
      for (int i = t; i < reads; i += depth) {
        const auto off = static_cast<off_t>((rng() % slots) * kAlignment);
        const Clock::time_point a = Clock::now();
        if (::pread(fd, bufs[t].get(), bytes, off) != static_cast<ssize_t>(bytes)) {
          results[t] = Errno("random read");
          return;
        }
        us[t].push_back(Seconds(a, Clock::now()) * 1e6);
      }
    });
  }
  for (std::thread& th : pool) th.join();
  const double seconds = Seconds(start, Clock::now());
  for (const Status& s : results) RETURN_IF_ERROR(s);
  std::vector<double> all;
  for (const std::vector<double>& v : us) all.insert(all.end(), v.begin(), v.end());
  RandomReadPass pass{.bytes = bytes, .queue_depth = depth};
  pass.iops = static_cast<double>(all.size()) / seconds;
  pass.latency = Percentiles(&all);
  return pass;
}

Status RandomReadPasses(const std::string& path, const DiskOptions& o, DiskFigures* fig) {
  bool direct = false;
  Fd fd(OpenFile(path, O_RDONLY, &direct));
  if (fd.get() < 0) return Errno("opening " + path);
  for (size_t bytes : o.random_qd_bytes) {
    if (bytes == 0 || bytes % kAlignment != 0 || bytes >= fig->bytes) {
      return InvalidArgumentError("MeasureDisk: random read sizes must be multiples of 4 KiB");
    }
    for (int depth : o.queue_depths) {
      if (depth < 1 || depth > 256) {
        return InvalidArgumentError("MeasureDisk: queue depths must be in [1, 256]");
      }
      ASSIGN_OR_RETURN(RandomReadPass pass,
                       RandomReadsAtDepth(fd.get(), fig->bytes, bytes, depth, o.random_qd_reads));
      fig->random_passes.push_back(pass);
    }
  }
  return OkStatus();
}

Status MeasurePasses(const std::string& path, const DiskOptions& o,
                     const std::vector<AlignedBuffer>& bufs, DiskFigures* fig) {
  for (int threads : o.threads) {
    if (threads < 1) return InvalidArgumentError("MeasureDisk: thread counts must be >= 1");
    ASSIGN_OR_RETURN(const double w, WritePass(path, o, threads, bufs, fig));
    ASSIGN_OR_RETURN(const double r, ReadPass(path, o, threads, bufs, *fig));
    fig->writes.push_back({.threads = threads, .gbps = w});
    fig->reads.push_back({.threads = threads, .gbps = r});
    fig->write_gbps = std::max(fig->write_gbps, w);
    fig->read_gbps = std::max(fig->read_gbps, r);
  }
  return OkStatus();
}

}  // namespace

LatencyFigures Percentiles(std::vector<double>* us) {
  LatencyFigures f;
  if (us->empty()) return f;
  std::sort(us->begin(), us->end());
  auto at = [&](double p) {
    const auto i = static_cast<size_t>(p * static_cast<double>(us->size() - 1) + 0.5);
    return (*us)[std::min(i, us->size() - 1)];
  };
  f.samples = static_cast<int>(us->size());
  f.p50_us = at(0.50);
  f.p90_us = at(0.90);
  f.p99_us = at(0.99);
  double sum = 0.0;
  for (double v : *us) sum += v;
  f.mean_us = sum / static_cast<double>(us->size());
  return f;
}

const RandomReadPass* DiskFigures::FindRandom(size_t read_bytes, int queue_depth) const {
  for (const RandomReadPass& p : random_passes) {
    if (p.bytes == read_bytes && p.queue_depth == queue_depth) return &p;
  }
  return nullptr;
}

const RandomReadPass* DiskFigures::BestRandom(size_t read_bytes) const {
  const RandomReadPass* best = nullptr;
  for (const RandomReadPass& p : random_passes) {
    if (p.bytes == read_bytes && (best == nullptr || p.iops > best->iops)) best = &p;
  }
  return best;
}

StatusOr<DiskFigures> MeasureDisk(const DiskOptions& o) {
  if (o.transfer_bytes == 0 || o.transfer_bytes % kAlignment != 0 ||
      o.random_read_bytes % kAlignment != 0 || o.bytes < o.transfer_bytes) {
    return InvalidArgumentError(
        "MeasureDisk: sizes must be multiples of 4 KiB, bytes >= one "
        "transfer");
  }
  DiskFigures fig;
  fig.bytes = o.bytes / o.transfer_bytes * o.transfer_bytes;
  int max_threads = 1;
  for (int t : o.threads) max_threads = std::max(max_threads, t);
  std::vector<AlignedBuffer> bufs;
  for (int t = 0; t < max_threads; ++t) {
    ASSIGN_OR_RETURN(AlignedBuffer buf, Allocate(o.transfer_bytes));
    bufs.push_back(std::move(buf));
  }
  const std::string path = o.dir + "/.attic-bench-disk";
  Status s = MeasurePasses(path, o, bufs, &fig);
  if (s.ok() && o.random_reads > 0) s = RandomReads(path, o, bufs[0].get(), &fig);
  if (s.ok() && o.random_qd_reads > 0) s = RandomReadPasses(path, o, &fig);
  ::unlink(path.c_str());
  RETURN_IF_ERROR(s);
  return fig;
}

}  // namespace attic::bench
