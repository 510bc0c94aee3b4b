#ifndef CHALF_REDUCE_H
#define CHALF_REDUCE_H
// Shared by the AVX-512 kernels (CHalfBF16.c, CHalfAVX512.c); private to the CHalf target.
#include <immintrin.h>

// Sixteen accumulators to one vector of their sums, lane n = Σ a[n], in 4 levels of shuffles
// and adds. Each level halves the vectors; the lanes come out as a[0], a[2], a[1], a[3], a[8],
// a[10], a[9], a[11], a[4], ... so the caller's order is swapped back by reading a[SWAP(n)].
// Every accumulator goes through the same tree, so a sum does not depend on its neighbours.
#define CHALF_SWAP(n) ((const int[16]){0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15}[n])
__attribute__((target("avx512f"))) static inline __m512 chalf_reduce16(const __m512 *a) {
    __m512 b[8], c[4], d[2];
    for (int k = 0; k < 8; k++) {
        __m512 p = a[CHALF_SWAP(k)], q = a[CHALF_SWAP(k + 8)];
        b[k] = _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x44), _mm512_shuffle_f32x4(p, q, 0xEE));
    }
    for (int k = 0; k < 4; k++)
        c[k] = _mm512_add_ps(_mm512_shuffle_f32x4(b[k], b[k + 4], 0x88), _mm512_shuffle_f32x4(b[k], b[k + 4], 0xDD));
    for (int k = 0; k < 2; k++)
        d[k] = _mm512_add_ps(_mm512_unpacklo_ps(c[k], c[k + 2]), _mm512_unpackhi_ps(c[k], c[k + 2]));
    __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(d[0]), _mm512_castps_pd(d[1]));
    __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(d[0]), _mm512_castps_pd(d[1]));
    return _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
}
#endif
