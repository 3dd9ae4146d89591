// Logging for daemons and tools: one line per event on stderr, with a level, a UTC timestamp
// and the component, so that journald, kubectl logs and test output all read the same.
//
//   attic::SetLogLevel(attic::ParseLogLevel("debug").value_or(attic::LogLevel::kInfo));
//   ATTIC_LOG(kInfo, "worker") << "listening on " << port;
//   // 2026-11-22T07:01:02.123Z INFO worker: listening on 7100
//
// Thread safety: a line is formatted privately and written with one write(2), so lines from
// concurrent threads never interleave. The level is an atomic.
#pragma once

#include <optional>
#include <sstream>
#include <string_view>

namespace attic {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "debug", "info", "warn"/"warning", "error"; nullopt otherwise.
std::optional<LogLevel> ParseLogLevel(std::string_view name);

// One log line, written when the object is destroyed (end of the full expression).
class LogLine {
 public:
  LogLine(LogLevel level, std::string_view component);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  std::ostringstream stream_;
};

inline bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= static_cast<int>(GetLogLevel());
}

}  // namespace attic

// Formats nothing when the level is disabled.
#define ATTIC_LOG(level, component)                            \
  if (!::attic::LogEnabled(::attic::LogLevel::level)) {        \
  } else                                                       \
    ::attic::LogLine(::attic::LogLevel::level, component)
