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

}  // namespace

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
