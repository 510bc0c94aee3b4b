#include "CHalfBF16.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#include "CHalfAVX512Shared.h"
#define CHALF_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

int chalf_bf16_dot_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

CHALF_BF16_TARGET
void chalf_bf16_round(uint16_t *dst, const float *src, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < count) {
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, v);
    }
}

#define CHALF_DP_ROW(R)                                                                          \
    a[R * 4 + 0] = _mm512_dpbf16_ps(a[R * 4 + 0], u##R, x0);                                      \
    a[R * 4 + 1] = _mm512_dpbf16_ps(a[R * 4 + 1], u##R, x1);                                      \
    a[R * 4 + 2] = _mm512_dpbf16_ps(a[R * 4 + 2], u##R, x2);                                      \
    a[R * 4 + 3] = _mm512_dpbf16_ps(a[R * 4 + 3], u##R, x3);

#define CHALF_LOAD_BH(p, i) ((__m512bh)_mm512_loadu_si512((const void *)((p) + (i))))
#define CHALF_LOAD_BH_MASKED(p, i, m) ((__m512bh)_mm512_maskz_loadu_epi16((m), (const void *)((p) + (i))))

CHALF_BF16_TARGET static inline __attribute__((always_inline)) void
chalf_bf16_dot_block(__m512 a[16], const char *const rows[4], const char *const tokens[4], long cols) {
    const uint16_t *w0 = (const uint16_t *)rows[0], *w1 = (const uint16_t *)rows[1];
    const uint16_t *w2 = (const uint16_t *)rows[2], *w3 = (const uint16_t *)rows[3];
    const uint16_t *p0 = (const uint16_t *)tokens[0], *p1 = (const uint16_t *)tokens[1];
    const uint16_t *p2 = (const uint16_t *)tokens[2], *p3 = (const uint16_t *)tokens[3];
    const long full = cols & ~31L;
    long i = 0;
    for (; i < full; i += 32) {
        __m512bh u0 = CHALF_LOAD_BH(w0, i), u1 = CHALF_LOAD_BH(w1, i);
        __m512bh u2 = CHALF_LOAD_BH(w2, i), u3 = CHALF_LOAD_BH(w3, i);
        __m512bh x0 = CHALF_LOAD_BH(p0, i), x1 = CHALF_LOAD_BH(p1, i);
        __m512bh x2 = CHALF_LOAD_BH(p2, i), x3 = CHALF_LOAD_BH(p3, i);
        CHALF_DP_ROW(0) CHALF_DP_ROW(1) CHALF_DP_ROW(2) CHALF_DP_ROW(3)
    }
    if (i < cols) {
        const __mmask32 tail = (__mmask32)((1ULL << (cols - full)) - 1);
        __m512bh u0 = CHALF_LOAD_BH_MASKED(w0, i, tail), u1 = CHALF_LOAD_BH_MASKED(w1, i, tail);
        __m512bh u2 = CHALF_LOAD_BH_MASKED(w2, i, tail), u3 = CHALF_LOAD_BH_MASKED(w3, i, tail);
        __m512bh x0 = CHALF_LOAD_BH_MASKED(p0, i, tail), x1 = CHALF_LOAD_BH_MASKED(p1, i, tail);
        __m512bh x2 = CHALF_LOAD_BH_MASKED(p2, i, tail), x3 = CHALF_LOAD_BH_MASKED(p3, i, tail);
        CHALF_DP_ROW(0) CHALF_DP_ROW(1) CHALF_DP_ROW(2) CHALF_DP_ROW(3)
    }
}

// One token (decode): sixteen rows a block, an accumulator each, where the 4 × 4 block would
// multiply the one token four times. A row's sum takes the same vdpbf16ps in the same order and
// the same reduction tree as in the 4 × 4 block, so a token's outputs do not depend on how many
// tokens came with it. The next block's rows are prefetched a line per row per step: a subset
// of rows (a sparse projection) jumps where the hardware prefetcher cannot follow.
CHALF_BF16_TARGET static void
chalf_bf16_dot_rows_one_token(float *out, const uint16_t *x, const uint16_t *w, long cols, const int32_t *rows,
                              long begin, long end) {
    const long full = cols & ~31L;
    const __mmask32 tail = (__mmask32)((1ULL << (cols - full)) - 1);
    for (long j = begin; j < end; j += 16) {
        const long nr = end - j < 16 ? end - j : 16;
        const uint16_t *wr[16];
        const char *next[16];
        for (int r = 0; r < 16; r++) {
            long k = j + (r < nr ? r : nr - 1), n = j + 16 + r < end ? j + 16 + r : end - 1;
            wr[r] = w + (rows ? rows[k] : k) * cols;
            next[r] = (const char *)(w + (rows ? rows[n] : n) * cols);
        }
        __m512 a[16];
        for (int r = 0; r < 16; r++) a[r] = _mm512_setzero_ps();
        long i = 0;
        for (; i < full; i += 32) {
            const __m512bh xv = CHALF_LOAD_BH(x, i);
            for (int r = 0; r < 16; r++) {
                __builtin_prefetch(next[r] + i * 2, 0, 3);
                a[r] = _mm512_dpbf16_ps(a[r], CHALF_LOAD_BH(wr[r], i), xv);
            }
        }
        if (i < cols) {
            const __m512bh xv = CHALF_LOAD_BH_MASKED(x, i, tail);
            for (int r = 0; r < 16; r++) a[r] = _mm512_dpbf16_ps(a[r], CHALF_LOAD_BH_MASKED(wr[r], i, tail), xv);
        }
        float sums[16];
        _mm512_storeu_ps(sums, chalf_reduce16(a));
        for (long r = 0; r < nr; r++) out[j + r] = sums[r];
    }
}

CHALF_BF16_TARGET
void chalf_bf16_dot_rows(float *out, long out_stride, const uint16_t *x, long tokens, const uint16_t *w, long cols,
                         const int32_t *rows, long begin, long end) {
    if (tokens == 1) return chalf_bf16_dot_rows_one_token(out, x, w, cols, rows, begin, end);
    chalf_dot_rows_blocked(out, out_stride, (const char *)x, tokens, (const char *)w, cols, 2, rows, begin, end,
                           chalf_bf16_dot_block, 0, 0);
}

// Unpacking two rows' bf16 values pairs them per column but leaves the columns of each 128-bit
// lane in two halves: `lo` holds columns 8m..8m+3 of lane m, `hi` 8m+4..8m+7. These indices put
// them back in order (bit 4 picks `hi`), for columns 0–15 and 16–31.
static const int chalf_cols_first[16] = {0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23};
static const int chalf_cols_second[16] = {8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31};

#define CHALF_PAIR_DP(S)                                                                         \
    if (m > S) {                                                                                 \
        __m512bh q = (__m512bh)_mm512_set1_epi32(pair(x + (t + S) * xs, k));                   \
        lo##S = _mm512_dpbf16_ps(lo##S, ulo, q); hi##S = _mm512_dpbf16_ps(hi##S, uhi, q);        \
    }
#define CHALF_PAIR_STORE(S)                                                                      \
    if (m > S) {                                                                                 \
        float *o = out + (t + S) * os + c;                                                       \
        __m512 first = _mm512_permutex2var_ps(lo##S, ifirst, hi##S);                             \
        __m512 second = _mm512_permutex2var_ps(lo##S, isecond, hi##S);                           \
        if (accumulate) {                                                                        \
            first = _mm512_add_ps(first, _mm512_maskz_loadu_ps(mfirst, o));                      \
            second = _mm512_add_ps(second, _mm512_maskz_loadu_ps(msecond, o + 16));              \
        }                                                                                        \
        _mm512_mask_storeu_ps(o, mfirst, first); _mm512_mask_storeu_ps(o + 16, msecond, second); \
    }

static inline int32_t chalf_load_pair(const uint16_t *p) {
    int32_t v;
    __builtin_memcpy(&v, p, 4);   // any alignment
    return v;
}

// Rows k and k + 1 (a lone last row twice: its partner's activation is 0) of the 32 columns from
// c, as two vectors of column pairs, the form vdpbf16ps multiplies (columns masked to `mcols`).
CHALF_BF16_TARGET static inline __attribute__((always_inline)) void
chalf_pair_rows(__m512bh *ulo, __m512bh *uhi, const uint16_t *w, long ws, const int32_t *rows, long count, long k,
                long c, __mmask32 mcols) {
    const uint16_t *ra = w + (rows ? rows[k] : k) * ws + c;
    const uint16_t *rb = k + 1 < count ? w + (rows ? rows[k + 1] : k + 1) * ws + c : ra;
    __m512i a = _mm512_maskz_loadu_epi16(mcols, ra), b = _mm512_maskz_loadu_epi16(mcols, rb);
    *ulo = (__m512bh)_mm512_unpacklo_epi16(a, b);
    *uhi = (__m512bh)_mm512_unpackhi_epi16(a, b);
}

// One block of m ≤ 8 tokens (from t) × 32 columns (from c; n ≤ 32 of them real). The row pairs are
// formed from W's rows here, or with `packed` read from there (pair k / 2 at packed + k * 32, as
// chalf_bf16_sum_rows_packed stores them): the same vectors, so the same sums either way.
CHALF_BF16_TARGET static inline __attribute__((always_inline)) void
chalf_pair_block(int m, float *out, long os, const uint16_t *x, long xs, long t, const uint16_t *w, long ws,
                 const int32_t *rows, long count, long c, long n, int accumulate, const uint16_t *packed) {
    const __mmask32 mcols = n >= 32 ? (__mmask32)~0u : (__mmask32)((1u << n) - 1);
    const __mmask16 mfirst = (__mmask16)(mcols & 0xffff), msecond = (__mmask16)(mcols >> 16);
    const __m512i ifirst = _mm512_loadu_si512(chalf_cols_first), isecond = _mm512_loadu_si512(chalf_cols_second);
    __m512 z = _mm512_setzero_ps();
    __m512 lo0 = z, hi0 = z, lo1 = z, hi1 = z, lo2 = z, hi2 = z, lo3 = z, hi3 = z, lo4 = z, hi4 = z, lo5 = z, hi5 = z;
    __m512 lo6 = z, hi6 = z, lo7 = z, hi7 = z;
    // Two activations as one 32-bit lane, the first in the low half; a lone last row pairs with 0.
    #define pair(p, k) ((k) + 1 < count ? chalf_load_pair((p) + (k)) : (int32_t)(p)[k])
    for (long k = 0; k < count; k += 2) {
        __m512bh ulo, uhi;
        if (packed) {
            ulo = (__m512bh)_mm512_load_si512(packed + k * 32);
            uhi = (__m512bh)_mm512_load_si512(packed + k * 32 + 32);
        } else {
            chalf_pair_rows(&ulo, &uhi, w, ws, rows, count, k, c, mcols);
        }
        CHALF_PAIR_DP(0) CHALF_PAIR_DP(1) CHALF_PAIR_DP(2) CHALF_PAIR_DP(3)
        CHALF_PAIR_DP(4) CHALF_PAIR_DP(5) CHALF_PAIR_DP(6) CHALF_PAIR_DP(7)
    }
    #undef pair
    CHALF_PAIR_STORE(0) CHALF_PAIR_STORE(1) CHALF_PAIR_STORE(2) CHALF_PAIR_STORE(3)
    CHALF_PAIR_STORE(4) CHALF_PAIR_STORE(5) CHALF_PAIR_STORE(6) CHALF_PAIR_STORE(7)
}

CHALF_BF16_TARGET
void chalf_bf16_sum_rows(float *out, long os, const uint16_t *x, long xs, long tokens, const uint16_t *w, long ws,
                         const int32_t *rows, long count, long width, int accumulate) {
    if (count == 0) {
        if (!accumulate) for (long t = 0; t < tokens; t++) for (long c = 0; c < width; c++) out[t * os + c] = 0;
        return;
    }
    // Token blocks of equal size, at most six (as chalf_sum_rows16).
    const long blocks = (tokens + 5) / 6;
    for (long c = 0; c < width; c += 32) {
        const long n = width - c < 32 ? width - c : 32;
        for (long b = 0, t = 0; b < blocks; b++) {
            int m = (int)((tokens * (b + 1)) / blocks - t);
            switch (m) {
            case 6: chalf_pair_block(6, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, 0); break;
            case 5: chalf_pair_block(5, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, 0); break;
            case 4: chalf_pair_block(4, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, 0); break;
            case 3: chalf_pair_block(3, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, 0); break;
            case 2: chalf_pair_block(2, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, 0); break;
            default: chalf_pair_block(1, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, 0); break;
            }
            t += m;
        }
    }
}

CHALF_BF16_TARGET
void chalf_bf16_sum_rows_packed(float *out, long os, const uint16_t *x, long xs, long tokens, const uint16_t *w,
                                long ws, const int32_t *rows, long count, long width, int accumulate, uint16_t *buf) {
    if (count == 0 || tokens <= 8) {  // one token block reads each strip once: nothing to gain
        chalf_bf16_sum_rows(out, os, x, xs, tokens, w, ws, rows, count, width, accumulate);
        return;
    }
    // Token blocks of equal size, at most eight: 16 accumulators, and each pair of rows loaded
    // from L1/L2 serves 16 vdpbf16ps rather than 12.
    const long blocks = (tokens + 7) / 8;
    for (long c = 0; c < width; c += 32) {
        const long n = width - c < 32 ? width - c : 32;
        const __mmask32 mcols = n >= 32 ? (__mmask32)~0u : (__mmask32)((1u << n) - 1);
        // The strip's row pairs, interleaved once here for all token blocks rather than once per
        // block, and read back sequentially instead of one line per row at W's row stride. Each
        // row's line of the next strip is prefetched as its line of this one is read, a whole
        // strip's arithmetic ahead (spread over the token blocks instead, the prefetches came
        // too late below about 32 tokens: 16 tokens ran slower than in place).
        for (long k = 0; k < count; k += 2) {
            __m512bh ulo, uhi;
            chalf_pair_rows(&ulo, &uhi, w, ws, rows, count, k, c, mcols);
            _mm512_store_si512(buf + k * 32, (__m512i)ulo);
            _mm512_store_si512(buf + k * 32 + 32, (__m512i)uhi);
            if (c + 32 < width) {
                __builtin_prefetch(w + (rows ? rows[k] : k) * ws + c + 32, 0, 3);
                if (k + 1 < count) __builtin_prefetch(w + (rows ? rows[k + 1] : k + 1) * ws + c + 32, 0, 3);
            }
        }
        for (long b = 0, t = 0; b < blocks; b++) {
            int m = (int)((tokens * (b + 1)) / blocks - t);
            switch (m) {
            case 8: chalf_pair_block(8, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, buf); break;
            case 7: chalf_pair_block(7, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, buf); break;
            case 6: chalf_pair_block(6, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, buf); break;
            case 5: chalf_pair_block(5, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, buf); break;
            default: chalf_pair_block(4, out, os, x, xs, t, w, ws, rows, count, c, n, accumulate, buf); break;
            }
            t += m;
        }
    }
}

#else
int chalf_bf16_dot_available(void) { return 0; }

void chalf_bf16_round(uint16_t *dst, const float *src, long count) {
    (void)dst; (void)src; (void)count;
    __builtin_trap();
}

void chalf_bf16_dot_rows(float *out, long out_stride, const uint16_t *x, long tokens, const uint16_t *w, long cols,
                         const int32_t *rows, long begin, long end) {
    (void)out; (void)out_stride; (void)x; (void)tokens; (void)w; (void)cols; (void)rows; (void)begin; (void)end;
    __builtin_trap();  // callers check chalf_bf16_dot_available() first
}

void chalf_bf16_sum_rows(float *out, long os, const uint16_t *x, long xs, long tokens, const uint16_t *w, long ws,
                         const int32_t *rows, long count, long width, int accumulate) {
    (void)out; (void)os; (void)x; (void)xs; (void)tokens; (void)w; (void)ws; (void)rows; (void)count; (void)width;
    (void)accumulate;
    __builtin_trap();
}

void chalf_bf16_sum_rows_packed(float *out, long os, const uint16_t *x, long xs, long tokens, const uint16_t *w,
                                long ws, const int32_t *rows, long count, long width, int accumulate, uint16_t *buf) {
    (void)out; (void)os; (void)x; (void)xs; (void)tokens; (void)w; (void)ws; (void)rows; (void)count; (void)width;
    (void)accumulate; (void)buf;
    __builtin_trap();
}
#endif
