#include "attention_workers/isa.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <cstdio>
#include <cstdlib>

namespace attic {

std::string_view IsaName(IsaLevel level) {
  switch (level) {
    case IsaLevel::kScalar:
      return "scalar";
    case IsaLevel::kAvx2:
      return "avx2";
    case IsaLevel::kAvx512:
      return "avx512";
    case IsaLevel::kAvx512Bf16:
      return "avx512bf16";
  }
  return "unknown";
}

std::optional<IsaLevel> ParseIsa(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(IsaLevel::kAvx512Bf16); ++i) {
    const auto level = static_cast<IsaLevel>(i);
    if (IsaName(level) == name) return level;
  }
  return std::nullopt;
}

#if defined(__x86_64__)
// F16C from CPUID leaf 1 (ECX bit 29); not every compiler's __builtin_cpu_supports knows it.
static bool HasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ecx & (1u << 29)) != 0;
}
#endif

namespace {

IsaLevel ProbeIsa() {
#if defined(__x86_64__)
  // __builtin_cpu_supports checks both CPUID and the OS's XSAVE state for the register files.
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c();
  if (!avx2) return IsaLevel::kScalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (!avx512) return IsaLevel::kAvx2;
  if (__builtin_cpu_supports("avx512bf16")) return IsaLevel::kAvx512Bf16;
  return IsaLevel::kAvx512;
#else
  return IsaLevel::kScalar;
#endif
}

}  // namespace

// CPUID traps to the hypervisor on a VM (tens of microseconds): probe once per process, not
// per kernel call.
IsaLevel DetectIsa() {
  static const IsaLevel detected = ProbeIsa();
  return detected;
}

std::vector<IsaLevel> SupportedIsaLevels() {
  std::vector<IsaLevel> levels;
  for (int i = 0; i <= static_cast<int>(DetectIsa()); ++i) levels.push_back(static_cast<IsaLevel>(i));
  return levels;
}

bool IsaSupported(IsaLevel level) { return static_cast<int>(level) <= static_cast<int>(DetectIsa()); }

IsaLevel DefaultIsa() {
  const IsaLevel best = DetectIsa();
  return best == IsaLevel::kAvx512Bf16 ? IsaLevel::kAvx512 : best;
}

IsaLevel ActiveIsa() {
  static const IsaLevel active = [] {
    const IsaLevel best = DefaultIsa();
    const char* env = std::getenv("ATTIC_ISA");
    if (env == nullptr || *env == '\0') return best;
    const auto forced = ParseIsa(env);
    if (!forced) {
      std::fprintf(stderr, "attic: ATTIC_ISA=%s is not one of scalar|avx2|avx512|avx512bf16; using %s\n",
                   env, IsaName(best).data());
      return best;
    }
    if (!IsaSupported(*forced)) {
      std::fprintf(stderr, "attic: ATTIC_ISA=%s is not supported by this CPU; using %s\n", env,
                   IsaName(best).data());
      return best;
    }
    return *forced;
  }();
  return active;
}

}  // namespace attic
