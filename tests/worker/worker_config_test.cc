// LoadWorkerConfig over argv, a map environment and real YAML files; the config library's
// parsers beneath it.
#include "services/worker/worker_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "services/config/settings.h"

namespace attic {
namespace {

using Env = std::map<std::string, std::string>;

StatusOr<ConfigResult> Load(std::vector<std::string> args, const Env& env = {}) {
  args.insert(args.begin(), "attic-worker");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return LoadWorkerConfig(static_cast<int>(argv.size()), argv.data(), env);
}

// A YAML file under the test temp dir, removed at destruction.
class YamlFile {
 public:
  explicit YamlFile(const std::string& text) {
    static int counter = 0;
    path_ = ::testing::TempDir() + "/attic_worker_config_" + std::to_string(getpid()) + "_" +
            std::to_string(counter++) + ".yaml";
    std::ofstream(path_) << text;
  }
  ~YamlFile() { std::remove(path_.c_str()); }
  YamlFile(const YamlFile&) = delete;
  YamlFile& operator=(const YamlFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(WorkerConfigTest, BuiltInDefaults) {
  StatusOr<ConfigResult> r = Load({});
  ASSERT_TRUE(r.ok()) << r.status();
  const WorkerConfig& c = r->config;
  EXPECT_FALSE(r->exit_now);
  EXPECT_EQ(c.name.rfind("attic-worker-", 0), 0u) << c.name;
  EXPECT_GT(c.name.size(), std::string("attic-worker-").size());
  EXPECT_EQ(c.listen_address, "0.0.0.0");
  EXPECT_EQ(c.data_port, 7100);
  EXPECT_EQ(c.control_address, "0.0.0.0");
  EXPECT_EQ(c.control_port, 7180);
  EXPECT_EQ(c.model_preset, "attic-ref-54m");
  EXPECT_EQ(c.model, *ModelPreset("attic-ref-54m"));
  EXPECT_EQ(c.model_fingerprint, c.model.Fingerprint());
  EXPECT_NE(c.model_fingerprint, 0u);
  EXPECT_EQ(c.token, "");
  EXPECT_EQ(c.kv_memory_bytes, uint64_t{1} << 30);
  EXPECT_FALSE(c.populate);
  EXPECT_EQ(c.compute_threads, 0);
  EXPECT_EQ(c.max_message_bytes, uint64_t{1} << 30);
  EXPECT_EQ(c.drain_timeout_ms, 10000u);
  EXPECT_EQ(c.default_timeout_ms, 10000u);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.ready_file, "");
  EXPECT_EQ(r->config_file, "");
}

TEST(WorkerConfigTest, SchedulerSettingsAndAdvertisedHost) {
  StatusOr<ConfigResult> r = Load({});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.scheduler.address, "");
  EXPECT_EQ(r->config.scheduler.heartbeat_ms, 500u);
  EXPECT_EQ(AdvertisedHost(r->config), "127.0.0.1");  // listening on 0.0.0.0
  r = Load({"--scheduler-address", "10.0.0.2:7170", "--listen-address", "10.0.0.5",
            "--scheduler-heartbeat-ms", "100"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.scheduler.address, "10.0.0.2:7170");
  EXPECT_EQ(r->config.scheduler.heartbeat_ms, 100u);
  EXPECT_EQ(AdvertisedHost(r->config), "10.0.0.5");
  r = Load({"--scheduler-advertise-host", "worker-3.attic"}, {{"ATTIC_LISTEN_ADDRESS", "::"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(AdvertisedHost(r->config), "worker-3.attic");
  for (const char* bad : {"10.0.0.2", "10.0.0.2:", ":7170", "h:70000", "h:x"}) {
    r = Load({"--scheduler-address", bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("scheduler.address"), std::string::npos) << r.status();
  }
}

TEST(WorkerConfigTest, PresetsAndFieldOverrides) {
  const ModelSpec ref = *ModelPreset("attic-ref-54m");
  EXPECT_EQ(ref.num_layers, 6);
  EXPECT_EQ(ref.num_q_heads, 8);
  EXPECT_EQ(ref.num_kv_heads, 2);
  EXPECT_EQ(ref.head_dim, 128);
  EXPECT_EQ(ref.dtype, DType::kBFloat16);
  EXPECT_EQ(ref.block_size, 64);
  const ModelSpec llama = *ModelPreset("llama3-8b");
  EXPECT_EQ(llama.num_layers, 32);
  EXPECT_EQ(llama.num_q_heads, 32);
  EXPECT_EQ(llama.num_kv_heads, 8);
  EXPECT_EQ(llama.head_dim, 128);
  EXPECT_FALSE(ModelPreset("gpt-5").ok());

  StatusOr<ConfigResult> r = Load({"--model-preset", "llama3-8b"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.model, llama);
  EXPECT_EQ(r->config.model_fingerprint, llama.Fingerprint());

  // The preset comes from the file; fields from the environment and flags refine it, whatever
  // the preset's own source.
  YamlFile file("model:\n  preset: llama3-8b\n");
  r = Load({"--model-num-layers=4", "--model-dtype", "fp16"}, {{"ATTIC_CONFIG", file.path()},
                                                               {"ATTIC_MODEL_BLOCK_SIZE", "32"},
                                                               {"ATTIC_MODEL_NAME", "my-llama"}});
  ASSERT_TRUE(r.ok()) << r.status();
  ModelSpec expected = llama;
  expected.num_layers = 4;
  expected.dtype = DType::kFloat16;
  expected.block_size = 32;
  expected.name = "my-llama";
  EXPECT_EQ(r->config.model, expected);
  EXPECT_EQ(r->config.model_fingerprint, expected.Fingerprint());

  r = Load({"--model-fingerprint", "0x10"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.model_fingerprint, 16u);
}

// Each row sets one setting at every level up to `level` with a different value, and expects
// the value of the highest level given.
TEST(WorkerConfigTest, PrecedenceFlagOverEnvOverFileOverDefault) {
  struct Field {
    std::string key, flag, env;
    std::string values[3];  // file, env, flag
    std::function<std::string(const WorkerConfig&)> get;
    std::string default_value;
  };
  const std::vector<Field> fields = {
      {"data_port",
       "--data-port",
       "ATTIC_DATA_PORT",
       {"7201", "7202", "7203"},
       [](const WorkerConfig& c) { return std::to_string(c.data_port); },
       "7100"},
      {"log_level",
       "--log-level",
       "ATTIC_LOG_LEVEL",
       {"warn", "debug", "error"},
       [](const WorkerConfig& c) { return c.log_level; },
       "info"},
      {"kv_memory_bytes",
       "--kv-memory-bytes",
       "ATTIC_KV_MEMORY_BYTES",
       {"2GiB", "3GiB", "4GiB"},
       [](const WorkerConfig& c) { return config::FormatSize(c.kv_memory_bytes); },
       "1GiB"},
      {"model.num_layers",
       "--model-num-layers",
       "ATTIC_MODEL_NUM_LAYERS",
       {"12", "13", "14"},
       [](const WorkerConfig& c) { return std::to_string(c.model.num_layers); },
       "6"},
      {"ready_file",
       "--ready-file",
       "ATTIC_READY_FILE",
       {"/a", "/b", "/c"},
       [](const WorkerConfig& c) { return c.ready_file; },
       ""},
  };
  for (const Field& f : fields) {
    for (int level = 0; level <= 3; ++level) {
      std::string yaml = "control_port: 7999\n";  // the file always exists and sets something
      Env env;
      std::vector<std::string> args;
      if (level >= 1) {
        const size_t dot = f.key.find('.');
        yaml += dot == std::string::npos ? f.key + ": " + f.values[0] + "\n"
                                         : f.key.substr(0, dot) + ":\n  " + f.key.substr(dot + 1) +
                                               ": " + f.values[0] + "\n";
      }
      if (level >= 2) env[f.env] = f.values[1];
      if (level >= 3) args = {f.flag, f.values[2]};
      YamlFile file(yaml);
      args.insert(args.begin(), {"--config", file.path()});
      StatusOr<ConfigResult> r = Load(args, env);
      ASSERT_TRUE(r.ok()) << f.key << " level " << level << ": " << r.status();
      const std::string expected = level == 0 ? f.default_value : f.values[level - 1];
      EXPECT_EQ(f.get(r->config), expected) << f.key << " level " << level;
      EXPECT_EQ(r->config.control_port, 7999);
    }
  }
}

TEST(WorkerConfigTest, ConfigFlagOverridesConfigEnv) {
  YamlFile from_env("name: from-env-file\n");
  YamlFile from_flag("name: from-flag-file\n");
  StatusOr<ConfigResult> r =
      Load({"--config=" + from_flag.path()}, {{"ATTIC_CONFIG", from_env.path()}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.name, "from-flag-file");
  EXPECT_EQ(r->config_file, from_flag.path());
  r = Load({}, {{"ATTIC_CONFIG", from_env.path()}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.name, "from-env-file");
}

TEST(WorkerConfigTest, FlagSpellingsSwitchesAndLastFlagWins) {
  StatusOr<ConfigResult> r = Load({"--data-port", "1", "--data-port=2", "--control-port=0",
                                   "--populate", "--compute-threads", "3"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.data_port, 2);
  EXPECT_EQ(r->config.control_port, 0);
  EXPECT_TRUE(r->config.populate);
  EXPECT_EQ(r->config.compute_threads, 3);
  r = Load({"--populate", "--no-populate"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->config.populate);
  r = Load({"--populate=yes"}, {{"ATTIC_POPULATE", "false"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->config.populate);
  r = Load({}, {{"ATTIC_POPULATE", "on"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->config.populate);
}

TEST(WorkerConfigTest, EnvironmentUnrelatedAndEmptyVariablesAreIgnored) {
  StatusOr<ConfigResult> r =
      Load({}, {{"ATTIC_SHARED_DIR", "/x"}, {"ATTIC_DATA_PORT", ""}, {"PATH", "/bin"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.data_port, 7100);
}

TEST(WorkerConfigTest, YamlDottedKeysAndEmptyFile) {
  YamlFile dotted("model.num_layers: 3\ntoken: abc\nkv_memory_bytes: 512MiB\npopulate: true\n");
  StatusOr<ConfigResult> r = Load({"--config", dotted.path()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.model.num_layers, 3);
  EXPECT_EQ(r->config.token, "abc");
  EXPECT_EQ(r->config.kv_memory_bytes, uint64_t{512} << 20);
  EXPECT_TRUE(r->config.populate);
  YamlFile empty("");
  r = Load({"--config", empty.path()});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.data_port, 7100);
}

TEST(WorkerConfigTest, HelpListsEverySettingWithFlagEnvDefaultAndHidesTheToken) {
  StatusOr<ConfigResult> r = Load({"--data-port", "oops", "--help"}, {{"ATTIC_TOKEN", "s3cret"}});
  ASSERT_TRUE(r.ok()) << r.status();  // --help wins over errors
  EXPECT_TRUE(r->exit_now);
  EXPECT_EQ(r->exit_code, 0);
  const std::string& help = r->output;
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"name", ""},
      {"listen_address", "0.0.0.0"},
      {"data_port", "7100"},
      {"control_address", "0.0.0.0"},
      {"control_port", "7180"},
      {"model.preset", "attic-ref-54m"},
      {"model.name", "attic-ref-54m"},
      {"model.num_layers", "6"},
      {"model.num_q_heads", "8"},
      {"model.num_kv_heads", "2"},
      {"model.head_dim", "128"},
      {"model.dtype", "bf16"},
      {"model.block_size", "64"},
      {"model.softmax_scale", "0"},
      {"model_fingerprint", "0"},
      {"token", "(unset)"},
      {"kv_memory_bytes", "1GiB"},
      {"populate", "false"},
      {"compute_threads", "0"},
      {"max_message_bytes", "1GiB"},
      {"drain_timeout_ms", "10000"},
      {"default_timeout_ms", "10000"},
      {"data_dir", "\"\""},
      {"ssd.block_cache_mb", "32"},
      {"ssd.background_threads", "2"},
      {"ssd.direct_io", "true"},
      {"ssd.sync", "false"},
      {"ssd.flush_mb", "1"},
      {"value_dram_fraction", "1"},
      {"value_dram_mb", "0"},
      {"spill_high_watermark", "0.9"},
      {"spill_low_watermark", "0.75"},
      {"log_level", "info"},
      {"ready_file", "\"\""}};
  for (const auto& [key, default_value] : settings) {
    EXPECT_NE(help.find("  " + config::FlagName(key)), std::string::npos) << key;
    EXPECT_NE(help.find(key + " "), std::string::npos) << key;
    EXPECT_NE(help.find(config::EnvName("ATTIC_", key) + "   default: " + default_value),
              std::string::npos)
        << key << "\n"
        << help;
  }
  EXPECT_NE(help.find("default: attic-worker-"), std::string::npos);
  EXPECT_NE(help.find("--config FILE"), std::string::npos);
  EXPECT_NE(help.find("ATTIC_CONFIG"), std::string::npos);
  EXPECT_EQ(help.find("s3cret"), std::string::npos);
}

TEST(WorkerConfigTest, Version) {
  StatusOr<ConfigResult> r = Load({"--version"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->exit_now);
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, "attic-worker 0.1.0 (protocol 1)\n");
  EXPECT_EQ(WorkerVersionLine(), "attic-worker 0.1.0 (protocol 1)");
}

// Every refusal: its arguments, environment and file, and the message it must contain.
TEST(WorkerConfigTest, EveryErrorNamesTheFieldValueAndSource) {
  YamlFile bad_type("control_port: abc\n");
  YamlFile unknown_key("name: w\nmodel:\n  heads: 4\n");
  YamlFile list_value("name: [a, b]\n");
  YamlFile broken("model: {num_layers: 3\n");
  YamlFile not_map("- a\n- b\n");
  struct Case {
    std::vector<std::string> args;
    Env env;
    StatusCode code;
    std::string message;  // a substring of the status message
  };
  const std::vector<Case> cases = {
      {{"--model-head-dim", "100"},
       {},
       StatusCode::kInvalidArgument,
       "model.head_dim = 100 (from --model-head-dim): must be a multiple of 32 in [32, 512]"},
      {{},
       {{"ATTIC_DATA_PORT", "70000"}},
       StatusCode::kInvalidArgument,
       "data_port = 70000 (from ATTIC_DATA_PORT): must be an integer in [0, 65535]"},
      {{"--config", bad_type.path()},
       {},
       StatusCode::kInvalidArgument,
       "control_port = abc (from " + bad_type.path() + "): must be an integer in [0, 65535]"},
      {{"--populate=maybe"},
       {},
       StatusCode::kInvalidArgument,
       "populate = maybe (from --populate): must be true or false"},
      {{"--kv-memory-bytes", "12XB"},
       {},
       StatusCode::kInvalidArgument,
       "kv_memory_bytes = 12XB (from --kv-memory-bytes): has unknown unit 'XB'"},
      {{},
       {{"ATTIC_KV_MEMORY_BYTES", "100"}},
       StatusCode::kInvalidArgument,
       "kv_memory_bytes = 100 (from ATTIC_KV_MEMORY_BYTES): must be a size in [1MiB, 64TiB]"},
      {{"--max-message-bytes=lots"},
       {},
       StatusCode::kInvalidArgument,
       "max_message_bytes = lots (from --max-message-bytes): is not a size"},
      {{"--log-level", "verbose"},
       {},
       StatusCode::kInvalidArgument,
       "log_level = verbose (from --log-level): must be one of error|warn|info|debug"},
      {{"--model-preset", "gpt-5"},
       {},
       StatusCode::kInvalidArgument,
       "model.preset = gpt-5 (from --model-preset): must be one of attic-ref-54m, llama3-8b"},
      {{},
       {{"ATTIC_MODEL_DTYPE", "int8"}},
       StatusCode::kInvalidArgument,
       "model.dtype = int8 (from ATTIC_MODEL_DTYPE): must be one of bf16, fp16, fp32"},
      {{"--model-block-size", "24"},
       {},
       StatusCode::kInvalidArgument,
       "model.block_size = 24 (from --model-block-size): must be a multiple of 16 in [16, 1024]"},
      {{"--model-num-layers", "0"},
       {},
       StatusCode::kInvalidArgument,
       "model.num_layers = 0 (from --model-num-layers): must be an integer in [1, 4096]"},
      {{"--model-softmax-scale", "-1"},
       {},
       StatusCode::kInvalidArgument,
       "model.softmax_scale = -1 (from --model-softmax-scale): must be a number in [0, 1000000]"},
      {{"--model-name="},
       {},
       StatusCode::kInvalidArgument,
       "model.name = \"\" (from --model-name): must not be empty"},
      {{"--model-fingerprint", "xyz"},
       {},
       StatusCode::kInvalidArgument,
       "model_fingerprint = xyz (from --model-fingerprint): must be a 64-bit unsigned integer"},
      {{"--listen-address", "localhost"},
       {},
       StatusCode::kInvalidArgument,
       "listen_address = localhost (from --listen-address): must be an IPv4 or IPv6 address"},
      {{},
       {{"ATTIC_CONTROL_ADDRESS", "1.2.3"}},
       StatusCode::kInvalidArgument,
       "control_address = 1.2.3 (from ATTIC_CONTROL_ADDRESS)"},
      {{"--name", "two words"},
       {},
       StatusCode::kInvalidArgument,
       "name = two words (from --name): must not contain blanks"},
      {{"--compute-threads", "-1"},
       {},
       StatusCode::kInvalidArgument,
       "compute_threads = -1 (from --compute-threads): must be an integer in [0, 1024]"},
      {{"--default-timeout-ms", "0"},
       {},
       StatusCode::kInvalidArgument,
       "default_timeout_ms = 0 (from --default-timeout-ms): must be an integer in [1, 3600000]"},
      {{"--drain-timeout-ms", "1.5"},
       {},
       StatusCode::kInvalidArgument,
       "drain_timeout_ms = 1.5 (from --drain-timeout-ms)"},
      {{"--bogus", "1"}, {}, StatusCode::kInvalidArgument, "unknown flag --bogus (see --help)"},
      {{"--no-data-port"}, {}, StatusCode::kInvalidArgument, "unknown flag --no-data-port"},
      {{"--data-port"},
       {},
       StatusCode::kInvalidArgument,
       "data_port (from --data-port): needs a value"},
      {{"--config"}, {}, StatusCode::kInvalidArgument, "config (from --config): needs a value"},
      {{"extra"}, {}, StatusCode::kInvalidArgument, "unexpected argument 'extra'"},
      {{"--config", unknown_key.path()},
       {},
       StatusCode::kInvalidArgument,
       "model.heads (from " + unknown_key.path() + " line 3): unknown setting"},
      {{"--config", list_value.path()},
       {},
       StatusCode::kInvalidArgument,
       "name (from " + list_value.path() + " line 1): must be a single value, not a list"},
      {{"--config", broken.path()},
       {},
       StatusCode::kInvalidArgument,
       "config file " + broken.path() + ":"},
      {{"--config", not_map.path()},
       {},
       StatusCode::kInvalidArgument,
       "config file " + not_map.path() + ": must be a map of settings"},
      {{},
       {{"ATTIC_CONFIG", "/nonexistent/attic.yaml"}},
       StatusCode::kNotFound,
       "config file /nonexistent/attic.yaml (from ATTIC_CONFIG): cannot be opened"},
      {{"--model-num-q-heads", "7"},
       {},
       StatusCode::kInvalidArgument,
       "num_q_heads = 7 is not a positive multiple of num_kv_heads"},
      {{"--model-num-q-heads", "7"},
       {},
       StatusCode::kInvalidArgument,
       "model.num_q_heads from --model-num-q-heads"},
      {{"--control-port", "7100"},
       {},
       StatusCode::kInvalidArgument,
       "control_port = 7100 (from --control-port): equals data_port (default)"},
  };
  for (const Case& c : cases) {
    StatusOr<ConfigResult> r = Load(c.args, c.env);
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_EQ(r.status().code(), c.code) << r.status();
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << "want: " << c.message << "\ngot:  " << r.status();
  }
}

TEST(WorkerConfigTest, RetrievalSettings) {
  StatusOr<ConfigResult> r = Load({"--retrieval-index-kind", "cluster", "--retrieval-top-k",
                                   "64", "--retrieval-profile-heads=false"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.retrieval.index_kind, "cluster");
  EXPECT_EQ(r->config.retrieval.top_k, 64);
  EXPECT_FALSE(r->config.retrieval.profile_heads);
  EXPECT_EQ(r->config.retrieval.window, 64);  // default
  EXPECT_EQ(r->config.retrieval.fetch_budget, 0);
  EXPECT_EQ(r->config.retrieval.score_slack_pct, 2);
  r = Load({"--retrieval-fetch-budget", "16", "--retrieval-score-slack-pct", "10"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.retrieval.fetch_budget, 16);
  EXPECT_EQ(r->config.retrieval.score_slack_pct, 10);
  EXPECT_EQ(r->config.retrieval.stand_in, "quantized");  // default
  r = Load({"--retrieval-stand-in", "none"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.retrieval.stand_in, "none");
  r = Load({"--retrieval-stand-in", "graph"});  // a slow kind cannot stand in
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("retrieval.stand_in"), std::string::npos) << r.status();
  r = Load({"--retrieval-index-kind", "hnsw"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("retrieval.index_kind"), std::string::npos) << r.status();
  r = Load({"--retrieval-fold-tokens", "0"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("retrieval.fold_tokens"), std::string::npos) << r.status();
}

TEST(WorkerConfigTest, ComputeSpin) {
  StatusOr<ConfigResult> r = Load({});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.compute_spin_us, 0u);  // sleep at once unless told
  r = Load({"--compute-spin-us", "50"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.compute_spin_us, 50u);
  r = Load({"--compute-spin-us", "100001"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("compute_spin_us"), std::string::npos) << r.status();
}

TEST(WorkerConfigTest, SsdTierSettings) {
  StatusOr<ConfigResult> r = Load({});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.data_dir, "");  // DRAM only
  EXPECT_EQ(r->config.ssd.block_cache_mb, 32);
  EXPECT_EQ(r->config.ssd.background_threads, 2);
  EXPECT_TRUE(r->config.ssd.direct_io);
  EXPECT_FALSE(r->config.ssd.sync);
  EXPECT_EQ(r->config.ssd.flush_mb, 1);
  EXPECT_DOUBLE_EQ(r->config.value_dram_fraction, 1.0);
  EXPECT_EQ(r->config.value_dram_mb, 0u);
  EXPECT_DOUBLE_EQ(r->config.spill_high_watermark, 0.9);
  EXPECT_DOUBLE_EQ(r->config.spill_low_watermark, 0.75);

  YamlFile file("data_dir: /var/lib/attic/kv\nssd: {sync: true, flush_mb: 8}\n");
  r = Load({"--config", file.path(), "--no-ssd-direct-io", "--value-dram-fraction", "0.25",
            "--spill-high-watermark", "1", "--spill-low-watermark=0.5"},
           {{"ATTIC_SSD_BACKGROUND_THREADS", "4"}, {"ATTIC_SSD_BLOCK_CACHE_MB", "0"}});
  ASSERT_TRUE(r.ok()) << r.status();
  const WorkerConfig& c = r->config;
  EXPECT_EQ(c.data_dir, "/var/lib/attic/kv");
  EXPECT_TRUE(c.ssd.sync);
  EXPECT_EQ(c.ssd.flush_mb, 8);
  EXPECT_FALSE(c.ssd.direct_io);
  EXPECT_EQ(c.ssd.background_threads, 4);
  EXPECT_EQ(c.ssd.block_cache_mb, 0);
  EXPECT_DOUBLE_EQ(c.value_dram_fraction, 0.25);
  EXPECT_DOUBLE_EQ(c.spill_high_watermark, 1.0);
  EXPECT_DOUBLE_EQ(c.spill_low_watermark, 0.5);
  const std::string text = DescribeConfig(c);
  EXPECT_NE(text.find("data_dir = /var/lib/attic/kv\n"), std::string::npos) << text;
  EXPECT_NE(text.find("value_dram_fraction = 0.25\n"), std::string::npos) << text;

  r = Load({"--kv-memory-bytes", "1GiB", "--value-dram-mb", "512"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.value_dram_mb, 512u);
}

TEST(WorkerConfigTest, SsdTierRefusalsNameTheSettings) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--value-dram-fraction", "0"},
       "value_dram_fraction = 0 (from --value-dram-fraction): must be a number in (0, 1]"},
      {{"--value-dram-fraction", "1.5"}, "value_dram_fraction = 1.5"},
      {{"--spill-high-watermark", "x"},
       "spill_high_watermark = x (from --spill-high-watermark): must be a number in (0, 1]"},
      {{"--spill-low-watermark", "-0.1"}, "spill_low_watermark = -0.1"},
      {{"--spill-low-watermark", "0.9"},
       "spill_low_watermark = 0.9 (from --spill-low-watermark): must be below "
       "spill_high_watermark = 0.9 (default)"},
      {{"--spill-high-watermark", "0.5"}, "spill_low_watermark = 0.75 (default): must be below"},
      {{"--value-dram-mb", "64", "--value-dram-fraction", "0.5"},
       "value_dram_mb = 64 (from --value-dram-mb): set either it or value_dram_fraction (from "
       "--value-dram-fraction)"},
      {{"--value-dram-mb", "600"},
       "value_dram_mb = 600 (from --value-dram-mb): exceeds the V pool, half of "
       "kv_memory_bytes = 1GiB (default)"},
      {{"--ssd-flush-mb", "0"}, "ssd.flush_mb = 0 (from --ssd-flush-mb)"},
      {{"--ssd-background-threads", "0"}, "ssd.background_threads = 0"},
      {{"--ssd-sync=perhaps"}, "ssd.sync = perhaps (from --ssd-sync): must be true or false"},
  };
  for (const auto& [args, message] : cases) {
    StatusOr<ConfigResult> r = Load(args);
    ASSERT_FALSE(r.ok()) << message;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find(message), std::string::npos)
        << "want: " << message << "\ngot:  " << r.status();
  }
}

TEST(WorkerConfigTest, RecallTargetIsAFraction) {
  StatusOr<ConfigResult> r = Load({});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->config.retrieval.recall_target, 0.96);
  r = Load({"--retrieval-recall-target", "0.9"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->config.retrieval.recall_target, 0.9);
  for (const char* bad : {"0", "1.5", "high"}) {
    r = Load({"--retrieval-recall-target", bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("retrieval.recall_target"), std::string::npos)
        << r.status();
  }
}

TEST(WorkerConfigTest, DescribeConfigMasksTheToken) {
  StatusOr<ConfigResult> r = Load({"--token", "s3cret-token", "--name", "w1"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.token, "s3cret-token");
  const std::string text = DescribeConfig(r->config);
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
  EXPECT_NE(text.find("token = ***\n"), std::string::npos) << text;
  EXPECT_NE(text.find("name = w1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("model.num_layers = 6\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kv_memory_bytes = 1GiB\n"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 56);  // one line per setting
  r = Load({});
  ASSERT_TRUE(r.ok());
  EXPECT_NE(DescribeConfig(r->config).find("token = \n"), std::string::npos);
}

TEST(ConfigValuesTest, ParseSize) {
  const std::vector<std::pair<std::string, uint64_t>> good = {
      {"65536", 65536},
      {"0", 0},
      {"512MiB", uint64_t{512} << 20},
      {"4GiB", uint64_t{4} << 30},
      {"1g", uint64_t{1} << 30},
      {"1G", uint64_t{1} << 30},
      {"2Gi", uint64_t{2} << 30},
      {"1.5GiB", uint64_t{3} << 29},
      {"0.5k", 512},
      {" 3 KiB ", 3072},
      {"1TiB", uint64_t{1} << 40},
      {"7B", 7},
      {"1kB", 1000},
      {"2MB", 2000000},
      {"3gb", 3000000000},
  };
  for (const auto& [text, bytes] : good) {
    StatusOr<uint64_t> v = config::ParseSize(text);
    ASSERT_TRUE(v.ok()) << text << ": " << v.status();
    EXPECT_EQ(*v, bytes) << text;
  }
  for (const char* bad : {"", "abc", "GiB", ".", "1.2.3", "-1", "1 XiB", "1iB",
                          "99999999999999999999", "20000000TiB"}) {
    EXPECT_FALSE(config::ParseSize(bad).ok()) << bad;
  }
  EXPECT_EQ(config::FormatSize(uint64_t{1} << 30), "1GiB");
  EXPECT_EQ(config::FormatSize(uint64_t{1536} << 20), "1536MiB");
  EXPECT_EQ(config::FormatSize(1000), "1000");
  EXPECT_EQ(config::FormatSize(0), "0");

  StatusOr<ConfigResult> r =
      Load({"--kv-memory-bytes", "512MiB"}, {{"ATTIC_MAX_MESSAGE_BYTES", "1g"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config.kv_memory_bytes, uint64_t{512} << 20);
  EXPECT_EQ(r->config.max_message_bytes, uint64_t{1} << 30);
}

TEST(ConfigValuesTest, ParseIntBoolAndNames) {
  EXPECT_EQ(*config::ParseInt(" +42 "), 42);
  EXPECT_EQ(*config::ParseInt("-7"), -7);
  for (const char* bad : {"", "4x", "0x10", "1e3", "99999999999999999999"}) {
    EXPECT_FALSE(config::ParseInt(bad).ok()) << bad;
  }
  EXPECT_TRUE(*config::ParseBool("Yes"));
  EXPECT_FALSE(*config::ParseBool("OFF"));
  EXPECT_FALSE(config::ParseBool("2").ok());
  EXPECT_EQ(config::FlagName("model.num_kv_heads"), "--model-num-kv-heads");
  EXPECT_EQ(config::EnvName("ATTIC_", "model.num_kv_heads"), "ATTIC_MODEL_NUM_KV_HEADS");
}

}  // namespace
}  // namespace attic
