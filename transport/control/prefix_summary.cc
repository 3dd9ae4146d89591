#include "transport/control/prefix_summary.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <utility>

#include "common/hash.h"

namespace attic::scheduler {
namespace {

// The bit positions of one key: low + i * (high | 1), masked (num_bits is a power of two).
struct Probes {
  uint64_t base;
  uint64_t step;
  uint64_t mask;
  uint64_t at(int i) const { return (base + static_cast<uint64_t>(i) * step) & mask; }
};

Probes ProbesOf(uint64_t scope, uint64_t hash, size_t num_bits) {
  const uint64_t key = HashCombine(scope, hash);
  return {.base = key & 0xffffffffu, .step = (key >> 32) | 1u, .mask = num_bits - 1};
}

}  // namespace

PrefixSummary::PrefixSummary(size_t num_bits, int num_hashes)
    : bits_(num_bits / 8, '\0'), num_hashes_(num_hashes) {}

PrefixSummary PrefixSummary::ForEntries(uint64_t entries, double false_positive_rate) {
  const double p = std::clamp(false_positive_rate, 1e-9, 0.5);
  const double ln2 = std::log(2.0);
  const double n = static_cast<double>(std::max<uint64_t>(entries, 1));
  const double wanted = std::ceil(-n * std::log(p) / (ln2 * ln2));
  size_t bits = kMinBits;
  while (bits < kMaxBits && static_cast<double>(bits) < wanted) bits *= 2;
  const double k = std::round(static_cast<double>(bits) / n * ln2);
  return PrefixSummary(bits, static_cast<int>(std::clamp(k, 1.0, double{kMaxHashes})));
}

StatusOr<PrefixSummary> PrefixSummary::FromBits(std::string bits, int num_hashes,
                                                uint64_t entries) {
  if (bits.empty()) return PrefixSummary();
  if (!std::has_single_bit(bits.size()) || bits.size() < kMinBits / 8 ||
      bits.size() > kMaxBits / 8) {
    return InvalidArgumentError(
        "prefix summary of " + std::to_string(bits.size()) + " bytes: must be a power of two in [" +
        std::to_string(kMinBits / 8) + ", " + std::to_string(kMaxBits / 8) + "]");
  }
  if (num_hashes < 1 || num_hashes > kMaxHashes) {
    return InvalidArgumentError("prefix summary with " + std::to_string(num_hashes) +
                                " hashes: must be in [1, " + std::to_string(kMaxHashes) + "]");
  }
  PrefixSummary s;
  s.bits_ = std::move(bits);
  s.num_hashes_ = num_hashes;
  s.entries_ = entries;
  return s;
}

void PrefixSummary::Add(uint64_t scope, uint64_t hash) {
  if (bits_.empty()) return;
  const Probes p = ProbesOf(scope, hash, bits_.size() * 8);
  for (int i = 0; i < num_hashes_; ++i) {
    const uint64_t bit = p.at(i);
    bits_[bit / 8] =
        static_cast<char>(static_cast<unsigned char>(bits_[bit / 8]) | (1u << (bit % 8)));
  }
  ++entries_;
}

bool PrefixSummary::MayContain(uint64_t scope, uint64_t hash) const {
  if (bits_.empty()) return false;
  const Probes p = ProbesOf(scope, hash, bits_.size() * 8);
  for (int i = 0; i < num_hashes_; ++i) {
    const uint64_t bit = p.at(i);
    if ((static_cast<unsigned char>(bits_[bit / 8]) & (1u << (bit % 8))) == 0) return false;
  }
  return true;
}

int PrefixSummary::LeadingRun(uint64_t scope, std::span<const uint64_t> hashes) const {
  int run = 0;
  for (const uint64_t h : hashes) {
    if (!MayContain(scope, h)) break;
    ++run;
  }
  return run;
}

}  // namespace attic::scheduler
