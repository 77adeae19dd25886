/* What the gated cells' loops share (gated.c: both cells, the rows shared out among threads;
   lstm_units.c: the LSTM with its hidden units shared out instead): the weights packed in panels, the
   products over them, and the LSTM's arithmetic on one row of one step. */
#ifndef SCRATCHRNN_GATED_H
#define SCRATCHRNN_GATED_H

#include "kernels.h"

static inline float sigmoid_float(float x) { return 0.5f * (tanh_float(0.5f * x) + 1.0f); }

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
        if (p->transposed) {              /* W^T[k][column] = W[column][k] */
            for (int k = 0; k < K; k++, out += columns)
                for (int c = 0; c < columns; c++) {
                    const int column = first_column + c;
                    const size_t source = (size_t)(p->first_unit + column) * source_width + k;
                    out[c] = column < p->units ? p->W[source] : 0.0f;
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

/* acc's rows (ldc apart) set to `count` blocks of `width` floats of src's rows (lds apart), block b
   read from column b * gap and written to column b * padded: the input terms a step's product is
   added to. */
static inline void load_terms(float *acc, int ldc, const float *src, int lds, int rows, int count, int width,
                              int gap, int padded)
{
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < count; b++)
            memcpy(acc + (size_t)r * ldc + (size_t)b * padded, src + (size_t)r * lds + (size_t)b * gap,
                   sizeof(float) * width);
}

/* One row of one LSTM step, for n of its hidden units: `pre` the gates' sums (gate g at pre + g *
   stride), cp C_{t-1}; writes [I | F | O | C~] at i, i + gap, i + 2 gap, i + 3 gap, tanh(C_t) to tc,
   C_t to c and H_t to h. */
static inline void lstm_forward_row(const float *restrict pre, int stride, const float *restrict cp,
                                    float *restrict i, int gap, float *restrict tc, float *restrict c,
                                    float *restrict h, int n)
{
    float *restrict f = i + gap, *restrict o = i + 2 * (size_t)gap, *restrict cand = i + 3 * (size_t)gap;
    for (int k = 0; k < n; k++) i[k] = sigmoid_float(pre[k]);
    for (int k = 0; k < n; k++) f[k] = sigmoid_float(pre[stride + k]);
    for (int k = 0; k < n; k++) o[k] = sigmoid_float(pre[2 * stride + k]);
    activate(cand, pre + 3 * stride, n, 0);
    for (int k = 0; k < n; k++) c[k] = f[k] * cp[k] + i[k] * cand[k];
    activate(tc, c, n, 0);
    for (int k = 0; k < n; k++) h[k] = o[k] * tc[k];
}

/* Backpropagation through one row of one LSTM step, for n of its hidden units: d_h (to which `own`,
   the gradient from the step's output, is added unless NULL) and d_c come in as what reaches H_t and
   C_t from later; the gradients of the gates' sums are written at d_i, d_i + gap, ... (as the forward
   row's i), and d_c leaves as what reaches C_{t-1} directly. acts at i as the forward row wrote them. */
static inline void lstm_backward_row(float *restrict d_h, float *restrict d_c, const float *restrict own,
                                     const float *restrict i, int gap, const float *restrict tc,
                                     const float *restrict cp, float *restrict d_i, int n)
{
    const float *restrict f = i + gap, *restrict o = i + 2 * (size_t)gap, *restrict cand = i + 3 * (size_t)gap;
    float *restrict d_f = d_i + gap, *restrict d_o = d_i + 2 * (size_t)gap;
    float *restrict d_cand = d_i + 3 * (size_t)gap;
    if (own) for (int k = 0; k < n; k++) d_h[k] += own[k];
    /* H = O tanh(C): to O, and on to C (added to what reaches C from C_{t+1}) */
    for (int k = 0; k < n; k++) d_o[k] = d_h[k] * tc[k] * (o[k] * (1.0f - o[k]));
    for (int k = 0; k < n; k++) d_c[k] += d_h[k] * o[k] * (1.0f - tc[k] * tc[k]);
    /* C = F C_{t-1} + I C~ */
    for (int k = 0; k < n; k++) d_i[k] = d_c[k] * cand[k] * (i[k] * (1.0f - i[k]));
    for (int k = 0; k < n; k++) d_f[k] = d_c[k] * cp[k] * (f[k] * (1.0f - f[k]));
    for (int k = 0; k < n; k++) d_cand[k] = d_c[k] * i[k] * (1.0f - cand[k] * cand[k]);
    for (int k = 0; k < n; k++) d_c[k] *= f[k];
}

/* The LSTM's loops with the hidden units shared out in `shares` shares (lstm_units.c), with the
   arguments of gated.c's. unit_shares_of: the shares asked for, as many as there are vectors of
   units at most (LSTM_MAX_SHARES at most); 0, rows instead, if that is fewer than 2. */
#define LSTM_MAX_SHARES 64
static inline int unit_shares_of(int hidden, int asked)
{
    const int vectors = (hidden + LANES - 1) / LANES;
    const int shares = asked < vectors ? asked : vectors;
    return shares < 2 ? 0 : shares > LSTM_MAX_SHARES ? LSTM_MAX_SHARES : shares;
}
__attribute__((visibility("hidden")))
int VARIANT_NAME(lstm_forward_units)(int steps, int batch, int hidden, int shares, int threads,
                                     const float *terms, const float *W_h, float *hs, float *cs, float *acts,
                                     float *tanh_cs);
__attribute__((visibility("hidden")))
int VARIANT_NAME(lstm_backward_units)(int steps, int batch, int hidden, int shares, int threads,
                                      const float *W_h, const float *cs, const float *acts, const float *tanh_cs,
                                      const float *d_outputs, const float *dh_last, const float *dc_last,
                                      float *d_terms, float *dh0, float *dc0);

#endif
