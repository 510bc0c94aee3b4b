#ifndef CHALF_AVX512_SHARED_H
#define CHALF_AVX512_SHARED_H
// Shared by the AVX-512 kernels (CHalfBF16.c, CHalfAVX512.c); private to the CHalf target.
#include <immintrin.h>
#include <stdint.h>

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

// Adds the products of four weight rows with four tokens (all `cols` columns) into a[row * 4 + token].
typedef void (*chalf_dot_block)(__m512 a[16], const char *const rows[4], const char *const tokens[4], long cols);

// n fp16 (is_bf16 0) or bf16 (1) values to fp32, exactly: 16 at a time, the rest one by one.
__attribute__((target("avx512f"), always_inline)) static inline void
chalf_widen_avx512(float *dst, const uint16_t *src, long n, int is_bf16) {
    long i = 0;
    if (is_bf16) {
        for (; i + 16 <= n; i += 16) {
            __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(src + i)));
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
        }
        for (; i < n; i++) {
            union { uint32_t u; float f; } v = { (uint32_t)src[i] << 16 };
            dst[i] = v.f;
        }
    } else {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + i))));
        for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
    }
}

// The loops both dot-product kernels share (fp32 and bf16 elements of `size` bytes): output rows
// begin..<end (of `w`, or `rows[k]` when given) in blocks of 4 — a short last block repeats its
// last row and drops those sums —, tokens in blocks of 4 alike, each block's sixteen sums formed
// by `block` and reduced by the one tree above, so a sum does not depend on its block. The next
// block's rows are prefetched a share at a time, one share per token block (rows of a few cache
// lines are too short for the hardware prefetcher). Inlined with `block` into each kernel.
// With `widen` (1 fp16, 2 bf16) `w` holds 16-bit rows, each block's four widened into `buf`
// (4 × cols floats) before its tokens, so `block` reads fp32 rows from L1.
__attribute__((target("avx512f"), always_inline)) static inline void
chalf_dot_rows_blocked(float *out, long out_stride, const char *x, long tokens, const char *w, long cols, long size,
                       const int32_t *rows, long begin, long end, chalf_dot_block block, int widen, float *buf) {
    const long stride = cols * size, wstride = widen ? cols * 2 : stride, lines = (wstride + 63) / 64;
    const long blocks = tokens < 4 ? 1 : (tokens + 3) / 4;
    for (long j = begin; j < end; j += 4) {
        const long nr = end - j < 4 ? end - j : 4;
        const char *wr[4], *next[4];
        for (int r = 0; r < 4; r++) {
            long k = j + (r < nr ? r : nr - 1);
            wr[r] = w + (rows ? rows[k] : k) * wstride;
            long n = j + 4 + r < end ? j + 4 + r : end - 1;
            next[r] = w + (rows ? rows[n] : n) * wstride;
        }
        if (widen) {
            for (int r = 0; r < 4; r++) {
                if (r < nr) chalf_widen_avx512(buf + r * cols, (const uint16_t *)(const void *)wr[r], cols, widen == 2);
                wr[r] = (const char *)(buf + (r < nr ? r : nr - 1) * cols);
            }
        }
        for (long t = 0, b = 0; t < tokens; t += 4, b++) {
            for (long l = lines * b / blocks; l < lines * (b + 1) / blocks; l++)
                for (int r = 0; r < 4; r++) __builtin_prefetch(next[r] + l * 64, 0, 3);
            const long nt = tokens - t < 4 ? tokens - t : 4;
            const char *p[4] = {x + t * stride, x + (t + (nt > 1 ? 1 : 0)) * stride,
                                x + (t + (nt > 2 ? 2 : nt - 1)) * stride, x + (t + nt - 1) * stride};
            __m512 a[16];
            for (int k = 0; k < 16; k++) a[k] = _mm512_setzero_ps();
            block(a, wr, p, cols);
            float sums[16];
            _mm512_storeu_ps(sums, chalf_reduce16(a));
            for (long r = 0; r < nr; r++)
                for (long s = 0; s < nt; s++) out[(t + s) * out_stride + j + r] = sums[r * 4 + s];
        }
    }
}
#endif
