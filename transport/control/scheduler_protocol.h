// The scheduler's control-plane messages (transport/proto/control.capnp) as plain C++ values,
// with their encodings: the flat Cap'n Proto bodies of the HTTP requests and replies, and the
// "<CODE>: <message>" text of a refusal. The scheduler and the workers' agent both use them.
//
//   WorkerReport report = ...;
//   ASSIGN_OR_RETURN(control::HttpResponse r,
//                    control::HttpPost(scheduler, "/v1/register", EncodeWorkerReport(report),
//                                      timeout, kCapnpContentType));
//   if (r.status != 200) return RefusalStatus(r.status, r.body);
//   ASSIGN_OR_RETURN(RegisterReply reply, DecodeRegisterReply(r.body));
//
// Decoders check what the schema cannot: InvalidArgument naming the message and the field for
// a malformed body, an empty name, a head range that is empty, a prefix summary of a bad size.
//
// Thread safety: values and stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "transport/control/prefix_summary.h"

namespace attic::scheduler {

inline constexpr char kCapnpContentType[] = "application/x-capnp";

// wire::WorkerFigures: the load and memory figures of one heartbeat.
struct WorkerFigures {
  uint64_t kv_bytes_dram = 0;
  uint64_t kv_bytes_ssd = 0;
  uint64_t dram_capacity_bytes = 0;
  uint64_t dram_free_bytes = 0;
  uint64_t ssd_bytes_used = 0;
  bool ssd_tier = false;
  uint64_t sequences = 0;
  uint64_t prefix_blocks = 0;
  uint64_t queue_depth = 0;
  double attend_p50_us = 0;  // since the previous heartbeat; 0 when no Attend ran
  double attend_p99_us = 0;
  uint64_t requests_total = 0;
  uint32_t compute_threads = 0;
  uint32_t block_tokens = 0;        // B
  uint64_t kv_bytes_per_token = 0;  // K and V over every layer and KV head
  uint64_t kv_free_bytes = 0;       // dram_free_bytes plus, with a tier, spillable room
};

// wire::HeldShard.
struct HeldShard {
  uint64_t sequence_id = 0;
  std::string tenant;
  uint32_t kv_head_begin = 0;
  uint32_t kv_head_end = 0;
  uint64_t token_begin = 0;
  uint64_t tokens = 0;  // tokens of layer 0
};

// wire::WorkerState: what a worker sends to /v1/register and /v1/heartbeat.
struct WorkerReport {
  std::string name;
  std::string data_address;
  std::string metrics_address;
  uint64_t incarnation = 0;
  uint64_t model_fingerprint = 0;
  uint32_t num_kv_heads = 0;
  WorkerFigures figures;
  PrefixSummary prefix;
  std::vector<HeldShard> shards;
  bool ready = false;
};

struct RegisterReply {
  uint32_t heartbeat_interval_ms = 0;
  uint32_t dead_after_ms = 0;
  uint64_t scheduler_incarnation = 0;
};

struct HeartbeatReply {
  bool known = false;  // false: register again
  uint64_t scheduler_incarnation = 0;
};

struct PlaceRequest {
  uint64_t sequence_id = 0;
  std::string tenant;
  uint64_t model_fingerprint = 0;
  uint64_t prompt_tokens = 0;
  uint64_t expected_tokens = 0;
  std::vector<uint64_t> prompt_hashes;
  uint64_t prefix_scope = 0;
};

struct PlacedShard {
  std::string worker_name;
  std::string data_address;
  uint32_t kv_head_begin = 0;
  uint32_t kv_head_end = 0;
  uint64_t token_begin = 0;
  int64_t token_end = -1;  // -1: open-ended

  friend bool operator==(const PlacedShard&, const PlacedShard&) = default;
};

struct Placement {
  uint64_t sequence_id = 0;
  std::vector<PlacedShard> shards;
  uint64_t prefix_blocks_matched = 0;
  std::string reason;
};

struct FleetWorker {
  std::string name;
  std::string data_address;
  std::string metrics_address;
  bool alive = false;
  bool ready = false;
  uint64_t silent_ms = 0;
  WorkerFigures figures;
};

struct Fleet {
  std::vector<FleetWorker> workers;
  uint64_t scheduler_incarnation = 0;
};

std::string EncodeWorkerReport(const WorkerReport& report);
StatusOr<WorkerReport> DecodeWorkerReport(std::string_view body);
std::string EncodeRegisterReply(const RegisterReply& reply);
StatusOr<RegisterReply> DecodeRegisterReply(std::string_view body);
std::string EncodeHeartbeatReply(const HeartbeatReply& reply);
StatusOr<HeartbeatReply> DecodeHeartbeatReply(std::string_view body);
std::string EncodePlaceRequest(const PlaceRequest& request);
StatusOr<PlaceRequest> DecodePlaceRequest(std::string_view body);
std::string EncodePlacement(const Placement& placement);
StatusOr<Placement> DecodePlacement(std::string_view body);
// LocateRequest, the body of /v1/locate and /v1/release.
std::string EncodeLocateRequest(uint64_t sequence_id);
StatusOr<uint64_t> DecodeLocateRequest(std::string_view body);
std::string EncodeFleet(const Fleet& fleet);
StatusOr<Fleet> DecodeFleet(std::string_view body);

// The text body of a refusal: "RESOURCE_EXHAUSTED: sequence 42 needs ...".
std::string RefusalBody(const Status& status);
// The HTTP status a refusal is sent with: 400 invalid argument, 404 not found, 409 already
// exists or failed precondition, 429 resource exhausted, 503 unavailable, 504 deadline
// exceeded, 500 otherwise.
int RefusalHttpStatus(StatusCode code);
// The Status a refusal carries: the code its body names, or (a body without one) UNKNOWN
// with the HTTP status and body as message. `http_status` must not be 200.
Status RefusalStatus(int http_status, std::string_view body);

}  // namespace attic::scheduler
