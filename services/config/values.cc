// Parsers and the typed settings of settings.h.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>

#include "services/config/settings.h"

namespace attic::config {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Bytes per unit; 0 for an unknown unit. Lower-cased: "kib", "ki", "k" are 1024, "kb" 1000.
uint64_t UnitMultiplier(const std::string& unit) {
  if (unit.empty() || unit == "b") return 1;
  static constexpr char kPrefixes[] = "kmgt";
  const size_t power = std::string_view(kPrefixes).find(unit[0]);
  if (power == std::string_view::npos) return 0;
  const std::string rest = unit.substr(1);
  const bool binary = rest.empty() || rest == "i" || rest == "ib";
  if (!binary && rest != "b") return 0;
  const uint64_t base = binary ? 1024 : 1000;
  uint64_t m = 1;
  for (size_t i = 0; i <= power; ++i) m *= base;
  return m;
}

std::string RangeText(int64_t min, int64_t max, int64_t multiple) {
  std::string range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
  return multiple > 1 ? "must be a multiple of " + std::to_string(multiple) + " in " + range
                      : "must be an integer in " + range;
}

std::string FormatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

StatusOr<int64_t> ParseInt(std::string_view text) {
  std::string_view s = Trim(text);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    return InvalidArgumentError("is not an integer");
  }
  return value;
}

StatusOr<uint64_t> ParseSize(std::string_view text) {
  const std::string_view s = Trim(text);
  size_t i = 0;
  uint64_t whole = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (__builtin_mul_overflow(whole, 10u, &whole) ||
        __builtin_add_overflow(whole, static_cast<uint64_t>(s[i] - '0'), &whole)) {
      return InvalidArgumentError("is too large");
    }
    ++i;
  }
  const size_t whole_digits = i;
  long double fraction = 0.0L;
  if (i < s.size() && s[i] == '.') {
    long double scale = 0.1L;
    for (++i; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
      fraction += scale * (s[i] - '0');
      scale /= 10;
    }
  }
  if (i == 0 || (whole_digits == 0 && i == 1)) {
    return InvalidArgumentError("is not a size (like 65536, 512MiB, 4GiB, 1g)");
  }
  const std::string unit = Lower(Trim(s.substr(i)));
  const uint64_t multiplier = UnitMultiplier(unit);
  if (multiplier == 0) {
    return InvalidArgumentError("has unknown unit '" + std::string(Trim(s.substr(i))) +
                                "' (use B, KiB, MiB, GiB, TiB, k, m, g, t, kB, MB, GB, TB)");
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(whole, multiplier, &bytes))
    return InvalidArgumentError("is too large");
  const uint64_t extra = static_cast<uint64_t>(std::floor(fraction * multiplier));
  if (__builtin_add_overflow(bytes, extra, &bytes)) return InvalidArgumentError("is too large");
  return bytes;
}

std::string FormatSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4; ++i) {
    const uint64_t unit = uint64_t{1} << (10 * (4 - i));
    if (bytes != 0 && bytes % unit == 0) return std::to_string(bytes / unit) + kUnits[i];
  }
  return std::to_string(bytes);
}

StatusOr<bool> ParseBool(std::string_view text) {
  const std::string s = Lower(Trim(text));
  if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  return InvalidArgumentError("must be true or false");
}

Setting StringSetting(std::string key, std::string* field, std::string help,
                      std::function<Status(const std::string&)> check) {
  Setting s{.key = std::move(key), .value_name = "TEXT", .help = std::move(help)};
  s.set = [field, check = std::move(check)](std::string_view text) -> Status {
    std::string value(text);
    if (check) RETURN_IF_ERROR(check(value));
    *field = std::move(value);
    return OkStatus();
  };
  s.show = [field] { return *field; };
  return s;
}

Setting SecretSetting(std::string key, std::string* field, std::string help) {
  Setting s = StringSetting(std::move(key), field, std::move(help));
  s.value_name = "SECRET";
  s.secret = true;
  return s;
}

Setting ChoiceSetting(std::string key, std::string* field, std::vector<std::string> choices,
                      std::string help) {
  std::string list;
  for (const std::string& c : choices) list += (list.empty() ? "" : "|") + c;
  Setting s{.key = std::move(key), .value_name = list, .help = std::move(help)};
  s.set = [field, choices = std::move(choices), list](std::string_view text) -> Status {
    const std::string value = Lower(Trim(text));
    if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
      return InvalidArgumentError("must be one of " + list);
    }
    *field = value;
    return OkStatus();
  };
  s.show = [field] { return *field; };
  return s;
}

Setting BoolSetting(std::string key, bool* field, std::string help) {
  Setting s{.key = std::move(key), .value_name = "", .help = std::move(help)};
  s.set = [field](std::string_view text) -> Status {
    ASSIGN_OR_RETURN(*field, ParseBool(text));
    return OkStatus();
  };
  s.show = [field] { return std::string(*field ? "true" : "false"); };
  return s;
}

Setting Int64Setting(std::string key, std::function<void(int64_t)> store,
                     std::function<int64_t()> load, int64_t min, int64_t max, std::string help,
                     int64_t multiple) {
  // The rule, without its "must be", completes the help: "Head dimension D (a multiple of 32 in
  // [32, 512])".
  Setting s{.key = std::move(key),
            .value_name = "N",
            .help = help + " (" + RangeText(min, max, multiple).substr(8) + ")"};
  s.set = [store = std::move(store), min, max, multiple](std::string_view text) -> Status {
    const StatusOr<int64_t> v = ParseInt(text);
    if (!v.ok() || *v < min || *v > max || (multiple > 1 && *v % multiple != 0)) {
      return InvalidArgumentError(RangeText(min, max, multiple));
    }
    store(*v);
    return OkStatus();
  };
  s.show = [load = std::move(load)] { return std::to_string(load()); };
  return s;
}

Setting SizeSetting(std::string key, uint64_t* field, uint64_t min, uint64_t max,
                    std::string help) {
  Setting s{.key = std::move(key),
            .value_name = "BYTES",
            .help = help + " (a size in [" + FormatSize(min) + ", " + FormatSize(max) + "])"};
  s.set = [field, min, max](std::string_view text) -> Status {
    const StatusOr<uint64_t> v = ParseSize(text);
    if (!v.ok()) return v.status();
    if (*v < min || *v > max) {
      return InvalidArgumentError("must be a size in [" + FormatSize(min) + ", " + FormatSize(max) +
                                  "]");
    }
    *field = *v;
    return OkStatus();
  };
  s.show = [field] { return FormatSize(*field); };
  return s;
}

Setting FloatSetting(std::string key, float* field, double min, double max, std::string help) {
  Setting s{.key = std::move(key), .value_name = "X", .help = std::move(help)};
  s.set = [field, min, max](std::string_view text) -> Status {
    const std::string value(Trim(text));
    char* end = nullptr;
    const double v = value.empty() ? std::nan("") : std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || !std::isfinite(v) || v < min ||
        v > max) {
      return InvalidArgumentError("must be a number in [" + FormatDouble(min) + ", " +
                                  FormatDouble(max) + "]");
    }
    *field = static_cast<float>(v);
    return OkStatus();
  };
  s.show = [field] { return FormatDouble(*field); };
  return s;
}

}  // namespace attic::config
