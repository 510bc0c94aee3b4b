#ifndef CHALF_H
#define CHALF_H
#include <stdint.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

// fp16 -> fp32 through the F16C instruction; Swift's own Float16 widening of SIMD vectors
// compiles to out-of-line calls (DESIGN §8).
static inline float chalf_to_float(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    _Float16 v;
    __builtin_memcpy(&v, &h, 2);
    return (float)v;
#endif
}

// Asks for the cache line holding p ahead of its use (decode kernels read rows too short for the
// hardware prefetcher to catch on).
static inline void chalf_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

// Converts n fp16 values to fp32 (8 at a time with F16C).
static inline void chalf_to_float_n(const uint16_t *src, float *dst, long n) {
    long i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < n; i++) dst[i] = chalf_to_float(src[i]);
}

static inline uint16_t chalf_from_float(float f) {
#if defined(__F16C__)
    return _cvtss_sh(f, 0);
#else
    _Float16 h = (_Float16)f;
    uint16_t u;
    __builtin_memcpy(&u, &h, 2);
    return u;
#endif
}

// CPU features, for choosing OpenBLAS's kernels when it does not recognise the processor.
static inline int chalf_cpu_supports_avx512f(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}
static inline int chalf_cpu_supports_avx2(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

// The CPU's spin-wait hint, for worker threads waiting on the next job.
static inline void chalf_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// How many CPUs this process may run on (its affinity mask: taskset, a container's cpuset), or 0
// when unknown. Declared here because <sched.h> shows sched_getaffinity only under _GNU_SOURCE,
// which a module's header cannot set for the headers included before it.
#if defined(__linux__)
#include <stddef.h>
int sched_getaffinity(int pid, size_t size, void *mask);
static inline int chalf_allowed_cpus(void) {
    unsigned long long mask[16] = {0};   // 1,024 CPUs, glibc's cpu_set_t
    if (sched_getaffinity(0, sizeof mask, mask) != 0) return 0;
    int n = 0;
    for (int i = 0; i < 16; i++) n += __builtin_popcountll(mask[i]);
    return n;
}
#else
static inline int chalf_allowed_cpus(void) { return 0; }
#endif

// Allocations of `bytes` or more get their own mappings and go back to the system when freed.
// glibc otherwise raises its threshold after the first large free, and the fp32 copy each tensor
// passes through while a model loads stays resident in the heap. A no-op off glibc.
#if defined(__GLIBC__)
#include <malloc.h>
static inline void chalf_map_large_allocations(long bytes) { mallopt(M_MMAP_THRESHOLD, (int)bytes); }
// Gives the free pages inside the heap back to the system (not only those at its top).
static inline void chalf_release_free_heap(void) { malloc_trim(0); }
#else
static inline void chalf_map_large_allocations(long bytes) { (void)bytes; }
static inline void chalf_release_free_heap(void) {}
#endif

// The half-precision row kernels, the small-GEMM kernels, the bf16 dot products and the fp32
// AVX-512 small-GEMM kernels (both compiled apart for AVX-512: CHalfBF16.c, CHalfAVX512.c) live
// in their own headers.
#include "CHalfKernels.h"
#include "CHalfQ8.h"
#include "CHalfGEMM.h"
#include "CHalfBF16.h"
#include "CHalfAVX512.h"
#endif
