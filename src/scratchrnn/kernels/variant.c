/* One variant's table of entry points (api.h), compiled once per variant like the kernel files: the
   module (module.c) finds the variants built into the library by these tables, and calls the
   kernels only through them. */
#include "kernels.h"

/* Whether this processor runs this variant: has every instruction set its files were compiled for
   (the macros the compiler defines for its flags). */
static int runs_here(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int runs = 1;
#ifdef __AVX512F__
    runs &= __builtin_cpu_supports("avx512f") != 0;
#endif
#ifdef __AVX512VL__
    runs &= __builtin_cpu_supports("avx512vl") != 0;
#endif
#ifdef __AVX512BW__
    runs &= __builtin_cpu_supports("avx512bw") != 0;
#endif
#ifdef __AVX512DQ__
    runs &= __builtin_cpu_supports("avx512dq") != 0;
#endif
#ifdef __AVX2__
    runs &= __builtin_cpu_supports("avx2") != 0;
#endif
#ifdef __FMA__
    runs &= __builtin_cpu_supports("fma") != 0;
#endif
#ifdef __AVX__
    runs &= __builtin_cpu_supports("avx") != 0;
#endif
#ifdef __SSE4_2__
    runs &= __builtin_cpu_supports("sse4.2") != 0;
#endif
    return runs;
#else
    return 1;
#endif
}

/* The kernels' tanh over an array, for the tests to hold it to NumPy's. */
void VARIANT_NAME(scratchrnn_tanh)(int n, const float *x, float *out)
{
    for (int i = 0; i < n; i++) out[i] = tanh_float(x[i]);
}

#define VARIANT_STRING(variant) #variant
#define VARIANT_STRING_OF(variant) VARIANT_STRING(variant)

const ScratchrnnVariant VARIANT_NAME(scratchrnn_variant) = {
    .name = VARIANT_STRING_OF(SCRATCHRNN_VARIANT),
    .runs_here = runs_here,
    .vector_floats = VEC,
    .tanh = VARIANT_NAME(scratchrnn_tanh),
    .greedy_decode = VARIANT_NAME(scratchrnn_greedy_decode),
    .recurrence_forward = VARIANT_NAME(scratchrnn_recurrence_forward),
    .recurrence_backward = VARIANT_NAME(scratchrnn_recurrence_backward),
    .gru_forward = VARIANT_NAME(scratchrnn_gru_forward),
    .gru_backward = VARIANT_NAME(scratchrnn_gru_backward),
    .lstm_forward = VARIANT_NAME(scratchrnn_lstm_forward),
    .lstm_backward = VARIANT_NAME(scratchrnn_lstm_backward),
};
