// A randomized differential test of KvStore: long runs of random operations (open, lookup with
// shared and unshared hash chains of several tenants, prefill chunks, token appends in every
// dtype, decode tokens, reads, closes, bad calls, verify) checked against a simple model of
// what every (sequence, layer, head) must hold. Pools are small, so eviction and
// ResourceExhausted happen often.
//
//   StoreModel model({.seed = 1, .steps = 4000});
//   model.Run();                       // gtest failures on any disagreement
//   EXPECT_GT(model.figures().evictions, 0);
//
// The model does not predict which cached blocks survive eviction; it checks that whatever the
// store returns has exactly the bytes the sequence's content function gives, that lookups find
// at least the prefix that open sequences pin, that open sequences of one scope share their
// prompt blocks, and that the block figures add up.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kvstore/kv_store.h"
#include "tests/kvstore/kv_test_util.h"

namespace attic::kv_test {

struct ModelRunConfig {
  uint64_t seed = 1;
  int steps = 2000;
  int64_t pool_blocks = 160;  // 2 KiB slots
  int max_open = 6;
  int check_every = 50;  // steps between full consistency checks
};

struct ModelFigures {
  int64_t lookups = 0;
  int64_t matched_blocks = 0;
  int64_t appends = 0;
  int64_t exhausted = 0;
  int64_t reads = 0;
  int64_t evictions = 0;
  int64_t dedupe_hits = 0;
  int64_t prefix_hits = 0;
};

class StoreModel {
 public:
  explicit StoreModel(const ModelRunConfig& config) : config_(config), rng_(config.seed) {}

  void Run() {
    KvStoreOptions o;
    o.block_bytes = 2048;
    o.k_pool_blocks = config_.pool_blocks;
    o.v_pool_blocks = config_.pool_blocks;
    auto store = KvStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    for (int step = 0; step < config_.steps && !::testing::Test::HasFailure(); ++step) {
      Step();
      if (step % config_.check_every == 0) CheckAll();
    }
    if (::testing::Test::HasFailure()) return;
    CheckAll();
    while (!seqs_.empty()) Close(seqs_.begin()->first);
    CheckAll();
    const KvStoreStats s = store_->Stats();
    EXPECT_EQ(s.private_blocks, 0);
    EXPECT_EQ(s.shared_blocks, 0);
    EXPECT_EQ(s.cached_blocks, s.prefix_blocks);
    figures_.evictions = s.evictions;
    figures_.dedupe_hits = s.dedupe_hits;
    figures_.prefix_hits = s.prefix_hits;
  }

  const ModelFigures& figures() const { return figures_; }

 private:
  static constexpr int kTenants = 3;
  static constexpr int kBases = 2;  // shared prompt prefixes, the same hashes for every tenant
  static constexpr int kMaxTokens = 300;

  struct Seq {
    uint64_t id = 0;
    int tenant = 0;
    int spec = 0;
    int head_begin = 0;
    int head_end = 0;
    std::vector<uint64_t> prompt_hashes;  // one per full prompt block
    int prompt_tokens = 0;
    std::vector<uint64_t> given;  // hashes given to LookupPrefix
    bool appended = false;
    std::vector<int> len;  // per layer
    uint64_t salt = 0;
  };

  static const std::vector<ModelSpec>& Specs() {
    static const std::vector<ModelSpec> specs = {
        SmallSpec(DType::kBFloat16),  // 1 KiB blocks in 2 KiB slots
        ModelSpec{.name = "wide",
                  .num_layers = 3,
                  .num_q_heads = 4,
                  .num_kv_heads = 2,
                  .head_dim = 64,
                  .dtype = DType::kFloat16,
                  .block_size = 16},
        ModelSpec{.name = "many-heads",
                  .num_layers = 1,
                  .num_q_heads = 8,
                  .num_kv_heads = 4,
                  .head_dim = 32,
                  .dtype = DType::kFloat32,
                  .block_size = 16},
    };
    return specs;
  }

  int Rand(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Coin(double p) { return std::bernoulli_distribution(p)(rng_); }
  DType AnyDType() { return static_cast<DType>(Rand(0, kNumDTypes - 1)); }
  const ModelSpec& SpecOf(const Seq& s) const { return Specs()[static_cast<size_t>(s.spec)]; }

  // Prompt blocks carry content fixed by (tenant, spec, chain hash); everything after the hashed
  // blocks is unique to the sequence.
  static KvFn Content(const Seq& s) {
    const int bsize = Specs()[static_cast<size_t>(s.spec)].block_size;
    const uint64_t scope_seed =
        HashCombine(0x5eed + static_cast<uint64_t>(s.tenant), static_cast<uint64_t>(s.spec));
    const std::vector<uint64_t> hashes = s.prompt_hashes;
    const uint64_t salt = s.salt;
    return [=](int layer, int t, int h, int d, bool v) {
      const auto b = static_cast<size_t>(t / bsize);
      const uint64_t e = static_cast<uint64_t>(d) * 2 + (v ? 1 : 0);
      if (b < hashes.size()) {
        const uint64_t where = static_cast<uint64_t>(layer) << 40 | static_cast<uint64_t>(h) << 20 |
                               static_cast<uint64_t>(t % bsize);
        return ExactValue(scope_seed, hashes[b], where, e);
      }
      return ExactValue(salt, static_cast<uint64_t>(layer) << 32 | static_cast<uint32_t>(t),
                        static_cast<uint64_t>(h), e);
    };
  }

  Seq* RandomSeq() {
    if (seqs_.empty()) return nullptr;
    auto it = seqs_.begin();
    std::advance(it, Rand(0, static_cast<int>(seqs_.size()) - 1));
    return &it->second;
  }

  void Step() {
    const int op = Rand(0, 99);
    if (op < 8 || seqs_.empty()) return OpenAndLookup();
    if (op < 70) return Append();
    if (op < 88) return ReadOne();
    if (op < 94) return Close(RandomSeq()->id);
    BadCall();
  }

  std::vector<uint64_t> MakePrompt(int* tokens) {
    const int bsize = 16;
    std::vector<uint64_t> hashes;
    uint64_t h = 0;
    const int base = Rand(0, kBases - 1);
    const int shared = Rand(0, 6);
    for (int i = 0; i < shared; ++i) {
      h = HashCombine(h, static_cast<uint64_t>(base) * 1000 + static_cast<uint64_t>(i));
      hashes.push_back(h);
    }
    const int unique = Rand(0, 2);
    for (int i = 0; i < unique; ++i) {
      h = HashCombine(h, rng_());
      hashes.push_back(h);
    }
    *tokens = static_cast<int>(hashes.size()) * bsize + Rand(0, bsize - 1);
    return hashes;
  }

  void OpenAndLookup() {
    if (static_cast<int>(seqs_.size()) >= config_.max_open) return Close(RandomSeq()->id);
    Seq s;
    s.id = next_id_++;
    s.tenant = Rand(0, kTenants - 1);
    s.spec = Coin(0.5) ? 0 : Rand(1, static_cast<int>(Specs().size()) - 1);
    const int hkv = SpecOf(s).num_kv_heads;
    s.head_begin = 0;
    s.head_end = hkv;
    if (Coin(0.3)) {
      s.head_begin = Rand(0, hkv - 1);
      s.head_end = Rand(s.head_begin + 1, hkv);
    }
    s.prompt_hashes = MakePrompt(&s.prompt_tokens);
    s.len.assign(static_cast<size_t>(SpecOf(s).num_layers), 0);
    s.salt = rng_();
    ASSERT_OK(store_->OpenSequence({.id = s.id,
                                    .tenant = "tenant-" + std::to_string(s.tenant),
                                    .spec = SpecOf(s),
                                    .kv_head_begin = s.head_begin,
                                    .kv_head_end = s.head_end}));
    if (Coin(0.85)) Lookup(s);
    seqs_[s.id] = std::move(s);
  }

  // The prefix that open sequences of the same scope pin for every layer and head of s.
  int PinnedPrefix(const Seq& s, int max_blocks) const {
    const int bsize = SpecOf(s).block_size;
    for (int i = 0; i < max_blocks; ++i) {
      for (int layer = 0; layer < SpecOf(s).num_layers; ++layer) {
        for (int h = s.head_begin; h < s.head_end; ++h) {
          bool held = false;
          for (const auto& [id, x] : seqs_) {
            held = held || (x.tenant == s.tenant && x.spec == s.spec && h >= x.head_begin &&
                            h < x.head_end && i < static_cast<int>(x.given.size()) &&
                            x.given[static_cast<size_t>(i)] == s.given[static_cast<size_t>(i)] &&
                            x.len[static_cast<size_t>(layer)] >= (i + 1) * bsize);
          }
          if (!held) return i;
        }
      }
    }
    return max_blocks;
  }

  void Lookup(Seq& s) {
    s.given = s.prompt_hashes;
    if (Coin(0.3)) s.given.resize(static_cast<size_t>(Rand(0, static_cast<int>(s.given.size()))));
    const int pinned = PinnedPrefix(s, static_cast<int>(s.given.size()));
    StatusOr<PrefixMatch> m = store_->LookupPrefix(s.id, s.given);
    ASSERT_TRUE(m.ok()) << m.status();
    ++figures_.lookups;
    figures_.matched_blocks += m->matched_blocks;
    EXPECT_GE(m->matched_blocks, pinned);
    EXPECT_LE(m->matched_blocks, static_cast<int>(s.given.size()));
    EXPECT_EQ(m->matched_tokens, m->matched_blocks * SpecOf(s).block_size);
    std::fill(s.len.begin(), s.len.end(), m->matched_tokens);
    for (int layer = 0; layer < SpecOf(s).num_layers; ++layer) {
      EXPECT_EQ(*store_->Length(s.id, layer), m->matched_tokens);
    }
  }

  void Append() {
    Seq& s = *RandomSeq();
    const ModelSpec& spec = SpecOf(s);
    const int layer = Rand(0, spec.num_layers - 1);
    const int len = s.len[static_cast<size_t>(layer)];
    if (len >= kMaxTokens) return;
    const int heads = s.head_end - s.head_begin;
    const KvFn fn = Content(s);
    const int b = spec.block_size;
    Status st;
    int n = 0;
    if (len < s.prompt_tokens && len % b == 0 && Coin(0.6)) {
      n = std::min(Rand(1, 3) * b, s.prompt_tokens - len);
      KvTensors c =
          BlockChunk(fn, layer, len, n, s.head_begin, heads, b, spec.head_dim, spec.dtype);
      st = store_->AppendPrefill(s.id, layer, c.k.view(), c.v.view(), n);
    } else if (len >= s.prompt_tokens && Coin(0.5)) {
      n = 1;
      KvTensors r = DecodeRow(fn, layer, len, s.head_begin, heads, spec.head_dim, AnyDType());
      st = store_->AppendDecodeToken(s.id, layer, r.k.view(), r.v.view());
    } else {
      n = Rand(1, 2 * b);
      if (len < s.prompt_tokens) n = std::min(n, s.prompt_tokens - len);
      KvTensors r = TokenRows(fn, layer, len, n, s.head_begin, heads, spec.head_dim, AnyDType());
      st = store_->AppendTokens(s.id, layer, r.k.view(), r.v.view());
    }
    if (st.code() == StatusCode::kResourceExhausted) {
      ++figures_.exhausted;
      EXPECT_EQ(*store_->Length(s.id, layer), len) << "a failed append changed the sequence";
      return Close(RandomSeq()->id);
    }
    ASSERT_OK(st);
    ++figures_.appends;
    s.appended = true;
    s.len[static_cast<size_t>(layer)] += n;
  }

  void ReadOne() {
    const Seq& s = *RandomSeq();
    const int layer = Rand(0, SpecOf(s).num_layers - 1);
    const int head = Rand(s.head_begin, s.head_end - 1);
    ExpectHolds(*store_, s.id, layer, head, Content(s), s.len[static_cast<size_t>(layer)],
                SpecOf(s));
    ++figures_.reads;
  }

  void Close(uint64_t id) {
    ASSERT_OK(store_->CloseSequence(id));
    seqs_.erase(id);
    std::vector<BlockView> views;
    EXPECT_EQ(store_->ReadBlocks(id, 0, 0, &views).code(), StatusCode::kNotFound);
  }

  void BadCall() {
    Seq& s = *RandomSeq();
    const ModelSpec& spec = SpecOf(s);
    const int layer = Rand(0, spec.num_layers - 1);
    const int len = s.len[static_cast<size_t>(layer)];
    const int heads = s.head_end - s.head_begin;
    std::vector<BlockView> views;
    switch (Rand(0, 3)) {
      case 0:
        EXPECT_EQ(store_->ReadBlocks(next_id_ + 1000, 0, 0, &views).code(), StatusCode::kNotFound);
        break;
      case 1: {
        if (len % spec.block_size == 0) break;  // only the illegal case: a legal one would write
        KvTensors c = BlockChunk(Content(s), layer, 0, spec.block_size, s.head_begin, heads,
                                 spec.block_size, spec.head_dim, spec.dtype);
        const Status st =
            store_->AppendPrefill(s.id, layer, c.k.view(), c.v.view(), spec.block_size);
        EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st;
        break;
      }
      case 2:
        if (s.appended) {
          EXPECT_EQ(store_->LookupPrefix(s.id, s.prompt_hashes).status().code(),
                    StatusCode::kFailedPrecondition);
        }
        break;
      default:
        EXPECT_EQ(store_->ReadBlocks(s.id, spec.num_layers, s.head_begin, &views).code(),
                  StatusCode::kInvalidArgument);
        EXPECT_EQ(store_->ReadBlocks(s.id, layer, s.head_end, &views).code(),
                  StatusCode::kInvalidArgument);
    }
    EXPECT_EQ(*store_->Length(s.id, layer), len);
  }

  void CheckAll() {
    CheckFigures();
    CheckSharing();
    EXPECT_OK(store_->Verify());
  }

  void CheckFigures() {
    const KvStoreStats s = store_->Stats();
    EXPECT_EQ(s.sequences, static_cast<int64_t>(seqs_.size()));
    for (const PoolStats* p : {&s.k, &s.v}) {
      EXPECT_EQ(p->used_blocks, s.private_blocks + s.prefix_blocks);
      EXPECT_EQ(p->used_blocks + p->free_blocks, p->capacity_blocks);
    }
    EXPECT_LE(s.cached_blocks, s.prefix_blocks);
    EXPECT_LE(s.shared_blocks, s.prefix_blocks);
    EXPECT_EQ(s.dedupe_conflicts, 0);
    int64_t held = 0;
    int64_t must_be_private = 0;
    for (const auto& [id, x] : seqs_) {
      const int b = SpecOf(x).block_size;
      const int heads = x.head_end - x.head_begin;
      for (int len : x.len) {
        held += int64_t{heads} * ((len + b - 1) / b);
        const int full = len / b;
        const int unhashed_full = std::max(0, full - static_cast<int>(x.given.size()));
        must_be_private += int64_t{heads} * (unhashed_full + (len % b != 0 ? 1 : 0));
      }
    }
    EXPECT_GE(s.private_blocks, must_be_private);
    EXPECT_LE(s.private_blocks, held);
  }

  // Open sequences of one scope reference one copy of each prompt block both have sealed.
  void CheckSharing() {
    for (auto a = seqs_.begin(); a != seqs_.end(); ++a) {
      for (auto b = std::next(a); b != seqs_.end(); ++b) {
        const Seq& x = a->second;
        const Seq& y = b->second;
        if (x.tenant != y.tenant || x.spec != y.spec) continue;
        ExpectShared(x, y);
      }
    }
  }

  void ExpectShared(const Seq& x, const Seq& y) {
    const int bsize = SpecOf(x).block_size;
    const int common = static_cast<int>(std::min(x.given.size(), y.given.size()));
    for (int layer = 0; layer < SpecOf(x).num_layers; ++layer) {
      const auto l = static_cast<size_t>(layer);
      const int blocks = std::min({common, x.len[l] / bsize, y.len[l] / bsize});
      for (int h = std::max(x.head_begin, y.head_begin); h < std::min(x.head_end, y.head_end);
           ++h) {
        std::vector<BlockView> vx;
        std::vector<BlockView> vy;
        ASSERT_OK(store_->ReadBlocks(x.id, layer, h, &vx));
        ASSERT_OK(store_->ReadBlocks(y.id, layer, h, &vy));
        for (int i = 0; i < blocks; ++i) {
          if (x.given[static_cast<size_t>(i)] != y.given[static_cast<size_t>(i)]) break;
          EXPECT_EQ(vx[static_cast<size_t>(i)].k, vy[static_cast<size_t>(i)].k)
              << "sequences " << x.id << " and " << y.id << " layer " << layer << " head " << h
              << " block " << i << " are not shared";
        }
      }
    }
  }

  const ModelRunConfig config_;
  std::mt19937_64 rng_;
  std::unique_ptr<KvStore> store_;
  std::map<uint64_t, Seq> seqs_;
  uint64_t next_id_ = 1;
  ModelFigures figures_;
};

}  // namespace attic::kv_test
