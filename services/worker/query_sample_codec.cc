#include "services/worker/query_sample_codec.h"

#include <cstring>
#include <optional>

#include "common/hash.h"

namespace attic::worker_internal {
namespace {

constexpr char kMagic[4] = {'A', 'Q', 'S', '1'};
constexpr uint64_t kChecksumSeed = 0x41515331;  // "AQS1"
// magic, count, q_heads, head_dim (4 bytes each), dtype, flags (1 each), index kind (2).
constexpr size_t kFixedBytes = 4 * 4 + 2 + 2;
constexpr uint8_t kBuildFlag = 1;
constexpr uint32_t kMaxCount = uint32_t{1} << 28;
constexpr uint32_t kMaxHeads = 1 << 17;
constexpr uint32_t kMaxHeadDim = 1 << 12;

void PutU32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLe(std::string_view bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    v |= uint64_t{static_cast<unsigned char>(bytes[at + static_cast<size_t>(i)])} << (8 * i);
  }
  return v;
}

Status Malformed(size_t record, size_t offset, const std::string& why) {
  return DataLossError("query sample record " + std::to_string(record) + " at byte " +
                       std::to_string(offset) + ": " + why);
}

// Decodes the record at blob[*at...], advancing *at past it.
StatusOr<QuerySampleRecord> DecodeOne(std::string_view blob, size_t index, size_t* at) {
  const size_t start = *at;
  const std::string_view rest = blob.substr(start);
  if (rest.size() < kFixedBytes) return Malformed(index, start, "truncated header");
  if (std::memcmp(rest.data(), kMagic, sizeof(kMagic)) != 0) {
    return Malformed(index, start, "bad magic");
  }
  const auto count = static_cast<uint32_t>(GetLe(rest, 4, 4));
  const auto heads = static_cast<uint32_t>(GetLe(rest, 8, 4));
  const auto dim = static_cast<uint32_t>(GetLe(rest, 12, 4));
  const std::optional<DType> dtype = DTypeFromNumber(static_cast<int>(GetLe(rest, 16, 1)));
  const auto flags = static_cast<uint8_t>(GetLe(rest, 17, 1));
  const auto kind = static_cast<int>(GetLe(rest, 18, 2));
  if (!dtype) return Malformed(index, start, "unknown dtype");
  if (count > kMaxCount || heads > kMaxHeads || dim > kMaxHeadDim) {
    return Malformed(index, start, "sizes out of range");
  }
  const size_t q_bytes = size_t{count} * heads * dim * DTypeSize(*dtype);
  const size_t body = kFixedBytes + size_t{count} * 4 + q_bytes;
  if (rest.size() < body + 8) return Malformed(index, start, "truncated body");
  if (GetLe(rest, body, 8) != Hash64(rest.data(), body, kChecksumSeed)) {
    return Malformed(index, start, "checksum mismatch");
  }
  QuerySampleRecord r{.q_heads = static_cast<int>(heads),
                      .head_dim = static_cast<int>(dim),
                      .dtype = *dtype,
                      .build = (flags & kBuildFlag) != 0,
                      .index_kind = kind};
  r.positions.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    r.positions[i] = static_cast<int32_t>(GetLe(rest, kFixedBytes + size_t{i} * 4, 4));
  }
  r.q.assign(rest.substr(kFixedBytes + size_t{count} * 4, q_bytes));
  *at = start + body + 8;
  return r;
}

}  // namespace

void AppendQuerySample(const QuerySampleRecord& record, std::string* blob) {
  const size_t start = blob->size();
  blob->append(kMagic, sizeof(kMagic));
  PutU32(static_cast<uint32_t>(record.positions.size()), blob);
  PutU32(static_cast<uint32_t>(record.q_heads), blob);
  PutU32(static_cast<uint32_t>(record.head_dim), blob);
  blob->push_back(static_cast<char>(static_cast<uint8_t>(record.dtype)));
  blob->push_back(static_cast<char>(record.build ? kBuildFlag : 0));
  blob->push_back(static_cast<char>(record.index_kind & 0xff));
  blob->push_back(static_cast<char>((record.index_kind >> 8) & 0xff));
  for (int32_t p : record.positions) PutU32(static_cast<uint32_t>(p), blob);
  blob->append(record.q);
  PutU64(Hash64(blob->data() + start, blob->size() - start, kChecksumSeed), blob);
}

StatusOr<std::vector<QuerySampleRecord>> DecodeQuerySamples(std::string_view blob) {
  std::vector<QuerySampleRecord> records;
  size_t at = 0;
  while (at < blob.size()) {
    ASSIGN_OR_RETURN(QuerySampleRecord r, DecodeOne(blob, records.size(), &at));
    records.push_back(std::move(r));
  }
  return records;
}

}  // namespace attic::worker_internal
