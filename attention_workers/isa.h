// Runtime ISA selection for the CPU attention kernels.
//
//   IsaLevel isa = ActiveIsa();            // best the CPU has, or $ATTIC_ISA if set and usable
//   for (IsaLevel l : SupportedIsaLevels()) ...   // tests run every level the CPU has
//
// $ATTIC_ISA forces a level: scalar | avx2 | avx512 | avx512bf16. A level the CPU lacks is never
// used (that would be "illegal instruction"): ActiveIsa() falls back to the default level and
// logs one warning to stderr.
//
// The default is the best level except avx512bf16, which is used only when forced: its
// VDPBF16PS score path measured 45% slower than the avx512 path on an Intel Xeon (Sapphire
// Rapids class, 2.1 GHz) and no faster on AMD Zen 5 (docs/kernels.md).
//
// Thread safety: all functions may be called from any thread.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace attic {

// Ordered from oldest to newest; each level implies the ones before it.
enum class IsaLevel : int {
  kScalar = 0,
  kAvx2 = 1,       // AVX2 + FMA + F16C
  kAvx512 = 2,     // AVX-512 F, BW, VL, DQ
  kAvx512Bf16 = 3  // the above + AVX512_BF16 (VDPBF16PS)
};

std::string_view IsaName(IsaLevel level);
std::optional<IsaLevel> ParseIsa(std::string_view name);

// The best level this CPU (and OS, for AVX register state) supports.
IsaLevel DetectIsa();
// Every level up to DetectIsa(), oldest first.
std::vector<IsaLevel> SupportedIsaLevels();
bool IsaSupported(IsaLevel level);
// DetectIsa() capped at kAvx512 (see above).
IsaLevel DefaultIsa();
// DefaultIsa(), or the level $ATTIC_ISA names when the CPU supports it. Computed once.
IsaLevel ActiveIsa();

}  // namespace attic
