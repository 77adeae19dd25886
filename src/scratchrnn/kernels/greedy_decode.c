/* Greedy generation for the scratch RNN, compiled: reading the prompt and the loop of
   numpy_backend.decode_loop, without Python.

   One generated character costs one product of the state (1 x hidden) with [W_hh | W_hq]. At the
   chapter's size that is 1.1 MB of float32 weights, read once per character: for one stream the loop
   is bound by how fast the cores can stream those weights from their caches, not by arithmetic. So the
   work is split by columns of W_hh: each thread keeps its own slice of the weights (packed, in its own
   core's cache) and computes its slice of the new state and its share of the logits; the threads meet
   once per character, to add up the logits and pick the same token. With many streams the products
   are real matrix products, computed a block of registers at a time over W_hh packed in panels
   (panels.h), and each thread takes a group of streams of its own instead (scratchrnn_greedy_decode).

   Same mathematics as decode_loop: h_t = act(W_xh[x_t] + b_h + h_{t-1} W_hh), logits = h_t W_hq + b_q,
   x_{t+1} = argmax(logits), the first maximum on ties as np.argmax. Sums run in another order than
   BLAS does, so the numbers agree to float32 rounding, not bit for bit.

   C11 (atomics), pthreads and the vector types of GCC and Clang, written so that the compiler
   vectorises the inner loops for whatever the processor has; called from Python through module.c. Measurements behind the
   choices: benchmarks/README.md, "Generation: the compiled decoder". */
#include <stdatomic.h>

#include "panels.h"

#define MIN_ROWS_PER_GROUP 8   /* rows a thread needs to decode them on its own (scratchrnn_greedy_decode) */
#define CHUNK_ROWS 16          /* rows of the groups the threads take in turn, when there are many */
#define WARM_UP_STEPS 32   /* waits before this step are the threads starting, not contention */
#define MIN_LOSS_NS 1000000LL  /* waiting that calls for computing alone: more than this, and more than
                                  the work that would add (one short delay of the others does not) */

/* One slice of the columns of the state: its weights, packed, and its accumulators. Thread t computes
   slice t; a thread alone (see run_worker) computes them all. */
typedef struct {
    int first, width, padded;   /* columns first..first+width-1; padded: width rounded up to LANES */
    float *W_hh;                /* W_hh[:, slice], (hidden, padded): in panels, or rows for one row */
    float *W_hq;                /* (padded, vocab_padded): W_hq[slice, :] */
    float *acc;                 /* (batch, padded) */
    /* the scratch space of the thread with the slice's number: its copy of the state and of the
       logits, and the tokens it picked */
    float *h_copy, *logits;
    int *token;
} Slice;

typedef struct {
    _Alignas(64) int batch;   /* a cache line of its own for the fields read every step, too */
    int hidden, vocab, vocab_padded, num_forced, num_tokens, num_steps, num_threads, relu;
    const int64_t *forced;    /* (batch, num_forced): the tokens of the first steps (a prompt to read) */
    const float *input_rows;  /* (vocab, hidden): W_xh[v] + b_h, the pre-activation term of token v */
    const float *W_step;      /* (hidden, hidden + vocab): [W_hh | W_hq] */
    const float *b_q;
    float *logits;            /* (batch, vocab): in, the logits to pick the first token from; out, the last */
    float *state[2];          /* (batch, hidden) each; the state of step s is state[s & 1] */
    float *shares[2];         /* (slices, batch, vocab_padded): each slice's share of the logits */
    int64_t *tokens;          /* (batch, num_tokens) */
    Slice *slices;
    /* on cache lines of their own: the threads bump `arrived` every step, and must not thereby evict
       the read-only fields above from each other's caches */
    _Alignas(64) scratchrnn_meeting arrived;
    char padding[64 - sizeof(scratchrnn_meeting)];
    _Alignas(64) atomic_llong alone;   /* the steps thread 0 computes alone: see alone_at */
} Shared;

typedef struct { Shared *shared; int thread; } Worker;

/* The threads meet here once per step (pool.h): returns how long this one waited past the first
   looks, 0 when the others came in time. */
static long long wait_for_all(Shared *s, int target) { return scratchrnn_wait_for(&s->arrived, target); }

static void arrive(Shared *s) { scratchrnn_arrive(&s->arrived, 1); }

/* The logits of every row (into `logits`, this thread's copy) and the first maximum of each. At step 0
   they are those passed in; later, b_q plus every slice's share from the step before. */
static void pick_tokens(const Shared *s, int step, const float *shares, float *logits, int *token)
{
    const int V = s->vocab, VP = s->vocab_padded;
    for (int b = 0; b < s->batch; b++) {
        float *restrict row = logits + (size_t)b * V;
        if (step > 0) {
            for (int v = 0; v < V; v++) row[v] = s->b_q[v];
            for (int t = 0; t < s->num_threads; t++) {
                const float *restrict share = shares + ((size_t)t * s->batch + b) * VP;
                for (int v = 0; v < V; v++) row[v] += share[v];
            }
        }
        /* as np.argmax: the first NaN where there is one (np.maximum propagates NaN, and a NaN
           equals nothing, so the loops below would pass it by) */
        int best = 0;
        while (best < V && row[best] == row[best]) best++;
        if (best == V) {
            /* no NaN: the largest value first, then where it first occurs, two loops without a
               branch on the data */
            float largest = row[0];
            for (int v = 1; v < V; v++) largest = row[v] > largest ? row[v] : largest;
            best = 0;
            while (best < V - 1 && !(row[best] == largest)) best++;
        }
        token[b] = best;
    }
}

/* Whether the slices hold W_hh in panels (panels.h): with several rows, whose products read it a panel
   at a time. A single row's product takes more vectors of columns at once than a panel holds
   (SINGLE_ROW_VECS): its W_hh is laid out in blocks of that many, each block's rows one after the
   other, so that the product streams the weights in order, as it does a panel. */
static int in_panels(const Shared *s) { return s->batch > 1; }
#define SINGLE_ROW_BLOCK (SINGLE_ROW_VECS * VEC)

/* Packs slice t's weights; run by the thread that computes it, so that they land in its core's cache. */
static void pack_slice(const Shared *s, Slice *c)
{
    const int H = s->hidden, V = s->vocab, VP = s->vocab_padded, stride = H + V;
    memset(c->W_hq, 0, sizeof(float) * (size_t)c->padded * VP);
    if (in_panels(s)) {
        /* the slice's columns of W_step's first H, as one block of `stride` columns; the padding
           columns written as zeros */
        PackJob job = { .W = s->W_step, .out = c->W_hh, .rows = H, .blocks = 1, .cols = stride,
                        .padded = c->padded, .first_unit = c->first, .units = c->width,
                        .first = 0, .count = (c->padded + PANEL - 1) / PANEL };
        pack_panels(&job);
    } else {
        for (int first = 0; first < c->padded; first += SINGLE_ROW_BLOCK) {
            const int columns = c->padded - first < SINGLE_ROW_BLOCK ? c->padded - first : SINGLE_ROW_BLOCK;
            const int real = c->width - first < columns ? (c->width - first > 0 ? c->width - first : 0) : columns;
            float *out = c->W_hh + (size_t)H * first;
            for (int i = 0; i < H; i++, out += columns) {
                memcpy(out, s->W_step + (size_t)i * stride + c->first + first, sizeof(float) * real);
                memset(out + real, 0, sizeof(float) * (columns - real));
            }
        }
    }
    for (int j = 0; j < c->width; j++)
        memcpy(c->W_hq + (size_t)j * VP, s->W_step + (size_t)(c->first + j) * stride + H, sizeof(float) * V);
}

/* One step for one slice: h_next[:, slice] = act(W_xh[token, slice] + b_h[slice] + h W_hh[:, slice]),
   and the slice's share of the logits of h_next, h_next[:, slice] W_hq[slice, :]. Every other step
   takes the panels of W_hh in reverse order (add_panel_product). */
static void advance_slice(const Shared *s, const Slice *c, int index, int step, const float *h,
                          const int *token, float *h_next, float *shares)
{
    const int B = s->batch, H = s->hidden, VP = s->vocab_padded, wp = c->padded;
    for (int b = 0; b < B; b++) {
        float *restrict a = c->acc + (size_t)b * wp;
        memcpy(a, s->input_rows + (size_t)token[b] * H + c->first, sizeof(float) * c->width);
        for (int j = c->width; j < wp; j++) a[j] = 0.0f;
    }
    if (in_panels(s))
        add_panel_product(c->acc, wp, h, H, c->W_hh, H, B, wp / VEC, step & 1);
    else
        for (int first = 0; first < wp; first += SINGLE_ROW_BLOCK) {
            const int columns = wp - first < SINGLE_ROW_BLOCK ? wp - first : SINGLE_ROW_BLOCK;
            add_product(c->acc + first, wp, h, H, c->W_hh + (size_t)H * first, columns, H, B, columns / VEC);
        }
    for (int b = 0; b < B; b++) {
        float *a = c->acc + (size_t)b * wp;
        activate(a, a, wp, s->relu);                                 /* padding stays 0 */
        memcpy(h_next + (size_t)b * H + c->first, a, sizeof(float) * c->width);
    }
    float *share = shares + (size_t)index * B * VP;
    memset(share, 0, sizeof(float) * (size_t)B * VP);
    add_product(share, VP, c->acc, wp, c->W_hq, VP, wp, B, VP / VEC);
}

/* Whether thread 0 works alone at this step: the window is (first << 32) | end, steps first..end-1. */
static int alone_at(const Shared *s, int step)
{
    long long window = atomic_load_explicit(&s->alone, memory_order_acquire);
    return step >= (int)(window >> 32) && step < (int)(window & 0xffffffff);
}

static void set_alone(Shared *s, int first, int end)
{
    atomic_store_explicit(&s->alone, ((long long)first << 32) | (unsigned)end, memory_order_release);
}

/* One thread's part of the whole generation: at every step it advances its slice, then meets the
   others, and all pick the same tokens from the same sums, so no one has to hand them out. The state
   and the shares alternate between two buffers, so that a thread running ahead never overwrites what
   a slower one still reads.
   Meeting every few microseconds only pays while every thread has a core of its own. When something
   else takes one (another program; a BLAS library's threads, which spin for a while after each call;
   in a virtual machine, the host), a thread waits for a descheduled one, for milliseconds, step after
   step. So thread 0 keeps count, over up to 1024 steps, of the time it spends on its own slice and of
   the time it waits past the first spins; once the waiting is the larger (and over a millisecond),
   computing every slice itself would have been faster, and it does that for a while (256 steps, twice
   as long each further time), beginning two steps on; the others wait, then all meet again. Weighing
   the waits against the work, not against a fixed time, keeps a 100 us delay from sending 64 streams,
   whose step is about as long, to one core. The first steps do not count: a core that was idle takes a
   while to wake, and that passes. */
static void *run_worker(void *arg)
{
    Worker *w = arg;
    Shared *s = w->shared;
    const int B = s->batch, H = s->hidden, V = s->vocab, T = s->num_threads;
    Slice *own = &s->slices[w->thread];
    float *h_copy = own->h_copy, *logits = own->logits;
    int *token = own->token, counted_from = 0, alone_steps = 256;
    long long worked = 0, waited = 0;     /* thread 0's ns on its slice and waiting, since counted_from */

    pack_slice(s, own);
    memcpy(logits, s->logits, sizeof(float) * (size_t)B * V);
    pick_tokens(s, 0, NULL, logits, token);
    arrive(s);
    wait_for_all(s, T);

    for (int step = 0; step < s->num_steps; step++) {
        const int parity = step & 1, alone = alone_at(s, step);
        if (alone && w->thread != 0) {
            /* sit out the window: thread 0 arrives for everyone at each of its steps */
            const int end = (int)(atomic_load(&s->alone) & 0xffffffff);
            wait_for_all(s, T * (end + 1));
            pick_tokens(s, end, s->shares[(end - 1) & 1], logits, token);
            step = end - 1;
            continue;
        }
        const int generated = step - s->num_forced;
        if (generated < 0)
            for (int b = 0; b < B; b++) token[b] = (int)s->forced[(size_t)b * s->num_forced + step];
        else if (w->thread == 0)
            for (int b = 0; b < B; b++) s->tokens[(size_t)b * s->num_tokens + generated] = token[b];
        /* h_t, mostly written by the other threads, fetched in one go rather than a cache line at a
           time as the product reaches it (7.0 -> 6.2 us a step when it was written) */
        const long long started = w->thread == 0 && !alone ? scratchrnn_nanoseconds() : 0;
        memcpy(h_copy, s->state[parity], sizeof(float) * (size_t)B * H);
        float *h_next = s->state[parity ^ 1], *shares = s->shares[parity];
        for (int t = alone ? 0 : w->thread; t < (alone ? T : w->thread + 1); t++)
            advance_slice(s, &s->slices[t], t, step, h_copy, token, h_next, shares);
        if (alone) {
            scratchrnn_arrive(&s->arrived, T);
        } else {
            if (w->thread == 0) worked += scratchrnn_nanoseconds() - started;
            arrive(s);
            const long long wait = wait_for_all(s, T * (step + 2));
            if (w->thread == 0 && step >= WARM_UP_STEPS) {
                if (step - counted_from >= 1024) { counted_from = step; worked = waited = 0; }
                waited += wait;
                /* computing every slice alone costs about `worked` more; waiting has cost more */
                if (waited > worked && waited > MIN_LOSS_NS) {
                    /* the others read it at the top of step + 2 at the latest, after meeting */
                    const int end = step + 2 + alone_steps;
                    set_alone(s, step + 2, end < s->num_steps ? end : s->num_steps);
                    counted_from = step + 2 + alone_steps;
                    worked = waited = 0;
                    alone_steps = alone_steps < (1 << 20) ? 2 * alone_steps : alone_steps;
                }
            }
        }
        pick_tokens(s, step + 1, shares, logits, token);
    }
    if (w->thread == 0)
        memcpy(s->logits, logits, sizeof(float) * (size_t)B * V);
    return NULL;
}

/* One call's arguments (see scratchrnn_greedy_decode), or those of a group of its rows. */
typedef struct {
    int batch, hidden, vocab, num_forced, num_tokens, num_threads, relu;
    const int64_t *forced;
    const float *input_rows, *W_step, *b_q;
    float *state, *logits;
    int64_t *tokens;
    int status;
} Request;

/* All rows together, the threads splitting the columns and meeting at every step (run_worker). */
static int decode_columns(int batch, int hidden, int vocab, int num_forced, int num_tokens,
                          int num_threads, int relu, const int64_t *forced,
                          const float *input_rows, const float *W_step, const float *b_q,
                          float *state, float *logits, int64_t *tokens)
{
    if (num_threads < 1) num_threads = 1;
    Shared s = { .batch = batch, .hidden = hidden, .vocab = vocab, .num_forced = num_forced,
                 .num_tokens = num_tokens, .num_steps = num_forced + num_tokens, .forced = forced,
                 .relu = relu, .input_rows = input_rows, .W_step = W_step, .b_q = b_q,
                 .logits = logits, .tokens = tokens, .vocab_padded = round_up(vocab, LANES) };
    const int block = round_up((hidden + num_threads - 1) / num_threads, LANES);
    s.num_threads = (hidden + block - 1) / block;        /* every thread gets some columns */
    atomic_init(&s.alone, 0);
    const size_t state_size = sizeof(float) * (size_t)batch * hidden;
    const size_t shares_size = sizeof(float) * (size_t)s.num_threads * batch * s.vocab_padded;
    s.state[0] = malloc(state_size);
    s.state[1] = malloc(state_size);
    s.shares[0] = malloc(shares_size);
    s.shares[1] = malloc(shares_size);
    s.slices = calloc((size_t)s.num_threads, sizeof(Slice));
    Worker *workers = malloc(sizeof(Worker) * (size_t)s.num_threads);
    pthread_t *threads = malloc(sizeof(pthread_t) * (size_t)s.num_threads);
    int ready = s.state[0] && s.state[1] && s.shares[0] && s.shares[1] && s.slices && workers && threads;
    for (int t = 0; ready && t < s.num_threads; t++) {
        Slice *c = &s.slices[t];
        c->first = t * block;
        c->width = c->first + block <= hidden ? block : hidden - c->first;
        c->padded = round_up(c->width, LANES);
        c->W_hh = alloc_floats((size_t)hidden * c->padded);
        c->W_hq = alloc_floats((size_t)c->padded * s.vocab_padded);
        c->acc = alloc_floats((size_t)batch * c->padded);
        c->h_copy = alloc_floats((size_t)batch * hidden);
        c->logits = malloc(sizeof(float) * (size_t)batch * vocab);
        c->token = malloc(sizeof(int) * (size_t)batch);
        ready = c->W_hh && c->W_hq && c->acc && c->h_copy && c->logits && c->token;
        workers[t] = (Worker){ &s, t };
    }
    int status = -1;
    if (ready) {
        memcpy(s.state[0], state, state_size);
        int started = 1;
        for (; started < s.num_threads; started++)
            if (pthread_create(&threads[started], NULL, run_worker, &workers[started]) != 0) break;
        if (started < s.num_threads) {
            /* those that started wait for the rest at their first meeting: thread 0 works alone
               throughout, and arrives there for itself and for the missing ones */
            for (int t = started; t < s.num_threads; t++) pack_slice(&s, &s.slices[t]);
            set_alone(&s, 0, s.num_steps);
            scratchrnn_arrive(&s.arrived, s.num_threads - started);
        }
        scratchrnn_note_threads(started);
        run_worker(&workers[0]);
        for (int t = 1; t < started; t++) pthread_join(threads[t], NULL);
        memcpy(state, s.state[s.num_steps & 1], state_size);
        status = 0;
    }
    for (int t = 0; s.slices && t < s.num_threads; t++) {
        Slice *c = &s.slices[t];
        free(c->W_hh); free(c->W_hq); free(c->acc); free(c->h_copy); free(c->logits); free(c->token);
    }
    free(s.slices); free(s.state[0]); free(s.state[1]); free(s.shares[0]); free(s.shares[1]);
    free(workers); free(threads);
    return status;
}

static void *decode_request(void *arg)
{
    Request *r = arg;
    r->status = decode_columns(r->batch, r->hidden, r->vocab, r->num_forced, r->num_tokens, 1, r->relu,
                               r->forced, r->input_rows, r->W_step, r->b_q, r->state, r->logits,
                               r->tokens);
    return NULL;
}

/* Feed num_forced given tokens to each of `batch` rows (read a prompt), then generate num_tokens tokens
   for each and feed every one of them back, so that a later call continues where this one stopped.
   `state` (batch, hidden) and `logits` (batch, vocab) come in as the state and its logits before the
   first step (the logits pick the first token when nothing is forced), and go out as those after the
   last step. Returns 0, or -1 if memory ran out (the rows' state, logits and tokens are then
   undefined).
   Rows never look at each other, so with enough of them each thread takes a group of rows and
   decodes it alone, with all the weights in its own core's cache (1.1 MB at the chapter's size): no
   meeting at every step, no state to fetch from another core, each picking only its own tokens. With
   many rows the groups are smaller than a thread's share, and a thread that finishes one takes the
   next, so that one slowed down by another program does fewer. With few rows a group would multiply
   too little per weight it loads, and the threads split the columns. */
int VARIANT_NAME(scratchrnn_greedy_decode)(int batch, int hidden, int vocab, int num_forced, int num_tokens,
                             int num_threads, int relu, const int64_t *forced,
                             const float *input_rows, const float *W_step, const float *b_q,
                             float *state, float *logits, int64_t *tokens)
{
    const int threads = row_groups(batch, num_threads, MIN_ROWS_PER_GROUP);
    if (threads == 1)
        return decode_columns(batch, hidden, vocab, num_forced, num_tokens, num_threads, relu, forced,
                              input_rows, W_step, b_q, state, logits, tokens);
    /* groups of about CHUNK_ROWS rows, several per thread when there are many rows (see scratchrnn_pool_run) */
    const int groups = batch / CHUNK_ROWS > threads ? batch / CHUNK_ROWS : threads;
    Request *requests = malloc(sizeof(Request) * (size_t)groups);
    if (!requests) return -1;
    for (int g = 0; g < groups; g++) {
        int first;
        const int rows = group_rows(batch, groups, g, &first);
        requests[g] = (Request){ .batch = rows, .hidden = hidden, .vocab = vocab, .num_forced = num_forced,
                                 .num_tokens = num_tokens, .num_threads = 1, .relu = relu,
                                 .forced = forced + (size_t)first * num_forced,
                                 .input_rows = input_rows, .W_step = W_step, .b_q = b_q,
                                 .state = state + (size_t)first * hidden,
                                 .logits = logits + (size_t)first * vocab,
                                 .tokens = tokens + (size_t)first * num_tokens };
    }
    scratchrnn_pool_run(decode_request, requests, sizeof(Request), groups, threads);
    int status = 0;
    for (int g = 0; g < groups; g++) status = requests[g].status ? requests[g].status : status;
    free(requests);
    return status;
}
