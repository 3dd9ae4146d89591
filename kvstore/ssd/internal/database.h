// Database: one open RocksDB instance of the SSD tier — the DB and its column family handles
// ("records" and the block shards "blocks.0" .. "blocks.N-1"), closed in the exact reverse
// order of opening. The tier replaces it to recover from a failed write (ssd_tier.cc). Private
// to kvstore/ssd.
//
//   ASSIGN_OR_RETURN(auto database, Database::Open(options, direct_io, env, statistics));
//   database->db()->Get(ro, database->blocks_of(key), key, &value);
//
// The shard count is the directory's: a new directory gets options.block_shards (0: the
// machine's default), an existing one keeps the count it was created with, whatever the
// options say (block_shards() tells which).
//
// Thread safety: the handles are RocksDB's and thread-safe; the object is immutable after Open.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/statistics.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic::ssd_internal {

class Database {
 public:
  // env may be null (the default Env). UNAVAILABLE when RocksDB cannot open the directory,
  // DATA_LOSS when it finds it corrupt, RESOURCE_EXHAUSTED when the disk is full,
  // FAILED_PRECONDITION when the directory has the unsharded layout of earlier releases (or
  // block families that are not blocks.0 .. blocks.N-1).
  static StatusOr<std::unique_ptr<Database>> Open(const SsdTierOptions& options, bool direct_io,
                                                  rocksdb::Env* env,
                                                  std::shared_ptr<rocksdb::Statistics> statistics);
  // Closes the database, logging (not returning) RocksDB's complaint if any.
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* records() const { return records_; }
  int block_shards() const { return static_cast<int>(blocks_.size()); }
  // REQUIRES: 0 <= shard < block_shards().
  rocksdb::ColumnFamilyHandle* blocks(int shard) const { return blocks_[shard]; }
  // The shard family that holds (or would hold) a block key.
  rocksdb::ColumnFamilyHandle* blocks_of(std::string_view key) const;
  // Every block shard, in shard order.
  const std::vector<rocksdb::ColumnFamilyHandle*>& all_blocks() const { return blocks_; }

 private:
  Database() = default;

  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_ = nullptr;
  rocksdb::ColumnFamilyHandle* records_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> blocks_;
};

}  // namespace attic::ssd_internal
