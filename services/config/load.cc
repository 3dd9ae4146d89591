// LoadSettings: gathers raw values from the YAML file, the environment and argv, then applies
// each setting's value from its highest-precedence source.
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "services/config/settings.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in a C++ header

namespace attic::config {
namespace {

struct RawValue {
  std::string text;
  Origin origin;
};

using Table = std::map<std::string, const Setting*>;  // key -> setting
using RawValues = std::map<std::string, RawValue>;    // key -> highest-precedence value so far

constexpr int kHelpColumn = 6;

Status RefuseValue(const Setting& s, std::string_view text, const Origin& origin,
                   std::string_view rule) {
  std::string shown = s.secret ? "<hidden>" : std::string(text);
  if (shown.empty()) shown = "\"\"";
  return InvalidArgumentError(s.key + " = " + shown + " (" + origin.Describe() +
                              "): " + std::string(rule));
}

// Flattens one YAML map into dotted keys, refusing what names no setting.
Status FlattenYaml(const YAML::Node& node, const std::string& prefix, const Table& table,
                   const std::string& path, RawValues* out) {
  for (const auto& entry : node) {
    const std::string name = entry.first.as<std::string>();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& value = entry.second;
    const std::string where =
        key + " (from " + path + " line " + std::to_string(entry.first.Mark().line + 1) + ")";
    const auto setting = table.find(key);
    if (value.IsMap() && setting == table.end()) {
      RETURN_IF_ERROR(FlattenYaml(value, key, table, path, out));
      continue;
    }
    if (setting == table.end()) return InvalidArgumentError(where + ": unknown setting");
    if (!value.IsScalar()) {
      return InvalidArgumentError(where + ": must be a single value, not a " +
                                  (value.IsNull()  ? "null"
                                   : value.IsMap() ? "map"
                                                   : "list"));
    }
    (*out)[key] = RawValue{value.Scalar(), Origin{Source::kFile, path}};
  }
  return OkStatus();
}

Status ReadYaml(const std::string& path, const Origin& named_by, const Table& table,
                RawValues* out) {
  if (!std::ifstream(path).good()) {
    return NotFoundError("config file " + path + " (" + named_by.Describe() +
                         "): cannot be opened");
  }
  try {
    const YAML::Node root = YAML::LoadFile(path);
    if (root.IsNull()) return OkStatus();  // an empty file sets nothing
    if (!root.IsMap()) {
      return InvalidArgumentError("config file " + path + ": must be a map of settings");
    }
    return FlattenYaml(root, "", table, path, out);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError("config file " + path + ": " + e.what());
  }
}

bool IsHelpOrVersion(std::string_view arg) {
  return arg == "--help" || arg == "-h" || arg == "--version";
}

// Parses argv into values and the config path. Later flags override earlier ones.
Status ParseFlags(int argc, const char* const* argv,
                  const std::map<std::string, const Setting*>& by_flag, RawValues* out,
                  RawValue* config_path) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      return InvalidArgumentError("unexpected argument '" + arg +
                                  "': settings are given as --flag value or --flag=value");
    }
    const size_t eq = arg.find('=');
    const std::string flag = arg.substr(0, eq);
    std::optional<std::string> value;
    if (eq != std::string::npos) value = arg.substr(eq + 1);
    auto it = by_flag.find(flag);
    bool negated = false;
    if (it == by_flag.end() && flag.rfind("--no-", 0) == 0 && !value) {
      it = by_flag.find("--" + flag.substr(5));
      negated = it != by_flag.end() && it->second->is_switch();
      if (!negated) it = by_flag.end();
    }
    if (it == by_flag.end() && flag != "--config") {
      return InvalidArgumentError("unknown flag " + flag + " (see --help)");
    }
    const Setting* setting = flag == "--config" ? nullptr : it->second;
    if (!value && setting != nullptr && setting->is_switch()) value = negated ? "false" : "true";
    if (!value) {
      if (i + 1 >= argc) {
        return InvalidArgumentError((setting ? setting->key : std::string("config")) + " (from " +
                                    flag + "): needs a value");
      }
      value = argv[++i];
    }
    RawValue raw{*value, Origin{Source::kFlag, flag}};
    if (setting == nullptr) {
      *config_path = std::move(raw);
    } else {
      (*out)[setting->key] = std::move(raw);
    }
  }
  return OkStatus();
}

std::string PadTo(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string ShownValue(const Setting& s) {
  const std::string v = s.show();
  if (s.secret) return v.empty() ? "(unset)" : "(set)";
  return v.empty() ? "\"\"" : v;
}

}  // namespace

std::string Origin::Describe() const {
  return source == Source::kDefault ? "default" : "from " + name;
}

Origin LoadResult::OriginOf(const std::string& key) const {
  const auto it = origins.find(key);
  return it == origins.end() ? Origin{} : it->second;
}

std::string FlagName(std::string_view key) {
  std::string flag = "--";
  for (const char c : key) flag += (c == '.' || c == '_') ? '-' : c;
  return flag;
}

std::string EnvName(std::string_view prefix, std::string_view key) {
  std::string env(prefix);
  for (const char c : key) {
    env += (c == '.') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return env;
}

StatusOr<LoadResult> LoadSettings(const std::vector<Setting>& settings, const ProgramInfo& program,
                                  int argc, const char* const* argv,
                                  const std::map<std::string, std::string>& env) {
  LoadResult result;
  for (int i = 1; i < argc; ++i) {
    if (!IsHelpOrVersion(argv[i])) continue;
    result.exit_now = true;
    result.output = std::string_view(argv[i]) == "--version" ? program.version_line + "\n"
                                                             : HelpText(settings, program);
    return result;
  }
  Table table;
  std::map<std::string, const Setting*> by_flag;
  for (const Setting& s : settings) {
    if (!table.emplace(s.key, &s).second || !by_flag.emplace(FlagName(s.key), &s).second ||
        FlagName(s.key) == "--config") {
      return InternalError("settings table: key '" + s.key + "' is repeated or reserved");
    }
  }
  RawValues flags;
  RawValue config_path;
  RETURN_IF_ERROR(ParseFlags(argc, argv, by_flag, &flags, &config_path));
  const std::string config_env = program.env_prefix + "CONFIG";
  if (config_path.origin.source == Source::kDefault) {
    const auto it = env.find(config_env);
    if (it != env.end() && !it->second.empty()) {
      config_path = RawValue{it->second, Origin{Source::kEnv, config_env}};
    }
  }
  RawValues raw;
  if (config_path.origin.source != Source::kDefault) {
    RETURN_IF_ERROR(ReadYaml(config_path.text, config_path.origin, table, &raw));
    result.config_file = config_path.text;
  }
  for (const Setting& s : settings) {
    const std::string name = EnvName(program.env_prefix, s.key);
    const auto it = env.find(name);
    if (it != env.end() && !it->second.empty()) {
      raw[s.key] = RawValue{it->second, Origin{Source::kEnv, name}};
    }
  }
  for (auto& [key, value] : flags) raw[key] = std::move(value);

  for (const Setting& s : settings) {
    const auto it = raw.find(s.key);
    if (it == raw.end()) continue;
    const Status applied = s.set(it->second.text);
    if (!applied.ok()) return RefuseValue(s, it->second.text, it->second.origin, applied.message());
    result.origins[s.key] = it->second.origin;
  }
  return result;
}

std::string HelpText(const std::vector<Setting>& settings, const ProgramInfo& program) {
  const std::string indent(kHelpColumn, ' ');
  std::string out = program.version_line + "\n";
  if (!program.summary.empty()) out += program.summary + "\n";
  out += "\nUsage: " + program.name + " [--config FILE] [--flag value | --flag=value]...\n";
  out +=
      "Each setting is read from its flag, else its environment variable, else the YAML\n"
      "file (nested maps or dotted keys), else its default.\n\n";
  out += "  --config FILE\n" + indent + program.env_prefix + "CONFIG\n" + indent +
         "YAML file of settings.\n";
  out += "  --help, -h\n" + indent + "Print this text and exit.\n";
  out += "  --version\n" + indent + "Print the version and exit.\n";
  for (const Setting& s : settings) {
    std::string flag = FlagName(s.key);
    out += "  " + flag + (s.is_switch() ? ", --no-" + flag.substr(2) : " " + s.value_name) + "\n";
    out += indent + PadTo(s.key, 28) + " " + EnvName(program.env_prefix, s.key) +
           "   default: " + ShownValue(s) + "\n";
    out += indent + s.help + "\n";
  }
  return out;
}

std::string DescribeSettings(const std::vector<Setting>& settings) {
  std::string out;
  for (const Setting& s : settings) {
    const std::string v = s.show();
    out += s.key + " = " + (s.secret && !v.empty() ? "***" : v) + "\n";
  }
  return out;
}

std::map<std::string, std::string> EnvironmentMap() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

}  // namespace attic::config
