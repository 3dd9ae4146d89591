// <immintrin.h> for translation units that use AVX-512 intrinsics, with GCC 12's false
// -Wuninitialized from avx512fintrin.h silenced (GCC bug 105593: its "undefined" vectors are
// built by self-assignment, which the warning sees once inlined into the caller).
//
// The suppression stays in force for the rest of the including file: the warnings are issued
// where the intrinsics are inlined, after this header. Include it only from files that are
// mostly intrinsics (kernel and benchmark units). It declares nothing of Attic's own, so ISA
// translation units compiled with wider flags may include it (attention_workers/internal).
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
