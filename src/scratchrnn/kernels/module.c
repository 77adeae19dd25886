/* The Python module scratchrnn.kernels._kernels: the kernels' entry points, callable from Python.

   Every function takes the name of a variant ("avx2", ...), the sizes of the problem, and arrays as
   objects with the buffer protocol (NumPy arrays, or anything else that exports C-contiguous memory).
   Before any kernel runs, each array is checked here against the sizes: its element type (float32,
   or int64 for tokens), that it is C-contiguous, writable where the kernel writes, and that it holds
   exactly as many elements as the kernel will read or write; a wrong one raises ValueError naming it,
   and nothing runs. The kernel is then called through its variant's table (api.h), with the GIL
   released, so that other Python threads run meanwhile; a Ctrl-C that arrives during the call is
   raised as KeyboardInterrupt when it returns, as after any other call that does not run Python code.

   No NumPy C API, so the module serves NumPy 1.x and 2.x alike. setup.py builds it for CPython's
   limited API from Python 3.11 on (one file for every later version), else for the running version. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "api.h"
#include "pool.h"

#ifndef SCRATCHRNN_SOURCE_HASH
#define SCRATCHRNN_SOURCE_HASH "unknown"
#endif

/* The variants compiled into this library (setup.py defines SCRATCHRNN_HAS_<variant> for each that
   compiled), in the order of preference. */
#ifdef SCRATCHRNN_HAS_avx512
extern const ScratchrnnVariant scratchrnn_variant_avx512;
#endif
#ifdef SCRATCHRNN_HAS_avx2
extern const ScratchrnnVariant scratchrnn_variant_avx2;
#endif
extern const ScratchrnnVariant scratchrnn_variant_baseline;

static const ScratchrnnVariant *const variants[] = {
#ifdef SCRATCHRNN_HAS_avx512
    &scratchrnn_variant_avx512,
#endif
#ifdef SCRATCHRNN_HAS_avx2
    &scratchrnn_variant_avx2,
#endif
    &scratchrnn_variant_baseline,
};
#define VARIANT_COUNT ((int)(sizeof variants / sizeof variants[0]))

/* The variant of that name if it is built and this processor runs it; else NULL, with ValueError. */
static const ScratchrnnVariant *variant_named(const char *name)
{
    for (int v = 0; v < VARIANT_COUNT; v++)
        if (strcmp(variants[v]->name, name) == 0) {
            if (variants[v]->runs_here()) return variants[v];
            PyErr_Format(PyExc_ValueError, "this processor cannot run the %s variant", name);
            return NULL;
        }
    PyErr_Format(PyExc_ValueError, "no variant %s in this library", name);
    return NULL;
}

/* -- the arrays: checked against the sizes, held for the call ------------------------------------- */

#define MAX_ARRAYS 16
typedef struct {
    Py_buffer views[MAX_ARRAYS];
    int held;
} Arrays;

enum element { FLOAT32, INT64 };

/* Whether a buffer's struct-module format is one element of this type in this machine's byte order. */
static int has_format(const char *format, enum element type)
{
    if (format == NULL) return 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const char own_order = '<';
#else
    const char own_order = '>';
#endif
    const int native = format[0] != '<' && format[0] != '>' && format[0] != '!' && format[0] != '=';
    if (format[0] == '@' || format[0] == '=' || format[0] == own_order) format++;
    else if (!native) return 0;
    if (format[0] == '\0' || format[1] != '\0') return 0;
    if (type == FLOAT32) return format[0] == 'f';
    /* int64: 'q' always; 'l' where a native long is 8 bytes (NumPy's int64 on LP64 systems) */
    return format[0] == 'q' || (native && format[0] == 'l' && sizeof(long) == 8);
}

/* Takes `object` as the array `name` of `count` elements of `type` (writable if `writable`) into
   *data; None, where `optional`, as NULL. Returns 0, or -1 with ValueError. */
static int take(Arrays *arrays, PyObject *object, const char *name, size_t count, enum element type,
                int writable, int optional, void **data)
{
    *data = NULL;
    if (object == Py_None && optional) return 0;
    const char *type_name = type == FLOAT32 ? "float32" : "int64";
    Py_buffer *view = &arrays->views[arrays->held];
    const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (arrays->held == MAX_ARRAYS || PyObject_GetBuffer(object, view, flags) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s %s array%s", name,
                     writable ? ", writable" : "", type_name, optional ? " or None" : "");
        return -1;
    }
    arrays->held++;
    const Py_ssize_t itemsize = type == FLOAT32 ? 4 : 8;
    if (view->itemsize != itemsize || !has_format(view->format, type)) {
        PyErr_Format(PyExc_ValueError, "%s must hold %s, not elements of format '%s'", name, type_name,
                     view->format ? view->format : "B");
        return -1;
    }
    if ((size_t)view->len != count * (size_t)itemsize) {
        PyErr_Format(PyExc_ValueError, "%s must hold %zu elements, not %zd", name, count,
                     view->len / itemsize);
        return -1;
    }
    *data = view->buf;
    return 0;
}

static void release(Arrays *arrays)
{
    while (arrays->held > 0) PyBuffer_Release(&arrays->views[--arrays->held]);
}

/* a * b * c elements, or SIZE_MAX where that overflows (no buffer has that many) */
static size_t elements(size_t a, size_t b, size_t c)
{
    size_t ab, abc;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) return SIZE_MAX;
    return abc;
}

/* Checks that each of `count` sizes is at least its minimum; -1 with ValueError naming it. */
typedef struct { const char *name; int value, least; } Size;
static int check_sizes(const Size *sizes, int count)
{
    for (int i = 0; i < count; i++)
        if (sizes[i].value < sizes[i].least) {
            PyErr_Format(PyExc_ValueError, "%s must be at least %d, not %d", sizes[i].name, sizes[i].least,
                         sizes[i].value);
            return -1;
        }
    return 0;
}
#define CHECK_SIZES(...) check_sizes((const Size[]){ __VA_ARGS__ }, \
                                     (int)(sizeof((const Size[]){ __VA_ARGS__ }) / sizeof(Size)))

/* What a kernel returned: None, or MemoryError where it ran out of memory (its outputs undefined). */
static PyObject *result(int status)
{
    if (status != 0) return PyErr_Format(PyExc_MemoryError, "the compiled kernel ran out of memory");
    Py_RETURN_NONE;
}

/* -- the entry points ------------------------------------------------------------------------------ */

static PyObject *py_tanh(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int n;
    PyObject *x_object, *out_object;
    if (!PyArg_ParseTuple(args, "siOO:tanh", &name, &n, &x_object, &out_object)) return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES({"n", n, 0}) != 0) return NULL;
    Arrays arrays = { .held = 0 };
    void *x, *out;
    if (take(&arrays, x_object, "x", (size_t)n, FLOAT32, 0, 0, &x) == 0
        && take(&arrays, out_object, "out", (size_t)n, FLOAT32, 1, 0, &out) == 0) {
        Py_BEGIN_ALLOW_THREADS
        variant->tanh(n, x, out);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_greedy_decode(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int batch, hidden, vocab, num_forced, num_tokens, threads, relu;
    PyObject *objects[7];
    if (!PyArg_ParseTuple(args, "siiiiiipOOOOOOO:greedy_decode", &name, &batch, &hidden, &vocab, &num_forced,
                          &num_tokens, &threads, &relu, &objects[0], &objects[1], &objects[2], &objects[3],
                          &objects[4], &objects[5], &objects[6]))
        return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES({"batch", batch, 1}, {"hidden", hidden, 1}, {"vocab", vocab, 1},
                                {"num_forced", num_forced, 0}, {"num_tokens", num_tokens, 0},
                                {"threads", threads, 1}) != 0)
        return NULL;
    Arrays arrays = { .held = 0 };
    void *forced, *input_rows, *W_step, *b_q, *state, *logits, *tokens;
    int status = -1;
    if (take(&arrays, objects[0], "forced", elements(batch, num_forced, 1), INT64, 0, 0, &forced) == 0
        && take(&arrays, objects[1], "input_rows", elements(vocab, hidden, 1), FLOAT32, 0, 0, &input_rows) == 0
        && take(&arrays, objects[2], "W_step", elements(hidden, (size_t)hidden + vocab, 1), FLOAT32, 0, 0,
                &W_step) == 0
        && take(&arrays, objects[3], "b_q", (size_t)vocab, FLOAT32, 0, 0, &b_q) == 0
        && take(&arrays, objects[4], "state", elements(batch, hidden, 1), FLOAT32, 1, 0, &state) == 0
        && take(&arrays, objects[5], "logits", elements(batch, vocab, 1), FLOAT32, 1, 0, &logits) == 0
        && take(&arrays, objects[6], "tokens", elements(batch, num_tokens, 1), INT64, 1, 0, &tokens) == 0) {
        Py_BEGIN_ALLOW_THREADS
        status = variant->greedy_decode(batch, hidden, vocab, num_forced, num_tokens, threads, relu, forced,
                                        input_rows, W_step, b_q, state, logits, tokens);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    return PyErr_Occurred() ? NULL : result(status);
}

/* The sizes every training loop takes first: steps, batch, hidden, threads. */
#define LOOP_SIZES(steps, batch, hidden, threads) \
    {"steps", steps, 0}, {"batch", batch, 1}, {"hidden", hidden, 1}, {"threads", threads, 1}

static PyObject *py_recurrence_forward(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int steps, batch, hidden, threads, relu;
    PyObject *W_hh_object, *hs_object;
    if (!PyArg_ParseTuple(args, "siiiipOO:recurrence_forward", &name, &steps, &batch, &hidden, &threads, &relu,
                          &W_hh_object, &hs_object))
        return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES(LOOP_SIZES(steps, batch, hidden, threads)) != 0) return NULL;
    Arrays arrays = { .held = 0 };
    void *W_hh, *hs;
    int status = -1;
    if (take(&arrays, W_hh_object, "W_hh", elements(hidden, hidden, 1), FLOAT32, 0, 0, &W_hh) == 0
        && take(&arrays, hs_object, "hs", elements((size_t)steps + 1, batch, hidden), FLOAT32, 1, 0, &hs) == 0) {
        Py_BEGIN_ALLOW_THREADS
        status = variant->recurrence_forward(steps, batch, hidden, threads, relu, W_hh, hs);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    return PyErr_Occurred() ? NULL : result(status);
}

static PyObject *py_recurrence_backward(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int steps, batch, hidden, threads, relu;
    PyObject *objects[6];
    if (!PyArg_ParseTuple(args, "siiiipOOOOOO:recurrence_backward", &name, &steps, &batch, &hidden, &threads,
                          &relu, &objects[0], &objects[1], &objects[2], &objects[3], &objects[4], &objects[5]))
        return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES(LOOP_SIZES(steps, batch, hidden, threads)) != 0) return NULL;
    const size_t square = elements(hidden, hidden, 1), rows = elements(batch, hidden, 1);
    const size_t all = elements(steps, batch, hidden);
    Arrays arrays = { .held = 0 };
    void *W_hh, *hs, *dhs, *dh_last, *dz, *dh0;
    int status = -1;
    if (take(&arrays, objects[0], "W_hh", square, FLOAT32, 0, 0, &W_hh) == 0
        && take(&arrays, objects[1], "hs", elements((size_t)steps + 1, batch, hidden), FLOAT32, 0, 0, &hs) == 0
        && take(&arrays, objects[2], "dhs", all, FLOAT32, 0, 1, &dhs) == 0
        && take(&arrays, objects[3], "dh_last", rows, FLOAT32, 0, 1, &dh_last) == 0
        && take(&arrays, objects[4], "dz", all, FLOAT32, 1, 0, &dz) == 0
        && take(&arrays, objects[5], "dh0", rows, FLOAT32, 1, 1, &dh0) == 0) {
        Py_BEGIN_ALLOW_THREADS
        status = variant->recurrence_backward(steps, batch, hidden, threads, relu, W_hh, hs, dhs, dh_last, dz,
                                              dh0);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    return PyErr_Occurred() ? NULL : result(status);
}

static PyObject *py_gru_forward(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int steps, batch, hidden, threads;
    PyObject *objects[7];
    if (!PyArg_ParseTuple(args, "siiiiOOOOOOO:gru_forward", &name, &steps, &batch, &hidden, &threads,
                          &objects[0], &objects[1], &objects[2], &objects[3], &objects[4], &objects[5],
                          &objects[6]))
        return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES(LOOP_SIZES(steps, batch, hidden, threads)) != 0) return NULL;
    const size_t all = elements(steps, batch, hidden);
    Arrays arrays = { .held = 0 };
    void *terms, *W_h, *W_hh, *hs, *zr, *candidates, *reset_h;
    int status = -1;
    if (take(&arrays, objects[0], "terms", elements(steps, batch, 3 * (size_t)hidden), FLOAT32, 0, 0, &terms) == 0
        && take(&arrays, objects[1], "W_h", elements(hidden, 2 * (size_t)hidden, 1), FLOAT32, 0, 0, &W_h) == 0
        && take(&arrays, objects[2], "W_hh", elements(hidden, hidden, 1), FLOAT32, 0, 0, &W_hh) == 0
        && take(&arrays, objects[3], "hs", elements((size_t)steps + 1, batch, hidden), FLOAT32, 1, 0, &hs) == 0
        && take(&arrays, objects[4], "zr", elements(steps, batch, 2 * (size_t)hidden), FLOAT32, 1, 0, &zr) == 0
        && take(&arrays, objects[5], "candidates", all, FLOAT32, 1, 0, &candidates) == 0
        && take(&arrays, objects[6], "reset_h", all, FLOAT32, 1, 0, &reset_h) == 0) {
        Py_BEGIN_ALLOW_THREADS
        status = variant->gru_forward(steps, batch, hidden, threads, terms, W_h, W_hh, hs, zr, candidates,
                                      reset_h);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    return PyErr_Occurred() ? NULL : result(status);
}

static PyObject *py_gru_backward(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int steps, batch, hidden, threads;
    PyObject *objects[9];
    if (!PyArg_ParseTuple(args, "siiiiOOOOOOOOO:gru_backward", &name, &steps, &batch, &hidden, &threads,
                          &objects[0], &objects[1], &objects[2], &objects[3], &objects[4], &objects[5],
                          &objects[6], &objects[7], &objects[8]))
        return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES(LOOP_SIZES(steps, batch, hidden, threads)) != 0) return NULL;
    const size_t all = elements(steps, batch, hidden), rows = elements(batch, hidden, 1);
    Arrays arrays = { .held = 0 };
    void *W_h, *W_hh, *hs, *zr, *candidates, *d_outputs, *dh_last, *d_terms, *dh0;
    int status = -1;
    if (take(&arrays, objects[0], "W_h", elements(hidden, 2 * (size_t)hidden, 1), FLOAT32, 0, 0, &W_h) == 0
        && take(&arrays, objects[1], "W_hh", elements(hidden, hidden, 1), FLOAT32, 0, 0, &W_hh) == 0
        && take(&arrays, objects[2], "hs", elements((size_t)steps + 1, batch, hidden), FLOAT32, 0, 0, &hs) == 0
        && take(&arrays, objects[3], "zr", elements(steps, batch, 2 * (size_t)hidden), FLOAT32, 0, 0, &zr) == 0
        && take(&arrays, objects[4], "candidates", all, FLOAT32, 0, 0, &candidates) == 0
        && take(&arrays, objects[5], "d_outputs", all, FLOAT32, 0, 1, &d_outputs) == 0
        && take(&arrays, objects[6], "dh_last", rows, FLOAT32, 0, 1, &dh_last) == 0
        && take(&arrays, objects[7], "d_terms", elements(steps, batch, 3 * (size_t)hidden), FLOAT32, 1, 0,
                &d_terms) == 0
        && take(&arrays, objects[8], "dh0", rows, FLOAT32, 1, 1, &dh0) == 0) {
        Py_BEGIN_ALLOW_THREADS
        status = variant->gru_backward(steps, batch, hidden, threads, W_h, W_hh, hs, zr, candidates, d_outputs,
                                       dh_last, d_terms, dh0);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    return PyErr_Occurred() ? NULL : result(status);
}

static PyObject *py_lstm_forward(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int steps, batch, hidden, threads, unit_shares;
    PyObject *objects[6];
    if (!PyArg_ParseTuple(args, "siiiiiOOOOOO:lstm_forward", &name, &steps, &batch, &hidden, &threads,
                          &unit_shares, &objects[0], &objects[1], &objects[2], &objects[3], &objects[4],
                          &objects[5]))
        return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES(LOOP_SIZES(steps, batch, hidden, threads), {"unit_shares", unit_shares, 0}) != 0)
        return NULL;
    const size_t states = elements((size_t)steps + 1, batch, hidden);
    Arrays arrays = { .held = 0 };
    void *terms, *W_h, *hs, *cs, *acts, *tanh_cs;
    int status = -1;
    if (take(&arrays, objects[0], "terms", elements(steps, batch, 4 * (size_t)hidden), FLOAT32, 0, 0, &terms) == 0
        && take(&arrays, objects[1], "W_h", elements(hidden, 4 * (size_t)hidden, 1), FLOAT32, 0, 0, &W_h) == 0
        && take(&arrays, objects[2], "hs", states, FLOAT32, 1, 0, &hs) == 0
        && take(&arrays, objects[3], "cs", states, FLOAT32, 1, 0, &cs) == 0
        && take(&arrays, objects[4], "acts", elements(steps, batch, 4 * (size_t)hidden), FLOAT32, 1, 0, &acts) == 0
        && take(&arrays, objects[5], "tanh_cs", elements(steps, batch, hidden), FLOAT32, 1, 0, &tanh_cs) == 0) {
        Py_BEGIN_ALLOW_THREADS
        status = variant->lstm_forward(steps, batch, hidden, threads, unit_shares, terms, W_h, hs, cs, acts,
                                       tanh_cs);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    return PyErr_Occurred() ? NULL : result(status);
}

static PyObject *py_lstm_backward(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int steps, batch, hidden, threads, unit_shares;
    PyObject *objects[10];
    if (!PyArg_ParseTuple(args, "siiiiiOOOOOOOOOO:lstm_backward", &name, &steps, &batch, &hidden, &threads,
                          &unit_shares, &objects[0], &objects[1], &objects[2], &objects[3], &objects[4],
                          &objects[5], &objects[6], &objects[7], &objects[8], &objects[9]))
        return NULL;
    const ScratchrnnVariant *variant = variant_named(name);
    if (!variant || CHECK_SIZES(LOOP_SIZES(steps, batch, hidden, threads), {"unit_shares", unit_shares, 0}) != 0)
        return NULL;
    if ((objects[8] == Py_None) != (objects[9] == Py_None))
        return PyErr_Format(PyExc_ValueError, "dh0 and dc0 must both be arrays or both be None");
    const size_t all = elements(steps, batch, hidden), rows = elements(batch, hidden, 1);
    Arrays arrays = { .held = 0 };
    void *W_h, *cs, *acts, *tanh_cs, *d_outputs, *dh_last, *dc_last, *d_terms, *dh0, *dc0;
    int status = -1;
    if (take(&arrays, objects[0], "W_h", elements(hidden, 4 * (size_t)hidden, 1), FLOAT32, 0, 0, &W_h) == 0
        && take(&arrays, objects[1], "cs", elements((size_t)steps + 1, batch, hidden), FLOAT32, 0, 0, &cs) == 0
        && take(&arrays, objects[2], "acts", elements(steps, batch, 4 * (size_t)hidden), FLOAT32, 0, 0, &acts) == 0
        && take(&arrays, objects[3], "tanh_cs", all, FLOAT32, 0, 0, &tanh_cs) == 0
        && take(&arrays, objects[4], "d_outputs", all, FLOAT32, 0, 1, &d_outputs) == 0
        && take(&arrays, objects[5], "dh_last", rows, FLOAT32, 0, 1, &dh_last) == 0
        && take(&arrays, objects[6], "dc_last", rows, FLOAT32, 0, 1, &dc_last) == 0
        && take(&arrays, objects[7], "d_terms", elements(steps, batch, 4 * (size_t)hidden), FLOAT32, 1, 0,
                &d_terms) == 0
        && take(&arrays, objects[8], "dh0", rows, FLOAT32, 1, 1, &dh0) == 0
        && take(&arrays, objects[9], "dc0", rows, FLOAT32, 1, 1, &dc0) == 0) {
        Py_BEGIN_ALLOW_THREADS
        status = variant->lstm_backward(steps, batch, hidden, threads, unit_shares, W_h, cs, acts, tanh_cs,
                                        d_outputs, dh_last, dc_last, d_terms, dh0, dc0);
        Py_END_ALLOW_THREADS
    }
    release(&arrays);
    return PyErr_Occurred() ? NULL : result(status);
}

/* -- the library's state ------------------------------------------------------------------------- */

static PyObject *py_variants(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    PyObject *list = PyList_New(0);
    for (int v = 0; list && v < VARIANT_COUNT; v++) {
        PyObject *entry = Py_BuildValue("(sii)", variants[v]->name, variants[v]->runs_here() != 0,
                                        variants[v]->vector_floats);
        if (!entry || PyList_Append(list, entry) != 0) {
            Py_XDECREF(entry);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return list;
}

static PyObject *py_use_openmp(PyObject *Py_UNUSED(self), PyObject *args)
{
    int on;
    if (!PyArg_ParseTuple(args, "p:use_openmp", &on)) return NULL;
    return PyBool_FromLong(scratchrnn_use_openmp(on));
}

static PyObject *py_openmp_found(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    return PyBool_FromLong(scratchrnn_openmp_found());
}

static PyObject *py_last_threads(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromLong(scratchrnn_last_threads());
}

static PyObject *py_pool_helpers(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused))
{
    return PyLong_FromLong(scratchrnn_pool_helpers());
}

#define LOOP_DOC(what) what " (see api.h; the Python wrappers in scratchrnn.kernels document the arrays)"
static PyMethodDef methods[] = {
    {"variants", py_variants, METH_NOARGS,
     "variants() -> [(name, runs_here, vector_floats)], the built variants in the order of preference"},
    {"tanh", py_tanh, METH_VARARGS, "tanh(variant, n, x, out): out = the kernels' tanh of x, n elements each"},
    {"greedy_decode", py_greedy_decode, METH_VARARGS, LOOP_DOC("greedy_decode(variant, batch, hidden, vocab, "
     "num_forced, num_tokens, threads, relu, forced, input_rows, W_step, b_q, state, logits, tokens)")},
    {"recurrence_forward", py_recurrence_forward, METH_VARARGS,
     LOOP_DOC("recurrence_forward(variant, steps, batch, hidden, threads, relu, W_hh, hs)")},
    {"recurrence_backward", py_recurrence_backward, METH_VARARGS, LOOP_DOC("recurrence_backward(variant, "
     "steps, batch, hidden, threads, relu, W_hh, hs, dhs, dh_last, dz, dh0)")},
    {"gru_forward", py_gru_forward, METH_VARARGS, LOOP_DOC("gru_forward(variant, steps, batch, hidden, "
     "threads, terms, W_h, W_hh, hs, zr, candidates, reset_h)")},
    {"gru_backward", py_gru_backward, METH_VARARGS, LOOP_DOC("gru_backward(variant, steps, batch, hidden, "
     "threads, W_h, W_hh, hs, zr, candidates, d_outputs, dh_last, d_terms, dh0)")},
    {"lstm_forward", py_lstm_forward, METH_VARARGS, LOOP_DOC("lstm_forward(variant, steps, batch, hidden, "
     "threads, unit_shares, terms, W_h, hs, cs, acts, tanh_cs)")},
    {"lstm_backward", py_lstm_backward, METH_VARARGS, LOOP_DOC("lstm_backward(variant, steps, batch, hidden, "
     "threads, unit_shares, W_h, cs, acts, tanh_cs, d_outputs, dh_last, dc_last, d_terms, dh0, dc0)")},
    {"use_openmp", py_use_openmp, METH_VARARGS,
     "use_openmp(on) -> bool: this thread's calls run on the loaded OpenMP runtime's team (or the "
     "library's own threads); False where no OpenMP runtime is loaded"},
    {"openmp_found", py_openmp_found, METH_NOARGS,
     "openmp_found() -> bool: whether an OpenMP runtime with GOMP_parallel is loaded"},
    {"last_threads", py_last_threads, METH_NOARGS, "how many threads the last kernel call used"},
    {"pool_helpers", py_pool_helpers, METH_NOARGS, "how many helper threads the library has started"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The compiled kernels of scratchrnn (greedy decoding, the training loops of the RNN, GRU and LSTM).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    PyObject *m = PyModule_Create(&module);
    /* the hash of the C sources it was built from (setup.py; _sources.py): the loader refuses a
       library built from other sources than those beside it */
    if (m && PyModule_AddStringConstant(m, "SOURCE_HASH", SCRATCHRNN_SOURCE_HASH) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
