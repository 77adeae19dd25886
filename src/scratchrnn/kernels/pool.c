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
#define _GNU_SOURCE                      /* RTLD_DEFAULT, syscall */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "pool.h"

#define MAX_HELPERS 255          /* fits the 8 bits of `wanted` in the claim word */
#define MAX_JOBS 0xffff          /* fits its 16 bits of count; more jobs run on the calling thread */

/* -- the one spin-wait -------------------------------------------------------------------------------- */

#define SPIN_NS 50000LL          /* how long a waiting thread spins before it sleeps */
#define UNTIMED_LOOKS 200        /* looks before the wait is timed (and counted as waiting) */

long long scratchrnn_nanoseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* One look of a spin-wait: on x86 a pause, which tells the processor this thread only waits and leaves
   more of the core to its other hardware thread; elsewhere nothing. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Whether a count has reached target; counts only grow, and this stays right when they wrap around. */
static int reached(int count, int target) { return (int)((unsigned)count - (unsigned)target) >= 0; }

/* Sleeps while *address still holds `value` (or returns at once; a wake-up may be spurious). Without
   futexes (not Linux) the thread gives its core away instead. */
static void sleep_while(atomic_int *address, int value)
{
#ifdef __linux__
    syscall(SYS_futex, (int *)address, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    (void)address, (void)value;
    sched_yield();
#endif
}

static void wake_all(atomic_int *address)
{
#ifdef __linux__
    syscall(SYS_futex, (int *)address, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)address;
#endif
}

/* A sleeper counts itself before it reads the count again; an arrival adds to the count before it
   reads the sleepers (both sequentially consistent): so either the sleeper sees the new count, or the
   arrival sees the sleeper and wakes it. The futex itself does not sleep if the count has changed. */
void scratchrnn_arrive(scratchrnn_meeting *meeting, int n)
{
    atomic_fetch_add(&meeting->count, n);
    if (atomic_load(&meeting->sleepers) > 0) wake_all(&meeting->count);
}

long long scratchrnn_wait_for(scratchrnn_meeting *meeting, int target)
{
    long long start = 0;
    for (int looks = 0; !reached(atomic_load_explicit(&meeting->count, memory_order_acquire), target); looks++) {
        if (looks < UNTIMED_LOOKS || (looks & 63) != 0) {
            cpu_relax();
            continue;
        }
        const long long now = scratchrnn_nanoseconds();
        if (!start) start = now;
        if (now - start < SPIN_NS) continue;
        atomic_fetch_add(&meeting->sleepers, 1);
        for (int seen; !reached(seen = atomic_load(&meeting->count), target);)
            sleep_while(&meeting->count, seen);
        atomic_fetch_sub(&meeting->sleepers, 1);
    }
    return start ? scratchrnn_nanoseconds() - start : 0;
}

/* -- the library's own threads ------------------------------------------------------------------------- */

/* Calls are counted in `calls`, whose count is the generation of the last call published (the
   helpers wait on it); the claim word holds that generation's low 24 bits | wanted helpers (8) | jobs
   (16) | next job (16). Claiming job j is a compare-and-swap of next from j to j + 1 within the same
   generation. */
static scratchrnn_meeting calls;
static _Atomic uint64_t claim;
static struct { void *(*fn)(void *); char *jobs; size_t size; } call;   /* of the published call */
static scratchrnn_meeting done;          /* jobs of the current call finished */
static atomic_int last_threads;
static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;
static int helpers;                      /* started; changed under call_lock */
static int started_at[MAX_HELPERS];      /* the calls published when each helper was started */
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

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

/* Takes jobs of the call of `generation` until none is left (or a later call has begun). */
static void take_jobs(uint32_t generation)
{
    uint64_t c = atomic_load_explicit(&claim, memory_order_acquire);
    while (generation_of(c) == generation && next_of(c) < count_of(c)) {
        if (!atomic_compare_exchange_weak_explicit(&claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;                    /* c now holds the current word: try again */
        call.fn(call.jobs + (size_t)next_of(c) * call.size);
        scratchrnn_arrive(&done, 1);
        c = atomic_load_explicit(&claim, memory_order_acquire);
    }
}

static void *helper_main(void *arg)
{
    const int index = (int)(intptr_t)arg;
    int seen = started_at[index];
    for (;;) {
        scratchrnn_wait_for(&calls, (int)((unsigned)seen + 1));   /* counts wrap around */
        /* the claim word was written before the count: it is this call's, or a later one's, whose
           count the next wait then finds at once */
        seen = atomic_load_explicit(&calls.count, memory_order_acquire);
        const uint64_t c = atomic_load_explicit(&claim, memory_order_acquire);
        if (generation_of(c) == ((uint32_t)seen & GENERATION_MASK) && index < wanted_of(c))
            take_jobs(generation_of(c));
    }
    return NULL;
}

/* In a child of fork() only the forking thread exists: start over with no helpers. */
static void forget_helpers_after_fork(void)
{
    pthread_mutex_init(&call_lock, NULL);
    atomic_store(&calls.sleepers, 0);
    atomic_store(&done.sleepers, 0);
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

/* -- an OpenMP runtime's team ------------------------------------------------------------------------ */

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

/* -- a call ---------------------------------------------------------------------------------------- */

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
    const int published = atomic_load(&calls.count), generation = (int)((unsigned)published + 1);
    while (helpers < threads - 1) {
        pthread_t thread;
        pthread_attr_t attributes;
        started_at[helpers] = published;
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
    atomic_store(&done.count, 0);
    atomic_store(&claim, claim_word((uint32_t)generation, wanted, count));
    scratchrnn_arrive(&calls, 1);            /* publishes the call, waking sleeping helpers */
    take_jobs((uint32_t)generation & GENERATION_MASK);
    scratchrnn_wait_for(&done, count);       /* every job claimed: wait for those still running on helpers */
    scratchrnn_note_threads(1 + wanted);
    pthread_mutex_unlock(&call_lock);
}
