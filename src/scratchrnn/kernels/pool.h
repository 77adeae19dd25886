/* The threads the kernels run on (pool.c, compiled once, for every variant): the library's own, or
   the team of the OpenMP runtime a framework has loaded; and the one way their threads wait for each
   other (scratchrnn_wait_for). */
#ifndef SCRATCHRNN_POOL_H
#define SCRATCHRNN_POOL_H

#include <stdatomic.h>
#include <stddef.h>

/* Calls fn on each of `count` jobs laid out `size` bytes apart, on at most `threads` threads, the
   calling one included, and returns when all are done. */
void scratchrnn_pool_run(void *(*fn)(void *), void *jobs, size_t size, int count, int threads);
/* From now on, this thread's calls of scratchrnn_pool_run run on the team of the GNU OpenMP entry
   points loaded in the process (on != 0), or on the library's own threads (0). Returns 0, changing
   nothing, where on is asked for and no OpenMP runtime is loaded. */
int scratchrnn_use_openmp(int on);
/* Whether an OpenMP runtime with the GNU entry points (GOMP_parallel) is loaded in the process. */
int scratchrnn_openmp_found(void);
/* Records how many threads a call used, and tells it (scratchrnn_last_threads; the tests read it). */
void scratchrnn_note_threads(int threads);
int scratchrnn_last_threads(void);
/* How many helper threads of its own the library has started. */
int scratchrnn_pool_helpers(void);

/* Where threads wait for each other: a count that only grows (jobs done, threads arrived), and how
   many threads sleep on it. Zeroed memory is a meeting with count 0. */
typedef struct {
    atomic_int count;
    atomic_int sleepers;
} scratchrnn_meeting;

/* Adds n to the meeting's count, waking whoever sleeps on it. */
void scratchrnn_arrive(scratchrnn_meeting *meeting, int n);
/* Waits until the meeting's count reaches target: the one way the kernels' threads wait for each
   other (helpers for a call, a call for its jobs, the decoder's threads at every step, the LSTM's at
   every stage). It spins first, a pause at each look (a step takes microseconds), and after
   SCRATCHRNN_SPIN_NS sleeps until an arrival wakes it, so that a machine with more threads than cores
   gives their cores to the threads that work. Returns the nanoseconds it waited past its first few
   looks: 0 when the others were already there or came at once. */
long long scratchrnn_wait_for(scratchrnn_meeting *meeting, int target);

/* The monotonic clock in nanoseconds. */
long long scratchrnn_nanoseconds(void);

#endif
