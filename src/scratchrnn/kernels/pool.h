/* The library's threads (pool.c, compiled once, for every variant), or a framework's (a team). */
#ifndef SCRATCHRNN_POOL_H
#define SCRATCHRNN_POOL_H

#include <stddef.h>

/* One turn of a spin-wait: on x86 a pause, which tells the processor this thread only waits and leaves
   more of the core to its other hardware thread; elsewhere nothing. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* The library's threads (pool.c, compiled once, for every variant): calls fn on each of `count` jobs
   laid out `size` bytes apart, on at most `threads` threads, the calling one included. */
void scratchrnn_pool_run(void *(*fn)(void *), void *jobs, size_t size, int count, int threads);
/* A framework's threads: runs member(call, i) for i in [0, threads) on up to `threads` of them, and
   returns when all have returned. */
typedef void (*scratchrnn_team)(void (*member)(void *call, int index), void *call, int threads);
/* From now on, this thread's calls of scratchrnn_pool_run run on `team` (NULL: the library's own). */
void scratchrnn_use_team(scratchrnn_team team);
/* Records how many threads a call used, for scratchrnn_last_threads (the tests read it). */
void scratchrnn_note_threads(int threads);

#endif
