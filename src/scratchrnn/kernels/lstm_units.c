/* The LSTM's loops (as in gated.c) with the hidden units shared out among the threads instead of
   the minibatch's rows: for minibatches of few rows and recurrent weights too large for one core's
   cache (4 x 512 x 512 floats are 4 MB; a core here has 2 MB of L2).

   Sharing out the rows, every thread multiplies by all of W_h at every step and streams it from the
   shared cache, which one core reads at a fraction of the rate its multiply-adds need. Sharing out the
   hidden units, a thread multiplies only by the columns of W_h of its own units (of every gate), a
   share that stays in its own core's cache from step to step, and computes the gates, C_t and H_t of
   those units for every row. The price is a meeting at every step: the next step's product needs all
   of H_t (forward) or all of the gates' gradients (backward), and so waits until every share of the
   step before is done.

   The steps are run as stages, each cut into the threads' shares. A thread takes its own share of each
   stage first (claimed with a compare-and-swap), then any share no thread has claimed yet, then waits
   until all shares of the stage are done. So a thread that starts late, or a caller whose team runs
   the jobs one after another, loses speed but never waits for work nobody does; when all threads run,
   each keeps its own share and its weights stay in its cache. */
#include "gated.h"

/* The hidden units of one share: first_unit..first_unit+units-1, padded to `padded` (whole vectors) */
typedef struct {
    int first_unit, units, padded;
    float *W;         /* the columns of W_h (forward) or the rows of W_h^T (backward) of these units,
                         packed (gated.h) */
    float *acc;       /* forward: the sums of the four gates, (batch, 4 padded); backward: dL/dH_t of
                         these units, (batch, padded) */
    float *dc;        /* backward: dL/dC_t of these units, (batch, padded) */
    float *h_copy;    /* forward: H_{t-1}, (batch, hidden), mostly written by the other shares' threads:
                         fetched in one go, not a cache line at a time as the product reaches it */
} Share;

typedef struct Loop Loop;
struct Loop {
    int steps, batch, hidden, shares, stages;
    const float *W_h;                     /* as the caller passed it, packed by stage 0 */
    const float *terms;
    float *hs, *cs, *acts, *tanh_cs;
    const float *d_outputs, *dh_last, *dc_last;
    float *d_terms, *dh0, *dc0;
    void (*stage)(const Loop *, int stage, const Share *);
    Share share[LSTM_MAX_SHARES];
    atomic_int *claimed;                  /* (stages, shares): taken */
    scratchrnn_meeting *finished;         /* (stages): shares done */
};

typedef struct { Loop *loop; int own; } Worker;

static void *work_stages(void *arg)
{
    const Worker *w = arg;
    Loop *loop = w->loop;
    for (int s = 0; s < loop->stages; s++) {
        for (int k = 0; k < loop->shares; k++) {
            const int share = (w->own + k) % loop->shares;
            atomic_int *flag = &loop->claimed[(size_t)s * loop->shares + share];
            int free_share = 0;
            if (atomic_load_explicit(flag, memory_order_relaxed)
                || !atomic_compare_exchange_strong_explicit(flag, &free_share, 1, memory_order_acq_rel,
                                                            memory_order_relaxed))
                continue;
            loop->stage(loop, s, &loop->share[share]);
            scratchrnn_arrive(&loop->finished[s], 1);
        }
        /* every share is claimed, and each is being computed: wait for them */
        scratchrnn_wait_for(&loop->finished[s], loop->shares);
    }
    return NULL;
}

/* Packs each share's weights (stage 0: the thread that will use them packs them, into its own
   cache) and runs the loop's stages on up to `threads` threads. 0, or -1 if memory ran out. */
static int run_shares(Loop *loop, int transposed, int threads)
{
    const int H = loop->hidden, vectors = (H + LANES - 1) / LANES;
    int status = -1;
    loop->claimed = calloc((size_t)loop->stages * loop->shares, sizeof(atomic_int));
    loop->finished = calloc((size_t)loop->stages, sizeof(scratchrnn_meeting));
    Worker *workers = malloc(sizeof(Worker) * (size_t)loop->shares);
    int ready = loop->claimed && loop->finished && workers;
    for (int k = 0; k < loop->shares; k++) {
        Share *share = &loop->share[k];
        int first;
        const int count = group_rows(vectors, loop->shares, k, &first);
        share->first_unit = first * LANES;
        share->padded = count * LANES;
        share->units = H - share->first_unit < share->padded ? H - share->first_unit : share->padded;
        const size_t rows = (size_t)loop->batch * share->padded;
        share->W = alloc_floats(packed_floats(H, 4, H, share->padded, transposed));
        share->acc = alloc_floats(transposed ? rows : 4 * rows);
        share->dc = transposed ? alloc_floats(rows) : NULL;
        share->h_copy = transposed ? NULL : alloc_floats((size_t)loop->batch * H);
        ready = ready && share->W && share->acc && (transposed ? share->dc != NULL : share->h_copy != NULL);
        if (share->acc) memset(share->acc, 0, sizeof(float) * (transposed ? rows : 4 * rows));  /* padding: 0 */
        if (workers) workers[k] = (Worker){ .loop = loop, .own = k };
    }
    if (ready) {
        scratchrnn_pool_run(work_stages, workers, sizeof(Worker), loop->shares, threads);
        status = 0;
    }
    for (int k = 0; k < loop->shares; k++) {
        free(loop->share[k].W);
        free(loop->share[k].acc);
        free(loop->share[k].dc);
        free(loop->share[k].h_copy);
    }
    free(workers);
    free((void *)loop->claimed);
    free((void *)loop->finished);
    return status;
}

static void pack_share(const Loop *loop, const Share *share, int transposed)
{
    const int H = loop->hidden, width = transposed ? share->padded : 4 * share->padded;
    PackJob job = { .W = loop->W_h, .out = share->W, .rows = H, .blocks = 4, .cols = H,
                    .padded = share->padded, .transposed = transposed, .first_unit = share->first_unit,
                    .units = share->units, .first = 0, .count = (width + PANEL - 1) / PANEL };
    pack_panels(&job);
}

/* Stage 0 packs; stage t + 1 is step t: the gates' sums of this share's units from H_{t-1}, then
   their gates, C_t and H_t for every row. */
static void forward_stage(const Loop *loop, int stage, const Share *share)
{
    if (stage == 0) {
        pack_share(loop, share, 0);
        return;
    }
    const int t = stage - 1, H = loop->hidden, R = loop->batch, P = share->padded, u = share->first_unit;
    const size_t at = (size_t)t * R;
    const float *c_prev = loop->cs + at * H;
    memcpy(share->h_copy, loop->hs + at * H, sizeof(float) * R * H);
    load_terms(share->acc, 4 * P, loop->terms + at * 4 * H + u, 4 * H, R, 4, share->units, H, P);
    add_panel_product(share->acc, 4 * P, share->h_copy, H, share->W, H, R, 4 * P / VEC, t & 1);
    float *acts = loop->acts + at * 4 * H + u, *tanh_cs = loop->tanh_cs + at * H + u;
    float *h = loop->hs + (at + R) * H + u, *c = loop->cs + (at + R) * H + u;
    for (int r = 0; r < R; r++)
        lstm_forward_row(share->acc + (size_t)r * 4 * P, P, c_prev + (size_t)r * H + u, acts + (size_t)r * 4 * H,
                         H, tanh_cs + (size_t)r * H, c + (size_t)r * H, h + (size_t)r * H, share->units);
}

/* Stage 0 packs and takes what comes in from later minibatches; stage s > 0 is step t = steps - s:
   (but for the last step) this share's dL/dH_t from all of step t + 1's gate gradients, then the
   gradients of step t's gates for its units. A last stage (steps + 1) gives dL/dH_0 and dL/dC_0. */
static void backward_stage(const Loop *loop, int stage, const Share *share)
{
    const int H = loop->hidden, R = loop->batch, P = share->padded, u = share->first_unit, n = share->units;
    if (stage == 0) {
        pack_share(loop, share, 1);
        for (int r = 0; r < R; r++) {
            float *dh = share->acc + (size_t)r * P, *dc = share->dc + (size_t)r * P;
            memset(dh, 0, sizeof(float) * P);
            memset(dc, 0, sizeof(float) * P);
            if (loop->dh_last) memcpy(dh, loop->dh_last + (size_t)r * H + u, sizeof(float) * n);
            if (loop->dc_last) memcpy(dc, loop->dc_last + (size_t)r * H + u, sizeof(float) * n);
        }
        return;
    }
    const int t = loop->steps - stage;
    if (t + 1 < loop->steps) {
        memset(share->acc, 0, sizeof(float) * (size_t)R * P);
        add_panel_product(share->acc, P, loop->d_terms + (size_t)(t + 1) * R * 4 * H, 4 * H, share->W, 4 * H, R,
                          P / VEC, t & 1);
    }
    if (t < 0) {                                   /* the last stage: what reaches the starting state */
        for (int r = 0; r < R; r++) {
            memcpy(loop->dh0 + (size_t)r * H + u, share->acc + (size_t)r * P, sizeof(float) * n);
            memcpy(loop->dc0 + (size_t)r * H + u, share->dc + (size_t)r * P, sizeof(float) * n);
        }
        return;
    }
    const size_t at = (size_t)t * R;
    for (int r = 0; r < R; r++)
        lstm_backward_row(share->acc + (size_t)r * P, share->dc + (size_t)r * P,
                          loop->d_outputs ? loop->d_outputs + (at + r) * H + u : NULL,
                          loop->acts + (at + r) * 4 * H + u, H, loop->tanh_cs + (at + r) * H + u,
                          loop->cs + (at + r) * H + u, loop->d_terms + (at + r) * 4 * H + u, n);
}

/* The LSTM's forward loop (gated.c's scratchrnn_lstm_forward) with its hidden units in `shares`
   shares (2 or more, at most LSTM_MAX_SHARES and one per vector of units) on up to `threads` threads. */
int VARIANT_NAME(lstm_forward_units)(int steps, int batch, int hidden, int shares, int threads,
                                     const float *terms, const float *W_h, float *hs, float *cs, float *acts,
                                     float *tanh_cs)
{
    Loop loop = { .steps = steps, .batch = batch, .hidden = hidden, .shares = shares, .stages = steps + 1,
                  .W_h = W_h, .terms = terms, .hs = hs, .cs = cs, .acts = acts, .tanh_cs = tanh_cs,
                  .stage = forward_stage };
    return run_shares(&loop, 0, threads);
}

/* Backpropagation through it (gated.c's scratchrnn_lstm_backward), shared out the same way. */
int VARIANT_NAME(lstm_backward_units)(int steps, int batch, int hidden, int shares, int threads,
                                      const float *W_h, const float *cs, const float *acts, const float *tanh_cs,
                                      const float *d_outputs, const float *dh_last, const float *dc_last,
                                      float *d_terms, float *dh0, float *dc0)
{
    Loop loop = { .steps = steps, .batch = batch, .hidden = hidden, .shares = shares,
                  .stages = steps + 1 + (dh0 != NULL), .W_h = W_h, .cs = (float *)cs, .acts = (float *)acts,
                  .tanh_cs = (float *)tanh_cs, .d_outputs = d_outputs, .dh_last = dh_last, .dc_last = dc_last,
                  .d_terms = d_terms, .dh0 = dh0, .dc0 = dc0, .stage = backward_stage };
    return run_shares(&loop, 1, threads);
}
