#include "CHalfAVX512.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#include "CHalfAVX512Shared.h"
#define CHALF_AVX512_TARGET __attribute__((target("avx512f")))

int chalf_avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

#define CHALF_FMA_ROW(R)                                                                         \
    a[R * 4 + 0] = _mm512_fmadd_ps(u##R, x0, a[R * 4 + 0]);                                      \
    a[R * 4 + 1] = _mm512_fmadd_ps(u##R, x1, a[R * 4 + 1]);                                      \
    a[R * 4 + 2] = _mm512_fmadd_ps(u##R, x2, a[R * 4 + 2]);                                      \
    a[R * 4 + 3] = _mm512_fmadd_ps(u##R, x3, a[R * 4 + 3]);

CHALF_AVX512_TARGET static inline __attribute__((always_inline)) void
chalf_f32_dot_block(__m512 a[16], const char *const rows[4], const char *const tokens[4], long cols) {
    const float *w0 = (const float *)rows[0], *w1 = (const float *)rows[1];
    const float *w2 = (const float *)rows[2], *w3 = (const float *)rows[3];
    const float *p0 = (const float *)tokens[0], *p1 = (const float *)tokens[1];
    const float *p2 = (const float *)tokens[2], *p3 = (const float *)tokens[3];
    const long full = cols & ~15L;
    long i = 0;
    for (; i < full; i += 16) {
        __m512 x0 = _mm512_loadu_ps(p0 + i), x1 = _mm512_loadu_ps(p1 + i);
        __m512 x2 = _mm512_loadu_ps(p2 + i), x3 = _mm512_loadu_ps(p3 + i);
        __m512 u0 = _mm512_loadu_ps(w0 + i), u1 = _mm512_loadu_ps(w1 + i);
        __m512 u2 = _mm512_loadu_ps(w2 + i), u3 = _mm512_loadu_ps(w3 + i);
        CHALF_FMA_ROW(0) CHALF_FMA_ROW(1) CHALF_FMA_ROW(2) CHALF_FMA_ROW(3)
    }
    if (i < cols) {
        const __mmask16 tail = (__mmask16)((1u << (cols - full)) - 1);
        __m512 x0 = _mm512_maskz_loadu_ps(tail, p0 + i), x1 = _mm512_maskz_loadu_ps(tail, p1 + i);
        __m512 x2 = _mm512_maskz_loadu_ps(tail, p2 + i), x3 = _mm512_maskz_loadu_ps(tail, p3 + i);
        __m512 u0 = _mm512_maskz_loadu_ps(tail, w0 + i), u1 = _mm512_maskz_loadu_ps(tail, w1 + i);
        __m512 u2 = _mm512_maskz_loadu_ps(tail, w2 + i), u3 = _mm512_maskz_loadu_ps(tail, w3 + i);
        CHALF_FMA_ROW(0) CHALF_FMA_ROW(1) CHALF_FMA_ROW(2) CHALF_FMA_ROW(3)
    }
}
#undef CHALF_FMA_ROW

CHALF_AVX512_TARGET
void chalf_f32_dot_rows(float *out, long out_stride, const float *x, long tokens, const float *w, long cols,
                        const int32_t *rows, long begin, long end) {
    // Long inputs are taken a chunk of tokens at a time (about 512 KB of them, at least 16), each
    // read for every block of rows, so that the chunk stays in the core's L2 cache while the
    // weights stream past it once per chunk.
    const long fit = (512L * 1024 / (cols * 4)) & ~3L, chunk = fit < 16 ? 16 : fit;
    for (long t = 0; t < tokens; t += chunk)
        chalf_dot_rows_blocked(out + t * out_stride, out_stride, (const char *)(x + t * cols),
                               tokens - t < chunk ? tokens - t : chunk, (const char *)w, cols, 4, rows, begin, end,
                               chalf_f32_dot_block, 0, 0);
}

CHALF_AVX512_TARGET
void chalf_half_dot_rows(float *out, long out_stride, const float *x, long tokens, const uint16_t *w, long cols,
                         const int32_t *rows, long begin, long end, int is_bf16, float *buf) {
    // The chunks of chalf_f32_dot_rows; each block of four rows is widened once per chunk.
    const long fit = (512L * 1024 / (cols * 4)) & ~3L, chunk = fit < 16 ? 16 : fit;
    for (long t = 0; t < tokens; t += chunk)
        chalf_dot_rows_blocked(out + t * out_stride, out_stride, (const char *)(x + t * cols),
                               tokens - t < chunk ? tokens - t : chunk, (const char *)w, cols, 4, rows, begin, end,
                               chalf_f32_dot_block, is_bf16 ? 2 : 1, buf);
}

#define CHALF_WIDE_ROW(S)                                                                        \
    if (m > S) {                                                                                 \
        __m512 s = _mm512_set1_ps(x[(t + S) * xs + k]);                                          \
        lo##S = _mm512_fmadd_ps(u, s, lo##S); hi##S = _mm512_fmadd_ps(v, s, hi##S);             \
    }
#define CHALF_WIDE_LOAD(S)                                                                       \
    if (m > S && accumulate) {                                                                   \
        lo##S = _mm512_maskz_loadu_ps(mfirst, out + (t + S) * os + c);                           \
        hi##S = _mm512_maskz_loadu_ps(msecond, out + (t + S) * os + c + 16);                     \
    }
#define CHALF_WIDE_STORE(S)                                                                      \
    if (m > S) {                                                                                 \
        _mm512_mask_storeu_ps(out + (t + S) * os + c, mfirst, lo##S);                            \
        _mm512_mask_storeu_ps(out + (t + S) * os + c + 16, msecond, hi##S);                      \
    }

// One block of m ≤ 6 tokens (from t) × 32 columns (from c; n ≤ 32 of them real).
CHALF_AVX512_TARGET static inline __attribute__((always_inline)) void
chalf_wide_block(int m, float *out, long os, const float *x, long xs, long t, const float *w, long ws,
                 const int32_t *rows, long count, long c, long n, int accumulate) {
    const __mmask16 mfirst = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    const __mmask16 msecond = n >= 32 ? (__mmask16)0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    __m512 z = _mm512_setzero_ps();
    __m512 lo0 = z, hi0 = z, lo1 = z, hi1 = z, lo2 = z, hi2 = z, lo3 = z, hi3 = z, lo4 = z, hi4 = z, lo5 = z, hi5 = z;
    CHALF_WIDE_LOAD(0) CHALF_WIDE_LOAD(1) CHALF_WIDE_LOAD(2) CHALF_WIDE_LOAD(3) CHALF_WIDE_LOAD(4) CHALF_WIDE_LOAD(5)
    for (long k = 0; k < count; k++) {
        const float *p = w + (rows ? rows[k] : k) * ws + c;
        __m512 u = _mm512_maskz_loadu_ps(mfirst, p), v = _mm512_maskz_loadu_ps(msecond, p + 16);
        CHALF_WIDE_ROW(0) CHALF_WIDE_ROW(1) CHALF_WIDE_ROW(2) CHALF_WIDE_ROW(3) CHALF_WIDE_ROW(4) CHALF_WIDE_ROW(5)
    }
    CHALF_WIDE_STORE(0) CHALF_WIDE_STORE(1) CHALF_WIDE_STORE(2) CHALF_WIDE_STORE(3) CHALF_WIDE_STORE(4) CHALF_WIDE_STORE(5)
}
#undef CHALF_WIDE_ROW
#undef CHALF_WIDE_LOAD
#undef CHALF_WIDE_STORE

CHALF_AVX512_TARGET
void chalf_f32_sum_rows(float *out, long os, const float *x, long xs, long tokens, const float *w, long ws,
                        const int32_t *rows, long count, long width, int accumulate) {
    // Token blocks of equal size, at most six (as chalf_sum_rows16).
    const long blocks = (tokens + 5) / 6;
    for (long c = 0; c < width; c += 32) {
        const long n = width - c < 32 ? width - c : 32;
        for (long b = 0, t = 0; b < blocks; b++) {
            int m = (int)((tokens * (b + 1)) / blocks - t);
            switch (m) {
            case 6: chalf_wide_block(6, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate); break;
            case 5: chalf_wide_block(5, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate); break;
            case 4: chalf_wide_block(4, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate); break;
            case 3: chalf_wide_block(3, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate); break;
            case 2: chalf_wide_block(2, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate); break;
            default: chalf_wide_block(1, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate); break;
            }
            t += m;
        }
    }
}

// The strip loop of the sums of rows, for fp32 (widen 0: a plain copy), fp16 (1) or bf16 (2)
// elements of W. Each strip of 32 columns of (up to) CHALF_STRIP_ROWS rows is copied once,
// widened and packed into 128-byte rows of `buf`, and read by every token block from L1/L2
// rather than at W's row stride; the next strip's lines are prefetched meanwhile, a share per
// token block. Strips of rows carry the sums through `out` (stored and reloaded exactly), so the
// fused multiply-adds are chalf_f32_sum_rows's in its order: the same bits.
CHALF_AVX512_TARGET static inline __attribute__((always_inline)) void
chalf_sum_rows_strips(float *out, long os, const float *x, long xs, long tokens, const void *w, long ws,
                      const int32_t *rows, long count, long width, int accumulate, int widen, float *buf) {
    const long blocks = (tokens + 5) / 6, size = widen ? 2 : 4;
    const char *wb = (const char *)w;
    for (long c = 0; c < width; c += 32) {
        const long n = width - c < 32 ? width - c : 32;
        const __mmask16 mfirst = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
        const __mmask16 msecond = n >= 32 ? (__mmask16)0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
        for (long k0 = 0; k0 == 0 || k0 < count; k0 += CHALF_STRIP_ROWS) {  // once with no rows: zeros
            const long kn = count - k0 < CHALF_STRIP_ROWS ? count - k0 : CHALF_STRIP_ROWS;
            for (long k = 0; k < kn; k++) {
                const char *src = wb + ((rows ? rows[k0 + k] : k0 + k) * ws + c) * size;
                if (widen) {
                    chalf_widen_avx512(buf + k * 32, (const uint16_t *)(const void *)src, n, widen == 2);
                } else {
                    const float *f = (const float *)(const void *)src;
                    _mm512_store_ps(buf + k * 32, _mm512_maskz_loadu_ps(mfirst, f));
                    _mm512_store_ps(buf + k * 32 + 16, _mm512_maskz_loadu_ps(msecond, f + 16));
                }
            }
            long nc = c, nk0 = k0 + CHALF_STRIP_ROWS;
            if (nk0 >= count) { nc = c + 32; nk0 = 0; }
            const long nkn = nc >= width ? 0 : count - nk0 < CHALF_STRIP_ROWS ? count - nk0 : CHALF_STRIP_ROWS;
            const int acc = accumulate || k0 > 0;
            for (long b = 0, t = 0; b < blocks; b++) {
                for (long k = nkn * b / blocks; k < nkn * (b + 1) / blocks; k++) {
                    const char *p = wb + ((rows ? rows[nk0 + k] : nk0 + k) * ws + nc) * size;
                    __builtin_prefetch(p, 0, 3);
                    if (!widen) __builtin_prefetch(p + 64, 0, 3);  // 32 fp32 columns: two lines
                }
                int m = (int)((tokens * (b + 1)) / blocks - t);
                const float *xk = x + k0;
                switch (m) {
                case 6: chalf_wide_block(6, out + c, os, xk, xs, t, buf, 32, 0, kn, 0, n, acc); break;
                case 5: chalf_wide_block(5, out + c, os, xk, xs, t, buf, 32, 0, kn, 0, n, acc); break;
                case 4: chalf_wide_block(4, out + c, os, xk, xs, t, buf, 32, 0, kn, 0, n, acc); break;
                case 3: chalf_wide_block(3, out + c, os, xk, xs, t, buf, 32, 0, kn, 0, n, acc); break;
                case 2: chalf_wide_block(2, out + c, os, xk, xs, t, buf, 32, 0, kn, 0, n, acc); break;
                default: chalf_wide_block(1, out + c, os, xk, xs, t, buf, 32, 0, kn, 0, n, acc); break;
                }
                t += m;
            }
        }
    }
}

CHALF_AVX512_TARGET
void chalf_half_sum_rows(float *out, long os, const float *x, long xs, long tokens, const uint16_t *w, long ws,
                         const int32_t *rows, long count, long width, int accumulate, int is_bf16, float *buf) {
    chalf_sum_rows_strips(out, os, x, xs, tokens, w, ws, rows, count, width, accumulate, is_bf16 ? 2 : 1, buf);
}

CHALF_AVX512_TARGET
void chalf_f32_sum_rows_packed(float *out, long os, const float *x, long xs, long tokens, const float *w, long ws,
                               const int32_t *rows, long count, long width, int accumulate, float *buf) {
    chalf_sum_rows_strips(out, os, x, xs, tokens, w, ws, rows, count, width, accumulate, 0, buf);
}

#else
int chalf_avx512_available(void) { return 0; }

void chalf_half_dot_rows(float *out, long out_stride, const float *x, long tokens, const uint16_t *w, long cols,
                         const int32_t *rows, long begin, long end, int is_bf16, float *buf) {
    (void)out; (void)out_stride; (void)x; (void)tokens; (void)w; (void)cols; (void)rows; (void)begin; (void)end;
    (void)is_bf16; (void)buf;
    __builtin_trap();
}

void chalf_half_sum_rows(float *out, long os, const float *x, long xs, long tokens, const uint16_t *w, long ws,
                         const int32_t *rows, long count, long width, int accumulate, int is_bf16, float *buf) {
    (void)out; (void)os; (void)x; (void)xs; (void)tokens; (void)w; (void)ws; (void)rows; (void)count; (void)width;
    (void)accumulate; (void)is_bf16; (void)buf;
    __builtin_trap();
}

void chalf_f32_dot_rows(float *out, long out_stride, const float *x, long tokens, const float *w, long cols,
                        const int32_t *rows, long begin, long end) {
    (void)out; (void)out_stride; (void)x; (void)tokens; (void)w; (void)cols; (void)rows; (void)begin; (void)end;
    __builtin_trap();  // callers check chalf_avx512_available() first
}

void chalf_f32_sum_rows(float *out, long os, const float *x, long xs, long tokens, const float *w, long ws,
                        const int32_t *rows, long count, long width, int accumulate) {
    (void)out; (void)os; (void)x; (void)xs; (void)tokens; (void)w; (void)ws; (void)rows; (void)count; (void)width;
    (void)accumulate;
    __builtin_trap();
}

void chalf_f32_sum_rows_packed(float *out, long os, const float *x, long xs, long tokens, const float *w, long ws,
                               const int32_t *rows, long count, long width, int accumulate, float *buf) {
    (void)out; (void)os; (void)x; (void)xs; (void)tokens; (void)w; (void)ws; (void)rows; (void)count; (void)width;
    (void)accumulate; (void)buf;
    __builtin_trap();
}
#endif
