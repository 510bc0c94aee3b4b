#ifndef CHALF_AVX512_H
#define CHALF_AVX512_H
// fp32 small-GEMM kernels in 512-bit registers (SmallGEMM): on cores with full-width AVX-512 units
// (AMD Zen 5, Intel server cores) twice the multiply-adds per instruction of the AVX2 kernels, and
// twice the registers for larger blocks. The build targets Haswell, so these are compiled for
// AVX-512 on their own (CHalfAVX512.c) and chosen at run time: ask chalf_avx512_available() first.
#include <stdint.h>

// 1 when this CPU runs the kernels below (x86-64 with AVX512-F), else 0.
int chalf_avx512_available(void);

// out[t * out_stride + k] = Σ_i x[t * cols + i] · W[row_k * cols + i] for k in [begin, end) and
// t < tokens, where row_k = rows[k] (a kept subset) or k when rows is NULL. Blocks of 4 rows × 4
// tokens; any cols (the last partial vector is masked). Each sum is formed the same way whatever
// block it falls in, so it depends neither on the thread split nor on the number of tokens.
void chalf_f32_dot_rows(float *out, long out_stride, const float *x, long tokens, const float *w, long cols,
                        const int32_t *rows, long begin, long end);

// out[t * os + c] (+)= Σ_k x[t * xs + k] · W[row_k * ws + c] for c < width, t < tokens and
// k < count, where row_k = rows[k] or k: the sums of rows of a transposed projection (one row per
// input unit). Blocks of at most 6 tokens × 32 columns; the same fused multiply-adds in the same
// order as chalf_sum_rows16 (CHalfGEMM.h), so the same bits.
void chalf_f32_sum_rows(float *out, long os, const float *x, long xs, long tokens, const float *w, long ws,
                        const int32_t *rows, long count, long width, int accumulate);

// chalf_f32_dot_rows for a 16-bit matrix W (fp16, or bf16 when is_bf16), widened exactly to fp32 a
// block of four rows at a time into `buf` (4 × cols floats, 64-byte aligned best): the same sums,
// bit for bit, as chalf_f32_dot_rows on the widened matrix.
void chalf_half_dot_rows(float *out, long out_stride, const float *x, long tokens, const uint16_t *w, long cols,
                         const int32_t *rows, long begin, long end, int is_bf16, float *buf);

// Rows a strip of chalf_half_sum_rows and chalf_f32_sum_rows_packed packs at a time.
#define CHALF_STRIP_ROWS 1024

// chalf_f32_sum_rows for a 16-bit matrix W, widened exactly a strip of 32 columns × up to
// CHALF_STRIP_ROWS rows at a time into `buf` (CHALF_STRIP_ROWS × 32 floats): the same bits as
// chalf_f32_sum_rows on the widened matrix.
void chalf_half_sum_rows(float *out, long os, const float *x, long xs, long tokens, const uint16_t *w, long ws,
                         const int32_t *rows, long count, long width, int accumulate, int is_bf16, float *buf);

// chalf_f32_sum_rows with each strip of 32 columns × up to CHALF_STRIP_ROWS rows first copied into
// `buf` (CHALF_STRIP_ROWS × 32 floats, 64-byte aligned) and the next strip prefetched, so the token
// blocks read 128-byte packed rows instead of W's rows at their stride: the same bits.
void chalf_f32_sum_rows_packed(float *out, long os, const float *x, long xs, long tokens, const float *w, long ws,
                               const int32_t *rows, long count, long width, int accumulate, float *buf);
#endif
