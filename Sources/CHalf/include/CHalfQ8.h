#ifndef CHALF_Q8_H
#define CHALF_Q8_H
// 8-bit weight rows for decode (`WeightDType.q8`): each row of n values (n a multiple of 32) is
// n int8 quants followed by n/32 fp16 scales, one per block of 32 (the arithmetic of GGUF's Q8_0,
// laid out so a row stays one contiguous run that sparse execution can gather or pack). A value is
// scale × quant. Decode reads 1.06 bytes per weight instead of 2 and widens in registers: on one
// Zen 3 core a stream of such rows gave 13 G weights/s against 7 for fp16 at the same GB/s.
#include <math.h>
#include <stdint.h>
#include "CHalf.h"
#include "CHalfKernels.h"
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define CHALF_Q8_AVX2 1
#endif

#define CHALF_Q8_BLOCK 32

// Bytes of one row of n values (n a multiple of 32).
static inline long chalf_q8_row_bytes(long n) { return n + (n / CHALF_Q8_BLOCK) * 2; }

// Quantizes one row: per block, scale = fp16(max|v| / 127), rounded up where rounding to nearest
// went below (subnormal scales round by up to half their size, which would clip the largest
// quants), and quant = round(v / scale) in ±127. A block whose scale rounds to zero (every
// |v| < 4e-6) is stored as zeros. WeightMatrix keeps the values at most 16384 in magnitude with
// its column factors, 65000 without, so the scale is finite.
static inline void chalf_q8_quantize_row(uint8_t *row, const float *v, long n) {
    int8_t *q = (int8_t *)row;
    for (long b = 0; b < n / CHALF_Q8_BLOCK; b++) {
        const float *vb = v + b * CHALF_Q8_BLOCK;
        float amax = 0;
        for (int i = 0; i < CHALF_Q8_BLOCK; i++) { float a = fabsf(vb[i]); if (a > amax) amax = a; }
        uint16_t h = chalf_from_float(amax / 127.0f);
        if (h != 0 && chalf_to_float(h) * 127.0f < amax) h++;   // the next fp16 up (h is positive and finite)
        float d = chalf_to_float(h);
        for (int i = 0; i < CHALF_Q8_BLOCK; i++) {
            float r = d > 0 ? nearbyintf(vb[i] / d) : 0;
            q[b * CHALF_Q8_BLOCK + i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
        }
        __builtin_memcpy(row + n + 2 * b, &h, 2);   // the scales follow the quants, unaligned
    }
}

static inline float chalf_q8_scale(const uint8_t *row, long n, long block) {
    uint16_t h;
    __builtin_memcpy(&h, row + n + 2 * block, 2);
    return chalf_to_float(h);
}

// dst[0, end - begin) = the values of columns [begin, end) of one row, each times factors[column]
// when factors is not NULL (WeightMatrix.columnScales): one pass, one scale per block.
static inline void chalf_q8_widen(float *dst, const uint8_t *row, long n, long begin, long end, const float *factors) {
    const int8_t *q = (const int8_t *)row;
    long i = begin;
#define CHALF_Q8_VALUE(i) (chalf_q8_scale(row, n, (i) / CHALF_Q8_BLOCK) * q[i] * (factors ? factors[i] : 1.0f))
    for (; i < end && i % CHALF_Q8_BLOCK != 0; i++) dst[i - begin] = CHALF_Q8_VALUE(i);
#if CHALF_Q8_AVX2
    for (; i + CHALF_Q8_BLOCK <= end; i += CHALF_Q8_BLOCK) {
        __m256 d = _mm256_set1_ps(chalf_q8_scale(row, n, i / CHALF_Q8_BLOCK));
        for (int j = 0; j < CHALF_Q8_BLOCK; j += 8) {
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + i + j)))), d);
            if (factors) v = _mm256_mul_ps(v, _mm256_loadu_ps(factors + i + j));
            _mm256_storeu_ps(dst + i + j - begin, v);
        }
    }
#endif
    for (; i < end; i++) dst[i - begin] = CHALF_Q8_VALUE(i);
#undef CHALF_Q8_VALUE
}

// m[i] = max(m[i], |x[i]|) for i < count (column maxima at load; x is finite).
static inline void chalf_max_magnitudes(float *m, const float *x, long count) {
    long i = 0;
#if CHALF_Q8_AVX2
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(m + i, _mm256_max_ps(_mm256_loadu_ps(m + i), _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i))));
#endif
    for (; i < count; i++) { float a = fabsf(x[i]); if (a > m[i]) m[i] = a; }
}

#if CHALF_Q8_AVX2
static inline __m256 chalf_q8_load8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
// Σ over one block of 32: quants × x, unscaled.
static inline __m256 chalf_q8_block_dot(const int8_t *q, const float *x) {
    __m256 a = _mm256_mul_ps(chalf_q8_load8(q), _mm256_loadu_ps(x));
    __m256 c = _mm256_mul_ps(chalf_q8_load8(q + 8), _mm256_loadu_ps(x + 8));
    a = _mm256_fmadd_ps(chalf_q8_load8(q + 16), _mm256_loadu_ps(x + 16), a);
    c = _mm256_fmadd_ps(chalf_q8_load8(q + 24), _mm256_loadu_ps(x + 24), c);
    return _mm256_add_ps(a, c);
}
#endif

// One row's dot product with x (the scalar fallback and the reference of the SIMD paths' sums).
static inline float chalf_q8_dot_row(const uint8_t *row, const float *x, long n) {
    const int8_t *q = (const int8_t *)row;
    float s = 0;
    for (long b = 0; b < n / CHALF_Q8_BLOCK; b++) {
        float block = 0;
        for (int i = 0; i < CHALF_Q8_BLOCK; i++) block += q[b * CHALF_Q8_BLOCK + i] * x[b * CHALF_Q8_BLOCK + i];
        s += chalf_q8_scale(row, n, b) * block;
    }
    return s;
}

// out[k] = dot(W[row_k, :], x) for k in [begin, end), row_k = rows[k] or k (rows NULL). Consecutive
// rows are read as one stream with the lines 2 KB ahead prefetched (as chalf_gemv_stream); gathered
// rows four at a time sharing each load of x, the next four prefetched.
static inline void chalf_q8_gemv_rows(float *out, const uint8_t *w, const float *x, long n, const int32_t *rows,
                                      long begin, long end) {
    const long stride = chalf_q8_row_bytes(n), blocks = n / CHALF_Q8_BLOCK;
    long r = begin;
#if CHALF_Q8_AVX2
    if (!rows) {
        for (; r < end; r++) {
            const uint8_t *row = w + r * stride;
            const int8_t *q = (const int8_t *)row;
            __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
            long b = 0;
            for (; b + 2 <= blocks; b += 2) {
                _mm_prefetch((const char *)(q + b * CHALF_Q8_BLOCK + 2048), _MM_HINT_T0);
                t0 = _mm256_fmadd_ps(chalf_q8_block_dot(q + b * CHALF_Q8_BLOCK, x + b * CHALF_Q8_BLOCK),
                                     _mm256_set1_ps(chalf_q8_scale(row, n, b)), t0);
                t1 = _mm256_fmadd_ps(chalf_q8_block_dot(q + (b + 1) * CHALF_Q8_BLOCK, x + (b + 1) * CHALF_Q8_BLOCK),
                                     _mm256_set1_ps(chalf_q8_scale(row, n, b + 1)), t1);
            }
            if (b < blocks)
                t0 = _mm256_fmadd_ps(chalf_q8_block_dot(q + b * CHALF_Q8_BLOCK, x + b * CHALF_Q8_BLOCK),
                                     _mm256_set1_ps(chalf_q8_scale(row, n, b)), t0);
            out[r] = chalf_hsum(_mm256_add_ps(t0, t1));
        }
        return;
    }
    for (; r + 4 <= end; r += 4) {
        const uint8_t *w0 = w + rows[r] * stride, *w1 = w + rows[r + 1] * stride;
        const uint8_t *w2 = w + rows[r + 2] * stride, *w3 = w + rows[r + 3] * stride;
        long next = r + 8 <= end ? r + 4 : r;
        const uint8_t *p[4] = { w + rows[next] * stride, w + rows[next + 1] * stride,
                                w + rows[next + 2] * stride, w + rows[next + 3] * stride };
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (long b = 0; b < blocks; b++) {
            long i = b * CHALF_Q8_BLOCK;
            if (!(b & 1)) for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(p[j] + i), _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(chalf_q8_block_dot((const int8_t *)w0 + i, x + i), _mm256_set1_ps(chalf_q8_scale(w0, n, b)), a0);
            a1 = _mm256_fmadd_ps(chalf_q8_block_dot((const int8_t *)w1 + i, x + i), _mm256_set1_ps(chalf_q8_scale(w1, n, b)), a1);
            a2 = _mm256_fmadd_ps(chalf_q8_block_dot((const int8_t *)w2 + i, x + i), _mm256_set1_ps(chalf_q8_scale(w2, n, b)), a2);
            a3 = _mm256_fmadd_ps(chalf_q8_block_dot((const int8_t *)w3 + i, x + i), _mm256_set1_ps(chalf_q8_scale(w3, n, b)), a3);
        }
        for (long i = n; i < stride; i += 64) for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(p[j] + i), _MM_HINT_T0);
        out[r] = chalf_hsum(a0); out[r + 1] = chalf_hsum(a1); out[r + 2] = chalf_hsum(a2); out[r + 3] = chalf_hsum(a3);
    }
#endif
    for (; r < end; r++) out[r] = chalf_q8_dot_row(w + (rows ? rows[r] : r) * stride, x, n);
}

// y[col_begin, col_end) += Σ_k x[k] · W[row_k, cols] over `count` rows (row_k = rows[k] or k). Four
// rows per pass, so y is loaded and stored once per four rows, the next four prefetched (for
// consecutive rows, the next 2.4 KB of the stream); SIMD on whole blocks inside the column range.
static inline void chalf_q8_axpy_rows(float *y, const uint8_t *w, const float *x, const int32_t *rows, long count,
                                      long n, long col_begin, long col_end) {
    const long stride = chalf_q8_row_bytes(n);
    long k = 0;
#if CHALF_Q8_AVX2
    long first = (col_begin + CHALF_Q8_BLOCK - 1) / CHALF_Q8_BLOCK * CHALF_Q8_BLOCK;
    long last = col_end / CHALF_Q8_BLOCK * CHALF_Q8_BLOCK;
    for (; k + 4 <= count && first < last; k += 4) {
        const uint8_t *r[4], *p[4];
        const int8_t *q[4];
        long next = k + 8 <= count ? k + 4 : k;
        for (int j = 0; j < 4; j++) {
            r[j] = w + (rows ? rows[k + j] : k + j) * stride;
            p[j] = w + (rows ? rows[next + j] : next + j) * stride;
            q[j] = (const int8_t *)r[j];
        }
        for (long i = col_begin; i < first; i++)
            for (int j = 0; j < 4; j++) y[i] += x[k + j] * chalf_q8_scale(r[j], n, i / CHALF_Q8_BLOCK) * q[j][i];
        for (long i = first; i < last; i += CHALF_Q8_BLOCK) {
            if (!(i & 63)) for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(p[j] + i), _MM_HINT_T0);
            __m256 y0 = _mm256_loadu_ps(y + i), y1 = _mm256_loadu_ps(y + i + 8);
            __m256 y2 = _mm256_loadu_ps(y + i + 16), y3 = _mm256_loadu_ps(y + i + 24);
            for (int j = 0; j < 4; j++) {
                __m256 s = _mm256_set1_ps(x[k + j] * chalf_q8_scale(r[j], n, i / CHALF_Q8_BLOCK));
                y0 = _mm256_fmadd_ps(chalf_q8_load8(q[j] + i), s, y0);
                y1 = _mm256_fmadd_ps(chalf_q8_load8(q[j] + i + 8), s, y1);
                y2 = _mm256_fmadd_ps(chalf_q8_load8(q[j] + i + 16), s, y2);
                y3 = _mm256_fmadd_ps(chalf_q8_load8(q[j] + i + 24), s, y3);
            }
            _mm256_storeu_ps(y + i, y0); _mm256_storeu_ps(y + i + 8, y1);
            _mm256_storeu_ps(y + i + 16, y2); _mm256_storeu_ps(y + i + 24, y3);
        }
        for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(p[j] + n), _MM_HINT_T0);
        for (long i = last > first ? last : first; i < col_end; i++)
            for (int j = 0; j < 4; j++) y[i] += x[k + j] * chalf_q8_scale(r[j], n, i / CHALF_Q8_BLOCK) * q[j][i];
    }
#endif
    for (; k < count; k++) {
        const uint8_t *row = w + (rows ? rows[k] : k) * stride;
        const int8_t *q = (const int8_t *)row;
        for (long i = col_begin; i < col_end; i++) y[i] += x[k] * chalf_q8_scale(row, n, i / CHALF_Q8_BLOCK) * q[i];
    }
}
#endif
