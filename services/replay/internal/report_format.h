// Number formatting and derived series shared by the replay report's renderings (the text
// table, the JSON file and the HTML page). Not for use outside services/replay.
//
// Thread safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "services/replay/report.h"

namespace attic::replay::internal {

// "0 B", "512 B", "1.50 KiB", "12.3 MiB", "1.23 GiB", "2.00 TiB".
std::string FormatBytes(double bytes);
// A latency in ms with three significant digits at least: "0.0123", "1.23", "12.3", "1234".
std::string FormatMs(double ms);
// A count with thousands grouped by spaces: "12 345".
std::string FormatCount(int64_t n);
// A rate or figure with one decimal below 1000 and none above: "0.5", "999.9", "1830".
std::string FormatRate(double value);
// "62.3 %" for 0.623.
std::string FormatPercent(double fraction);

// The slice and speed-up as a person reads them: "requests 0-299, speed-up 10x".
std::string SliceText(const ReplayConfig& config, int64_t admitted);
// (name, value) rows of every config field, in the JSON's order.
std::vector<std::pair<std::string, std::string>> ConfigRows(const ReplayConfig& config);

// Points (value, cumulative fraction) of the empirical CDF of `values`: at most `max_points`
// points, the smallest and largest values included; empty for no values.
std::vector<std::pair<double, double>> Cdf(std::vector<double> values, int max_points);

// Decode tokens per second between consecutive timeline samples, at each later sample's time
// in seconds.
std::vector<std::pair<double, double>> DecodeRateSeries(const std::vector<TimelineSample>& t);

// The first `max` failed requests, in trace order.
std::vector<const RequestRecord*> FailedRequests(const ReplayReport& report, size_t max);

// Latency values of the report as doubles.
std::vector<double> StepLatencies(const ReplayReport& report);
std::vector<double> PrefillLatencies(const ReplayReport& report);
std::vector<double> TtftLatencies(const ReplayReport& report);

}  // namespace attic::replay::internal
