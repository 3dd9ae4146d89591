// Options of the KV store and of the sequences it holds.
//
//   KvStoreOptions options;
//   options.k_pool_blocks = options.v_pool_blocks = 65536;   // 1 GiB each at 16 KiB blocks
//   ASSIGN_OR_RETURN(auto store, KvStore::Open(options));
//   RETURN_IF_ERROR(store->OpenSequence({.id = 42, .tenant = "acme", .spec = spec}));
//
// Thread safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/model_spec.h"
#include "kvstore/slab_allocator.h"
#include "kvstore/ssd/ssd_tier.h"

namespace attic {

struct KvStoreOptions {
  // Bytes of one block slot, the same in both pools. A block holds B tokens of one (layer, KV
  // head) and takes spec.block_bytes() = B * D * sizeof(dtype) bytes of its slot; a sequence
  // whose blocks need more than block_bytes is refused with InvalidArgument, one that needs less
  // leaves the rest of each slot unused. Size it for the largest model the worker serves.
  // Default: 16384 (64 tokens x 128 dims x bf16).
  size_t block_bytes = 16384;

  // Capacity of the K pool, in blocks. The pool is one slab of k_pool_blocks * block_bytes
  // bytes (rounded up to a page), taken at Open: memory is reserved for the store's lifetime,
  // in exchange for no allocation on the data path and one region for the NIC to register.
  // A sequence uses L * Hkv_shard K blocks per B tokens. Default: 4096 (64 MiB at 16 KiB).
  int64_t k_pool_blocks = 4096;

  // Capacity of the V pool, in blocks; as k_pool_blocks. Separate so that a later tier can
  // move values to SSD and shrink this pool while keys stay in DRAM. Every block of a sequence
  // takes one K and one V block, so the smaller pool bounds the store. Default: 4096.
  int64_t v_pool_blocks = 4096;

  // Where the slabs come from. nullptr: private anonymous mmap with transparent huge pages
  // requested (MmapSlabAllocator). A transport that pre-registers memory hands in its own.
  // Not owned; must outlive the store. Default: nullptr.
  SlabAllocator* allocator = nullptr;

  // Prefault both slabs at Open (MAP_POPULATE or touching each page). Open becomes slower and
  // all memory is committed at once, but appends never take page faults and a machine short
  // of RAM fails at startup instead of under load. Default: false.
  bool populate = false;

  // Verify the K and V checksums of every full block that ReadBlocks returns (DataLoss on a
  // mismatch). Costs a pass over the data on each read (about the price of the attention
  // itself): meant for debugging and canaries. Verify() checks everything on demand either
  // way. Default: false.
  bool verify_reads = false;

  // The SSD tier (docs/kvstore-ssd.md). Empty ssd.path: DRAM only, nothing is durable.
  // With a path, every prefill chunk is written through to RocksDB before AppendPrefill
  // returns, decode blocks when they seal; the store recovers the directory's sequences and
  // prefix cache at Open; and values spill to SSD while keys stay in DRAM. The V pool then
  // holds v_pool_blocks block ids (address space only: the slab is reserved, not committed)
  // of which at most value_dram_blocks keep their bytes in DRAM. Default: DRAM only.
  SsdTierOptions ssd;

  // With the SSD tier: values kept in DRAM, in blocks. Maintain() spills the least recently
  // used durable values once more than spill_high_watermark * value_dram_blocks are
  // resident, down to spill_low_watermark * value_dram_blocks. Reads may overshoot the budget
  // between two Maintain calls. 0 = v_pool_blocks: values spill as the V pool nears full
  // (above spill_high_watermark of it).
  int64_t value_dram_blocks = 0;
  double spill_high_watermark = 0.9;
  double spill_low_watermark = 0.75;

  // With the SSD tier: block bytes (K and V payload) the store may keep there — the private
  // blocks of its sequences plus the prefix entries of the prefix cache. A write-through
  // that would pass it first reclaims prefix entries no open sequence pins, least recently
  // used first (their blocks and records deleted on SSD, their DRAM copies dropped), down to
  // ssd_reclaim_watermark * ssd_capacity_bytes; if that cannot make room (everything left
  // belongs to open sequences) the write is refused with ResourceExhausted and the store
  // reports itself full (KvStore::ssd_full()). RocksDB's own overhead (8-byte checksums,
  // table files, space of deleted blocks until compaction drops their blob files) comes on
  // top: leave the disk some headroom. 0: no limit (the disk's ENOSPC is the limit).
  // Default: 0.
  uint64_t ssd_capacity_bytes = 0;
  // Fraction of ssd_capacity_bytes a reclaim frees down to, in (0, 1]: below 1 a reclaim
  // frees room for more than the write that asked, so not every write reclaims.
  // Default: 0.9.
  double ssd_reclaim_watermark = 0.9;
};

struct SequenceOptions {
  // Chosen by the engine (its request id); unique among the open sequences of a store.
  uint64_t id = 0;
  // Blocks are only ever shared between sequences of the same tenant (and model).
  std::string tenant;
  // Attention shape; must pass spec.Validate() and fit KvStoreOptions::block_bytes.
  ModelSpec spec;
  // The engine's fingerprint of model id, dtype and weights revision: sequences share prefix
  // blocks only when it is equal. 0: derived from spec.Fingerprint() (two checkpoints of the
  // same shape and name would then share, so engines serving several revisions should set it).
  uint64_t model_fingerprint = 0;
  // The KV heads [kv_head_begin, kv_head_end) this store holds for the sequence (a worker may
  // hold a head shard). kv_head_end = -1 means spec.num_kv_heads.
  int kv_head_begin = 0;
  int kv_head_end = -1;
};

}  // namespace attic
