// PrefixSummary (no false negatives, false-positive rate near its sizing, leading runs, wire
// checks), RecentPlacements (runs, TTL, takeover, cap) and the control-plane codecs.
#include "transport/control/prefix_summary.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/control/scheduler_protocol.h"
#include "services/scheduler/recent_placements.h"

namespace attic::scheduler {
namespace {

TEST(PrefixSummary, NoFalseNegativesAndFewFalsePositives) {
  constexpr int kEntries = 5000;
  PrefixSummary s = PrefixSummary::ForEntries(kEntries, 0.01);
  for (uint64_t i = 0; i < kEntries; ++i) s.Add(7, i * 7919);
  EXPECT_EQ(s.entries(), static_cast<uint64_t>(kEntries));
  for (uint64_t i = 0; i < kEntries; ++i) ASSERT_TRUE(s.MayContain(7, i * 7919)) << i;
  int false_positives = 0;
  constexpr int kProbes = 100000;
  for (uint64_t i = 0; i < kProbes; ++i) false_positives += s.MayContain(7, i * 7919 + 1) ? 1 : 0;
  // Sized for 1 %; a power-of-two size only makes it smaller.
  EXPECT_LT(false_positives, kProbes * 2 / 100) << false_positives;
  // Another scope's equal hashes are other keys.
  int other_scope = 0;
  for (uint64_t i = 0; i < kEntries; ++i) other_scope += s.MayContain(8, i * 7919) ? 1 : 0;
  EXPECT_LT(other_scope, kEntries * 2 / 100);
}

TEST(PrefixSummary, Sizing) {
  const PrefixSummary small = PrefixSummary::ForEntries(0);
  EXPECT_EQ(small.bits().size() * 8, PrefixSummary::kMinBits);
  EXPECT_GE(small.num_hashes(), 1);
  const PrefixSummary huge = PrefixSummary::ForEntries(100000000);
  EXPECT_EQ(huge.bits().size() * 8, PrefixSummary::kMaxBits);
  EXPECT_EQ(huge.num_hashes(), 1);
  const PrefixSummary mid = PrefixSummary::ForEntries(10000, 0.01);
  EXPECT_EQ(mid.bits().size() * 8, size_t{131072});  // 95851 bits wanted, next power of two
  EXPECT_EQ(mid.num_hashes(), 9);
}

TEST(PrefixSummary, LeadingRun) {
  PrefixSummary s = PrefixSummary::ForEntries(16);
  const std::vector<uint64_t> hashes = {11, 22, 33, 44, 55};
  for (int i = 0; i < 3; ++i) s.Add(1, hashes[static_cast<size_t>(i)]);
  s.Add(1, 55);  // after a gap: not part of the run
  EXPECT_EQ(s.LeadingRun(1, hashes), 3);
  EXPECT_EQ(s.LeadingRun(1, {}), 0);
  EXPECT_EQ(PrefixSummary().LeadingRun(1, hashes), 0);
  EXPECT_TRUE(PrefixSummary().empty());
}

TEST(PrefixSummary, FromBitsChecksTheWire) {
  PrefixSummary s = PrefixSummary::ForEntries(100);
  s.Add(3, 4);
  StatusOr<PrefixSummary> back = PrefixSummary::FromBits(s.bits(), s.num_hashes(), s.entries());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->MayContain(3, 4));
  EXPECT_EQ(back->entries(), 1u);
  EXPECT_TRUE(PrefixSummary::FromBits("", 0, 0).ok());
  EXPECT_EQ(PrefixSummary::FromBits(std::string(100, '\0'), 3, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(PrefixSummary::FromBits(std::string(64, '\0'), 3, 0).status().code(),
            StatusCode::kInvalidArgument);  // below 1024 bits
  EXPECT_EQ(PrefixSummary::FromBits(std::string(256, '\0'), 0, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(PrefixSummary::FromBits(std::string(256, '\0'), 17, 0).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RecentPlacements, RunsExpireAndMove) {
  using std::chrono::milliseconds;
  RecentPlacements recent(milliseconds(1000));
  const RecentPlacements::TimePoint t0{};
  const std::vector<uint64_t> prompt = {1, 2, 3, 4};
  recent.Record(9, std::span(prompt).first(3), "w1", t0);
  RecentPlacements::Run r = recent.Lookup(9, prompt, t0 + milliseconds(500));
  EXPECT_EQ(r.worker, "w1");
  EXPECT_EQ(r.blocks, 3);
  EXPECT_EQ(recent.Lookup(10, prompt, t0).blocks, 0);  // other scope
  // A later placement of the first two blocks elsewhere takes them over.
  recent.Record(9, std::span(prompt).first(2), "w2", t0 + milliseconds(600));
  r = recent.Lookup(9, prompt, t0 + milliseconds(700));
  EXPECT_EQ(r.worker, "w2");
  EXPECT_EQ(r.blocks, 2);
  // Past the TTL of the second record: nothing.
  EXPECT_EQ(recent.Lookup(9, prompt, t0 + milliseconds(1600)).blocks, 0);
  recent.Record(9, prompt, "w3", t0 + milliseconds(2000));
  EXPECT_EQ(recent.size(), 4u);  // the expired ones are gone
  recent.Forget("w3");
  EXPECT_EQ(recent.Lookup(9, prompt, t0 + milliseconds(2000)).blocks, 0);
}

TEST(RecentPlacements, Cap) {
  RecentPlacements recent(std::chrono::hours(1), 100);
  std::vector<uint64_t> hashes;
  for (uint64_t i = 0; i < 1000; ++i) hashes.push_back(i);
  recent.Record(1, hashes, "w", {});
  EXPECT_EQ(recent.size(), 100u);
  // The newest survive.
  EXPECT_EQ(recent.Lookup(1, std::span(hashes).subspan(900), {}).blocks, 100);
}

TEST(Protocol, WorkerReportRoundTrip) {
  WorkerReport r{.name = "w1",
                 .data_address = "127.0.0.1:7100",
                 .metrics_address = "127.0.0.1:7180",
                 .incarnation = 77,
                 .model_fingerprint = 0xabc,
                 .num_kv_heads = 8,
                 .figures = {.kv_bytes_dram = 1,
                             .dram_free_bytes = 2,
                             .ssd_tier = true,
                             .queue_depth = 3,
                             .attend_p99_us = 4.5,
                             .block_tokens = 64,
                             .kv_bytes_per_token = 6144,
                             .kv_free_bytes = 9},
                 .prefix = PrefixSummary::ForEntries(10),
                 .shards = {{.sequence_id = 42,
                             .tenant = "t",
                             .kv_head_begin = 2,
                             .kv_head_end = 4,
                             .token_begin = 128,
                             .tokens = 300}},
                 .ready = true};
  r.prefix.Add(5, 6);
  StatusOr<WorkerReport> back = DecodeWorkerReport(EncodeWorkerReport(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->name, "w1");
  EXPECT_EQ(back->data_address, "127.0.0.1:7100");
  EXPECT_EQ(back->metrics_address, "127.0.0.1:7180");
  EXPECT_EQ(back->incarnation, 77u);
  EXPECT_EQ(back->model_fingerprint, 0xabcu);
  EXPECT_EQ(back->num_kv_heads, 8u);
  EXPECT_EQ(back->figures.queue_depth, 3u);
  EXPECT_EQ(back->figures.attend_p99_us, 4.5);
  EXPECT_TRUE(back->figures.ssd_tier);
  EXPECT_EQ(back->figures.kv_free_bytes, 9u);
  EXPECT_EQ(back->figures.kv_bytes_per_token, 6144u);
  EXPECT_TRUE(back->prefix.MayContain(5, 6));
  EXPECT_EQ(back->prefix.entries(), 1u);
  ASSERT_EQ(back->shards.size(), 1u);
  EXPECT_EQ(back->shards[0].sequence_id, 42u);
  EXPECT_EQ(back->shards[0].tenant, "t");
  EXPECT_EQ(back->shards[0].kv_head_end, 4u);
  EXPECT_EQ(back->shards[0].token_begin, 128u);
  EXPECT_EQ(back->shards[0].tokens, 300u);
  EXPECT_TRUE(back->ready);
}

TEST(Protocol, MalformedBodiesAreRefused) {
  EXPECT_EQ(DecodeWorkerReport("garbage").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeWorkerReport("").status().code(), StatusCode::kInvalidArgument);
  // A valid message of another type reads as an empty WorkerState: no name.
  EXPECT_EQ(DecodeWorkerReport(EncodeLocateRequest(3)).status().code(),
            StatusCode::kInvalidArgument);
  WorkerReport r{.name = "w", .shards = {{.sequence_id = 1, .kv_head_begin = 3, .kv_head_end = 3}}};
  const Status s = DecodeWorkerReport(EncodeWorkerReport(r)).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sequence 1"), std::string::npos) << s;
}

TEST(Protocol, PlacementPlaceAndFleetRoundTrip) {
  PlaceRequest req{.sequence_id = 9,
                   .tenant = "acme",
                   .model_fingerprint = 5,
                   .prompt_tokens = 300,
                   .expected_tokens = 500,
                   .prompt_hashes = {1, 2, 3},
                   .prefix_scope = 77};
  StatusOr<PlaceRequest> req2 = DecodePlaceRequest(EncodePlaceRequest(req));
  ASSERT_TRUE(req2.ok()) << req2.status();
  EXPECT_EQ(req2->tenant, "acme");
  EXPECT_EQ(req2->prompt_hashes, req.prompt_hashes);
  EXPECT_EQ(req2->expected_tokens, 500u);
  EXPECT_EQ(req2->prefix_scope, 77u);

  Placement p{.sequence_id = 9,
              .shards = {{.worker_name = "w1",
                          .data_address = "h:1",
                          .kv_head_begin = 0,
                          .kv_head_end = 2,
                          .token_begin = 0,
                          .token_end = 640},
                         {.worker_name = "w2",
                          .data_address = "h:2",
                          .kv_head_begin = 0,
                          .kv_head_end = 2,
                          .token_begin = 640,
                          .token_end = -1}},
              .prefix_blocks_matched = 3,
              .reason = "token-split"};
  StatusOr<Placement> p2 = DecodePlacement(EncodePlacement(p));
  ASSERT_TRUE(p2.ok()) << p2.status();
  EXPECT_EQ(p2->shards, p.shards);
  EXPECT_EQ(p2->reason, "token-split");
  EXPECT_EQ(p2->prefix_blocks_matched, 3u);

  StatusOr<uint64_t> id = DecodeLocateRequest(EncodeLocateRequest(123));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 123u);

  Fleet f{.workers = {{.name = "w1", .alive = true, .silent_ms = 12}}, .scheduler_incarnation = 4};
  StatusOr<Fleet> f2 = DecodeFleet(EncodeFleet(f));
  ASSERT_TRUE(f2.ok()) << f2.status();
  ASSERT_EQ(f2->workers.size(), 1u);
  EXPECT_EQ(f2->workers[0].silent_ms, 12u);
  EXPECT_TRUE(f2->workers[0].alive);
  EXPECT_EQ(f2->scheduler_incarnation, 4u);
}

TEST(Protocol, Refusals) {
  const Status s = UnavailableError("sequence 42: worker w1 (127.0.0.1:7101) is dead");
  EXPECT_EQ(RefusalBody(s), "UNAVAILABLE: sequence 42: worker w1 (127.0.0.1:7101) is dead");
  EXPECT_EQ(RefusalHttpStatus(StatusCode::kUnavailable), 503);
  EXPECT_EQ(RefusalHttpStatus(StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(RefusalHttpStatus(StatusCode::kNotFound), 404);
  EXPECT_EQ(RefusalStatus(503, RefusalBody(s) + "\n"), s);
  const Status other = RefusalStatus(502, "bad gateway");
  EXPECT_EQ(other.code(), StatusCode::kUnknown);
  EXPECT_EQ(other.message(), "HTTP 502: bad gateway");
}

}  // namespace
}  // namespace attic::scheduler
