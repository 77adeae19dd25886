/* What the compiled parts of scratchrnn share: the decoder (greedy_decode.c) and the training
   recurrences (recurrence.c; the gated cells' in gated.c and lstm_units.c, with gated.h). A float32
   tanh that vectorises, matrix products a block of registers at a time, and groups of independent rows
   handed to threads (pool.c).

   Written in C11 with the vector types of GCC and Clang, so that the compiler emits the vector
   instructions of the flags each file is compiled with. setup.py compiles each of those files once
   per variant (AVX-512, AVX2 with FMA, and the architecture's baseline), each with
   SCRATCHRNN_VARIANT naming it, so that one library holds all of them under names of their own
   (scratchrnn_greedy_decode_avx2, ...), declared below with the types of api.h; variant.c gathers
   them into the variant's table, and the Python module (module.c) picks the table the processor
   runs. */
#ifndef SCRATCHRNN_KERNELS_H
#define SCRATCHRNN_KERNELS_H

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef SCRATCHRNN_VARIANT
#define SCRATCHRNN_VARIANT baseline
#endif
#define VARIANT_JOIN(name, variant) name##_##variant
#define VARIANT_EXPAND(name, variant) VARIANT_JOIN(name, variant)
/* the exported name of a function of this variant, e.g. scratchrnn_recurrence_forward_avx2 */
#define VARIANT_NAME(name) VARIANT_EXPAND(name, SCRATCHRNN_VARIANT)

#include "api.h"
#include "pool.h"

/* This variant's entry points (api.h), each checked against its type where it is defined */
scratchrnn_tanh_fn VARIANT_NAME(scratchrnn_tanh);
scratchrnn_greedy_decode_fn VARIANT_NAME(scratchrnn_greedy_decode);
scratchrnn_recurrence_forward_fn VARIANT_NAME(scratchrnn_recurrence_forward);
scratchrnn_recurrence_backward_fn VARIANT_NAME(scratchrnn_recurrence_backward);
scratchrnn_gru_forward_fn VARIANT_NAME(scratchrnn_gru_forward);
scratchrnn_gru_backward_fn VARIANT_NAME(scratchrnn_gru_backward);
scratchrnn_lstm_forward_fn VARIANT_NAME(scratchrnn_lstm_forward);
scratchrnn_lstm_backward_fn VARIANT_NAME(scratchrnn_lstm_backward);

#define LANES 16          /* floats in a 64-byte cache line (and in an AVX-512 register) */

static inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

/* n floats, starting on a cache line (C11 wants the size a multiple of the alignment) */
static inline float *alloc_floats(size_t n)
{
    return aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
}

/* exp(y) for y >= 0: y = k ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to r^7 (error
   below 1e-8, under float32's resolution), times 2^k built in the exponent bits. k stops at 64: beyond
   that only "huge" matters to tanh, and the series of the larger r still gives it. */
static inline float exp_nonnegative(float y)
{
    const float log2e = 1.44269504f, ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
    int k = (int)(y * log2e + 0.5f);
    k = (unsigned)k > 64u ? 64 : k;                /* also catches the overflow of the conversion */
    float r = (y - (float)k * ln2_hi) - (float)k * ln2_lo;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120
              + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    int32_t bits = (k + 127) << 23;
    float two_to_k;
    memcpy(&two_to_k, &bits, sizeof two_to_k);
    return p * two_to_k;
}

/* The bits of a if pick_a, else of b: a select written as integer masks, which GCC vectorises where
   it does not vectorise a conditional expression around this much arithmetic. */
static inline float select_float(int pick_a, float a, float b)
{
    int32_t ia, ib, mask = -(int32_t)(pick_a != 0);
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    int32_t bits = (ia & mask) | (ib & ~mask);
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* tanh without a library call, so that a loop of them vectorises. For |x| < 1/4 its Taylor series to
   x^11 (truncation error below 1e-10), where the other form would lose digits to cancellation;
   elsewhere 1 - 2 / (exp(2|x|) + 1), which is exactly 1.0f from |x| = 9 on, as float32 tanh is.
   Within 5 units in the last place of the exact tanh (tests/test_kernels.py); NaN stays NaN. */
static inline float tanh_float(float x)
{
    float a = fabsf(x), a2 = a * a;
    float series = a * (1.0f + a2 * (-1.0f / 3 + a2 * (2.0f / 15 + a2 * (-17.0f / 315
                   + a2 * (62.0f / 2835 + a2 * (-1382.0f / 155925))))));
    float closed_form = 1.0f - 2.0f / (exp_nonnegative(2.0f * a) + 1.0f);
    return copysignf(select_float(a < 0.25f, series, closed_form), x);
}

/* out[c] = act(z[c]) for c < n: tanh, or ReLU if relu (out may be z) */
static inline void activate(float *out, const float *z, int n, int relu)
{
    if (relu) for (int c = 0; c < n; c++) out[c] = z[c] > 0.0f ? z[c] : 0.0f;
    else for (int c = 0; c < n; c++) out[c] = tanh_float(z[c]);
}

/* A vector of VEC floats, the width of the processor's registers; the packed weights' rows are whole
   cache lines (LANES floats), so whole vectors of any of these widths.
   The block of the product held in registers is TILE_ROWS rows by TILE_VECS vectors of columns: each
   weight vector loaded serves TILE_ROWS rows, each broadcast entry of a row TILE_VECS vectors, so the
   loads keep up with the multiply-adds; the accumulators take 24 of AVX-512's 32 registers, 12 of the
   16 of AVX and SSE. */
#if defined(__AVX512F__)
#define VEC 16
#define TILE_VECS 4
#elif defined(__AVX__)
#define VEC 8
#define TILE_VECS 2
#else
#define VEC 4
#define TILE_VECS 2
#endif
#define TILE_ROWS 6
typedef float vec __attribute__((vector_size(VEC * sizeof(float))));
typedef float vec_unaligned __attribute__((vector_size(VEC * sizeof(float)), aligned(sizeof(float))));

/* One row has no other rows to share a weight load with; it takes more vectors instead, so that enough
   independent sums are in flight to hide the latency of a multiply-add. */
#define SINGLE_ROW_VECS 8
/* C[r, :] += A[r, 0:K] B[0:K, :] for r < rows and `vecs` vectors of columns; B's rows are aligned.
   Called with constant rows and vecs, which the compiler unrolls into a block of registers. */
static inline __attribute__((always_inline)) void product_block(
    float *C, int ldc, const float *A, int lda, const float *B, int ldb, int K, const int rows,
    const int vecs)
{
    vec acc[TILE_ROWS][SINGLE_ROW_VECS];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) acc[r][v] = *(const vec_unaligned *)(C + (size_t)r * ldc + v * VEC);
    for (int k = 0; k < K; k++) {
        const vec *w = (const vec *)(B + (size_t)k * ldb);
        for (int r = 0; r < rows; r++) {
            const float a = A[(size_t)r * lda + k];
            for (int v = 0; v < vecs; v++) acc[r][v] += a * w[v];
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) *(vec_unaligned *)(C + (size_t)r * ldc + v * VEC) = acc[r][v];
}

#define BLOCK_CASE(r, v) case (r) * 16 + (v): product_block(c, ldc, a, lda, b, ldb, K, r, v); break;

/* C (M x vecs*VEC, rows ldc apart) += A (M x K, rows lda apart) B (K x vecs*VEC, rows ldb apart, each
   on a cache line), in blocks of registers. */
static inline void add_product(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int K,
                        int M, int vecs)
{
    const int vec_step = M == 1 ? SINGLE_ROW_VECS : TILE_VECS, row_blocks = (M + TILE_ROWS - 1) / TILE_ROWS;
    for (int v0 = 0; v0 < vecs; v0 += vec_step) {
        const int v_len = vecs - v0 < vec_step ? vecs - v0 : vec_step;
        /* rows shared out evenly (32 rows as 6 6 5 5 5 5, not 6 6 6 6 6 2): a block of few rows
           multiplies little per weight it loads */
        for (int r0 = 0, left = row_blocks; left > 0; left--) {
            const int r_len = (M - r0 + left - 1) / left;
            float *c = C + (size_t)r0 * ldc + v0 * VEC;
            const float *a = A + (size_t)r0 * lda, *b = B + v0 * VEC;
            r0 += r_len;
            switch (r_len * 16 + v_len) {
                BLOCK_CASE(1, 1) BLOCK_CASE(1, 2) BLOCK_CASE(1, 3) BLOCK_CASE(1, 4)
                BLOCK_CASE(1, 5) BLOCK_CASE(1, 6) BLOCK_CASE(1, 7) BLOCK_CASE(1, 8)
                BLOCK_CASE(2, 1) BLOCK_CASE(2, 2) BLOCK_CASE(2, 3) BLOCK_CASE(2, 4)
                BLOCK_CASE(3, 1) BLOCK_CASE(3, 2) BLOCK_CASE(3, 3) BLOCK_CASE(3, 4)
                BLOCK_CASE(4, 1) BLOCK_CASE(4, 2) BLOCK_CASE(4, 3) BLOCK_CASE(4, 4)
                BLOCK_CASE(5, 1) BLOCK_CASE(5, 2) BLOCK_CASE(5, 3) BLOCK_CASE(5, 4)
                BLOCK_CASE(6, 1) BLOCK_CASE(6, 2) BLOCK_CASE(6, 3) BLOCK_CASE(6, 4)
            }
        }
    }
}

/* Rows that never look at each other (streams of text, rows of a minibatch) can be shared out among
   threads, each computing its group alone, with no meeting and no data from other cores. Groups of
   fewer than min_rows rows would multiply too little per weight loaded: fewer threads then. */
static inline int row_groups(int batch, int threads, int min_rows)
{
    const int most = batch / min_rows;
    return threads < most ? (threads > 1 ? threads : 1) : (most > 1 ? most : 1);
}

/* The number of rows of group g of `groups`, and its first row: the first batch % groups groups have
   one row more. */
static inline int group_rows(int batch, int groups, int g, int *first)
{
    const int base = batch / groups, extra = batch % groups;
    *first = g * base + (g < extra ? g : extra);
    return base + (g < extra);
}

#endif
