#include "kvstore/ssd/internal/database.h"

#include <rocksdb/listener.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/log.h"
#include "kvstore/ssd/internal/block_shards.h"
#include "kvstore/ssd/internal/db_options.h"
#include "kvstore/ssd/internal/status_map.h"

namespace attic::ssd_internal {
namespace {

// RocksDB would retry a stopped database on its own (for ENOSPC, through its SstFileManager)
// while the disk may still be failing, and its recovery flush can wait forever on a memtable a
// failed shard flush left behind. The tier recovers itself, by reopening once the disk takes
// writes again (ssd_tier.cc), so RocksDB's own attempts are switched off.
class ManualRecoveryOnly : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "AtticManualRecoveryOnly"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

// Open's own mapping: a database that cannot be opened is UNAVAILABLE unless RocksDB says it
// is corrupt (DATA_LOSS) or the disk is full (RESOURCE_EXHAUSTED).
Status OpenError(const rocksdb::Status& s, const std::string& path) {
  Status mapped = FromRocks(s, "opening the SSD tier", path);
  const StatusCode code = mapped.code();
  if (code == StatusCode::kDataLoss || code == StatusCode::kResourceExhausted) return mapped;
  return UnavailableError(std::string(mapped.message()));
}

// The block shard count of a directory RocksDB already holds, from its column families: 0
// when it has none (a new directory), FAILED_PRECONDITION for the unsharded layout or a set of
// shards with a gap.
StatusOr<int> ShardsOnDisk(const std::string& path, rocksdb::Env* env) {
  rocksdb::Env* e = env != nullptr ? env : rocksdb::Env::Default();
  if (e->FileExists(path + "/CURRENT").IsNotFound()) return 0;
  rocksdb::DBOptions o;
  o.env = e;
  std::vector<std::string> names;
  const rocksdb::Status s = rocksdb::DB::ListColumnFamilies(o, path, &names);
  if (!s.ok()) return OpenError(s, path);
  std::vector<int> shards;
  for (const std::string& name : names) {
    if (name == kUnshardedBlocksFamily) {
      return FailedPreconditionError(
          "opening the SSD tier (" + path +
          "): the directory has the single 'blocks' column family of an earlier release, whose "
          "block keys this release cannot read; remove the directory (the tier is a cache)");
    }
    const int shard = ParseBlockFamilyName(name);
    if (shard >= 0) shards.push_back(shard);
  }
  std::sort(shards.begin(), shards.end());
  for (size_t i = 0; i < shards.size(); ++i) {
    if (shards[i] != static_cast<int>(i) || shards.size() > static_cast<size_t>(kMaxBlockShards)) {
      return FailedPreconditionError("opening the SSD tier (" + path +
                                     "): its block families are " + std::to_string(shards.size()) +
                                     " shards but not blocks.0 .. blocks." +
                                     std::to_string(shards.size() - 1));
    }
  }
  return static_cast<int>(shards.size());
}

}  // namespace

StatusOr<std::unique_ptr<Database>> Database::Open(
    const SsdTierOptions& options, bool direct_io, rocksdb::Env* env,
    std::shared_ptr<rocksdb::Statistics> statistics) {
  ASSIGN_OR_RETURN(int shards, ShardsOnDisk(options.path, env));
  if (shards == 0) {
    shards = options.block_shards > 0 ? options.block_shards : DefaultBlockShards();
  }
  RocksOptions ro = BuildRocksOptions(options, shards, direct_io, env, std::move(statistics));
  ro.db.listeners.push_back(std::make_shared<ManualRecoveryOnly>());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status s =
      rocksdb::DB::Open(ro.db, options.path, ro.column_families, &handles, &db);
  if (!s.ok()) return OpenError(s, options.path);
  std::unique_ptr<Database> d(new Database());
  d->path_ = options.path;
  d->db_.reset(db);
  d->default_ = handles[kDefaultIndex];
  d->records_ = handles[kRecordsIndex];
  d->blocks_.assign(handles.begin() + kFirstBlocksIndex, handles.end());
  return d;
}

rocksdb::ColumnFamilyHandle* Database::blocks_of(std::string_view key) const {
  return blocks_[BlockShardOf(key, block_shards())];
}

Database::~Database() {
  if (db_ == nullptr) return;
  std::vector<rocksdb::ColumnFamilyHandle*> handles = {default_, records_};
  handles.insert(handles.end(), blocks_.begin(), blocks_.end());
  for (auto it = handles.rbegin(); it != handles.rend(); ++it) {
    if (*it == nullptr) continue;
    const rocksdb::Status s = db_->DestroyColumnFamilyHandle(*it);
    if (!s.ok()) {
      ATTIC_LOG(kWarn, "ssd") << "closing " << path_ << ": " << s.ToString();
    }
  }
  const rocksdb::Status s = db_->Close();
  if (!s.ok()) {
    ATTIC_LOG(kWarn, "ssd") << "closing " << path_ << ": " << s.ToString();
  }
}

}  // namespace attic::ssd_internal
