# Attic wire protocol, version 1: the Cap'n Proto headers of the worker's data-plane messages.
#
# Every message is one UCX Active Message. Its UCX AM header is the fixed FrameHeader of
# transport/frame.h (magic, version, method, request id, sizes, deadline, status). Its data is
# this file's header message (a flat, unpacked Cap'n Proto message) followed by the raw tensor
# payload. Tensor fields below are byte offsets into that payload; every tensor is contiguous,
# row-major, little-endian, with the shape and dtype given beside it. A receiver checks every
# offset and size against the payload length before touching it.
#
# Shapes use: B tokens per block, D head dim, h = KV heads held by the shard (kvHeadEnd -
# kvHeadBegin), G = Hq / Hkv, and n tokens.

@0xd1f3e5cbc58bb9d4;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("attic::wire");

# Numbers equal common/dtype.h's DType.
enum DType {
  float32 @0;
  bfloat16 @1;
  float16 @2;
}

# Retrieval index kinds (docs/retrieval.md); numbers are attention_workers/retrieval/key_index.h's
# IndexKind + 1, so that 0 means "the worker's configured default".
enum IndexKind {
  workerDefault @0;
  exact @1;
  graph @2;
  cluster @3;
  quantized @4;
}

struct ModelSpec {
  name @0 :Text;
  numLayers @1 :UInt32;
  numQHeads @2 :UInt32;
  numKvHeads @3 :UInt32;
  headDim @4 :UInt32;
  dtype @5 :DType;
  blockSize @6 :UInt32;
  softmaxScale @7 :Float32;   # 0 = 1/sqrt(headDim)
}

# Method kHello: the first message on every connection. Refused with FAILED_PRECONDITION on a
# protocol or model mismatch and PERMISSION_DENIED on a wrong token; the worker then closes
# the connection.
struct Hello {
  protocolVersion @0 :UInt32;
  modelFingerprint @1 :UInt64;   # the client's ModelSpec::Fingerprint(); 0 = do not check
  token @2 :Text;                # shared secret; empty when the worker requires none
  clientName @3 :Text;           # for the worker's logs
}

struct HelloReply {
  protocolVersion @0 :UInt32;
  workerName @1 :Text;
  modelFingerprint @2 :UInt64;
  spec @3 :ModelSpec;            # the model the worker serves
}

# Method kOpenSequence. No payload.
struct OpenSequenceRequest {
  sequenceId @0 :UInt64;
  tenant @1 :Text;
  spec @2 :ModelSpec;            # must equal the worker's
  modelFingerprint @3 :UInt64;   # 0 = derive from spec
  kvHeadBegin @4 :UInt32;        # held KV heads [kvHeadBegin, kvHeadEnd)
  kvHeadEnd @5 :UInt32;
  tokenBegin @6 :UInt64;         # first global token position this shard holds (token sharding)
  # Take over a sequence the worker holds: one it recovered from its SSD tier after a restart
  # (docs/worker.md, "Durability and restart"), or one still open on it (another shard's
  # worker, or the engine, restarted). NOT_FOUND when it holds no sequence of this id;
  # FAILED_PRECONDITION naming the field when tenant, spec, fingerprint or head range differ.
  # Without it, opening a recovered id is ALREADY_EXISTS.
  resume @7 :Bool;
}

struct OpenSequenceReply {
  resumed @0 :Bool;                 # the request resumed a sequence
  # With resumed: [numLayers] tokens each layer holds (after a restart, what survived it; the
  # client re-sends from here on) and tokens each layer holds on the SSD tier (equal right
  # after a restart; 0 without a tier).
  layerLengths @1 :List(UInt32);
  durableLengths @2 :List(UInt32);
}

# Method kLookupPrefix. No payload.
struct LookupPrefixRequest {
  sequenceId @0 :UInt64;
  blockHashes @1 :List(UInt64);  # one chained hash per full B-token prompt block of this shard
}

struct LookupPrefixReply {
  matchedBlocks @0 :UInt32;
  matchedTokens @1 :UInt32;      # the client sends this shard's tokens from here on
}

# Method kAppendKv: a prefill chunk or decode tokens for one layer.
struct AppendKvRequest {
  sequenceId @0 :UInt64;
  layer @1 :UInt32;
  layout @2 :Layout;
  numTokens @3 :UInt32;
  dtype @4 :DType;               # blockMajor: must be the storage dtype; tokenMajor: any
  kOffset @5 :UInt64;
  vOffset @6 :UInt64;
  # Optional prefill query sample the layer's retrieval indexes learn from: q
  # [sampleCount, G * h, D] in sampleDtype at sampleOffset (the query heads of the held KV
  # heads) at the shard-local token positions samplePositions (ascending). Kept with the
  # sequence; successive chunks' samples accumulate.
  sampleCount @7 :UInt32;
  sampleDtype @8 :DType;
  sampleOffset @9 :UInt64;
  samplePositions @10 :List(UInt32);
  # The layer's prompt is complete: build its retrieval indexes (of indexKind) in the
  # background. Until they are ready, sparse Attend runs those heads densely.
  buildIndex @11 :Bool;
  indexKind @12 :IndexKind;

  enum Layout {
    # k, v: [h, blocks, B, D] in the storage dtype, blocks = ceil(numTokens / B); only the last
    # block may be partial (its tail rows are ignored). Lands in the KV pools as is.
    blockMajor @0;
    # k, v: [numTokens, h, D] in `dtype`; converted to the storage dtype on arrival.
    tokenMajor @1;
  }
}

struct AppendKvReply {
  length @0 :UInt32;             # tokens the layer holds after the append
  # Tokens of the layer on the worker's SSD tier after the append: they survive a crash of the
  # worker. A block-major prefill is durable when acknowledged (durableTokens = length);
  # token-major tokens become durable when their block seals. 0 without an SSD tier.
  durableTokens @1 :UInt32;
}

# Method kAttend: one layer of one decode step for every sequence of the batch this worker
# holds.
struct AttendRequest {
  layer @0 :UInt32;
  mode @1 :Mode;
  items @2 :List(Item);

  sparse @3 :SparseParams;       # with mode = sparse

  enum Mode {
    dense @0;                    # attention over every held token
    sparse @1;                   # sinks + local window + retrieved top-k (docs/retrieval.md)
  }

  # Negative values (the defaults) take the worker's retrieval.* settings.
  struct SparseParams {
    sinks @0 :Int32 = -1;        # first tokens always attended
    window @1 :Int32 = -1;       # last tokens always attended
    topK @2 :Int32 = -1;         # tokens retrieved per KV head
    indexKind @3 :IndexKind;
    effort @4 :Int32 = -1;       # index search effort (its own unit); -1 = the index's default
    # The caller attends to the last `window` tokens itself and merges by LSE: they are left
    # out of this worker's selection.
    excludeWindow @5 :Bool;
    # Every head with an index is answered sparse, heads the worker profiled as diffuse
    # included (forced retrieval: measuring what the indexes lose there).
    forceSparse @6 :Bool;
  }

  struct Item {
    sequenceId @0 :UInt64;
    qDtype @1 :DType;
    qOffset @2 :UInt64;          # q: [G * h, D] in qDtype, query heads of the held KV heads
    appendKv @3 :Bool;           # append the step's k/v before attending
    kvDtype @4 :DType;
    kOffset @5 :UInt64;          # k_new: [h, D] in kvDtype (only with appendKv)
    vOffset @6 :UInt64;          # v_new: [h, D] in kvDtype (only with appendKv)
    # Sparse mode with token sharding: where this shard's tokens lie in the sequence, so that
    # sinks (the sequence's first tokens) and the window (its last) are placed globally. The
    # shard holds global positions [tokenBegin, tokenBegin + length); tokensAfter sequence
    # tokens follow it (on other shards). Both 0 when the shard holds the whole sequence.
    tokenBegin @7 :UInt64;
    tokensAfter @8 :UInt64;
  }
}

struct AttendReply {
  items @0 :List(Result);        # one per request item, same order

  struct Result {
    sequenceId @0 :UInt64;
    code @1 :Int32;              # common/status.h StatusCode; 0 = OK
    message @2 :Text;
    outOffset @3 :UInt64;        # o: [G * h, D] fp32, then lse: [G * h] fp32 (natural log)
    numQHeads @4 :UInt32;        # G * h
    keysScanned @5 :UInt64;      # keys whose q.k this worker computed, over all heads
    length @6 :UInt32;           # tokens of the layer after the optional append
    selectedTokens @7 :UInt64;   # tokens attended, over all heads (dense: length * h)
    bytesRead @8 :UInt64;        # K, V and index bytes read, over all heads
    denseHeads @9 :UInt32;       # sparse mode: held KV heads answered densely (diffuse head,
                                 # index not built yet, or context below retrieval.min_tokens)
    durableTokens @10 :UInt32;   # the layer's tokens on the SSD tier after the optional
                                 # append (as AppendKvReply.durableTokens); 0 without a tier
    ssdBytesRead @11 :UInt64;    # values read from the SSD tier for this item
    # Online recall (retrieval.recall_sample_every): sparse heads of this item checked against
    # an exact search this step, and of their exact top-k, how many the index retrieved.
    recallHeads @12 :UInt32;
    recallExact @13 :UInt64;     # sum of the checked heads' k
    recallHits @14 :UInt64;
    # Sparse heads of this item searched through a stand-in index (a fast 4-bit scan serving
    # while the index asked for is still being built); counted among the sparse heads.
    standInHeads @15 :UInt32;
  }
}

# Method kCloseSequence. No payload.
struct CloseSequenceRequest {
  sequenceId @0 :UInt64;
}

struct CloseSequenceReply {}

# Method kStats. No payload.
struct StatsRequest {}

struct StatsReply {
  sequences @0 :UInt64;
  kBlocksUsed @1 :UInt64;
  kBlocksCapacity @2 :UInt64;
  vBlocksUsed @3 :UInt64;
  vBlocksCapacity @4 :UInt64;
  blockBytes @5 :UInt64;
  prefixBlocks @6 :UInt64;
  cachedBlocks @7 :UInt64;
  prefixHits @8 :UInt64;
  workerName @9 :Text;
  # The SSD tier (all 0 / false without one). Value blocks: resident (bytes in DRAM) and
  # spilled (bytes only on SSD); totals since the worker started.
  ssdTier @10 :Bool;
  valueDramBlocks @11 :UInt64;       # the values' DRAM budget, blocks
  vResidentBlocks @12 :UInt64;
  vSpilledBlocks @13 :UInt64;
  spilledBlocksTotal @14 :UInt64;
  ssdBytesRead @15 :UInt64;          # block bytes read from SSD
  ssdBytesWritten @16 :UInt64;       # block bytes written to SSD
  durabilityErrors @17 :UInt64;      # write-throughs that failed
  pendingDurableBlocks @18 :UInt64;  # sealed blocks not yet on SSD (retried between requests)
  recoveredSequences @19 :UInt64;    # sequences recovered at start
}
