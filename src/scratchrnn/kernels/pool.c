/* The threads the kernels run on, shared by every variant of the kernels (compiled once, for the
   architecture's baseline): the library's own, or an OpenMP runtime's team.

   Each call says how many threads it may use: the caller passes what the framework it serves is told
   to use (torch.get_num_threads() under PyTorch, SCRATCHRNN_THREADS or OMP_NUM_THREADS otherwise;
   _library.py), so the kernels never take more cores than that framework would, and never depend on
   which other framework is loaded.

   The library's own threads (the helpers) need no OpenMP runtime, so they work the same beside GNU,
   Intel or LLVM OpenMP, or none. They are started once and kept: a call wakes as many as it may use,
   they and the calling thread take the call's jobs one at a time until none is left, and the helpers
   spin for a moment for the next call (the two loops of a training step come milliseconds apart),
   then sleep. A job is claimed with a compare-and-swap on one word that also names the call, so a
   helper that wakes late never takes a job of a later call, and a call returns as soon as its jobs
   are done, whether or not every helper it woke has come. One call at a time uses the helpers; a call
   made while another runs (from another Python thread) computes its jobs on its own thread.

   A framework's threads instead (scratchrnn_use_openmp): PyTorch runs its operators on a team of its
   OpenMP runtime, whose threads keep spinning for a while after each operation; helpers of our own
   would compete with them for the same cores. So the torch backend's calls run their jobs on that
   team, through GOMP_parallel, the entry point a "#pragma omp parallel" compiles to, found in the
   runtime already loaded (PyTorch's libgomp; Intel's and LLVM's runtimes have it too), with no
   compiler at run time. The choice is per calling thread, so what one backend chose never reaches
   another's calls. */
#define _GNU_SOURCE                      /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"

#define MAX_HELPERS 255          /* fits the 8 bits of `wanted` in the claim word */
#define MAX_JOBS 0xffff          /* fits its 16 bits of count; more jobs run on the calling thread */
#define SPIN_NS 50000LL          /* how long a helper spins for the next call before it sleeps */

/* The claim word: generation (24 bits) | wanted helpers (8) | jobs (16) | next job (16). Bumping the
   generation publishes a call; claiming job j is a compare-and-swap of next from j to j + 1 within
   the same generation. */
static _Atomic uint64_t claim;
static struct { void *(*fn)(void *); char *jobs; size_t size; } call;   /* of the published call */
static atomic_int done;                  /* jobs of the current call finished */
static atomic_int sleepers;
static atomic_int last_threads;
static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int helpers;                      /* started; changed under call_lock */
static uint32_t started_at[MAX_HELPERS]; /* the generation each helper was started in */
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

/* One look of a spin-wait: on x86 a pause, which tells the processor this thread only waits and leaves
   more of the core to its other hardware thread; elsewhere nothing. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#define GENERATION_MASK 0xffffffu
static uint32_t generation_of(uint64_t c) { return (uint32_t)(c >> 40) & GENERATION_MASK; }
static int wanted_of(uint64_t c) { return (int)((c >> 32) & 0xff); }
static int count_of(uint64_t c) { return (int)((c >> 16) & 0xffff); }
static int next_of(uint64_t c) { return (int)(c & 0xffff); }
static uint64_t claim_word(uint32_t generation, int wanted, int count)
{
    return ((uint64_t)(generation & GENERATION_MASK) << 40) | ((uint64_t)wanted << 32)
           | ((uint64_t)count << 16);
}

long long scratchrnn_nanoseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* Takes jobs of the call of `generation` until none is left (or a later call has begun). */
static void take_jobs(uint32_t generation)
{
    uint64_t c = atomic_load_explicit(&claim, memory_order_acquire);
    while (generation_of(c) == generation && next_of(c) < count_of(c)) {
        if (!atomic_compare_exchange_weak_explicit(&claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;                    /* c now holds the current word: try again */
        call.fn(call.jobs + (size_t)next_of(c) * call.size);
        atomic_fetch_add_explicit(&done, 1, memory_order_release);
        c = atomic_load_explicit(&claim, memory_order_acquire);
    }
}

/* The claim word once its generation differs from `seen`: spin for SPIN_NS, then sleep. */
static uint64_t wait_for_call(uint32_t seen)
{
    uint64_t c;
    long long since = 0;
    for (int spins = 0; generation_of(c = atomic_load_explicit(&claim, memory_order_acquire)) == seen;
         spins++) {
        if ((spins & 255) == 0) {
            const long long now = scratchrnn_nanoseconds();
            if (!since) since = now;
            else if (now - since > SPIN_NS) break;
        }
        cpu_relax();
    }
    if (generation_of(c) != seen) return c;
    /* sleepers is counted under sleep_lock before the word is read again; a caller bumps the word
       and then reads sleepers, so either it wakes this thread or this thread sees the new word */
    pthread_mutex_lock(&sleep_lock);
    atomic_fetch_add(&sleepers, 1);
    while (generation_of(c = atomic_load(&claim)) == seen) pthread_cond_wait(&wake, &sleep_lock);
    atomic_fetch_sub(&sleepers, 1);
    pthread_mutex_unlock(&sleep_lock);
    return c;
}

static void *helper_main(void *arg)
{
    const int index = (int)(intptr_t)arg;
    uint32_t seen = started_at[index];
    for (;;) {
        const uint64_t c = wait_for_call(seen);
        seen = generation_of(c);
        if (index < wanted_of(c)) take_jobs(seen);
    }
    return NULL;
}

/* In a child of fork() only the forking thread exists: start over with no helpers. */
static void forget_helpers_after_fork(void)
{
    pthread_mutex_init(&call_lock, NULL);
    pthread_mutex_init(&sleep_lock, NULL);
    pthread_cond_init(&wake, NULL);
    atomic_store(&sleepers, 0);
    helpers = 0;
}

static void install_fork_handler(void) { pthread_atfork(NULL, NULL, forget_helpers_after_fork); }

void scratchrnn_note_threads(int threads) { atomic_store(&last_threads, threads); }

/* How many threads the last call of a kernel handed work to (its own included). */
int scratchrnn_last_threads(void) { return atomic_load(&last_threads); }

/* How many helper threads the library has started (they sleep between calls). */
int scratchrnn_pool_helpers(void) { return helpers; }

static void run_alone(void *(*fn)(void *), char *jobs, size_t size, int count)
{
    for (int j = 0; j < count; j++) fn(jobs + (size_t)j * size);
    scratchrnn_note_threads(1);
}

/* GOMP_parallel(body, data, threads, flags): runs body(data) on a team of `threads` (0: the runtime's
   default), the calling thread included, and returns when all have returned. */
typedef void gomp_parallel_fn(void (*body)(void *), void *data, unsigned threads, unsigned flags);
static _Atomic(gomp_parallel_fn *) gomp_parallel;
static _Thread_local int on_openmp;

int scratchrnn_openmp_found(void)
{
    /* looked up until found: a framework may load its runtime after the first question (PyTorch
       loads its libgomp into the global namespace, where RTLD_DEFAULT finds it) */
    if (atomic_load(&gomp_parallel) == NULL) {
        void *symbol = dlsym(RTLD_DEFAULT, "GOMP_parallel");
        gomp_parallel_fn *function;
        memcpy(&function, &symbol, sizeof function);       /* a data pointer to a function pointer */
        atomic_store(&gomp_parallel, function);
    }
    return atomic_load(&gomp_parallel) != NULL;
}

int scratchrnn_use_openmp(int on)
{
    if (on && !scratchrnn_openmp_found()) return 0;
    on_openmp = on != 0;
    return 1;
}

/* One call's jobs, taken one at a time by the members of an OpenMP team. */
typedef struct {
    void *(*fn)(void *);
    char *jobs;
    size_t size;
    int count;
    atomic_int next;
} TeamCall;

static void team_member(void *arg)
{
    TeamCall *tc = arg;
    for (int j; (j = atomic_fetch_add_explicit(&tc->next, 1, memory_order_relaxed)) < tc->count;)
        tc->fn(tc->jobs + (size_t)j * tc->size);
}

/* Spins this many looks, then times the wait; yields the core from WAIT_SPINS looks on. */
#define WAIT_UNTIMED_SPINS 200
#define WAIT_SPINS 4000

long long scratchrnn_wait_for(atomic_int *count, int target)
{
    long long start = 0;
    for (int spins = 0; atomic_load_explicit(count, memory_order_acquire) < target;) {
        if (spins < WAIT_SPINS) spins++;
        if (spins == WAIT_UNTIMED_SPINS) start = scratchrnn_nanoseconds();
        if (spins < WAIT_SPINS) cpu_relax();
        else sched_yield();
    }
    return start ? scratchrnn_nanoseconds() - start : 0;
}

void scratchrnn_pool_run(void *(*fn)(void *), void *jobs, size_t size, int count, int threads)
{
    if (threads > count) threads = count;
    if (on_openmp && threads > 1) {
        TeamCall tc = { .fn = fn, .jobs = jobs, .size = size, .count = count };
        atomic_init(&tc.next, 0);
        atomic_load(&gomp_parallel)(team_member, &tc, (unsigned)threads, 0);
        scratchrnn_note_threads(threads);
        return;
    }
    if (threads > MAX_HELPERS + 1) threads = MAX_HELPERS + 1;
    if (threads <= 1 || count > MAX_JOBS || pthread_mutex_trylock(&call_lock) != 0) {
        run_alone(fn, jobs, size, count);
        return;
    }
    pthread_once(&fork_handler_once, install_fork_handler);
    const uint32_t generation = (generation_of(atomic_load(&claim)) + 1) & GENERATION_MASK;
    while (helpers < threads - 1) {
        pthread_t thread;
        pthread_attr_t attributes;
        started_at[helpers] = generation_of(atomic_load(&claim));
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attributes, helper_main, (void *)(intptr_t)helpers);
        pthread_attr_destroy(&attributes);
        if (failed) break;
        helpers++;
    }
    const int wanted = threads - 1 < helpers ? threads - 1 : helpers;
    call.fn = fn;
    call.jobs = jobs;
    call.size = size;
    atomic_store(&done, 0);
    atomic_store(&claim, claim_word(generation, wanted, count));
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    take_jobs(generation);
    scratchrnn_wait_for(&done, count);     /* every job claimed: wait for those still running on helpers */
    scratchrnn_note_threads(1 + wanted);
    pthread_mutex_unlock(&call_lock);
}
