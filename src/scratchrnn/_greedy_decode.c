/* Greedy generation for the scratch RNN, compiled: reading the prompt and the loop of
   numpy_backend.decode_loop, without Python.

   One generated character costs one product of the state (1 x hidden) with [W_hh | W_hq]. At the
   chapter's size that is 1.1 MB of float32 weights, read once per character: the loop is bound by how
   fast the cores can stream those weights from their caches, not by arithmetic. So the work is split
   by columns of W_hh: each thread keeps its own slice of the weights (packed, in its own core's cache)
   and computes its slice of the new state and its share of the logits; the threads meet once per
   character, to add up the logits and pick the same token.

   Same mathematics as decode_loop: h_t = act(W_xh[x_t] + b_h + h_{t-1} W_hh), logits = h_t W_hq + b_q,
   x_{t+1} = argmax(logits), the first maximum on ties as np.argmax. Sums run in another order than
   BLAS does, so the numbers agree to float32 rounding, not bit for bit.

   C11 (atomics) and pthreads, written so that the compiler vectorises the inner loops; loaded with
   ctypes (scratchrnn/fast_decode.py), so there is no Python C-API here. Measurements behind the
   choices: benchmarks/README.md, "Generation: the compiled decoder". */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LANES 16          /* floats in a 64-byte cache line (and in an AVX-512 register) */

#define WARM_UP_STEPS 32   /* long waits before this step are the threads starting, not contention */

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

/* n floats, starting on a cache line (C11 wants the size a multiple of the alignment) */
static float *alloc_floats(size_t n)
{
    return aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
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
   Within a few units of the last place of NumPy's; NaN stays NaN. */
static inline float tanh_float(float x)
{
    float a = fabsf(x), a2 = a * a;
    float series = a * (1.0f + a2 * (-1.0f / 3 + a2 * (2.0f / 15 + a2 * (-17.0f / 315
                   + a2 * (62.0f / 2835 + a2 * (-1382.0f / 155925))))));
    float closed_form = 1.0f - 2.0f / (exp_nonnegative(2.0f * a) + 1.0f);
    return copysignf(select_float(a < 0.25f, series, closed_form), x);
}

/* The kernel's tanh over an array, for the tests to hold it to NumPy's. */
void scratchrnn_tanh(int n, const float *x, float *out)
{
    for (int i = 0; i < n; i++) out[i] = tanh_float(x[i]);
}

/* One slice of the columns of the state: its weights, packed, and its accumulators. Thread t computes
   slice t; a thread alone (see run_worker) computes them all. */
typedef struct {
    int first, width, padded;   /* columns first..first+width-1; padded: width rounded up to LANES */
    float *W_hh;                /* (hidden, padded): W_hh[:, slice], rows of whole cache lines */
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
    _Alignas(64) atomic_int arrived;
    char padding[64 - sizeof(atomic_int)];
    _Alignas(64) atomic_llong alone;   /* the steps thread 0 computes alone: see alone_at */
} Shared;

typedef struct { Shared *shared; int thread; } Worker;

/* The threads meet here once per step: spin (a step takes microseconds), and after a while give the
   core away. Returns whether the wait was long: longer than 100 us, a dozen steps. */
static int wait_for_all(Shared *s, int target)
{
    struct timespec start = {0, 0}, now;
    int spins = 0, long_wait = 0;
    while (atomic_load_explicit(&s->arrived, memory_order_acquire) < target) {
        if (++spins < 200) { cpu_relax(); continue; }
        if (spins == 200) clock_gettime(CLOCK_MONOTONIC, &start);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) > 100000L)
            long_wait = 1;
        if (spins < 4000) cpu_relax(); else sched_yield();
    }
    return long_wait;
}

static void arrive(Shared *s) { atomic_fetch_add_explicit(&s->arrived, 1, memory_order_acq_rel); }

/* The logits of every row (into `logits`, this thread's copy) and the first maximum of each. At step 0
   they are those passed in; later, b_q plus every slice's share from the step before. */
static void pick_tokens(const Shared *s, int step, const float *shares, float *logits, int *token)
{
    for (int b = 0; b < s->batch; b++) {
        float *row = logits + (size_t)b * s->vocab;
        if (step > 0) {
            for (int v = 0; v < s->vocab; v++) {
                float sum = s->b_q[v];
                for (int t = 0; t < s->num_threads; t++)
                    sum += shares[((size_t)t * s->batch + b) * s->vocab_padded + v];
                row[v] = sum;
            }
        }
        int best = 0;
        for (int v = 1; v < s->vocab; v++)
            if (row[v] > row[best]) best = v;
        token[b] = best;
    }
}

/* acc[b, :] += h[b, rows] W[rows, :] for rows first..last-1 of a packed slice W (rows of wp floats).
   Four rows at a time: each row of W is loaded once for the whole batch, and the accumulators are read
   and written a quarter as often. */
static void add_rows_product(float *acc, const float *h, const float *W, int first, int last,
                             int batch, int hidden, int wp)
{
    int i = first;
    for (; i + 4 <= last; i += 4) {
        const float *restrict w0 = W + (size_t)i * wp, *restrict w1 = w0 + wp,
                    *restrict w2 = w1 + wp, *restrict w3 = w2 + wp;
        for (int b = 0; b < batch; b++) {
            const float *hb = h + (size_t)b * hidden + i;
            const float h0 = hb[0], h1 = hb[1], h2 = hb[2], h3 = hb[3];
            float *restrict a = acc + (size_t)b * wp;
            for (int j = 0; j < wp; j++) a[j] += h0 * w0[j] + h1 * w1[j] + h2 * w2[j] + h3 * w3[j];
        }
    }
    for (; i < last; i++) {
        const float *restrict w0 = W + (size_t)i * wp;
        for (int b = 0; b < batch; b++) {
            const float h0 = h[(size_t)b * hidden + i];
            float *restrict a = acc + (size_t)b * wp;
            for (int j = 0; j < wp; j++) a[j] += h0 * w0[j];
        }
    }
}

/* share[:] = a W_hq for one row a (wp floats) and a packed slice W_hq (wp rows of vp floats), LANES
   columns at a time in fixed-size sums that the compiler keeps in registers; two of them, so that
   consecutive additions do not wait for each other. */
static void logits_share(float *restrict share, const float *restrict a, const float *restrict W_hq,
                         int wp, int vp)
{
    for (int v0 = 0; v0 < vp; v0 += LANES) {
        float even[LANES] = {0}, odd[LANES] = {0};
        for (int j = 0; j < wp; j += 2) {          /* wp is a multiple of LANES, so even */
            const float *restrict q0 = W_hq + (size_t)j * vp + v0, *restrict q1 = q0 + vp;
            const float a0 = a[j], a1 = a[j + 1];
            for (int v = 0; v < LANES; v++) { even[v] += a0 * q0[v]; odd[v] += a1 * q1[v]; }
        }
        for (int v = 0; v < LANES; v++) share[v0 + v] = even[v] + odd[v];
    }
}

/* Packs slice t's weights; run by the thread that computes it, so that they land in its core's cache. */
static void pack_slice(const Shared *s, Slice *c)
{
    const int H = s->hidden, V = s->vocab, VP = s->vocab_padded, stride = H + V;
    memset(c->W_hh, 0, sizeof(float) * (size_t)H * c->padded);
    memset(c->W_hq, 0, sizeof(float) * (size_t)c->padded * VP);
    for (int i = 0; i < H; i++)
        memcpy(c->W_hh + (size_t)i * c->padded, s->W_step + (size_t)i * stride + c->first,
               sizeof(float) * c->width);
    for (int j = 0; j < c->width; j++)
        memcpy(c->W_hq + (size_t)j * VP, s->W_step + (size_t)(c->first + j) * stride + H, sizeof(float) * V);
}

/* One step for one slice: h_next[:, slice] = act(W_xh[token, slice] + b_h[slice] + h W_hh[:, slice]),
   and the slice's share of the logits of h_next, h_next[:, slice] W_hq[slice, :]. */
static void advance_slice(const Shared *s, const Slice *c, int index, const float *h, const int *token,
                          float *h_next, float *shares)
{
    const int B = s->batch, H = s->hidden, VP = s->vocab_padded, wp = c->padded;
    for (int b = 0; b < B; b++) {
        float *restrict a = c->acc + (size_t)b * wp;
        memcpy(a, s->input_rows + (size_t)token[b] * H + c->first, sizeof(float) * c->width);
        for (int j = c->width; j < wp; j++) a[j] = 0.0f;
    }
    add_rows_product(c->acc, h, c->W_hh, 0, H, B, H, wp);
    for (int b = 0; b < B; b++) {
        float *restrict a = c->acc + (size_t)b * wp;
        if (s->relu) for (int j = 0; j < wp; j++) a[j] = a[j] > 0.0f ? a[j] : 0.0f;
        else for (int j = 0; j < wp; j++) a[j] = tanh_float(a[j]);       /* padding stays 0 */
        memcpy(h_next + (size_t)b * H + c->first, a, sizeof(float) * c->width);
        logits_share(shares + ((size_t)index * B + b) * VP, a, c->W_hq, wp, VP);
    }
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
   step. So thread 0 watches its waits, and after three long ones within 1024 steps it computes every
   slice alone for a while (256 steps, twice as long each further time), beginning two steps on; the
   others wait, then all meet again. The first steps do not count: a core that was idle takes a while
   to wake, and that passes. */
static void *run_worker(void *arg)
{
    Worker *w = arg;
    Shared *s = w->shared;
    const int B = s->batch, H = s->hidden, V = s->vocab, T = s->num_threads;
    Slice *own = &s->slices[w->thread];
    float *h_copy = own->h_copy, *logits = own->logits;
    int *token = own->token, long_waits = 0, counted_from = 0, alone_steps = 256;

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
        memcpy(h_copy, s->state[parity], sizeof(float) * (size_t)B * H);
        float *h_next = s->state[parity ^ 1], *shares = s->shares[parity];
        for (int t = alone ? 0 : w->thread; t < (alone ? T : w->thread + 1); t++)
            advance_slice(s, &s->slices[t], t, h_copy, token, h_next, shares);
        if (alone) {
            atomic_fetch_add_explicit(&s->arrived, T, memory_order_acq_rel);
        } else {
            arrive(s);
            if (wait_for_all(s, T * (step + 2)) && w->thread == 0 && step >= WARM_UP_STEPS) {
                if (step - counted_from >= 1024) { counted_from = step; long_waits = 0; }
                if (++long_waits == 3) {
                    /* the others read it at the top of step + 2 at the latest, after meeting */
                    const int end = step + 2 + alone_steps;
                    set_alone(s, step + 2, end < s->num_steps ? end : s->num_steps);
                    counted_from = step + 2 + alone_steps;
                    long_waits = 0;
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

/* Feed num_forced given tokens to each of `batch` rows (read a prompt), then generate num_tokens tokens
   for each and feed every one of them back, so that a later call continues where this one stopped.
   `state` (batch, hidden) and `logits` (batch, vocab) come in as the state and its logits before the
   first step (the logits pick the first token when nothing is forced), and go out as those after the
   last step. Returns 0, or -1 if memory ran out (nothing is changed then). */
int scratchrnn_greedy_decode(int batch, int hidden, int vocab, int num_forced, int num_tokens,
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
    atomic_init(&s.arrived, 0);
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
            atomic_fetch_add(&s.arrived, s.num_threads - started);
        }
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
