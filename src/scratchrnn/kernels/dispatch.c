/* What the loader (_library.py) asks the library before it uses it, compiled once for every
   variant: which interface it was built for, and from which sources.

   Each variant says itself whether the processor runs it (scratchrnn_runs_here_<variant>, in
   recurrence.c, from the instruction sets its own file was compiled for), so a variant built with
   -march=native is checked as the others are. */

/* Bumped whenever a function's arguments or meaning change: the loader refuses another number. */
#define SCRATCHRNN_KERNELS_ABI 6

#ifndef SCRATCHRNN_SOURCE_HASH
#define SCRATCHRNN_SOURCE_HASH "unknown"
#endif

int scratchrnn_kernels_abi(void) { return SCRATCHRNN_KERNELS_ABI; }

/* The hash of the C sources this library was compiled from (setup.py passes it; _sources.py computes
   it), which the loader compares with the sources beside it: a library left from older sources is
   refused, not used. */
const char *scratchrnn_kernels_source_hash(void) { return SCRATCHRNN_SOURCE_HASH; }
