#include "common/hash.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace attic {
namespace {

uint32_t Crc32cOf(const std::string& s) { return Crc32c(s.data(), s.size()); }

// Bit-at-a-time CRC-32C straight from the definition (reflected polynomial 0x82F63B78).
uint32_t ReferenceCrc32c(const unsigned char* p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc & 1u) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32cOf("123456789"), 0xE3069283u);  // the CRC catalogue's check value
  EXPECT_EQ(Crc32cOf(""), 0u);
  EXPECT_EQ(Crc32cOf("a"), 0xC1D04330u);
  // RFC 3720 (iSCSI), appendix B.4.
  std::vector<unsigned char> buf(32, 0x00);
  EXPECT_EQ(Crc32c(buf.data(), buf.size()), 0x8A9136AAu);
  std::fill(buf.begin(), buf.end(), 0xff);
  EXPECT_EQ(Crc32c(buf.data(), buf.size()), 0x62A8AB43u);
  std::iota(buf.begin(), buf.end(), 0);
  EXPECT_EQ(Crc32c(buf.data(), buf.size()), 0x46DD794Eu);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(Crc32c(buf.data(), buf.size()), 0x113FDB5Cu);
}

TEST(Crc32cTest, MatchesBitwiseReferenceForEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::vector<unsigned char> data(300);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; offset + n <= data.size(); ++n) {
      ASSERT_EQ(Crc32c(data.data() + offset, n), ReferenceCrc32c(data.data() + offset, n))
          << "offset " << offset << " length " << n;
    }
  }
}

TEST(Crc32cTest, LargeBuffer) {
  std::vector<unsigned char> block(size_t{64} * 128 * 2);  // one bf16 KV block of B = 64, D = 128
  std::mt19937 rng(1);
  for (auto& b : block) b = static_cast<unsigned char>(rng());
  EXPECT_EQ(Crc32c(block.data(), block.size()), ReferenceCrc32c(block.data(), block.size()));
}

TEST(Crc32cTest, ChainsAcrossPieces) {
  const std::string s = "the quick brown fox jumps over the lazy dog, twice over";
  const uint32_t whole = Crc32cOf(s);
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    const uint32_t first = Crc32c(s.data(), cut);
    ASSERT_EQ(Crc32c(s.data() + cut, s.size() - cut, first), whole) << "cut at " << cut;
  }
}

TEST(Crc32cTest, DetectsSingleBitFlips) {
  std::vector<unsigned char> block(4096);
  std::mt19937 rng(3);
  for (auto& b : block) b = static_cast<unsigned char>(rng());
  const uint32_t good = Crc32c(block.data(), block.size());
  for (size_t bit = 0; bit < block.size() * 8; bit += 61) {
    block[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    ASSERT_NE(Crc32c(block.data(), block.size()), good) << "bit " << bit;
    block[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
  }
}

uint64_t Hash64Of(const std::string& s, uint64_t seed) { return Hash64(s.data(), s.size(), seed); }

// Hash64 names content-addressed blocks that live on SSD across restarts and releases, so its
// values are part of the storage format. If one of these changes, stored prefix caches are lost.
TEST(Hash64Test, StableValues) {
  EXPECT_EQ(Hash64Of("", 0), 0x9ac2bac5a9c38ba3ULL);
  EXPECT_EQ(Hash64Of("a", 0), 0xba964ff0d580805aULL);
  EXPECT_EQ(Hash64Of("123456789", 0), 0x730f833162949f1eULL);
  EXPECT_EQ(Hash64Of("123456789", 42), 0x74207002da1a9743ULL);
  EXPECT_EQ(Hash64Of("attention offloading with a paged KV cache", 0x9e3779b97f4a7c15ULL),
            0xd83489169b4474bcULL);
  std::vector<int32_t> tokens(64);
  std::iota(tokens.begin(), tokens.end(), 1000);
  EXPECT_EQ(Hash64(tokens.data(), tokens.size() * sizeof(int32_t), 0), 0x9080a3a90917a3fbULL);
  EXPECT_EQ(HashCombine(1, 2), 0x409e82839179e5adULL);
}

TEST(Hash64Test, Deterministic) {
  EXPECT_EQ(Hash64Of("block", 1), Hash64Of("block", 1));
  const std::string a = "same bytes";
  const std::string b = std::string("same") + " bytes";
  EXPECT_EQ(Hash64Of(a, 5), Hash64Of(b, 5));
}

TEST(Hash64Test, SeedMatters) {
  std::set<uint64_t> seen;
  for (uint64_t seed = 0; seed < 1000; ++seed) seen.insert(Hash64Of("tokens", seed));
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Hash64Test, LengthMattersEvenForZeroBytes) {
  const std::vector<unsigned char> zeros(64, 0);
  std::set<uint64_t> seen;
  for (size_t n = 0; n <= zeros.size(); ++n) seen.insert(Hash64(zeros.data(), n, 0));
  EXPECT_EQ(seen.size(), zeros.size() + 1);
}

TEST(Hash64Test, EveryPrefixDistinct) {
  std::mt19937 rng(11);
  std::vector<unsigned char> data(200);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
  std::set<uint64_t> seen;
  for (size_t n = 0; n <= data.size(); ++n) seen.insert(Hash64(data.data(), n, 3));
  EXPECT_EQ(seen.size(), data.size() + 1);
}

TEST(Hash64Test, EmptyInputDoesNotReadThePointer) {
  const char c = 'x';
  EXPECT_EQ(Hash64(&c, 0, 9), Hash64Of("", 9));
}

// An empty std::vector's data() is null. Fails under the asan preset as of this writing: Hash64
// passes the null pointer to memcpy for the empty tail (UBSan: "null pointer passed as argument
// 2, which is declared to never be null"). Disabled until common/hash.cc skips the empty copy.
TEST(Hash64Test, EmptyVectorDataIsNull) {
  const std::vector<unsigned char> empty;
  EXPECT_EQ(Hash64(empty.data(), 0, 9), Hash64Of("", 9));
  EXPECT_EQ(Crc32c(empty.data(), 0), 0u);
}

TEST(Hash64Test, IndependentOfAlignment) {
  std::vector<unsigned char> buf(256 + 8);
  std::mt19937 rng(5);
  std::vector<unsigned char> data(256);
  for (auto& b : data) b = static_cast<unsigned char>(rng());
  const uint64_t want = Hash64(data.data(), data.size(), 17);
  for (size_t off = 0; off < 8; ++off) {
    std::memcpy(buf.data() + off, data.data(), data.size());
    EXPECT_EQ(Hash64(buf.data() + off, data.size(), 17), want) << "offset " << off;
  }
}

// Flipping any one input bit changes about half of the output bits, for every length class
// (the 16-byte loop, the 8-byte step and the tail).
TEST(Hash64Test, SingleBitFlipsAvalanche) {
  std::mt19937 rng(9);
  for (const size_t n : {1u, 7u, 8u, 9u, 15u, 16u, 17u, 24u, 31u, 64u, 100u}) {
    std::vector<unsigned char> data(n);
    for (auto& b : data) b = static_cast<unsigned char>(rng());
    const uint64_t base = Hash64(data.data(), n, 0);
    double total = 0;
    int flips = 0;
    for (size_t bit = 0; bit < n * 8; ++bit) {
      data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
      const int changed = std::popcount(Hash64(data.data(), n, 0) ^ base);
      data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
      ASSERT_GE(changed, 8) << "length " << n << " bit " << bit;
      total += changed;
      ++flips;
    }
    const double mean = total / flips;
    EXPECT_GT(mean, 28.0) << "length " << n;
    EXPECT_LT(mean, 36.0) << "length " << n;
  }
}

TEST(Hash64Test, ChainedBlockHashesDependOnTheParent) {
  // h_i = H(h_{i-1}, tokens of block i): the same block after different prefixes hashes apart.
  std::vector<int32_t> block(64, 7);
  const size_t bytes = block.size() * sizeof(int32_t);
  const uint64_t after_a = Hash64(block.data(), bytes, Hash64Of("prefix a", 0));
  const uint64_t after_b = Hash64(block.data(), bytes, Hash64Of("prefix b", 0));
  EXPECT_NE(after_a, after_b);
}

TEST(HashCombineTest, OrderSensitive) {
  EXPECT_NE(HashCombine(1, 2), HashCombine(2, 1));
  EXPECT_NE(HashCombine(0, 1), HashCombine(1, 0));
  const uint64_t a = Hash64Of("a", 0);
  const uint64_t b = Hash64Of("b", 0);
  EXPECT_NE(HashCombine(a, b), HashCombine(b, a));
  EXPECT_NE(HashCombine(HashCombine(a, b), a), HashCombine(HashCombine(a, a), b));
}

TEST(HashCombineTest, DeterministicAndSpread) {
  EXPECT_EQ(HashCombine(3, 4), HashCombine(3, 4));
  EXPECT_NE(HashCombine(0, 0), 0u);
  EXPECT_NE(HashCombine(5, 5), HashCombine(6, 6));  // equal pairs do not cancel out
  std::set<uint64_t> seen;
  for (uint64_t a = 0; a < 64; ++a) {
    for (uint64_t b = 0; b < 64; ++b) seen.insert(HashCombine(a, b));
  }
  EXPECT_EQ(seen.size(), 64u * 64u);
}

}  // namespace
}  // namespace attic
