/* The step loops of the gated cells, compiled: the forward recurrence and backpropagation through time
   of the GRU (D2L 9.1) and the LSTM (D2L 9.2), for float32 on the CPU.

   As for the RNN (recurrence.c), everything around these loops is a few large matrix products over all
   time steps, which the BLAS library computes well; the loops themselves are a chain of small products,
   each waiting for the one before, with several elementwise passes (sigmoids, tanh, the gates' sums)
   around every one. Here the minibatch's rows, which never look at each other, are shared out among
   the library's threads (pool.c) once for the whole sequence; each walks all the steps of its rows
   alone, applying the gates as it goes while the rows are in its core's cache. The LSTM's loops can
   share out the hidden units instead, the caller says (lstm_units.c): with few rows and recurrent
   weights larger than a core's cache, that keeps each thread's part of the weights in its cache.

   The mathematics is that of the NumPy cells (src/scratchrnn/cells/gru.py and lstm.py), to which the
   tests hold these loops; the sums run in another order, so results agree to float32 rounding. The
   input terms of every gate and step, x_t W_x + b, come in computed, (steps, batch, gates * hidden),
   the gates side by side in the cells' order. The forward loops write the same arrays that the
   cells' forward passes keep for their backward passes, so either backward pass can follow either
   forward pass; the backward loops write the gradient of the input terms and of the starting state,
   and the caller computes the recurrent weights' gradients from those afterwards, as one large
   product over all steps.

   GRU, gates [z | r | h]:
     [Z_t | R_t] = sigmoid(terms_t[z, r] + H_{t-1} [W_hz | W_hr])
     H~_t = tanh(terms_t[h] + (R_t * H_{t-1}) W_hh)
     H_t = H~_t + Z_t (H_{t-1} - H~_t)
   LSTM, gates [i | f | o | c]:
     [I_t | F_t | O_t | C~_t] = [sigmoid | sigmoid | sigmoid | tanh](terms_t + H_{t-1} W_h)
     C_t = F_t C_{t-1} + I_t C~_t,  H_t = O_t tanh(C_t)
   sigmoid(x) is computed as the cells compute it, 0.5 (1 + tanh(x / 2)). */
#include "gated.h"

/* A group's rows share every weight the group reads from the caches: at every step each group streams
   all of the recurrent weights (several MB at the chapter's size, more than a core's own cache holds),
   and each block of them, once loaded, serves all rows of the group. Hence groups as large as the
   threads allow, up to MAX_ROWS_PER_GROUP, whose accumulators still fit in that cache beside a block
   of weights; and no group under MIN_ROWS_PER_GROUP rows, too few to keep the multiply-adds busy. */
#define MIN_ROWS_PER_GROUP 8
#define MAX_ROWS_PER_GROUP 64

/* What one group of rows needs; the pointers are to the whole minibatch's arrays. */
typedef struct {
    int steps, batch, hidden, padded, first, rows;
    const float *terms;          /* forward: (steps, batch, gates * hidden) */
    const float *W;              /* in panels (see packed): forward W_h, hidden x gates * padded;
                                    backward W_h^T, gates * hidden x padded (the GRU's: z and r only) */
    const float *W_candidate;    /* GRU: W_hh (forward) or W_hh^T (backward), in panels */
    float *hs, *cs;              /* (steps + 1, batch, hidden): H_t and (LSTM) C_t, the start first */
    float *gates;                /* GRU [Z | R] (steps, batch, 2 hidden); LSTM [I | F | O | C~] (4) */
    float *candidates, *reset_h; /* GRU: H~_t and R_t * H_{t-1}, (steps, batch, hidden) */
    float *tanh_cs;              /* LSTM: tanh(C_t), (steps, batch, hidden) */
    const float *d_outputs;      /* backward: dL/dH_t from each step's output, or NULL */
    const float *dh_last, *dc_last;   /* backward: from later minibatches, or NULL */
    float *d_terms;              /* backward: (steps, batch, gates * hidden) */
    float *dh0, *dc0;            /* backward: dL/dH_0 and (LSTM) dL/dC_0, or NULL: not wanted */
    int status;
} GatedJob;

/* Where this group's rows of step t begin in a (steps, batch, width) array */
static size_t rows_of(const GatedJob *j, int t, int width)
{
    return ((size_t)t * j->batch + j->first) * width;
}

static void *gru_forward_rows(void *arg)
{
    GatedJob *j = arg;
    const int H = j->hidden, P = j->padded, R = j->rows;
    float *gate_acc = alloc_floats((size_t)R * 2 * P), *candidate_acc = alloc_floats((size_t)R * P);
    j->status = -1;
    if (gate_acc && candidate_acc) {
        memset(gate_acc, 0, sizeof(float) * (size_t)R * 2 * P);       /* the padding stays 0 */
        memset(candidate_acc, 0, sizeof(float) * (size_t)R * P);
        for (int t = 0; t < j->steps; t++) {
            const float *terms = j->terms + rows_of(j, t, 3 * H), *h_prev = j->hs + rows_of(j, t, H);
            float *zr = j->gates + rows_of(j, t, 2 * H), *reset_h = j->reset_h + rows_of(j, t, H);
            load_terms(gate_acc, 2 * P, terms, 3 * H, R, 2, H, H, P);
            load_terms(candidate_acc, P, terms + 2 * H, 3 * H, R, 1, H, H, P);
            add_panel_product(gate_acc, 2 * P, h_prev, H, j->W, H, R, 2 * P / VEC, 0);
            for (int r = 0; r < R; r++) {
                const float *restrict pre = gate_acc + (size_t)r * 2 * P, *restrict hp = h_prev + (size_t)r * H;
                float *restrict z = zr + (size_t)r * 2 * H, *restrict reset = z + H;
                float *restrict rh = reset_h + (size_t)r * H;
                for (int c = 0; c < H; c++) z[c] = sigmoid_float(pre[c]);
                for (int c = 0; c < H; c++) reset[c] = sigmoid_float(pre[P + c]);
                for (int c = 0; c < H; c++) rh[c] = reset[c] * hp[c];
            }
            add_panel_product(candidate_acc, P, reset_h, H, j->W_candidate, H, R, P / VEC, 0);
            float *candidates = j->candidates + rows_of(j, t, H), *h = j->hs + rows_of(j, t + 1, H);
            for (int r = 0; r < R; r++) {
                const float *restrict pre = candidate_acc + (size_t)r * P, *restrict hp = h_prev + (size_t)r * H;
                const float *restrict z = zr + (size_t)r * 2 * H;
                float *restrict cand = candidates + (size_t)r * H, *restrict hr = h + (size_t)r * H;
                activate(cand, pre, H, 0);
                for (int c = 0; c < H; c++) hr[c] = cand[c] + z[c] * (hp[c] - cand[c]);
            }
        }
        j->status = 0;
    }
    free(gate_acc);
    free(candidate_acc);
    return NULL;
}

static void *lstm_forward_rows(void *arg)
{
    GatedJob *j = arg;
    const int H = j->hidden, P = j->padded, R = j->rows;
    float *acc = alloc_floats((size_t)R * 4 * P);
    j->status = -1;
    if (acc) {
        memset(acc, 0, sizeof(float) * (size_t)R * 4 * P);
        for (int t = 0; t < j->steps; t++) {
            const float *h_prev = j->hs + rows_of(j, t, H), *c_prev = j->cs + rows_of(j, t, H);
            load_terms(acc, 4 * P, j->terms + rows_of(j, t, 4 * H), 4 * H, R, 4, H, H, P);
            add_panel_product(acc, 4 * P, h_prev, H, j->W, H, R, 4 * P / VEC, 0);
            float *acts = j->gates + rows_of(j, t, 4 * H), *tanh_cs = j->tanh_cs + rows_of(j, t, H);
            float *h = j->hs + rows_of(j, t + 1, H), *c = j->cs + rows_of(j, t + 1, H);
            for (int r = 0; r < R; r++)
                lstm_forward_row(acc + (size_t)r * 4 * P, P, c_prev + (size_t)r * H, acts + (size_t)r * 4 * H, H,
                                 tanh_cs + (size_t)r * H, c + (size_t)r * H, h + (size_t)r * H, H);
        }
        j->status = 0;
    }
    free(acc);
    return NULL;
}

/* acc's rows (P apart) set to what comes in from later: `last`'s rows of this group, or zeros */
static void start_carried(float *acc, const GatedJob *j, const float *last)
{
    const int H = j->hidden, P = j->padded;
    memset(acc, 0, sizeof(float) * (size_t)j->rows * P);
    if (last)
        for (int r = 0; r < j->rows; r++)
            memcpy(acc + (size_t)r * P, last + (size_t)(j->first + r) * H, sizeof(float) * H);
}

/* out's rows of this group (if out is not NULL) from acc's rows (P apart) */
static void store_rows(float *out, const GatedJob *j, const float *acc)
{
    if (out)
        for (int r = 0; r < j->rows; r++)
            memcpy(out + (size_t)(j->first + r) * j->hidden, acc + (size_t)r * j->padded,
                   sizeof(float) * j->hidden);
}

static void *gru_backward_rows(void *arg)
{
    GatedJob *j = arg;
    const int H = j->hidden, P = j->padded, R = j->rows;
    float *dh = alloc_floats((size_t)R * P);         /* dL/dH_t: from later steps, then this one's */
    float *d_reset_h = alloc_floats((size_t)R * P);  /* dL/d(R_t * H_{t-1}) */
    j->status = -1;
    if (dh && d_reset_h) {
        start_carried(dh, j, j->dh_last);
        for (int t = j->steps - 1; t >= 0; t--) {
            const float *h_prev = j->hs + rows_of(j, t, H), *zr = j->gates + rows_of(j, t, 2 * H);
            const float *candidates = j->candidates + rows_of(j, t, H);
            const float *from_output = j->d_outputs ? j->d_outputs + rows_of(j, t, H) : NULL;
            float *d_terms = j->d_terms + rows_of(j, t, 3 * H);
            for (int r = 0; r < R; r++) {
                float *restrict d = dh + (size_t)r * P;
                const float *restrict own = from_output ? from_output + (size_t)r * H : NULL;
                const float *restrict hp = h_prev + (size_t)r * H, *restrict cand = candidates + (size_t)r * H;
                const float *restrict z = zr + (size_t)r * 2 * H;
                float *restrict d_z = d_terms + (size_t)r * 3 * H, *restrict d_cand = d_z + 2 * H;
                if (own) for (int c = 0; c < H; c++) d[c] += own[c];
                /* through H~: dH (1 - Z) (1 - H~^2); through Z: dH (H_{t-1} - H~) Z (1 - Z) */
                for (int c = 0; c < H; c++) d_cand[c] = d[c] * (1.0f - z[c]) * (1.0f - cand[c] * cand[c]);
                for (int c = 0; c < H; c++) d_z[c] = (hp[c] - cand[c]) * d[c] * (z[c] * (1.0f - z[c]));
            }
            memset(d_reset_h, 0, sizeof(float) * (size_t)R * P);
            add_panel_product(d_reset_h, P, d_terms + 2 * H, 3 * H, j->W_candidate, H, R, P / VEC, 0);
            for (int r = 0; r < R; r++) {
                const float *restrict drh = d_reset_h + (size_t)r * P, *restrict hp = h_prev + (size_t)r * H;
                const float *restrict reset = zr + (size_t)r * 2 * H + H;
                float *restrict d_r = d_terms + (size_t)r * 3 * H + H;
                for (int c = 0; c < H; c++) d_r[c] = drh[c] * hp[c] * (reset[c] * (1.0f - reset[c]));
            }
            if (t == 0 && !j->dh0) break;
            /* dL/dH_{t-1}: directly (Z H_{t-1}), through R * H_{t-1}, and through both gates */
            for (int r = 0; r < R; r++) {
                float *restrict d = dh + (size_t)r * P;
                const float *restrict drh = d_reset_h + (size_t)r * P, *restrict z = zr + (size_t)r * 2 * H;
                const float *restrict reset = z + H;
                for (int c = 0; c < H; c++) d[c] = d[c] * z[c] + drh[c] * reset[c];
            }
            add_panel_product(dh, P, d_terms, 3 * H, j->W, 2 * H, R, P / VEC, 0);
        }
        store_rows(j->dh0, j, dh);
        j->status = 0;
    }
    free(dh);
    free(d_reset_h);
    return NULL;
}

static void *lstm_backward_rows(void *arg)
{
    GatedJob *j = arg;
    const int H = j->hidden, P = j->padded, R = j->rows;
    float *dh = alloc_floats((size_t)R * P), *dc = alloc_floats((size_t)R * P);   /* dL/dH_t, dL/dC_t */
    j->status = -1;
    if (dh && dc) {
        start_carried(dh, j, j->dh_last);
        start_carried(dc, j, j->dc_last);
        for (int t = j->steps - 1; t >= 0; t--) {
            const float *c_prev = j->cs + rows_of(j, t, H), *acts = j->gates + rows_of(j, t, 4 * H);
            const float *tanh_cs = j->tanh_cs + rows_of(j, t, H);
            const float *from_output = j->d_outputs ? j->d_outputs + rows_of(j, t, H) : NULL;
            float *d_terms = j->d_terms + rows_of(j, t, 4 * H);
            for (int r = 0; r < R; r++)
                lstm_backward_row(dh + (size_t)r * P, dc + (size_t)r * P,
                                  from_output ? from_output + (size_t)r * H : NULL, acts + (size_t)r * 4 * H, H,
                                  tanh_cs + (size_t)r * H, c_prev + (size_t)r * H, d_terms + (size_t)r * 4 * H,
                                  H);
            if (t == 0 && !j->dh0) break;
            memset(dh, 0, sizeof(float) * (size_t)R * P);
            add_panel_product(dh, P, d_terms, 4 * H, j->W, 4 * H, R, P / VEC, 0);
        }
        store_rows(j->dh0, j, dh);
        store_rows(j->dc0, j, dc);
        j->status = 0;
    }
    free(dh);
    free(dc);
    return NULL;
}

/* Runs one of the loops over groups of rows on at most num_threads threads; 0, or -1 if memory ran
   out. The fewest groups that are a multiple of the threads and have at most MAX_ROWS_PER_GROUP rows
   each; the threads take them one at a time. */
static int run_gated_groups(void *(*loop)(void *), GatedJob whole, int num_threads)
{
    const int threads = row_groups(whole.batch, num_threads, MIN_ROWS_PER_GROUP);
    int groups = threads;
    while ((whole.batch + groups - 1) / groups > MAX_ROWS_PER_GROUP) groups += threads;
    GatedJob *jobs = malloc(sizeof(GatedJob) * (size_t)groups);
    if (!jobs) return -1;
    for (int g = 0; g < groups; g++) {
        jobs[g] = whole;
        jobs[g].rows = group_rows(whole.batch, groups, g, &jobs[g].first);
    }
    scratchrnn_pool_run(loop, jobs, sizeof(GatedJob), groups, threads);
    int status = 0;
    for (int g = 0; g < groups; g++) status = jobs[g].status ? jobs[g].status : status;
    free(jobs);
    return status;
}

/* The GRU's forward loop over a minibatch. terms (steps, batch, 3 hidden): [z | r | h]'s input terms;
   W_h (hidden, 2 hidden) = [W_hz | W_hr]; W_hh (hidden, hidden). hs (steps + 1, batch, hidden) comes
   in with hs[0] the starting state. Writes hs[1:], zr = [Z_t | R_t] (steps, batch, 2 hidden), the
   candidates H~_t and reset_h = R_t * H_{t-1} (steps, batch, hidden): the NumPy cell's cache.
   Returns 0, or -1 if memory ran out (the outputs are then undefined). */
int VARIANT_NAME(scratchrnn_gru_forward)(int steps, int batch, int hidden, int num_threads,
                                         const float *terms, const float *W_h, const float *W_hh,
                                         float *hs, float *zr, float *candidates, float *reset_h)
{
    const int P = round_up(hidden, LANES);
    float *W = packed(W_h, hidden, 2, hidden, P, 0, num_threads);
    float *W_candidate = packed(W_hh, hidden, 1, hidden, P, 0, num_threads);
    int status = -1;
    if (W && W_candidate) {
        GatedJob whole = { .steps = steps, .batch = batch, .hidden = hidden, .padded = P, .terms = terms,
                           .W = W, .W_candidate = W_candidate, .hs = hs, .gates = zr,
                           .candidates = candidates, .reset_h = reset_h };
        status = run_gated_groups(gru_forward_rows, whole, num_threads);
    }
    free(W);
    free(W_candidate);
    return status;
}

/* Backpropagation through the GRU's loop, given its forward pass's hs, zr and candidates and the
   same W_h and W_hh (not transposed). d_outputs (steps, batch, hidden): the loss gradient reaching each
   H_t from its own output, or NULL; dh_last (batch, hidden): what reaches the last state from later
   minibatches, or NULL. Writes d_terms (steps, batch, 3 hidden), the gradient of the input terms, and
   dh0 = dL/dH_0 unless it is NULL. Returns 0, or -1 if memory ran out. */
int VARIANT_NAME(scratchrnn_gru_backward)(int steps, int batch, int hidden, int num_threads,
                                          const float *W_h, const float *W_hh, const float *hs,
                                          const float *zr, const float *candidates, const float *d_outputs,
                                          const float *dh_last, float *d_terms, float *dh0)
{
    const int P = round_up(hidden, LANES);
    float *W_T = packed(W_h, hidden, 2, hidden, P, 1, num_threads);
    float *W_candidate_T = packed(W_hh, hidden, 1, hidden, P, 1, num_threads);
    int status = -1;
    if (W_T && W_candidate_T) {
        GatedJob whole = { .steps = steps, .batch = batch, .hidden = hidden, .padded = P, .W = W_T,
                           .W_candidate = W_candidate_T, .hs = (float *)hs, .gates = (float *)zr,
                           .candidates = (float *)candidates, .d_outputs = d_outputs,
                           .dh_last = dh_last, .d_terms = d_terms, .dh0 = dh0 };
        status = run_gated_groups(gru_backward_rows, whole, num_threads);
    }
    free(W_T);
    free(W_candidate_T);
    return status;
}

/* The LSTM's forward loop over a minibatch. terms (steps, batch, 4 hidden): [i | f | o | c]'s input
   terms; W_h (hidden, 4 hidden) = [W_hi | W_hf | W_ho | W_hc]. hs and cs (steps + 1, batch, hidden)
   come in with the starting state in hs[0] and cs[0]. Writes hs[1:], cs[1:], acts = [I | F | O | C~]
   (steps, batch, 4 hidden) and tanh_cs = tanh(C_t) (steps, batch, hidden): the NumPy cell's cache.
   unit_shares 2 or more: the hidden units shared out in that many shares (lstm_units.c), as many as
   there are vectors of them at most; else the rows. Returns 0, or -1 if memory ran out. */
int VARIANT_NAME(scratchrnn_lstm_forward)(int steps, int batch, int hidden, int num_threads, int unit_shares,
                                          const float *terms, const float *W_h, float *hs, float *cs,
                                          float *acts, float *tanh_cs)
{
    if ((unit_shares = unit_shares_of(hidden, unit_shares)))
        return VARIANT_NAME(lstm_forward_units)(steps, batch, hidden, unit_shares, num_threads, terms, W_h,
                                                hs, cs, acts, tanh_cs);
    const int P = round_up(hidden, LANES);
    float *W = packed(W_h, hidden, 4, hidden, P, 0, num_threads);
    int status = -1;
    if (W) {
        GatedJob whole = { .steps = steps, .batch = batch, .hidden = hidden, .padded = P, .terms = terms,
                           .W = W, .hs = hs, .cs = cs, .gates = acts, .tanh_cs = tanh_cs };
        status = run_gated_groups(lstm_forward_rows, whole, num_threads);
    }
    free(W);
    return status;
}

/* Backpropagation through the LSTM's loop, given its forward pass's cs, acts and tanh_cs and the same
   W_h (not transposed). d_outputs (steps, batch, hidden) or NULL, as for the GRU; dh_last and dc_last
   (batch, hidden): what reaches the last H and C from later minibatches, each or both NULL. Writes
   d_terms (steps, batch, 4 hidden), and dh0, dc0 = dL/dH_0, dL/dC_0 unless dh0 is NULL (then dc0 must
   be NULL too). unit_shares as for the forward loop. Returns 0, or -1 if memory ran out. */
int VARIANT_NAME(scratchrnn_lstm_backward)(int steps, int batch, int hidden, int num_threads, int unit_shares,
                                           const float *W_h, const float *cs, const float *acts,
                                           const float *tanh_cs, const float *d_outputs,
                                           const float *dh_last, const float *dc_last, float *d_terms,
                                           float *dh0, float *dc0)
{
    if ((unit_shares = unit_shares_of(hidden, unit_shares)))
        return VARIANT_NAME(lstm_backward_units)(steps, batch, hidden, unit_shares, num_threads, W_h, cs, acts,
                                                 tanh_cs, d_outputs, dh_last, dc_last, d_terms, dh0, dc0);
    const int P = round_up(hidden, LANES);
    float *W_T = packed(W_h, hidden, 4, hidden, P, 1, num_threads);
    int status = -1;
    if (W_T) {
        GatedJob whole = { .steps = steps, .batch = batch, .hidden = hidden, .padded = P, .W = W_T,
                           .cs = (float *)cs, .gates = (float *)acts, .tanh_cs = (float *)tanh_cs,
                           .d_outputs = d_outputs, .dh_last = dh_last, .dc_last = dc_last,
                           .d_terms = d_terms, .dh0 = dh0, .dc0 = dc0 };
        status = run_gated_groups(lstm_backward_rows, whole, num_threads);
    }
    free(W_T);
    return status;
}
