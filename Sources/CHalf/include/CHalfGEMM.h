#ifndef CHALF_GEMM_H
#define CHALF_GEMM_H
// The register kernel of the small-GEMM sums (SmallGEMM.multiplyTransposed): a few dozen tokens
// of activations times the rows of a transposed projection, one row per input unit (FFN neuron,
// attention-output dimension). A block of 6 tokens × 16 outputs keeps 12 accumulators in
// registers: each step loads two vectors of one weight row and broadcasts six activations.
// AVX2 + FMA when the build names a CPU target; plain C otherwise.
#include <stdint.h>
#include "CHalf.h"
#include "CHalfKernels.h"

#if CHALF_AVX2
#define CHALF_OUTER_ROW(I)                                                                       \
    if (m > I) {                                                                                 \
        __m256 s = _mm256_broadcast_ss(x + I * xs + k);                                          \
        a##I = _mm256_fmadd_ps(u, s, a##I); b##I = _mm256_fmadd_ps(v, s, b##I);                 \
    }
#define CHALF_OUTER_LOAD(I)                                                                      \
    if (m > I) { a##I = acc ? _mm256_loadu_ps(o + I * os) : z; b##I = acc ? _mm256_loadu_ps(o + I * os + 8) : z; }
#define CHALF_OUTER_STORE(I)                                                                     \
    if (m > I) { _mm256_storeu_ps(o + I * os, a##I); _mm256_storeu_ps(o + I * os + 8, b##I); }

// The register block: o[t * os + j] (+)= Σ_k x[t * xs + k] · w[row_k * ws + j] for t < m ≤ 6 and
// j < 16, row_k = rows[k] or k. Inlined with a constant m, so the unused accumulators vanish.
static inline __attribute__((always_inline)) void chalf_outer_block(int m, float *o, long os, const float *x, long xs,
                                                                   const float *w, long ws, const int32_t *rows,
                                                                   long count, int acc) {
    __m256 z = _mm256_setzero_ps();
    __m256 a0 = z, b0 = z, a1 = z, b1 = z, a2 = z, b2 = z, a3 = z, b3 = z, a4 = z, b4 = z, a5 = z, b5 = z;
    CHALF_OUTER_LOAD(0) CHALF_OUTER_LOAD(1) CHALF_OUTER_LOAD(2) CHALF_OUTER_LOAD(3) CHALF_OUTER_LOAD(4) CHALF_OUTER_LOAD(5)
    for (long k = 0; k < count; k++) {
        const float *p = w + (rows ? rows[k] : k) * ws;
        __m256 u = _mm256_loadu_ps(p), v = _mm256_loadu_ps(p + 8);
        CHALF_OUTER_ROW(0) CHALF_OUTER_ROW(1) CHALF_OUTER_ROW(2) CHALF_OUTER_ROW(3) CHALF_OUTER_ROW(4) CHALF_OUTER_ROW(5)
    }
    CHALF_OUTER_STORE(0) CHALF_OUTER_STORE(1) CHALF_OUTER_STORE(2) CHALF_OUTER_STORE(3) CHALF_OUTER_STORE(4) CHALF_OUTER_STORE(5)
}
#undef CHALF_OUTER_ROW
#undef CHALF_OUTER_LOAD
#undef CHALF_OUTER_STORE
#endif

// out[t * os + j] (+)= Σ_k x[t * xs + k] · w[row_k * ws + j] for t < tokens and j < 16, where
// row_k = rows[k] (or k when rows is NULL), k < count.
static inline __attribute__((always_inline)) void chalf_sum_rows16(float *out, long os, const float *x, long xs,
                                                                  long tokens, const float *w, long ws,
                                                                  const int32_t *rows, long count, int accumulate) {
#if CHALF_AVX2
    // Blocks of equal size, at most six tokens: 8 tokens run as 4 + 4 rather than 6 + 2, whose
    // second block would have too few accumulators to hide the FMA latency.
    long blocks = (tokens + 5) / 6;
    for (long b = 0, t = 0; b < blocks; b++) {
        int m = (int)((tokens * (b + 1)) / blocks - t);
        float *o = out + t * os;
        const float *xt = x + t * xs;
        switch (m) {
        case 6: chalf_outer_block(6, o, os, xt, xs, w, ws, rows, count, accumulate); break;
        case 5: chalf_outer_block(5, o, os, xt, xs, w, ws, rows, count, accumulate); break;
        case 4: chalf_outer_block(4, o, os, xt, xs, w, ws, rows, count, accumulate); break;
        case 3: chalf_outer_block(3, o, os, xt, xs, w, ws, rows, count, accumulate); break;
        case 2: chalf_outer_block(2, o, os, xt, xs, w, ws, rows, count, accumulate); break;
        default: chalf_outer_block(1, o, os, xt, xs, w, ws, rows, count, accumulate); break;
        }
        t += m;
    }
#else
    for (long t = 0; t < tokens; t++) {
        float sum[16];
        for (long j = 0; j < 16; j++) sum[j] = accumulate ? out[t * os + j] : 0;
        for (long k = 0; k < count; k++) {
            const float *p = w + (rows ? rows[k] : k) * ws;
            float xk = x[t * xs + k];
            for (long j = 0; j < 16; j++) sum[j] += xk * p[j];
        }
        for (long j = 0; j < 16; j++) out[t * os + j] = sum[j];
    }
#endif
}
#endif
