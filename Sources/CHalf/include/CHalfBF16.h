#ifndef CHALF_BF16_H
#define CHALF_BF16_H
// bf16 dot products (`vdpbf16ps`, AVX512-BF16): weights and activations in bf16, products summed in
// fp32. Twice the multiply-adds per instruction of fp32 FMAs and half the bytes of fp32 weights.
// The build targets Haswell, so these are compiled for AVX-512 on their own (CHalfBF16.c) and
// chosen at run time: ask chalf_bf16_dot_available() first.
#include <stdint.h>

// 1 when this CPU runs the kernels below (x86-64 with AVX512-F, -BW, -VL and -BF16), else 0.
int chalf_bf16_dot_available(void);

// dst[i] = src[i] rounded to bf16 (to nearest even), for i < count: the activations' side of the
// products below.
void chalf_bf16_round(uint16_t *dst, const float *src, long count);

// out[t * out_stride + k] = Σ_i x[t * cols + i] · W[row_k * cols + i] for k in [begin, end) and
// t < tokens, where row_k = rows[k] (a kept subset) or k when rows is NULL. x and W in bf16.
// Blocks of 4 rows × 4 tokens (one token: blocks of 16 rows); any cols (the last partial vector is
// masked). A token's outputs are the same bits whatever the number of tokens.
void chalf_bf16_dot_rows(float *out, long out_stride, const uint16_t *x, long tokens, const uint16_t *w, long cols,
                         const int32_t *rows, long begin, long end);

// out[t * os + c] (+)= Σ_k x[t * xs + k] · W[row_k * ws + c] for c < width, t < tokens and
// k < count, where row_k = rows[k] or k: the sums of rows of a transposed projection (one row per
// input unit). x and W in bf16. Rows are taken in pairs (vdpbf16ps multiplies pairs), two rows'
// 32 columns interleaved in registers; blocks of at most 6 tokens × 32 columns.
void chalf_bf16_sum_rows(float *out, long os, const uint16_t *x, long xs, long tokens, const uint16_t *w, long ws,
                         const int32_t *rows, long count, long width, int accumulate);

// chalf_bf16_sum_rows, with each strip of 32 columns of all `count` rows interleaved once into
// `buf` ((count + 1) / 2 × 64 values, 64-byte aligned) and read from there by every token block
// (blocks of up to 8 tokens), the next strip prefetched while this one is copied: the same vdpbf16ps on the same vectors in
// the same order, so the same bits. Eight tokens or fewer (one block) run chalf_bf16_sum_rows.
void chalf_bf16_sum_rows_packed(float *out, long os, const uint16_t *x, long xs, long tokens, const uint16_t *w,
                                long ws, const int32_t *rows, long count, long width, int accumulate, uint16_t *buf);
#endif
