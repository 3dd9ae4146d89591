# Attic control plane, version 1: the Cap'n Proto messages between workers, clients and the
# scheduler (docs/scheduler.md).
#
# Every message is the flat (unpacked) body of one HTTP/1.1 POST to the scheduler's control port
# (Boost.Asio, transport/control), with content type application/x-capnp:
#
#   POST /v1/register    WorkerState        -> RegisterReply      a worker (re)announces itself
#   POST /v1/heartbeat   WorkerState        -> HeartbeatReply     every heartbeat interval
#   POST /v1/place       PlaceRequest       -> Placement          a client opens a sequence
#   POST /v1/locate      LocateRequest      -> Placement          where a sequence lives now
#   POST /v1/release     LocateRequest      -> (empty body)       the client closed a sequence
#   GET  /v1/fleet                          -> Fleet              the workers the scheduler knows
#
# A refusal is an HTTP status other than 200 whose text body is "<CODE>: <message>", CODE one of
# the gRPC status names (UNAVAILABLE, RESOURCE_EXHAUSTED, NOT_FOUND, INVALID_ARGUMENT, ...).

@0xb2e9f0d417c3a6e1;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("attic::wire");

# The load and memory figures a worker exports to Prometheus, as of one heartbeat.
struct WorkerFigures {
  kvBytesDram @0 :UInt64;        # KV bytes resident in DRAM (keys and values)
  kvBytesSsd @1 :UInt64;         # KV bytes held only on the SSD tier (spilled values)
  dramCapacityBytes @2 :UInt64;  # the KV pools' DRAM capacity
  dramFreeBytes @3 :UInt64;      # of it, free (blocks not in use, cached prefix blocks count free)
  ssdBytesUsed @4 :UInt64;       # bytes the tier holds (0 without one)
  ssdTier @5 :Bool;
  sequences @6 :UInt64;          # open sequences
  prefixBlocks @7 :UInt64;       # blocks registered in the prefix cache
  queueDepth @8 :UInt64;         # requests waiting for or running on the compute pool
  attendP50Us @9 :Float64;       # Attend latency since the previous heartbeat (0: none)
  attendP99Us @10 :Float64;
  requestsTotal @11 :UInt64;     # requests served since start
  computeThreads @12 :UInt32;
  blockTokens @13 :UInt32;       # B
  kvBytesPerToken @14 :UInt64;   # K and V bytes of one token over every layer and KV head
  # KV bytes (K and V) the worker can still take: free block pairs (cached prefix blocks
  # count free) times the bytes of a pair. Without an SSD tier equal to dramFreeBytes; with
  # one it also counts the pairs whose values would spill past the values' DRAM budget.
  kvFreeBytes @15 :UInt64;
}

# A compact summary of the prefix cache: a Bloom filter over the (scope, chained block hash)
# entries the worker's prefix cache holds, key HashCombine(scope, hash) with scope the
# kvstore's ScopeFingerprint. bits.size() is a power of two; numHashes probes per key.
struct PrefixSummary {
  bits @0 :Data;
  numHashes @1 :UInt8;
  entries @2 :UInt64;            # keys inserted
}

# One sequence shard the worker holds (its re-announcement after a scheduler restart).
struct HeldShard {
  sequenceId @0 :UInt64;
  tenant @1 :Text;
  kvHeadBegin @2 :UInt32;
  kvHeadEnd @3 :UInt32;
  tokenBegin @4 :UInt64;
  tokens @5 :UInt64;             # tokens held (layer 0)
}

struct WorkerState {
  name @0 :Text;                 # unique in the fleet
  dataAddress @1 :Text;          # host:port clients connect to (UCX)
  metricsAddress @2 :Text;       # host:port of /metrics, /healthz, /readyz
  incarnation @3 :UInt64;        # changes at every worker start
  modelFingerprint @4 :UInt64;
  numKvHeads @5 :UInt32;
  figures @6 :WorkerFigures;
  prefix @7 :PrefixSummary;
  shards @8 :List(HeldShard);    # every open sequence shard
  ready @9 :Bool;                # serving (false while recovering)
}

struct RegisterReply {
  heartbeatIntervalMs @0 :UInt32;
  deadAfterMs @1 :UInt32;
  schedulerIncarnation @2 :UInt64;
}

struct HeartbeatReply {
  # False when the scheduler does not know this worker (it restarted or declared the worker
  # dead): the worker registers again.
  known @0 :Bool;
  schedulerIncarnation @1 :UInt64;
}

struct PlaceRequest {
  sequenceId @0 :UInt64;
  tenant @1 :Text;
  modelFingerprint @2 :UInt64;
  promptTokens @3 :UInt64;
  expectedTokens @4 :UInt64;     # prompt + expected decode tokens (memory sizing)
  promptHashes @5 :List(UInt64); # chained hashes of the prompt's full blocks (prefix affinity)
  prefixScope @6 :UInt64;        # kvstore's ScopeFingerprint(tenant, fingerprint, spec)
}

struct PlacedShard {
  workerName @0 :Text;
  dataAddress @1 :Text;
  kvHeadBegin @2 :UInt32;
  kvHeadEnd @3 :UInt32;
  tokenBegin @4 :UInt64;
  tokenEnd @5 :Int64;            # -1: open-ended
}

struct Placement {
  sequenceId @0 :UInt64;
  shards @1 :List(PlacedShard);
  prefixBlocksMatched @2 :UInt64;  # leading prompt blocks the chosen worker(s) likely hold
  reason @3 :Text;                 # "prefix-affinity", "headroom", "token-split", ...
}

struct LocateRequest {
  sequenceId @0 :UInt64;
}

struct FleetWorker {
  name @0 :Text;
  dataAddress @1 :Text;
  metricsAddress @2 :Text;
  alive @3 :Bool;
  ready @4 :Bool;
  silentMs @5 :UInt64;           # since its last heartbeat
  figures @6 :WorkerFigures;
}

struct Fleet {
  workers @0 :List(FleetWorker);
  schedulerIncarnation @1 :UInt64;
}
