// Database: one open RocksDB instance of the SSD tier — the DB and its "blocks" and "records"
// column family handles, closed in the exact reverse order of opening. The tier replaces it
// when RocksDB stops on an error it cannot resume from (ssd_tier.cc). Private to kvstore/ssd.
//
//   ASSIGN_OR_RETURN(auto database, Database::Open(options, direct_io, env, statistics));
//   database->db()->Get(ro, database->blocks(), key, &value);
//
// Thread safety: the handles are RocksDB's and thread-safe; the object is immutable after Open.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/statistics.h>

#include <memory>

#include "common/status.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic::ssd_internal {

class Database {
 public:
  // env may be null (the default Env). UNAVAILABLE when RocksDB cannot open the directory,
  // DATA_LOSS when it finds it corrupt, RESOURCE_EXHAUSTED when the disk is full.
  static StatusOr<std::unique_ptr<Database>> Open(const SsdTierOptions& options, bool direct_io,
                                                  rocksdb::Env* env,
                                                  std::shared_ptr<rocksdb::Statistics> statistics);
  // Closes the database, logging (not returning) RocksDB's complaint if any.
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* blocks() const { return blocks_; }
  rocksdb::ColumnFamilyHandle* records() const { return records_; }

 private:
  Database() = default;

  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_ = nullptr;
  rocksdb::ColumnFamilyHandle* blocks_ = nullptr;
  rocksdb::ColumnFamilyHandle* records_ = nullptr;
};

}  // namespace attic::ssd_internal
