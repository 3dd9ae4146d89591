// attic::Client: the library an inference engine links to keep its KV cache on Attic
// attention workers and have them compute decode attention.
//
//   ClientOptions opts;
//   opts.workers = {"10.0.0.5:7001", "10.0.0.6:7001"};
//   opts.spec = spec;                                  // the model's ModelSpec
//   ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(opts));
//
//   // KV heads [0,4) on worker 0 and [4,8) on worker 1 (head sharding):
//   ShardPlan plan = ShardPlan::SplitHeads(spec, {0, 1});
//   RETURN_IF_ERROR(client->Open({.id = request_id, .tenant = "acme", .plan = plan}).get());
//   ASSIGN_OR_RETURN(PrefixMatch m, client->LookupPrefix(request_id, prompt_hashes).get());
//   for (int layer = 0; layer < L; ++layer)            // k, v: [n, Hkv, D] token-major
//     futures.push_back(client->Prefill(request_id, layer, 0, k[layer], v[layer]));
//   ...
//   AttendBatch batch{.layer = l};                     // one decode step of one layer
//   batch.items.push_back({.id = request_id, .q = q, .k_new = k, .v_new = v,
//                          .out = o_ptr, .lse = lse_ptr});
//   RETURN_IF_ERROR(client->Attend(std::move(batch)).get());
//   RETURN_IF_ERROR(client->Close(request_id).get());
//
// Durability (workers with an SSD tier, docs/worker.md): DurableLength(id, layer) says how many
// leading tokens of a layer survive a worker crash, from the workers' latest AppendKv and
// Attend replies. After a worker restarts, Resume() takes the sequence over again:
//
//   ASSIGN_OR_RETURN(ResumeInfo r, client->Resume({.id = request_id, .tenant = "acme",
//                                                  .plan = plan}).get());
//   for (int layer = 0; layer < L; ++layer)            // re-send what the crash lost
//     client->Prefill(request_id, layer, r.lengths[layer], k_from(r.lengths[layer]), ...);
//
// Sharding: a sequence's ShardPlan lists shards {worker, KV-head range, token range}. Head
// shards split the query heads (outputs are concatenated); token shards split the context
// (partial outputs are merged by log-sum-exp, exactly). Prefill tokens go to the shard whose
// range holds them; decode tokens go to the shard whose range is open-ended.
//
// Every call returns a future and never blocks the caller on the network. Every error names
// the sequence, the worker ("worker-1 (10.0.0.6:7001)") and the code. A call whose worker is
// gone fails with UNAVAILABLE within its deadline; the caller may Close() the sequence and
// Open() it again on another plan.
//
// Thread safety: every method may be called from any thread concurrently. Calls on one
// sequence are applied in the order they were made only if each waits for the previous one's
// future; Prefill calls of different layers may run concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/index_kind.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/tensor_view.h"

namespace attic {

struct ClientOptions {
  // Data-plane addresses "host:port" of the workers; shard plans refer to them by index.
  // With a scheduler it may be empty: workers named by placements are added (and connected to)
  // as Place() and Locate() meet them, at the next free index.
  std::vector<std::string> workers;
  // The scheduler's control address "host:port" (docs/scheduler.md), or empty for a fixed
  // fleet. The client asks it for placements and still talks to the workers directly.
  std::string scheduler;
  // The model every sequence of this client uses. Its fingerprint (or model_fingerprint when
  // nonzero) is checked by every worker at connection time.
  ModelSpec spec;
  uint64_t model_fingerprint = 0;
  // Shared secret the workers require, if any.
  std::string token;
  // Names this client in the workers' logs.
  std::string name = "attic-client";
  // Deadline of each operation, from the call until its future is ready.
  std::chrono::milliseconds timeout{10000};
  // Deadline for connecting to and handshaking with every worker.
  std::chrono::milliseconds connect_timeout{5000};
};

struct Shard {
  int worker = 0;            // index into ClientOptions::workers
  int kv_head_begin = 0;     // KV heads [kv_head_begin, kv_head_end)
  int kv_head_end = 0;
  int64_t token_begin = 0;   // global token positions [token_begin, token_end); a multiple of B
  int64_t token_end = -1;    // -1: open-ended (the shard receiving decode tokens)
};

struct ShardPlan {
  std::vector<Shard> shards;

  // Every KV head on one worker.
  static ShardPlan Single(const ModelSpec& spec, int worker);
  // KV heads split as evenly as possible over the workers (all tokens on each).
  static ShardPlan SplitHeads(const ModelSpec& spec, const std::vector<int>& workers);
  // All heads on every worker; worker i holds tokens [bounds[i], bounds[i+1]) with the last
  // one open-ended. bounds has workers.size() entries, starts at 0, is increasing and a
  // multiple of B. A bounds list of another size gives an empty plan (Validate refuses it).
  static ShardPlan SplitTokens(const ModelSpec& spec, const std::vector<int>& workers,
                               const std::vector<int64_t>& bounds);
  // INVALID_ARGUMENT unless, for every KV head, the shards covering it tile [0, inf) with
  // B-aligned token ranges exactly once, and workers are in [0, num_workers). Also refused:
  // two shards on one worker (a worker keys a sequence by its id, so it can hold only one
  // shard of it) and head ranges that overlap without being equal (token shards are merged
  // per head range, so the head ranges must partition [0, Hkv)).
  Status Validate(const ModelSpec& spec, int num_workers) const;
};

struct OpenOptions {
  uint64_t id = 0;           // chosen by the engine (its request id); unique per client
  std::string tenant;        // prefix-cache scope: tenants never share blocks
  ShardPlan plan;
};

struct PrefixMatch {
  // Leading prompt tokens the workers already hold for every layer and head (contiguous from
  // token 0 over all shards): the engine may skip sending them. Prefill calls still accept
  // them and the client drops what each shard already holds.
  int64_t matched_tokens = 0;
};

// What Resume found on the workers.
struct ResumeInfo {
  // [L] leading tokens of each layer that every shard still holds (for each KV head, counted
  // from token 0 across its token shards; the minimum over heads): the engine re-sends each
  // layer from here. The client's Length() is set to these.
  std::vector<int64_t> lengths;
  // [L] of those, the tokens on the workers' SSD tiers (equal to lengths right after a restart).
  std::vector<int64_t> durable_lengths;
};

struct AttendItem {
  uint64_t id = 0;
  // [Hq, D] query of this step, row-major; fp32, bf16 or fp16.
  TensorView q;
  // [Hkv, D] k and v of this step, appended before attending. Empty views: no append.
  TensorView k_new;
  TensorView v_new;
  // [Hq, D] fp32 output and [Hq] fp32 natural-log LSE, written when the future is ready.
  // Must stay valid until then.
  float* out = nullptr;
  float* lse = nullptr;
  // Optional: this item's own result, written when the future is ready (a batch's future
  // carries only its first error; a failed item's sequence has an unknown length on that layer
  // and should be closed).
  Status* status = nullptr;
};

enum class AttendMode {
  kDense,   // every held token
  kSparse,  // retrieval attention: sinks + window + top-k retrieved per KV head
};

// Sparse mode's selection. Negative values (and no index kind) take the worker's retrieval.*
// settings. Sinks are the sequence's first tokens and the window its last, whatever the shard
// plan.
struct SparseOptions {
  int sinks = -1;
  int window = -1;
  int top_k = -1;
  std::optional<IndexKind> index;  // nullopt: the worker's retrieval.index_kind
  int effort = -1;  // the index's search effort in its own unit; -1 = its default
  // The engine attends to the last `window` tokens itself (e.g. on the GPU) and merges that
  // partial with the returned one by LSE: the workers leave them out.
  bool exclude_window = false;
  // Answer every head with an index sparse, also those the worker profiled as diffuse (which
  // it answers densely otherwise).
  bool force = false;
};

struct AttendBatch {
  int layer = 0;
  std::vector<AttendItem> items;
  AttendMode mode = AttendMode::kDense;
  SparseOptions sparse;  // with mode = kSparse
};

struct AttendStats {
  uint64_t keys_scanned = 0;     // exact dot products, over all items, heads and shards
  uint64_t selected_tokens = 0;  // tokens attended, over all items, heads and shards
  uint64_t bytes_read = 0;       // K, V and index bytes the workers read
  uint64_t dense_heads = 0;      // sparse mode: (item, KV head)s answered densely
  uint64_t ssd_bytes_read = 0;   // of bytes_read, values read from the workers' SSD tiers
  // Online recall (the workers' retrieval.recall_sample_every): sparse heads checked against
  // an exact search this call, the sum of their k, and how many of those the index retrieved.
  uint64_t recall_heads = 0;
  uint64_t recall_exact = 0;
  uint64_t recall_hits = 0;
  // Sparse heads searched through a worker's stand-in index (a fast scan serving while the
  // index asked for is built), counted among the sparse heads.
  uint64_t stand_in_heads = 0;
};

// What the scheduler needs to place a new sequence.
struct PlaceOptions {
  uint64_t id = 0;
  std::string tenant;
  int64_t prompt_tokens = 0;
  // Prompt plus expected decode tokens: what the placement sizes memory for.
  int64_t expected_tokens = 0;
  // The prompt's chained block hashes (as for LookupPrefix): the scheduler prefers workers
  // whose prefix caches hold a leading run of them.
  std::vector<uint64_t> prompt_hashes;
};

struct Placement {
  ShardPlan plan;                     // worker indices into the client's (grown) worker list
  int64_t prefix_blocks_matched = 0;  // leading blocks the scheduler expects to find cached
  std::string reason;                 // the policy's reason: "prefix-affinity", "headroom", ...
};

struct ClientStats {
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
};

class Client {
 public:
  // Connects to every worker and checks the handshake. The first failure is returned
  // (UNAVAILABLE for an unreachable worker, FAILED_PRECONDITION / PERMISSION_DENIED for a
  // refused handshake), naming the worker.
  static StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  virtual ~Client() = default;

  // Opens the sequence on every worker of its plan. INVALID_ARGUMENT for a bad plan;
  // ALREADY_EXISTS if the id is open on this client or a worker. A worker of the plan whose
  // connection has failed (one that was restarted) is connected to again first, within
  // connect_timeout: the one case where a call waits on the network before returning.
  virtual std::future<Status> Open(const OpenOptions& options) = 0;

  // Takes over a sequence that the plan's workers hold: recovered from their SSD tiers after
  // a restart (workers started with a data_dir), or still open on workers that did not
  // restart (a plan whose other workers did, or an engine that restarted itself). Tenant and
  // plan must be those the sequence was opened with. NOT_FOUND naming the worker when one of
  // them holds no such sequence; FAILED_PRECONDITION naming the field when tenant, model or
  // heads differ. Afterwards Prefill and Append continue from ResumeInfo::lengths; LookupPrefix is not
  // allowed (the sequence has content). If the id is open on this client (its workers
  // restarted under it), a successful Resume replaces the client's bookkeeping of it; do not
  // Close it first, which could reach the restarted worker and close the recovered sequence.
  // A failed Resume changes nothing, on the client or the workers: it can be retried.
  // Reconnects to restarted workers first, as Open does.
  virtual std::future<StatusOr<ResumeInfo>> Resume(const OpenOptions& options) = 0;

  // hashes: one chained hash per full B-token prompt block (prefix-cache keys). Each shard
  // gets the hashes of its own token range. Once per sequence, before any Prefill.
  virtual std::future<StatusOr<PrefixMatch>> LookupPrefix(uint64_t id,
                                                          std::span<const uint64_t> hashes) = 0;

  // Tokens [first_token, first_token + n) of one layer: k and v [n, Hkv, D] token-major, in
  // any dtype (converted to the storage dtype). first_token must equal the layer's current
  // length (tokens a shard already holds, through the prefix cache or after a Resume, are
  // skipped). The client transposes each shard's part to block-major and ships it; a shard
  // whose last block is partial (after a chunk that was not a multiple of B, decode tokens or
  // a Resume) first gets the tokens completing that block token-major. The views may be
  // released when the call returns.
  virtual std::future<Status> Prefill(uint64_t id, int layer, int64_t first_token,
                                      const TensorView& k, const TensorView& v) = 0;

  // Retrieval attention: hands the workers prefill queries of one layer that their indexes
  // may learn from, and asks them to build the layer's indexes over the keys they hold, in the
  // background (sparse Attend answers densely until they are ready). q [n, Hq, D] in any
  // dtype, at ascending global token positions (each below the layer's length); n may be 0.
  // Call once the layer's prompt is prefilled. Queries of a decode step must not be in it.
  virtual std::future<Status> BuildIndex(uint64_t id, int layer, const TensorView& q,
                                         std::span<const int64_t> positions,
                                         std::optional<IndexKind> kind = std::nullopt) = 0;

  // One decode token of one layer: k and v [Hkv, D] in any dtype.
  virtual std::future<Status> Append(uint64_t id, int layer, const TensorView& k,
                                     const TensorView& v) = 0;

  // One layer of one decode step for a batch: one request per worker, outputs merged and
  // written to each item's out / lse. The views are copied before the call returns. The
  // future fails with the first item's error (naming sequence and worker); items on healthy
  // workers are still written.
  virtual std::future<StatusOr<AttendStats>> Attend(AttendBatch batch) = 0;

  // Asks the scheduler for a shard plan for a new sequence (then Open it with that plan).
  // Workers the plan names that the client does not know yet are connected to first.
  // FAILED_PRECONDITION without a scheduler; the scheduler's refusal otherwise
  // (RESOURCE_EXHAUSTED when no worker has room, UNAVAILABLE when none is alive), and
  // UNAVAILABLE / DEADLINE_EXCEEDED naming the scheduler when it cannot be reached in time.
  // The call runs on a thread of its own; the client must outlive the futures of Place and
  // Locate (wait for them before destroying it).
  virtual std::future<StatusOr<Placement>> Place(const PlaceOptions& options) = 0;

  // Where the scheduler says sequence `id` lives now (after a scheduler restart, as its
  // workers re-announced it). UNAVAILABLE naming the worker when one of them is dead;
  // NOT_FOUND when no live worker holds it.
  virtual std::future<StatusOr<Placement>> Locate(uint64_t id) = 0;

  // Closes the sequence on every worker of its plan (best effort: every worker is asked, the
  // first error is returned) and forgets it. With a scheduler, also tells it (best effort).
  virtual std::future<Status> Close(uint64_t id) = 0;

  // Tokens the client has sent for (sequence, layer), prefix-cache hits included.
  virtual StatusOr<int64_t> Length(uint64_t id, int layer) const = 0;

  // Leading tokens of (sequence, layer) that the workers acknowledged as durable (on their SSD
  // tiers) in their latest AppendKv and Attend replies, counted as Length() is; 0 on workers
  // without an SSD tier. Prefix-cache hits count once a reply reports them.
  virtual StatusOr<int64_t> DurableLength(uint64_t id, int layer) const = 0;

  virtual ClientStats Stats() const = 0;
  virtual const ClientOptions& options() const = 0;
};

}  // namespace attic
