/* The step-by-step part of training the scratch RNN, compiled: the recurrence of the forward pass and
   that of backpropagation through time, for float32 on the CPU.

   Everything else in a training step is a few large matrix products over all time steps at once,
   which the BLAS library already computes near the processor's peak. These two loops are not: each
   step is a (batch x hidden) @ (hidden x hidden) product that must wait for the one before, small
   enough that a multithreaded BLAS call spends a good part of it starting and joining its threads,
   with Python and an elementwise pass around every one. Here the rows of the minibatch, which never
   look at each other, are shared out among the threads once for the whole sequence: each walks all
   the steps of its rows alone, applying the activation as it goes (see row_groups in kernels.h), on
   the library's own threads (pool.c) or the framework's. W_hh (1 MB at the chapter's size) is first
   packed in panels (panels.h), which every thread then streams from its own core's cache in order,
   and the backward loop packs W_hh^T straight from W_hh, so no caller transposes it.

   Same mathematics as the NumPy backend's _run and _backprop_recurrence:
     forward   h_t = act(z_t),  z_t = (x_t W_xh + b_h) + h_{t-1} W_hh
     backward  dL/dz_t = (dL/dh_t from the output + dL/dz_{t+1} W_hh^T) * act'(z_t)
   with act' written in terms of h_t: 1 - h_t^2 for tanh, [h_t > 0] for ReLU. */
#include "panels.h"

#define MIN_ROWS_PER_GROUP 8
#define MAX_ROWS_PER_GROUP 16

typedef struct {
    int steps, batch, hidden, relu, first, rows;
    const float *W;                /* packed panels of W_hh (forward) or of W_hh^T (backward) */
    float *hs;                     /* (steps + 1, batch, hidden) */
    const float *dhs, *dh_last;    /* backward: (steps, batch, hidden) and (batch, hidden), or NULL */
    float *dz, *dh0;               /* backward: (steps, batch, hidden) and (batch, hidden) or NULL */
    int status;
} Job;

/* Where this group's rows of step t begin in a (steps, batch, hidden) array */
static size_t rows_at(const Job *j, int t)
{
    return ((size_t)t * j->batch + j->first) * j->hidden;
}

static void *forward_rows(void *arg)
{
    Job *j = arg;
    const int H = j->hidden, P = round_up(H, LANES), R = j->rows;
    float *acc = alloc_floats((size_t)R * P);
    j->status = -1;
    if (acc) {
        memset(acc, 0, sizeof(float) * (size_t)R * P);
        for (int t = 0; t < j->steps; t++) {
            float *h = j->hs + rows_at(j, t + 1);          /* comes in holding x_t W_xh + b_h */
            for (int r = 0; r < R; r++) memcpy(acc + (size_t)r * P, h + (size_t)r * H, sizeof(float) * H);
            add_panel_product(acc, P, j->hs + rows_at(j, t), H, j->W, H, R, P / VEC, t & 1);
            for (int r = 0; r < R; r++) activate(h + (size_t)r * H, acc + (size_t)r * P, H, j->relu);
        }
        j->status = 0;
    }
    free(acc);
    return NULL;
}

static void *backward_rows(void *arg)
{
    Job *j = arg;
    const int H = j->hidden, P = round_up(H, LANES), R = j->rows;
    float *carried = alloc_floats((size_t)R * P);   /* dL/dz_{t+1} W_hh^T: what reaches h_t */
    j->status = -1;
    if (carried) {
        memset(carried, 0, sizeof(float) * (size_t)R * P);
        if (j->dh_last)
            for (int r = 0; r < R; r++)
                memcpy(carried + (size_t)r * P, j->dh_last + (size_t)(j->first + r) * H, sizeof(float) * H);
        for (int t = j->steps - 1; t >= 0; t--) {
            const float *h = j->hs + rows_at(j, t + 1);
            const float *from_output = j->dhs ? j->dhs + rows_at(j, t) : NULL;
            float *dz = j->dz + rows_at(j, t);
            for (int r = 0; r < R; r++) {
                const float *restrict later = carried + (size_t)r * P, *restrict hr = h + (size_t)r * H;
                const float *restrict own = from_output ? from_output + (size_t)r * H : NULL;
                float *restrict d = dz + (size_t)r * H;
                for (int c = 0; c < H; c++) d[c] = own ? later[c] + own[c] : later[c];
                if (j->relu) for (int c = 0; c < H; c++) d[c] = hr[c] > 0.0f ? d[c] : 0.0f;
                else for (int c = 0; c < H; c++) d[c] *= 1.0f - hr[c] * hr[c];
            }
            if (t == 0 && !j->dh0) break;
            memset(carried, 0, sizeof(float) * (size_t)R * P);
            add_panel_product(carried, P, dz, H, j->W, H, R, P / VEC, t & 1);
        }
        if (j->dh0)
            for (int r = 0; r < R; r++)
                memcpy(j->dh0 + (size_t)(j->first + r) * H, carried + (size_t)r * P, sizeof(float) * H);
        j->status = 0;
    }
    free(carried);
    return NULL;
}

/* Runs one of the two loops over groups of rows, one thread each, on W_hh packed (its transpose if
   `transposed`); 0, or -1 if memory ran out. */
static int run_in_groups(void *(*loop)(void *), Job whole, const float *W_hh, int transposed, int num_threads)
{
    /* two groups per thread, of 8 to 16 rows, that the threads take one at a time: a thread that
       gets its core late (beside a framework's or BLAS library's threads, which spin for a while
       after each of their operations) takes fewer, instead of the others waiting for it */
    const int threads = row_groups(whole.batch, num_threads, MIN_ROWS_PER_GROUP);
    int rows_per_group = whole.batch / (2 * threads);
    rows_per_group = rows_per_group < MIN_ROWS_PER_GROUP ? MIN_ROWS_PER_GROUP
                     : rows_per_group > MAX_ROWS_PER_GROUP ? MAX_ROWS_PER_GROUP : rows_per_group;
    const int groups = threads == 1 ? 1 : (whole.batch / rows_per_group > threads
                                           ? whole.batch / rows_per_group : threads);
    Job *jobs = malloc(sizeof(Job) * (size_t)groups);
    float *panels = jobs ? packed(W_hh, whole.hidden, 1, whole.hidden, round_up(whole.hidden, LANES),
                                  transposed, threads) : NULL;
    if (!panels) {
        free(jobs);
        return -1;
    }
    whole.W = panels;
    for (int g = 0; g < groups; g++) {
        jobs[g] = whole;
        jobs[g].rows = group_rows(whole.batch, groups, g, &jobs[g].first);
    }
    scratchrnn_pool_run(loop, jobs, sizeof(Job), groups, threads);
    int status = 0;
    for (int g = 0; g < groups; g++) status = jobs[g].status ? jobs[g].status : status;
    free(panels);
    free(jobs);
    return status;
}

/* The forward pass's recurrence over a minibatch. hs (steps + 1, batch, hidden) comes in with hs[0]
   the state before the batch and hs[t + 1] holding x_t W_xh + b_h; it goes out with hs[t + 1] = h_t.
   Returns 0, or -1 if memory ran out (hs is then undefined). */
int VARIANT_NAME(scratchrnn_recurrence_forward)(int steps, int batch, int hidden, int num_threads, int relu,
                                  const float *W_hh, float *hs)
{
    Job whole = { .steps = steps, .batch = batch, .hidden = hidden, .relu = relu, .hs = hs };
    return run_in_groups(forward_rows, whole, W_hh, 0, num_threads);
}

/* Backpropagation through the recurrence of one minibatch, given the hs of its forward pass and the
   W_hh it ran with (not transposed). dhs (steps, batch, hidden): the loss gradient reaching each h_t
   from its own output, or NULL (an earlier batch, reached only through its last state); dh_last
   (batch, hidden): the gradient reaching the last state from later batches, or NULL. Writes dz
   (steps, batch, hidden) = dL/dz_t, and dh0 = dL/dh_0 unless it is NULL. Returns 0, or -1 if memory
   ran out (outputs undefined). */
int VARIANT_NAME(scratchrnn_recurrence_backward)(int steps, int batch, int hidden, int num_threads, int relu,
                                   const float *W_hh, const float *hs, const float *dhs,
                                   const float *dh_last, float *dz, float *dh0)
{
    Job whole = { .steps = steps, .batch = batch, .hidden = hidden, .relu = relu, .hs = (float *)hs,
                  .dhs = dhs, .dh_last = dh_last, .dz = dz, .dh0 = dh0 };
    return run_in_groups(backward_rows, whole, W_hh, 1, num_threads);
}
