/* What the gated cells' loops share (gated.c: both cells, the rows shared out among threads;
   lstm_units.c: the LSTM with its hidden units shared out instead): the gates' input terms loaded
   beside the products (panels.h), and the LSTM's arithmetic on one row of one step. */
#ifndef SCRATCHRNN_GATED_H
#define SCRATCHRNN_GATED_H

#include "panels.h"

/* The logistic function 1 / (1 + e^-x), with one exponential and one division: q = 1 / (e^|x| + 1) is
   sigmoid(-|x|), and sigmoid(x) = 1 - q for x >= 0 (no cancellation there: the result is at least
   1/2). e^|x| may overflow to infinity, which makes q 0; NaN stays NaN. The cells compute
   0.5 (1 + tanh(x / 2)), the same function to float32 rounding. */
static inline float sigmoid_float(float x)
{
    const float q = 1.0f / (exp_nonnegative(fabsf(x)) + 1.0f);
    return select_float(x >= 0.0f, 1.0f - q, q);
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
