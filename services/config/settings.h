// Table-driven configuration for Attic's executables: one table of settings, filled from a YAML
// file, ATTIC_* environment variables and command-line flags, with the precedence
// flag > environment > file > built-in default.
//
//   struct Options { uint16_t port = 7180; uint64_t memory = 1ull << 30; };
//   Options options;
//   std::vector<config::Setting> table = {
//       config::IntSetting("control.port", &options.port, 0, 65535, "HTTP port; 0 = ephemeral"),
//       config::SizeSetting("kv.memory", &options.memory, 1 << 20, 1ull << 46, "DRAM for KV"),
//   };
//   ASSIGN_OR_RETURN(config::LoadResult r,
//                    config::LoadSettings(table, {.name = "attic-tool", .version_line = "..."},
//                                         argc, argv, config::EnvironmentMap()));
//   if (r.exit_now) { std::cout << r.output; return r.exit_code; }
//
// Each setting has one dotted key ("model.head_dim"); its flag ("--model-head-dim") and
// environment variable ("ATTIC_MODEL_HEAD_DIM") derive from it, and the YAML file spells it as
// nested maps (model: {head_dim: 128}) or as the dotted key itself. The file is named by
// `--config FILE` or ATTIC_CONFIG. Flags take `--flag value` or `--flag=value`; a boolean takes
// `--flag`, `--no-flag` or `--flag=true|false`. Every refusal names the key, the value and the
// source: "model.head_dim = 100 (from --model-head-dim): must be a multiple of 32 in [32, 512]".
//
// Thread safety: LoadSettings writes through the table's bound fields; call it from one thread.
// The parsing functions are stateless.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace attic::config {

// Where a value came from, lowest precedence first.
enum class Source { kDefault = 0, kFile = 1, kEnv = 2, kFlag = 3 };

struct Origin {
  Source source = Source::kDefault;
  // The flag ("--model-head-dim"), the variable ("ATTIC_MODEL_HEAD_DIM") or the file's path;
  // empty for the default.
  std::string name;

  // "from --model-head-dim", "from ATTIC_MODEL_HEAD_DIM", "from worker.yaml", "default".
  std::string Describe() const;
};

// One setting of a table: its key and how to parse, check, store and show its value.
// Build them with the typed helpers below; they bind the setting to a field the caller owns,
// which must outlive the table.
struct Setting {
  // Dotted key: lower case letters, digits and '_' between dots ("model.head_dim").
  std::string key;
  // Placeholder in --help ("N", "BYTES"); empty for a boolean switch.
  std::string value_name;
  std::string help;
  // A secret is never printed: --help shows "(unset)" or "(set)" and errors hide the value.
  bool secret = false;
  // Parses `text`, checks it and stores it in the field. On refusal returns InvalidArgument
  // whose message is only the rule broken ("must be in [1, 4096]"); LoadSettings adds the key,
  // value and source.
  std::function<Status(std::string_view text)> set;
  // The field's current value as a flag would spell it.
  std::function<std::string()> show;

  bool is_switch() const { return value_name.empty(); }
};

// "--model-head-dim" for "model.head_dim".
std::string FlagName(std::string_view key);
// "ATTIC_MODEL_HEAD_DIM" for "model.head_dim" with prefix "ATTIC_".
std::string EnvName(std::string_view prefix, std::string_view key);

// Parsers, strict: surrounding blanks are ignored, anything else that does not belong is refused.
// Decimal integer with optional sign.
StatusOr<int64_t> ParseInt(std::string_view text);
// Byte size: a number with an optional fraction and unit. KiB MiB GiB TiB (also Ki, K, k, M, m,
// G, g, T, t) are powers of 1024; kB MB GB TB powers of 1000; B or nothing means bytes.
// "512MiB", "4GiB", "1g", "1.5GiB", "65536". The result is rounded down to whole bytes.
StatusOr<uint64_t> ParseSize(std::string_view text);
// The shortest exact spelling: "1GiB", "1536MiB", "1000" (bytes when no unit divides it).
std::string FormatSize(uint64_t bytes);
// true/false, yes/no, on/off, 1/0 (case-insensitive).
StatusOr<bool> ParseBool(std::string_view text);

// Typed settings bound to a field. Ranges are inclusive.
Setting StringSetting(std::string key, std::string* field, std::string help,
                      std::function<Status(const std::string&)> check = {});
Setting SecretSetting(std::string key, std::string* field, std::string help);
Setting ChoiceSetting(std::string key, std::string* field, std::vector<std::string> choices,
                      std::string help);
Setting BoolSetting(std::string key, bool* field, std::string help);
// `multiple` > 1 also requires value % multiple == 0.
Setting Int64Setting(std::string key, std::function<void(int64_t)> store,
                     std::function<int64_t()> load, int64_t min, int64_t max, std::string help,
                     int64_t multiple = 1);
Setting SizeSetting(std::string key, uint64_t* field, uint64_t min, uint64_t max, std::string help);
Setting FloatSetting(std::string key, float* field, double min, double max, std::string help);

// Any integer field whose type holds [min, max].
template <typename Int>
Setting IntSetting(std::string key, Int* field, int64_t min, int64_t max, std::string help,
                   int64_t multiple = 1) {
  return Int64Setting(
      std::move(key), [field](int64_t v) { *field = static_cast<Int>(v); },
      [field] { return static_cast<int64_t>(*field); }, min, max, std::move(help), multiple);
}

struct ProgramInfo {
  // "attic-worker".
  std::string name;
  // What --version prints: "attic-worker 0.1.0 (protocol 1)".
  std::string version_line;
  // One paragraph at the top of --help.
  std::string summary;
  std::string env_prefix = "ATTIC_";
};

struct LoadResult {
  // --help or --version was given: print `output` and exit with `exit_code`.
  bool exit_now = false;
  int exit_code = 0;
  std::string output;
  // Where each key set by a source came from; keys left at their default are absent.
  std::map<std::string, Origin> origins;
  // The YAML file read, empty if none.
  std::string config_file;

  // The origin of `key`: its entry in `origins`, or the default.
  Origin OriginOf(const std::string& key) const;
};

// Fills the table's fields from the file, the environment and argv (argv[0] is the program).
// Settings are applied in table order, each from its highest-precedence source, so a setting
// that other settings refine (a preset) must come first in the table.
// InvalidArgument naming the key, value and source for an unknown flag, an unknown YAML key, a
// value that does not parse or breaks its rule, a flag without its value or a stray argument;
// NotFound or InvalidArgument naming the file when the YAML file cannot be read or parsed.
// Environment variables with the prefix that name no setting are ignored (the environment is
// shared with other programs). --help and --version take precedence over any error.
StatusOr<LoadResult> LoadSettings(const std::vector<Setting>& settings, const ProgramInfo& program,
                                  int argc, const char* const* argv,
                                  const std::map<std::string, std::string>& env);

// The --help text: every setting with its flag, environment variable, current value (call it
// before anything is applied to show the defaults) and help.
std::string HelpText(const std::vector<Setting>& settings, const ProgramInfo& program);

// "key = value" lines, one per setting, secrets masked as "***" (or "" when unset).
std::string DescribeSettings(const std::vector<Setting>& settings);

// The process environment as a map (from environ).
std::map<std::string, std::string> EnvironmentMap();

}  // namespace attic::config
