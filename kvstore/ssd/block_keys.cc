// Tier keys: one tag byte, then big-endian fixed-width fields, so that keys of one sequence
// (or one prefix entry) sort together and in numeric order. In block keys the kind comes right
// after the owner (sequence, or scope and hash): an owner's V blocks sort apart from its K
// blocks, so a flush writes them contiguously into blob files and a reload of values alone
// reads runs of adjacent blobs.
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "kvstore/ssd/internal/key_tags.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic {
namespace {

using ssd_internal::kManifestTag;
using ssd_internal::kPrefixEntryTag;
using ssd_internal::kPrivateBlockTag;
using ssd_internal::kSampleTag;
using ssd_internal::kSharedBlockTag;

// Sizes of the keys with every field present.
constexpr size_t kPrivateBlockKeyBytes = 1 + 8 + 1 + 4 + 4 + 4;
constexpr size_t kSharedBlockKeyBytes = 1 + 8 + 8 + 1 + 4 + 4;
constexpr size_t kManifestKeyBytes = 1 + 8;
constexpr size_t kSampleKeyBytes = 1 + 8 + 4;
constexpr size_t kPrefixEntryKeyBytes = 1 + 8 + 8;

void Put64(std::string* s, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) s->push_back(static_cast<char>(v >> shift));
}

void Put32(std::string* s, int v) {
  const auto u = static_cast<uint32_t>(v);
  for (int shift = 24; shift >= 0; shift -= 8) s->push_back(static_cast<char>(u >> shift));
}

uint64_t Get64(std::string_view s, size_t at) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

uint32_t Get32(std::string_view s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

std::string Tagged(char tag, size_t reserve) {
  std::string s;
  s.reserve(reserve);
  s.push_back(tag);
  return s;
}

std::string Hex(std::string_view key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "key 0x";
  for (char c : key) {
    const auto b = static_cast<uint8_t>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string U64(uint64_t v) { return std::to_string(v); }

std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

const char* KindName(char kind) { return kind == 0 ? "K" : kind == 1 ? "V" : "?"; }

std::string DescribePrivateBlock(std::string_view key) {
  return "private block seq " + U64(Get64(key, 1)) + " layer " + U64(Get32(key, 10)) + " head " +
         U64(Get32(key, 14)) + " block " + U64(Get32(key, 18)) + " " + KindName(key[9]);
}

std::string DescribeSharedBlock(std::string_view key) {
  return "shared block scope " + Hex64(Get64(key, 1)) + " hash " + Hex64(Get64(key, 9)) +
         " layer " + U64(Get32(key, 18)) + " head " + U64(Get32(key, 22)) + " " + KindName(key[17]);
}

}  // namespace

std::string PrivateBlockKey(uint64_t seq_id, int layer, int kv_head, int block, BlockKind kind) {
  std::string s = Tagged(kPrivateBlockTag, kPrivateBlockKeyBytes);
  Put64(&s, seq_id);
  s.push_back(static_cast<char>(kind));
  Put32(&s, layer);
  Put32(&s, kv_head);
  Put32(&s, block);
  return s;
}

std::string SharedBlockKey(uint64_t scope, uint64_t hash, int layer, int kv_head, BlockKind kind) {
  std::string s = Tagged(kSharedBlockTag, kSharedBlockKeyBytes);
  Put64(&s, scope);
  Put64(&s, hash);
  s.push_back(static_cast<char>(kind));
  Put32(&s, layer);
  Put32(&s, kv_head);
  return s;
}

std::string SharedBlockPrefix(uint64_t scope, uint64_t hash) {
  std::string s = Tagged(kSharedBlockTag, 1 + 8 + 8);
  Put64(&s, scope);
  Put64(&s, hash);
  return s;
}

std::string PrivateBlockPrefix(uint64_t seq_id) {
  std::string s = Tagged(kPrivateBlockTag, 1 + 8);
  Put64(&s, seq_id);
  return s;
}

std::string ManifestKey(uint64_t seq_id) {
  std::string s = Tagged(kManifestTag, kManifestKeyBytes);
  Put64(&s, seq_id);
  return s;
}

std::string SampleKey(uint64_t seq_id, int layer) {
  std::string s = Tagged(kSampleTag, kSampleKeyBytes);
  Put64(&s, seq_id);
  Put32(&s, layer);
  return s;
}

std::string PrefixEntryKey(uint64_t scope, uint64_t hash) {
  std::string s = Tagged(kPrefixEntryTag, kPrefixEntryKeyBytes);
  Put64(&s, scope);
  Put64(&s, hash);
  return s;
}

std::string_view ManifestKeyPrefix() {
  static constexpr char kPrefix[] = {kManifestTag};
  return {kPrefix, 1};
}

std::string_view PrefixEntryKeyPrefix() {
  static constexpr char kPrefix[] = {kPrefixEntryTag};
  return {kPrefix, 1};
}

std::string SamplePrefix(uint64_t seq_id) {
  std::string s = Tagged(kSampleTag, 1 + 8);
  Put64(&s, seq_id);
  return s;
}

bool ParseManifestKey(std::string_view key, uint64_t* seq_id) {
  if (key.size() != kManifestKeyBytes || key[0] != kManifestTag) return false;
  *seq_id = Get64(key, 1);
  return true;
}

bool ParseSampleKey(std::string_view key, uint64_t* seq_id, int* layer) {
  if (key.size() != kSampleKeyBytes || key[0] != kSampleTag) return false;
  *seq_id = Get64(key, 1);
  *layer = static_cast<int>(Get32(key, 9));
  return true;
}

bool ParsePrefixEntryKey(std::string_view key, uint64_t* scope, uint64_t* hash) {
  if (key.size() != kPrefixEntryKeyBytes || key[0] != kPrefixEntryTag) return false;
  *scope = Get64(key, 1);
  *hash = Get64(key, 9);
  return true;
}

std::string DescribeTierKey(std::string_view key) {
  if (key.empty()) return "empty key";
  const char tag = key[0];
  const size_t n = key.size();
  if (tag == kPrivateBlockTag && n == kPrivateBlockKeyBytes) return DescribePrivateBlock(key);
  if (tag == kSharedBlockTag && n == kSharedBlockKeyBytes) return DescribeSharedBlock(key);
  if (tag == kManifestTag && n == kManifestKeyBytes) return "manifest seq " + U64(Get64(key, 1));
  if (tag == kSampleTag && n == kSampleKeyBytes) {
    return "query sample seq " + U64(Get64(key, 1)) + " layer " + U64(Get32(key, 9));
  }
  if (tag == kPrefixEntryTag && n == kPrefixEntryKeyBytes) {
    return "prefix entry scope " + Hex64(Get64(key, 1)) + " hash " + Hex64(Get64(key, 9));
  }
  if (tag == kPrivateBlockTag && n == 1 + 8) return "private blocks of seq " + U64(Get64(key, 1));
  return Hex(key);
}

}  // namespace attic
