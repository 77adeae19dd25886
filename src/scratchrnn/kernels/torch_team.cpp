// The kernels' calls from the PyTorch backend, run on PyTorch's own threads: at::parallel_for, the
// function PyTorch's operators parallelise with, so the kernels share the team (OpenMP of whichever
// runtime this PyTorch was built with, or its native pool) and the thread count that
// torch.set_num_threads sets, instead of starting threads that compete with it for the cores.
//
// Compiled on first use against the PyTorch that is loaded (torch_team.py), because at::parallel_for
// is a template in PyTorch's headers whose parallel region is compiled into its caller. Handed to the
// library as a function pointer (scratchrnn_use_team, pool.h).
#include <ATen/Parallel.h>

extern "C" void scratchrnn_torch_team(void (*member)(void *, int), void *call, int threads)
{
    try {
        // grain 1: each member is a unit of work of its own; members claim the call's jobs one at a
        // time, so a team smaller than `threads` still finishes them all
        at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; i++) member(call, static_cast<int>(i));
        });
    } catch (...) {
        // a team that could not start: the calling thread takes every job itself
        member(call, 0);
    }
}
