/* Weights packed in panels, and the products that read them: what every loop that multiplies by the
   same weights step after step shares (recurrence.c, gated.c, lstm_units.c, greedy_decode.c). */
#ifndef SCRATCHRNN_PANELS_H
#define SCRATCHRNN_PANELS_H

#include "kernels.h"

/* The weights as the products read them: in panels of PANEL_VECS vectors of columns, each panel's K rows
   one after the other, so that a product streams each panel from memory in order (rows of the whole
   matrix would lie a page or more apart, where the processor prefetches worse and the cache's sets
   collide). The columns are units first_unit..first_unit+units-1 of each of the `blocks` blocks of
   `cols` columns of W (rows x blocks * cols), each block padded to `padded` (the forward products:
   K = rows); or of W^T (K = blocks * cols): its columns first_unit..first_unit+units-1, padded to
   `padded` (the backward ones). A job packs panels first..first+count-1. */
#define PANEL_VECS TILE_VECS
#define PANEL (PANEL_VECS * VEC)
typedef struct {
    const float *W;
    float *out;
    int rows, blocks, cols, padded, transposed, first_unit, units, first, count;
} PackJob;

/* the width in floats of panel p of a matrix `width` floats wide: PANEL, less for the last one */
static inline int panel_width(int p, int width) { return width - p * PANEL < PANEL ? width - p * PANEL : PANEL; }

static inline void *pack_panels(void *arg)
{
    const PackJob *p = arg;
    const int source_width = p->blocks * p->cols;
    const int K = p->transposed ? source_width : p->rows;
    const int width = p->transposed ? p->padded : p->blocks * p->padded;
    for (int panel = p->first; panel < p->first + p->count; panel++) {
        const int first_column = panel * PANEL, columns = panel_width(panel, width);
        float *out = p->out + (size_t)K * first_column;
        if (p->transposed) {
            /* W^T[k][column] = W[column][k], LANES values of k at a time: each of the panel's rows of W
               is read a cache line at a time and the line used whole at once. One k of every column in
               turn instead touches as many lines, a row of W apart -- for wide W the same few sets of
               the L1 cache, where they evict each other before their next value is read. */
            for (int k0 = 0; k0 < K; k0 += LANES) {
                const int k_len = K - k0 < LANES ? K - k0 : LANES;
                float *block = out + (size_t)k0 * columns;
                for (int c = 0; c < columns; c++) {
                    const int column = first_column + c;
                    if (column < p->units) {
                        const float *source = p->W + (size_t)(p->first_unit + column) * source_width + k0;
                        for (int k = 0; k < k_len; k++) block[(size_t)k * columns + c] = source[k];
                    } else
                        for (int k = 0; k < k_len; k++) block[(size_t)k * columns + c] = 0.0f;
                }
            }
            continue;
        }
        /* column `column % padded` of block `column / padded`, found once per panel (-1: padding):
           a division per element took most of the packing's time */
        int source[PANEL];
        for (int c = 0; c < columns; c++) {
            const int column = first_column + c, block = column / p->padded, within = column % p->padded;
            source[c] = within < p->units ? block * p->cols + p->first_unit + within : -1;
        }
        /* the usual case, no padding in the panel (its columns then follow each other in W, across
           gates too): a copy per row */
        const int contiguous = source[0] >= 0 && source[columns - 1] == source[0] + columns - 1;
        for (int k = 0; k < K; k++, out += columns) {
            const float *row = p->W + (size_t)k * source_width;
            if (contiguous)
                memcpy(out, row + source[0], sizeof(float) * columns);
            else
                for (int c = 0; c < columns; c++) out[c] = source[c] >= 0 ? row[source[c]] : 0.0f;
        }
    }
    return NULL;
}

/* The size in floats of W packed as above */
static inline size_t packed_floats(int rows, int blocks, int cols, int padded, int transposed)
{
    return transposed ? (size_t)blocks * cols * padded : (size_t)rows * blocks * padded;
}

#define MAX_PACK_JOBS 16

/* All of W packed as above (units 0..units-1), by up to num_threads threads; NULL if memory ran out. */
static inline float *packed(const float *W, int rows, int blocks, int cols, int padded, int transposed,
                            int num_threads)
{
    const int width = transposed ? padded : blocks * padded;
    float *out = alloc_floats(packed_floats(rows, blocks, cols, padded, transposed));
    if (!out) return NULL;
    const int panels = (width + PANEL - 1) / PANEL;
    int count = num_threads < panels ? num_threads : panels;
    count = count < 1 ? 1 : count > MAX_PACK_JOBS ? MAX_PACK_JOBS : count;
    PackJob jobs[MAX_PACK_JOBS];
    for (int k = 0; k < count; k++) {
        jobs[k] = (PackJob){ .W = W, .out = out, .rows = rows, .blocks = blocks, .cols = cols,
                             .padded = padded, .transposed = transposed, .units = transposed ? rows : cols };
        jobs[k].count = group_rows(panels, count, k, &jobs[k].first);
    }
    scratchrnn_pool_run(pack_panels, jobs, sizeof(PackJob), count, count);
    return out;
}

/* C[:, 0:vecs * VEC] (rows ldc apart) += A (M x K, rows lda apart) times the packed weights: one
   add_product per panel, the last panel first if `backwards`. Weights somewhat larger than a core's
   cache, multiplied by at every step, stay in it far better when every other step takes the panels
   backwards: a step then starts on the panels the step before used last, still in the cache, where
   in the same order each panel is found evicted by the ones after it. */
static inline void add_panel_product(float *C, int ldc, const float *A, int lda, const float *panels, int K,
                                     int M, int vecs, int backwards)
{
    const int count = (vecs + PANEL_VECS - 1) / PANEL_VECS;
    for (int p = 0; p < count; p++) {
        const int v0 = (backwards ? count - 1 - p : p) * PANEL_VECS;
        const int width = vecs - v0 < PANEL_VECS ? vecs - v0 : PANEL_VECS;
        add_product(C + v0 * VEC, ldc, A, lda, panels + (size_t)K * v0 * VEC, width * VEC, K, M, width);
    }
}

#endif
