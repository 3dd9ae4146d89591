// Hashes and checksums.
//
//   uint64_t h = attic::Hash64(tokens, n * sizeof(int32_t), parent_hash);  // chained block hash
//   uint32_t c = attic::Crc32c(block, bytes);                              // stored-block checksum
//
// Hash64 is a fast, well-mixed, non-cryptographic 64-bit hash, stable across machines and
// releases (it names content-addressed blocks). It is not collision resistant against an
// adversary: engines that need that should derive block hashes from a cryptographic digest.
// Crc32c is CRC-32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2.
//
// Thread safety: stateless functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace attic {

uint64_t Hash64(const void* data, size_t n, uint64_t seed);
// Combines two 64-bit values into one (order matters).
uint64_t HashCombine(uint64_t a, uint64_t b);

uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace attic
