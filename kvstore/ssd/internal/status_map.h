// The one adapter from rocksdb::Status to attic::Status. Private to kvstore/ssd.
//
//   rocksdb::Status s = db->Write(wo, &wb);
//   RETURN_IF_ERROR(ssd_internal::FromRocks(s, "write of 256 blocks", path));
//   // RESOURCE_EXHAUSTED: "write of 256 blocks to /var/lib/attic/kv: IO error: No space left..."
//
// Thread safety: a pure function.
#pragma once

#include <rocksdb/status.h>

#include <string_view>

#include "common/status.h"

namespace attic::ssd_internal {

// OK stays OK. Otherwise the code follows docs/kvstore-ssd.md ("Errors") and the message reads
// "<operation> (<path>): <RocksDB's text>".
//   NoSpace, MemoryLimit                        -> RESOURCE_EXHAUSTED
//   IOError, ShutdownInProgress, Busy, TryAgain,
//   TimedOut, Incomplete, a stopped database     -> UNAVAILABLE
//   Corruption                                   -> DATA_LOSS
//   NotFound                                     -> NOT_FOUND
//   InvalidArgument                              -> INVALID_ARGUMENT
//   NotSupported                                 -> FAILED_PRECONDITION
//   Aborted                                      -> ABORTED
//   anything else                                -> INTERNAL
Status FromRocks(const rocksdb::Status& s, std::string_view operation, std::string_view path);

// The code alone (for callers that build their own message).
StatusCode CodeOf(const rocksdb::Status& s);

}  // namespace attic::ssd_internal
