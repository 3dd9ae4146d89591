#include "bench/memory_bandwidth.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "attention_workers/isa.h"
#include "common/x86_intrinsics.h"

namespace attic::bench {
namespace {

// Each reader keeps several independent accumulators so loads are not serialized; the XOR
// result is returned so the compiler cannot drop the loads.
__attribute__((target("avx512f"))) uint64_t ReadAvx512(const std::byte* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  const __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  return static_cast<uint64_t>(_mm512_reduce_or_epi64(x));
}

__attribute__((target("avx2"))) uint64_t ReadAvx2(const std::byte* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  return static_cast<uint64_t>(_mm256_extract_epi64(x, 0) ^ _mm256_extract_epi64(x, 3));
}

uint64_t ReadScalar(const std::byte* p, size_t n) {
  uint64_t a0 = 0, a1 = 0;
  for (size_t i = 0; i < n; i += 16) {
    uint64_t x, y;
    std::memcpy(&x, p + i, 8);
    std::memcpy(&y, p + i + 8, 8);
    a0 ^= x;
    a1 ^= y;
  }
  return a0 ^ a1;
}

uint64_t Read(const std::byte* p, size_t n) {
  const IsaLevel isa = ActiveIsa();
  if (isa >= IsaLevel::kAvx512) return ReadAvx512(p, n);
  if (isa >= IsaLevel::kAvx2) return ReadAvx2(p, n);
  return ReadScalar(p, n);
}

// 12 independent chains: twice the FMA latency (4 cycles) times the FMA pipes (2) needs 8;
// the accumulators stay in registers (named variables, not an array the compiler may spill).
#define ATTIC_FMA_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
constexpr int kFmaChains = 12;

__attribute__((target("avx512f"), noinline)) float FmaAvx512(int64_t n, float b) {
#define ATTIC_DECL(i) __m512 a##i = _mm512_set1_ps(0.001f * (i));
#define ATTIC_STEP(i) a##i = _mm512_fmadd_ps(a##i, vb, vc);
#define ATTIC_SUM(i) s = _mm512_add_ps(s, a##i);
  ATTIC_FMA_CHAINS(ATTIC_DECL)
  const __m512 vb = _mm512_set1_ps(b), vc = _mm512_set1_ps(1e-3f);
  for (int64_t k = 0; k < n; ++k) {
    ATTIC_FMA_CHAINS(ATTIC_STEP)
  }
  __m512 s = _mm512_setzero_ps();
  ATTIC_FMA_CHAINS(ATTIC_SUM)
  return _mm512_reduce_add_ps(s);
#undef ATTIC_DECL
#undef ATTIC_STEP
#undef ATTIC_SUM
}

__attribute__((target("avx2,fma"), noinline)) float FmaAvx2(int64_t n, float b) {
#define ATTIC_DECL(i) __m256 a##i = _mm256_set1_ps(0.001f * (i));
#define ATTIC_STEP(i) a##i = _mm256_fmadd_ps(a##i, vb, vc);
#define ATTIC_SUM(i) s = _mm256_add_ps(s, a##i);
  ATTIC_FMA_CHAINS(ATTIC_DECL)
  const __m256 vb = _mm256_set1_ps(b), vc = _mm256_set1_ps(1e-3f);
  for (int64_t k = 0; k < n; ++k) {
    ATTIC_FMA_CHAINS(ATTIC_STEP)
  }
  __m256 s = _mm256_setzero_ps();
  ATTIC_FMA_CHAINS(ATTIC_SUM)
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum;
#undef ATTIC_DECL
#undef ATTIC_STEP
#undef ATTIC_SUM
}

__attribute__((noinline)) float FmaScalar(int64_t n, float b) {
#define ATTIC_DECL(i) float a##i = 0.001f * (i);
#define ATTIC_STEP(i) a##i = __builtin_fmaf(a##i, b, 1e-3f);
#define ATTIC_SUM(i) s += a##i;
  ATTIC_FMA_CHAINS(ATTIC_DECL)
  for (int64_t k = 0; k < n; ++k) {
    ATTIC_FMA_CHAINS(ATTIC_STEP)
  }
  float s = 0.0f;
  ATTIC_FMA_CHAINS(ATTIC_SUM)
  return s;
#undef ATTIC_DECL
#undef ATTIC_STEP
#undef ATTIC_SUM
}

// Runs n steps of kFmaChains FMAs; returns the instruction's lane count.
int RunFmas(int64_t n, float b, float* sink) {
  const IsaLevel isa = ActiveIsa();
  if (isa >= IsaLevel::kAvx512) {
    *sink += FmaAvx512(n, b);
    return 16;
  }
  if (isa >= IsaLevel::kAvx2) {
    *sink += FmaAvx2(n, b);
    return 8;
  }
  *sink += FmaScalar(n, b);
  return 1;
}

}  // namespace

FmaThroughput MeasureFmaThroughput(ThreadPool& pool, int reps) {
  const int threads = pool.num_threads();
  // Calibrate on one thread to about 50 ms per repetition.
  float sink = 0.0f;
  int64_t steps = 1 << 20;
  int lanes = 1;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    lanes = RunFmas(steps, 0.999f, &sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.01) {
      steps = static_cast<int64_t>(static_cast<double>(steps) * 0.05 / s) + 1;
      break;
    }
    steps *= 4;
  }
  FmaThroughput best{.best_gflops = 0.0, .lanes = lanes};
  std::vector<float> sinks(static_cast<size_t>(threads));
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(threads, [&](int64_t i) {
      (void)RunFmas(steps, 0.999f, &sinks[static_cast<size_t>(i)]);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double gflops =
        static_cast<double>(threads) * static_cast<double>(steps) * kFmaChains * lanes / s / 1e9;
    best.best_gflops = std::max(best.best_gflops, gflops);
  }
  return best;
}

ReadBandwidth MeasureReadBandwidth(ThreadPool& pool, size_t bytes, int reps) {
  bytes &= ~size_t{4095};
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return {};
  auto* buf = static_cast<std::byte*>(mem);
  // Distinct nonzero pages, written by the threads that later read them.
  constexpr size_t kPiece = size_t{1} << 20;
  const int64_t pieces = static_cast<int64_t>(bytes / kPiece);
  pool.ParallelFor(pieces, [&](int64_t i) {
    std::memset(buf + static_cast<size_t>(i) * kPiece, static_cast<int>(i & 0xff) | 1, kPiece);
  });
  std::vector<double> gbps;
  std::atomic<uint64_t> sink{0};
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(pieces, [&](int64_t i) {
      sink.fetch_xor(Read(buf + static_cast<size_t>(i) * kPiece, kPiece), std::memory_order_relaxed);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gbps.push_back(static_cast<double>(pieces) * kPiece / s / 1e9);
  }
  munmap(mem, bytes);
  std::sort(gbps.begin(), gbps.end());
  if (gbps.empty()) return {};
  return {gbps.back(), gbps[gbps.size() / 2]};
}

}  // namespace attic::bench
