// attic-worker as a process: hostile messages get error replies while others are served,
// /metrics and health endpoints, configuration errors, and SIGTERM draining.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <capnp/message.h>

#include <chrono>
#include <csignal>
#include <cstring>

#include "tests/integration/offload_fixture.h"
#include "transport/capnp_codec.h"
#include "transport/control/http_server.h"
#include "transport/proto/attic.capnp.h"
#include "transport/rpc_client.h"
#include "transport/wire_types.h"

namespace attic::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using transport::DeadlineAfter;
using transport::FrameHeader;
using transport::IncomingMessage;
using transport::Method;
using transport::OutgoingMessage;

class WorkerDaemon : public OffloadFleet {
 protected:
  void SetUp() override {
    StartWorkers(1);
    StatusOr<std::unique_ptr<transport::RpcClient>> rpc =
        transport::RpcClient::Create({.name = "hostile", .model_fingerprint = spec_.Fingerprint()});
    ASSERT_TRUE(rpc.ok()) << rpc.status();
    rpc_ = std::move(rpc).value();
    auto conn = rpc_->Connect(workers_[0]->data_address(), DeadlineAfter(seconds(10)));
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = *conn;
  }

  StatusOr<IncomingMessage> Raw(FrameHeader frame, std::string data) {
    std::promise<StatusOr<IncomingMessage>> done;
    auto f = done.get_future();
    conn_->CallRawForTesting(frame, std::move(data), DeadlineAfter(seconds(5)),
                             [&](StatusOr<IncomingMessage> r) { done.set_value(std::move(r)); });
    return f.get();
  }

  StatusOr<IncomingMessage> Call(Method method, capnp::MessageBuilder& b, std::string payload) {
    auto keep = std::make_shared<std::string>(std::move(payload));
    OutgoingMessage m;
    m.method = method;
    m.header = transport::EncodeCapnp(b);
    m.payload.push_back(std::as_bytes(std::span<const char>(keep->data(), keep->size())));
    m.keepalive = keep;
    return conn_->Call(std::move(m), DeadlineAfter(seconds(5))).get();
  }

  // A well-behaved client on its own connection, to show the worker still serves others.
  void ExpectHealthyClientWorks() {
    std::unique_ptr<Client> client = Connect(seconds(10));
    ASSERT_NE(client, nullptr);
    loadgen::EngineModel model(spec_, 3);
    model.AddSequence({.id = 900, .prompt_tokens = 300});
    ASSERT_TRUE(OpenAndPrefill(*client, model, 900, ShardPlan::Single(spec_, 0)).ok());
    for (int layer = 0; layer < spec_.num_layers; ++layer) {
      ASSERT_TRUE(Step(*client, model, layer, {900}, true).ok());
    }
    EXPECT_TRUE(client->Close(900).get().ok());
  }

  std::unique_ptr<transport::RpcClient> rpc_;
  std::shared_ptr<transport::Connection> conn_;
};

FrameHeader RequestFrame(Method m, size_t header, size_t payload) {
  FrameHeader f;
  f.method = static_cast<uint16_t>(m);
  f.request_id = 1;
  f.header_bytes = static_cast<uint32_t>(header);
  f.payload_bytes = payload;
  f.timeout_ms = 5000;
  return f;
}

TEST_F(WorkerDaemon, MalformedMessagesGetErrorRepliesAndOthersAreServed) {
  // Garbage where the Cap'n Proto header should be.
  const std::string garbage(64, '\xab');
  StatusOr<IncomingMessage> r = Raw(RequestFrame(Method::kAttend, 64, 0), garbage);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
  // Truncated: the frame claims more data than the message carries.
  r = Raw(RequestFrame(Method::kAppendKv, 64, 4096), garbage);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
  // Oversized: a payload over the worker's limit is refused before it is received.
  r = Raw(RequestFrame(Method::kAppendKv, 64, uint64_t{1} << 40), garbage);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status();
  // Wrong protocol version.
  FrameHeader old = RequestFrame(Method::kStats, 0, 0);
  old.version = transport::kProtocolVersion + 7;
  r = Raw(old, "");
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status();
  // Unknown method.
  r = Raw(RequestFrame(static_cast<Method>(99), 0, 0), "");
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented) << r.status();

  // A well-formed header pointing outside its payload: refused, named.
  {
    capnp::MallocMessageBuilder b;
    auto open = b.initRoot<wire::OpenSequenceRequest>();
    open.setSequenceId(77);
    open.setTenant("t");
    transport::SpecToWire(spec_, open.initSpec());
    open.setKvHeadBegin(0);
    open.setKvHeadEnd(8);
    ASSERT_TRUE(Call(Method::kOpenSequence, b, "").ok());
  }
  {
    capnp::MallocMessageBuilder b;
    auto append = b.initRoot<wire::AppendKvRequest>();
    append.setSequenceId(77);
    append.setLayer(0);
    append.setNumTokens(64);
    append.setDtype(wire::DType::BFLOAT16);
    append.setKOffset(0);
    append.setVOffset(1 << 20);
    r = Call(Method::kAppendKv, b, std::string(1000, '\0'));
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find("payload"), std::string_view::npos) << r.status();
  }
  {
    // Attend with a q offset past the payload: the item fails, the reply itself is fine.
    capnp::MallocMessageBuilder b;
    auto attend = b.initRoot<wire::AttendRequest>();
    attend.setLayer(0);
    auto item = attend.initItems(1)[0];
    item.setSequenceId(77);
    item.setQDtype(wire::DType::FLOAT32);
    item.setQOffset(1 << 30);
    r = Call(Method::kAttend, b, std::string(16, '\0'));
    ASSERT_TRUE(r.ok()) << r.status();
    StatusOr<transport::CapnpMessage> msg = transport::CapnpMessage::Parse(r->header());
    ASSERT_TRUE(msg.ok());
    auto items = msg->Root<wire::AttendReply>().getItems();
    ASSERT_EQ(items.size(), 1u);
    EXPECT_EQ(items[0].getCode(), static_cast<int>(StatusCode::kInvalidArgument));
  }
  // A frame that carries no timeout gets the worker's default deadline, not an expired one.
  {
    capnp::MallocMessageBuilder b;
    b.initRoot<wire::StatsRequest>();
    const std::string stats = transport::EncodeCapnp(b);
    FrameHeader untimed = RequestFrame(Method::kStats, stats.size(), 0);
    untimed.timeout_ms = 0;
    r = Raw(untimed, stats);
    EXPECT_TRUE(r.ok()) << r.status();
  }
  ExpectHealthyClientWorks();
}

TEST_F(WorkerDaemon, ServesMetricsAndHealth) {
  ExpectHealthyClientWorks();
  const std::string control = workers_[0]->control_address();
  StatusOr<control::HttpResponse> health = control::HttpGet(control, "/healthz", seconds(5));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  StatusOr<control::HttpResponse> ready = control::HttpGet(control, "/readyz", seconds(5));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 200);
  StatusOr<control::HttpResponse> config = control::HttpGet(control, "/configz", seconds(5));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_NE(config->body.find("model.num_kv_heads = 8"), std::string::npos) << config->body;
  StatusOr<control::HttpResponse> status = control::HttpGet(control, "/statusz", seconds(5));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_NE(status->body.find("\"ready\": 1"), std::string::npos) << status->body;
  EXPECT_NE(status->body.find("\"k_blocks_capacity\": "), std::string::npos) << status->body;
  StatusOr<control::HttpResponse> metrics = control::HttpGet(control, "/metrics", seconds(5));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string& body = metrics->body;
  for (const char* needle :
       {"attic_worker_requests_total{", "op=\"Attend\"", "attic_worker_request_duration_seconds",
        "attic_worker_kv_blocks", "attic_worker_bytes_received_total",
        "attic_worker_compute_queue_depth", "attic_worker_sequences"}) {
    EXPECT_NE(body.find(needle), std::string::npos) << needle << " missing from:\n" << body;
  }
}

TEST_F(WorkerDaemon, SigtermDrainsAndExitsCleanly) {
  ExpectHealthyClientWorks();
  StatusOr<int> status = workers_[0]->Kill(SIGTERM, seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 0) << workers_[0]->Log();
  // The client's connection learns the worker is gone.
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::StatsRequest>();
  StatusOr<IncomingMessage> r = Call(Method::kStats, b, "");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status();
}

TEST(WorkerConfigProcess, InvalidConfigurationIsRefusedNamingTheField) {
  loadgen::WorkerProcess w({.binary = ATTIC_WORKER_BINARY, .args = {"--model-head-dim", "100"}});
  Status s = w.Start(seconds(10));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("head_dim"), std::string_view::npos) << s;
}

}  // namespace
}  // namespace attic::testing

namespace attic::testing {
namespace {

// A worker with little memory: a prefill that does not fit fails RESOURCE_EXHAUSTED with the
// figures, nothing of it stays behind, and the worker keeps serving what fits.
class SmallWorker : public OffloadFleet {
 protected:
  void SetUp() override {
    std::vector<std::string> args = WorkerArgs(spec_);
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == "--kv-memory-bytes") args[i + 1] = "32MiB";  // 1024 K + 1024 V blocks
    }
    workers_.push_back(std::make_unique<loadgen::WorkerProcess>(
        loadgen::WorkerProcessOptions{.binary = ATTIC_WORKER_BINARY, .args = args, .name = "small"}));
    Status s = workers_.back()->Start(std::chrono::seconds(30));
    ASSERT_TRUE(s.ok()) << s;
  }
};

TEST_F(SmallWorker, FullMemoryIsResourceExhaustedAndTheWorkerCarriesOn) {
  std::unique_ptr<Client> client = Connect(std::chrono::seconds(10));
  ASSERT_NE(client, nullptr);
  loadgen::EngineModel model(spec_, 9);
  // 4 layers x 8 heads x 64 blocks = 2048 blocks of each pool: twice what the worker has.
  model.AddSequence({.id = 1, .prompt_tokens = 4096});
  StatusOr<PrefixMatch> big = OpenAndPrefill(*client, model, 1, ShardPlan::Single(spec_, 0));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted) << big.status();
  EXPECT_NE(big.status().message().find("sequence 1"), std::string_view::npos) << big.status();
  EXPECT_TRUE(client->Close(1).get().ok());
  // Everything it took was given back: a sequence using most of the pools fits now.
  model.AddSequence({.id = 2, .prompt_tokens = 1900});
  StatusOr<PrefixMatch> fits = OpenAndPrefill(*client, model, 2, ShardPlan::Single(spec_, 0));
  ASSERT_TRUE(fits.ok()) << fits.status();
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    ASSERT_TRUE(Step(*client, model, layer, {2}, true).ok());
  }
}

TEST_F(SmallWorker, UnknownSequenceIsRefusedNamingItAndOthersAreServed) {
  std::unique_ptr<Client> client = Connect(std::chrono::seconds(10));
  ASSERT_NE(client, nullptr);
  loadgen::EngineModel model(spec_, 4);
  model.AddSequence({.id = 5, .prompt_tokens = 200});
  ASSERT_TRUE(OpenAndPrefill(*client, model, 5, ShardPlan::Single(spec_, 0)).ok());
  // Unknown to this client: refused before anything is sent, naming the sequence.
  const int hq = spec_.num_q_heads, d = spec_.head_dim;
  std::vector<float> q(static_cast<size_t>(hq * d), 0.5f), out(q.size()), lse(hq);
  AttendBatch batch{.layer = 0};
  batch.items.push_back({.id = 404, .q = TensorView(q.data(), DType::kFloat32, {hq, d}),
                         .out = out.data(), .lse = lse.data()});
  StatusOr<AttendStats> r = client->Attend(std::move(batch)).get();
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status();
  EXPECT_NE(r.status().message().find("404"), std::string_view::npos) << r.status();
  // The known sequence is still served exactly.
  for (int layer = 0; layer < spec_.num_layers; ++layer) {
    ASSERT_TRUE(Step(*client, model, layer, {5}, true).ok());
  }
}

}  // namespace
}  // namespace attic::testing
