#include "attention_workers/retrieval/selection.h"

#include <algorithm>
#include <string>

namespace attic::retrieval {

Status ValidateSelectionParams(const SelectionParams& p) {
  if (p.sinks < 0 || p.window < 0 || p.top_k < 0) {
    return InvalidArgumentError("sparse selection: sinks " + std::to_string(p.sinks) +
                                ", window " + std::to_string(p.window) + " and top_k " +
                                std::to_string(p.top_k) + " must not be negative");
  }
  return OkStatus();
}

std::vector<int32_t> BuildSelection(const SelectionInput& in, const SelectionParams& p) {
  const int64_t n = std::max<int64_t>(in.length, 0);
  const int64_t window_begin = std::max<int64_t>(0, n - p.window);
  const int64_t indexed = std::clamp<int64_t>(in.indexed, 0, n);
  // Everything selected lies below `end`; the caller owns [end, n) when it keeps the window.
  const int64_t end = p.exclude_window ? window_begin : n;

  std::vector<int32_t> sel;
  sel.reserve(static_cast<size_t>(p.sinks + p.window) + in.retrieved.size());
  for (int64_t t = 0; t < std::min<int64_t>(p.sinks, end); ++t) sel.push_back(static_cast<int32_t>(t));
  for (int32_t t : in.retrieved) {
    if (t >= 0 && t < end) sel.push_back(t);
  }
  // The unfolded tail, and (unless the caller keeps it) the window.
  const int64_t tail_begin = p.exclude_window ? indexed : std::min(indexed, window_begin);
  for (int64_t t = tail_begin; t < end; ++t) sel.push_back(static_cast<int32_t>(t));
  std::sort(sel.begin(), sel.end());
  sel.erase(std::unique(sel.begin(), sel.end()), sel.end());
  return sel;
}

}  // namespace attic::retrieval
