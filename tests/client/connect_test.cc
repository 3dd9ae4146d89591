#include <gtest/gtest.h>

#include <chrono>

#include "client/client.h"
#include "client/internal/worker_link.h"

namespace attic {
namespace {

ModelSpec Spec() {
  return ModelSpec{.name = "m",
                   .num_layers = 2,
                   .num_q_heads = 16,
                   .num_kv_heads = 8,
                   .head_dim = 64,
                   .dtype = DType::kBFloat16,
                   .block_size = 64};
}

TEST(ConnectTest, UnreachableWorkerIsUnavailableWithinTheTimeout) {
  ClientOptions options;
  options.workers = {"127.0.0.1:1"};  // nothing listens on port 1
  options.spec = Spec();
  options.connect_timeout = std::chrono::milliseconds(1500);
  const auto start = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable) << client.status();
  EXPECT_NE(client.status().message().find("127.0.0.1:1"), std::string::npos) << client.status();
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500) + std::chrono::seconds(2));
}

TEST(ConnectTest, RefusesBadOptionsBeforeConnecting) {
  ClientOptions options;
  options.spec = Spec();
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kInvalidArgument);
  options.workers = {"127.0.0.1:1"};
  options.spec.head_dim = 0;
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kInvalidArgument);
}

TEST(NameErrorTest, NamesSequenceWorkerAndCodeOnce) {
  const std::string label = client_internal::WorkerLabel("w1", "127.0.0.1:7101");
  EXPECT_EQ(label, "worker w1 (127.0.0.1:7101)");
  Status s = client_internal::NameError(NotFoundError("no such sequence"), 42, label);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "sequence 42 on worker w1 (127.0.0.1:7101): NOT_FOUND: no such sequence");
  // The transport's own "worker NAME (peer): " prefix is not repeated.
  s = client_internal::NameError(DeadlineExceededError(label + ": Attend timed out"), 7, label);
  EXPECT_EQ(s.message(),
            "sequence 7 on worker w1 (127.0.0.1:7101): DEADLINE_EXCEEDED: Attend timed out");
  EXPECT_TRUE(client_internal::NameError(OkStatus(), 1, label).ok());
}

}  // namespace
}  // namespace attic
