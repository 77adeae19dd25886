/* The entry points of one variant of the kernels, as the Python module (module.c) calls them.

   Each kernel file is compiled once per variant (setup.py), under names of its own
   (scratchrnn_recurrence_forward_avx2, ...). Every such function is declared with one of the types
   below (kernels.h), so the compiler checks its definition against the type, and each variant fills
   one ScratchrnnVariant with their addresses (variant.c), so it checks those too; module.c calls
   them only through that table. Changing a kernel's arguments therefore fails to compile until the
   table and every call agree, where a list of argument types kept beside the C by hand would not. */
#ifndef SCRATCHRNN_API_H
#define SCRATCHRNN_API_H

#include <stdint.h>

/* out[i] = tanh(x[i]) for i < n, with the kernels' own tanh (for the tests to hold it to NumPy's) */
typedef void scratchrnn_tanh_fn(int n, const float *x, float *out);

/* greedy_decode.c: forced tokens first, then num_tokens greedy ones per row; state and logits are
   updated in place. 0, or -1 if memory ran out. */
typedef int scratchrnn_greedy_decode_fn(int batch, int hidden, int vocab, int num_forced, int num_tokens,
                                        int num_threads, int relu, const int64_t *forced,
                                        const float *input_rows, const float *W_step, const float *b_q,
                                        float *state, float *logits, int64_t *tokens);

/* recurrence.c: the RNN's forward recurrence (in place in hs) and backpropagation through it */
typedef int scratchrnn_recurrence_forward_fn(int steps, int batch, int hidden, int num_threads, int relu,
                                             const float *W_hh, float *hs);
typedef int scratchrnn_recurrence_backward_fn(int steps, int batch, int hidden, int num_threads, int relu,
                                              const float *W_hh, const float *hs, const float *dhs,
                                              const float *dh_last, float *dz, float *dh0);

/* gated.c: the GRU's and the LSTM's step loops (NULL where an argument says it may be) */
typedef int scratchrnn_gru_forward_fn(int steps, int batch, int hidden, int num_threads, const float *terms,
                                      const float *W_h, const float *W_hh, float *hs, float *zr,
                                      float *candidates, float *reset_h);
typedef int scratchrnn_gru_backward_fn(int steps, int batch, int hidden, int num_threads, const float *W_h,
                                       const float *W_hh, const float *hs, const float *zr,
                                       const float *candidates, const float *d_outputs, const float *dh_last,
                                       float *d_terms, float *dh0);
typedef int scratchrnn_lstm_forward_fn(int steps, int batch, int hidden, int num_threads, int unit_shares,
                                       const float *terms, const float *W_h, float *hs, float *cs, float *acts,
                                       float *tanh_cs);
typedef int scratchrnn_lstm_backward_fn(int steps, int batch, int hidden, int num_threads, int unit_shares,
                                        const float *W_h, const float *cs, const float *acts,
                                        const float *tanh_cs, const float *d_outputs, const float *dh_last,
                                        const float *dc_last, float *d_terms, float *dh0, float *dc0);

/* One variant: its name, whether this processor runs it (has every instruction set its files were
   compiled for), the width of its vectors in floats, and its entry points. */
typedef struct {
    const char *name;
    int (*runs_here)(void);
    int vector_floats;
    scratchrnn_tanh_fn *tanh;
    scratchrnn_greedy_decode_fn *greedy_decode;
    scratchrnn_recurrence_forward_fn *recurrence_forward;
    scratchrnn_recurrence_backward_fn *recurrence_backward;
    scratchrnn_gru_forward_fn *gru_forward;
    scratchrnn_gru_backward_fn *gru_backward;
    scratchrnn_lstm_forward_fn *lstm_forward;
    scratchrnn_lstm_backward_fn *lstm_backward;
} ScratchrnnVariant;

#endif
