#ifndef CHALF_KERNELS_H
#define CHALF_KERNELS_H
// Half-precision row kernels for decode: weights stay 16-bit in memory (half the bytes of fp32,
// and decode is bound by memory bandwidth) and are widened to fp32 in registers.
// AVX2 + FMA + F16C when the build names a CPU target; a plain C fallback otherwise.
#include <stdint.h>
#include "CHalf.h"
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CHALF_AVX2 1
#endif

static inline float chalf_bf16_to_float(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}

static inline uint16_t chalf_float_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffff) > 0x7f800000) return (uint16_t)((v.u >> 16) | 0x40);  // keep NaN a NaN
    uint32_t rounding = 0x7fff + ((v.u >> 16) & 1);                              // round to nearest even
    return (uint16_t)((v.u + rounding) >> 16);
}

#if CHALF_AVX2
static inline __m256 chalf_load8_bf16(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline __m256 chalf_load8_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline float chalf_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#if CHALF_AVX2
// chalf_gemv_rows over consecutive rows, which are one stream of memory: a row at a time, with the
// line 4 KB ahead prefetched (past a row's end it is the next rows'). Four rows at a time cannot
// look ahead that far; on one Zen 3 core, over 150 of SmolLM2's 1536 × 576 matrices, this read
// 12-15 GB/s where four rows with the next four prefetched read 11-12 (a plain sum: 16.7).
#define CHALF_STREAM_AHEAD 2048
static inline void chalf_gemv_stream(float *out, const uint16_t *w, const float *x, long n, long begin, long end,
                                     int is_bf16) {
    for (long r = begin; r < end; r++) {
        const uint16_t *w0 = w + r * n;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        long i = 0;
#define CHALF_STREAM_BODY(LOAD)                                                              \
        for (; i + 32 <= n; i += 32) {                                                       \
            _mm_prefetch((const char *)(w0 + i + CHALF_STREAM_AHEAD), _MM_HINT_T0);          \
            a0 = _mm256_fmadd_ps(LOAD(w0 + i), _mm256_loadu_ps(x + i), a0);                  \
            a1 = _mm256_fmadd_ps(LOAD(w0 + i + 8), _mm256_loadu_ps(x + i + 8), a1);          \
            a2 = _mm256_fmadd_ps(LOAD(w0 + i + 16), _mm256_loadu_ps(x + i + 16), a2);        \
            a3 = _mm256_fmadd_ps(LOAD(w0 + i + 24), _mm256_loadu_ps(x + i + 24), a3);        \
        }                                                                                    \
        for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(w0 + i), _mm256_loadu_ps(x + i), a0);
        if (is_bf16) { CHALF_STREAM_BODY(chalf_load8_bf16) } else { CHALF_STREAM_BODY(chalf_load8_f16) }
#undef CHALF_STREAM_BODY
        float s = chalf_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; i < n; i++) s += (is_bf16 ? chalf_bf16_to_float(w0[i]) : chalf_to_float(w0[i])) * x[i];
        out[r] = s;
    }
}
#endif

// out[k] = dot(W[row_k, :], x) for k in [begin, end) of a (rows, n) 16-bit matrix, where row_k is
// rows[k] (a gathered subset, for sparse execution) or k itself when rows is NULL; four gathered
// rows per pass share each load of x (consecutive rows go to chalf_gemv_stream). is_bf16 selects
// bf16 (1) or IEEE fp16 (0).
static inline void chalf_gemv_rows(float *out, const uint16_t *w, const float *x, long n, const int32_t *rows,
                                   long begin, long end, int is_bf16) {
    long r = begin;
#if CHALF_AVX2
    if (!rows) { chalf_gemv_stream(out, w, x, n, begin, end, is_bf16); return; }
    for (; r + 4 <= end; r += 4) {
        const uint16_t *w0 = w + (rows ? rows[r] : r) * n, *w1 = w + (rows ? rows[r + 1] : r + 1) * n;
        const uint16_t *w2 = w + (rows ? rows[r + 2] : r + 2) * n, *w3 = w + (rows ? rows[r + 3] : r + 3) * n;
        // The next four rows are prefetched line by line while these are summed: rows of a few
        // cache lines each, read four at a time, are too short for the hardware prefetcher (measured
        // from DRAM on one core: 7.5 GB/s without, 13.5 GB/s with; a plain streaming sum: 14.5).
        long next = r + 8 <= end ? r + 4 : r;
        const uint16_t *p0 = w + (rows ? rows[next] : next) * n, *p1 = w + (rows ? rows[next + 1] : next + 1) * n;
        const uint16_t *p2 = w + (rows ? rows[next + 2] : next + 2) * n, *p3 = w + (rows ? rows[next + 3] : next + 3) * n;
        // Two accumulators per row and a whole 64-byte line of each row per pass keep enough
        // loads in flight to saturate memory bandwidth.
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
        long i = 0;
#define CHALF_GEMV_BODY(LOAD)                                                   \
        for (; i + 32 <= n; i += 32) {                                          \
            _mm_prefetch((const char *)(p0 + i), _MM_HINT_T0);                  \
            _mm_prefetch((const char *)(p1 + i), _MM_HINT_T0);                  \
            _mm_prefetch((const char *)(p2 + i), _MM_HINT_T0);                  \
            _mm_prefetch((const char *)(p3 + i), _MM_HINT_T0);                  \
            __m256 xa = _mm256_loadu_ps(x + i), xb = _mm256_loadu_ps(x + i + 8);   \
            __m256 xc = _mm256_loadu_ps(x + i + 16), xd = _mm256_loadu_ps(x + i + 24); \
            a0 = _mm256_fmadd_ps(LOAD(w0 + i), xa, a0); b0 = _mm256_fmadd_ps(LOAD(w0 + i + 8), xb, b0); \
            a1 = _mm256_fmadd_ps(LOAD(w1 + i), xa, a1); b1 = _mm256_fmadd_ps(LOAD(w1 + i + 8), xb, b1); \
            a2 = _mm256_fmadd_ps(LOAD(w2 + i), xa, a2); b2 = _mm256_fmadd_ps(LOAD(w2 + i + 8), xb, b2); \
            a3 = _mm256_fmadd_ps(LOAD(w3 + i), xa, a3); b3 = _mm256_fmadd_ps(LOAD(w3 + i + 8), xb, b3); \
            a0 = _mm256_fmadd_ps(LOAD(w0 + i + 16), xc, a0); b0 = _mm256_fmadd_ps(LOAD(w0 + i + 24), xd, b0); \
            a1 = _mm256_fmadd_ps(LOAD(w1 + i + 16), xc, a1); b1 = _mm256_fmadd_ps(LOAD(w1 + i + 24), xd, b1); \
            a2 = _mm256_fmadd_ps(LOAD(w2 + i + 16), xc, a2); b2 = _mm256_fmadd_ps(LOAD(w2 + i + 24), xd, b2); \
            a3 = _mm256_fmadd_ps(LOAD(w3 + i + 16), xc, a3); b3 = _mm256_fmadd_ps(LOAD(w3 + i + 24), xd, b3); \
        }                                                                       \
        for (; i + 8 <= n; i += 8) {                                            \
            __m256 xv = _mm256_loadu_ps(x + i);                                 \
            a0 = _mm256_fmadd_ps(LOAD(w0 + i), xv, a0);                         \
            a1 = _mm256_fmadd_ps(LOAD(w1 + i), xv, a1);                         \
            a2 = _mm256_fmadd_ps(LOAD(w2 + i), xv, a2);                         \
            a3 = _mm256_fmadd_ps(LOAD(w3 + i), xv, a3);                         \
        }
        if (is_bf16) { CHALF_GEMV_BODY(chalf_load8_bf16) } else { CHALF_GEMV_BODY(chalf_load8_f16) }
#undef CHALF_GEMV_BODY
        a0 = _mm256_add_ps(a0, b0); a1 = _mm256_add_ps(a1, b1); a2 = _mm256_add_ps(a2, b2); a3 = _mm256_add_ps(a3, b3);
        float s0 = chalf_hsum(a0), s1 = chalf_hsum(a1), s2 = chalf_hsum(a2), s3 = chalf_hsum(a3);
        for (; i < n; i++) {
            float xi = x[i];
            if (is_bf16) {
                s0 += chalf_bf16_to_float(w0[i]) * xi; s1 += chalf_bf16_to_float(w1[i]) * xi;
                s2 += chalf_bf16_to_float(w2[i]) * xi; s3 += chalf_bf16_to_float(w3[i]) * xi;
            } else {
                s0 += chalf_to_float(w0[i]) * xi; s1 += chalf_to_float(w1[i]) * xi;
                s2 += chalf_to_float(w2[i]) * xi; s3 += chalf_to_float(w3[i]) * xi;
            }
        }
        out[r] = s0; out[r + 1] = s1; out[r + 2] = s2; out[r + 3] = s3;
    }
#endif
    for (; r < end; r++) {
        const uint16_t *wr = w + (rows ? rows[r] : r) * n;
        float s = 0;
        for (long i = 0; i < n; i++) s += (is_bf16 ? chalf_bf16_to_float(wr[i]) : chalf_to_float(wr[i])) * x[i];
        out[r] = s;
    }
}

#if CHALF_AVX2
// The first multiple of eight rows of chalf_axpy_rows; returns how many rows it did. y[i, i + 32)
// is loaded once per eight rows, and the next eight rows' lines are prefetched (as in
// chalf_gemv_rows: 8.5 → 14 GB/s from DRAM on one core).
#define CHALF_AXPY8_BODY(LOAD)                                                              \
    for (; i + 32 <= col_end; i += 32) {                                                    \
        for (int j = 0; j < 8; j++) _mm_prefetch((const char *)(p[j] + i), _MM_HINT_T0);   \
        __m256 y0 = _mm256_loadu_ps(y + i), y1 = _mm256_loadu_ps(y + i + 8);                \
        __m256 y2 = _mm256_loadu_ps(y + i + 16), y3 = _mm256_loadu_ps(y + i + 24);          \
        for (int j = 0; j < 8; j++) {                                                       \
            y0 = _mm256_fmadd_ps(LOAD(wr[j] + i), xs[j], y0);                               \
            y1 = _mm256_fmadd_ps(LOAD(wr[j] + i + 8), xs[j], y1);                           \
            y2 = _mm256_fmadd_ps(LOAD(wr[j] + i + 16), xs[j], y2);                          \
            y3 = _mm256_fmadd_ps(LOAD(wr[j] + i + 24), xs[j], y3);                          \
        }                                                                                   \
        _mm256_storeu_ps(y + i, y0); _mm256_storeu_ps(y + i + 8, y1);                       \
        _mm256_storeu_ps(y + i + 16, y2); _mm256_storeu_ps(y + i + 24, y3);                 \
    }                                                                                       \
    for (; i + 8 <= col_end; i += 8) {                                                      \
        __m256 acc = _mm256_loadu_ps(y + i);                                                \
        for (int j = 0; j < 8; j++) acc = _mm256_fmadd_ps(LOAD(wr[j] + i), xs[j], acc);     \
        _mm256_storeu_ps(y + i, acc);                                                       \
    }

static inline long chalf_axpy_rows8(float *y, const uint16_t *w, const float *x, const int32_t *rows, long count,
                                    long n, long col_begin, long col_end, int is_bf16) {
    long k = 0;
    for (; k + 8 <= count; k += 8) {
        const uint16_t *wr[8], *p[8];
        __m256 xs[8];
        long next = k + 16 <= count ? k + 8 : k;
        for (int j = 0; j < 8; j++) {
            wr[j] = w + (rows ? rows[k + j] : k + j) * n;
            p[j] = w + (rows ? rows[next + j] : next + j) * n;
            xs[j] = _mm256_set1_ps(x[k + j]);
        }
        long i = col_begin;
        if (is_bf16) { CHALF_AXPY8_BODY(chalf_load8_bf16) } else { CHALF_AXPY8_BODY(chalf_load8_f16) }
        for (; i < col_end; i++) {
            float sum = 0;
            for (int j = 0; j < 8; j++)
                sum += (is_bf16 ? chalf_bf16_to_float(wr[j][i]) : chalf_to_float(wr[j][i])) * x[k + j];
            y[i] += sum;
        }
    }
    return k;
}
#undef CHALF_AXPY8_BODY
#endif

// y[col_begin, col_end) += Σ_k x[k] · W[row_k, cols] over `count` rows of a (rows, n) 16-bit matrix,
// the rows given by `rows` (or 0..<count when rows is NULL). Eight rows per pass, then four, then
// one, so y is loaded and stored once per pass.
static inline void chalf_axpy_rows(float *y, const uint16_t *w, const float *x, const int32_t *rows, long count,
                                   long n, long col_begin, long col_end, int is_bf16) {
    long k = 0;
#if CHALF_AVX2
    k = chalf_axpy_rows8(y, w, x, rows, count, n, col_begin, col_end, is_bf16);
    for (; k + 4 <= count; k += 4) {
        long r0 = rows ? rows[k] : k, r1 = rows ? rows[k + 1] : k + 1;
        long r2 = rows ? rows[k + 2] : k + 2, r3 = rows ? rows[k + 3] : k + 3;
        const uint16_t *w0 = w + r0 * n, *w1 = w + r1 * n, *w2 = w + r2 * n, *w3 = w + r3 * n;
        __m256 x0 = _mm256_set1_ps(x[k]), x1 = _mm256_set1_ps(x[k + 1]);
        __m256 x2 = _mm256_set1_ps(x[k + 2]), x3 = _mm256_set1_ps(x[k + 3]);
        long i = col_begin;
        if (is_bf16) {
            for (; i + 8 <= col_end; i += 8) {
                __m256 acc = _mm256_loadu_ps(y + i);
                acc = _mm256_fmadd_ps(chalf_load8_bf16(w0 + i), x0, acc);
                acc = _mm256_fmadd_ps(chalf_load8_bf16(w1 + i), x1, acc);
                acc = _mm256_fmadd_ps(chalf_load8_bf16(w2 + i), x2, acc);
                acc = _mm256_fmadd_ps(chalf_load8_bf16(w3 + i), x3, acc);
                _mm256_storeu_ps(y + i, acc);
            }
        } else {
            for (; i + 8 <= col_end; i += 8) {
                __m256 acc = _mm256_loadu_ps(y + i);
                acc = _mm256_fmadd_ps(chalf_load8_f16(w0 + i), x0, acc);
                acc = _mm256_fmadd_ps(chalf_load8_f16(w1 + i), x1, acc);
                acc = _mm256_fmadd_ps(chalf_load8_f16(w2 + i), x2, acc);
                acc = _mm256_fmadd_ps(chalf_load8_f16(w3 + i), x3, acc);
                _mm256_storeu_ps(y + i, acc);
            }
        }
        for (; i < col_end; i++) {
            if (is_bf16) {
                y[i] += chalf_bf16_to_float(w0[i]) * x[k] + chalf_bf16_to_float(w1[i]) * x[k + 1]
                      + chalf_bf16_to_float(w2[i]) * x[k + 2] + chalf_bf16_to_float(w3[i]) * x[k + 3];
            } else {
                y[i] += chalf_to_float(w0[i]) * x[k] + chalf_to_float(w1[i]) * x[k + 1]
                      + chalf_to_float(w2[i]) * x[k + 2] + chalf_to_float(w3[i]) * x[k + 3];
            }
        }
    }
#endif
    for (; k < count; k++) {
        const uint16_t *wr = w + (rows ? rows[k] : k) * n;
        float xk = x[k];
        for (long i = col_begin; i < col_end; i++)
            y[i] += (is_bf16 ? chalf_bf16_to_float(wr[i]) : chalf_to_float(wr[i])) * xk;
    }
}

// y[0, n) += Σ_k x[k] · W[k, :] over `count` consecutive rows of a (rows, n) 16-bit matrix, a row at
// a time as one stream (the lines 4 KB ahead prefetched, as chalf_gemv_stream); y stays in L1, so
// loading and storing it per row costs little.
static inline void chalf_axpy_stream(float *y, const uint16_t *w, const float *x, long count, long n, int is_bf16) {
    for (long k = 0; k < count; k++) {
        const uint16_t *w0 = w + k * n;
        float xk = x[k];
        long i = 0;
#if CHALF_AVX2
        __m256 v = _mm256_set1_ps(xk);
#define CHALF_AXPY_STREAM_BODY(LOAD)                                                                   \
        for (; i + 32 <= n; i += 32) {                                                                 \
            _mm_prefetch((const char *)(w0 + i + CHALF_STREAM_AHEAD), _MM_HINT_T0);                    \
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(LOAD(w0 + i), v, _mm256_loadu_ps(y + i)));         \
            _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(LOAD(w0 + i + 8), v, _mm256_loadu_ps(y + i + 8)));     \
            _mm256_storeu_ps(y + i + 16, _mm256_fmadd_ps(LOAD(w0 + i + 16), v, _mm256_loadu_ps(y + i + 16))); \
            _mm256_storeu_ps(y + i + 24, _mm256_fmadd_ps(LOAD(w0 + i + 24), v, _mm256_loadu_ps(y + i + 24))); \
        }                                                                                              \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(LOAD(w0 + i), v, _mm256_loadu_ps(y + i)));
        if (is_bf16) { CHALF_AXPY_STREAM_BODY(chalf_load8_bf16) } else { CHALF_AXPY_STREAM_BODY(chalf_load8_f16) }
#undef CHALF_AXPY_STREAM_BODY
#endif
        for (; i < n; i++) y[i] += (is_bf16 ? chalf_bf16_to_float(w0[i]) : chalf_to_float(w0[i])) * xk;
    }
}

// Widens `count` 16-bit values to fp32 (used to feed prefill GEMMs and embedding lookups).
static inline void chalf_widen(float *dst, const uint16_t *src, long count, int is_bf16) {
    long i = 0;
#if CHALF_AVX2
    if (is_bf16) for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, chalf_load8_bf16(src + i));
    else for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, chalf_load8_f16(src + i));
#endif
    for (; i < count; i++) dst[i] = is_bf16 ? chalf_bf16_to_float(src[i]) : chalf_to_float(src[i]);
}

// Narrows `count` fp32 values to 16 bits (round to nearest even).
static inline void chalf_narrow(uint16_t *dst, const float *src, long count, int is_bf16) {
    long i = 0;
#if CHALF_AVX2 && defined(__F16C__)
    // Eight at a time with the rounding of _cvtss_sh(f, 0) below: the same bits, ~5x sooner
    // (every 16-bit weight passes here once at load).
    if (!is_bf16) {
        for (; i + 8 <= count; i += 8)
            _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), 0));
    }
#endif
    for (; i < count; i++) dst[i] = is_bf16 ? chalf_float_to_bf16(src[i]) : chalf_from_float(src[i]);
}
#endif
