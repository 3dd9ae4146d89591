#include "kvstore/ssd/internal/database.h"

#include <rocksdb/listener.h>

#include <string>
#include <vector>

#include "common/log.h"
#include "kvstore/ssd/internal/db_options.h"
#include "kvstore/ssd/internal/status_map.h"

namespace attic::ssd_internal {
namespace {

// RocksDB would retry a stopped database on its own (for ENOSPC, through its SstFileManager)
// while the disk may still be failing, and a recovery flush that fails there turns a
// resumable stop into a fatal one. The tier resumes itself, after checking that the disk takes
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

}  // namespace

StatusOr<std::unique_ptr<Database>> Database::Open(
    const SsdTierOptions& options, bool direct_io, rocksdb::Env* env,
    std::shared_ptr<rocksdb::Statistics> statistics) {
  RocksOptions ro = BuildRocksOptions(options, direct_io, env, std::move(statistics));
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
  d->blocks_ = handles[kBlocksIndex];
  d->records_ = handles[kRecordsIndex];
  return d;
}

Database::~Database() {
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* h : {records_, blocks_, default_}) {
    if (h == nullptr) continue;
    const rocksdb::Status s = db_->DestroyColumnFamilyHandle(h);
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
