/* expost._rowops: the row passes of Eq 8 and Eq 26 in compiled code (optional).
 *
 * numpy has no fast way to scale each short row of a matrix by its own number: at 15
 * classes that step costs a third to a half of the matrix product before it, and the
 * simplex check's pass over q's bits costs another fifth. This module does those passes
 * over a block while it is in cache, as plain loops over contiguous memory:
 *
 *   divide_rows(z, dest)  dest[i, a] = z[i, a] * (1 / z[i, k]) for a < k = dest's width:
 *                         the reciprocal rounded once in the dtype, then the product,
 *                         rounded once: what numpy computes, entry for entry.
 *   any_sign_bit(a)       whether any entry of a has its sign bit set (the check's pass).
 *   min_or_nan(a, clip, tol)
 *                         the least entry of a, or NaN where an entry is NaN or infinite;
 *                         with clip, and the least entry in [-tol, 0), negatives (and -0.0)
 *                         become 0.
 *
 * Arrays are float32 or float64, C-contiguous (the callers check, and fall back to numpy
 * for anything else; the checks here are a second line). Only the buffer protocol is
 * used, no numpy headers. The GIL is released while the loops run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Lanes of the reductions: independent accumulators that the compiler can keep in
 * vector registers, so no loop-carried chain runs through every element (a float
 * minimum or sum waits about 4 cycles on the one before; 32 lanes keep 8 SSE
 * registers of float32 busy). */
#define LANES 32

#define DEFINE_KERNELS(SUFFIX, T, BITS)                                                    \
    static void divide_rows_##SUFFIX(const T *restrict z, T *restrict dest, Py_ssize_t n,  \
                                     Py_ssize_t width, Py_ssize_t k)                       \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            const T *restrict zr = z + i * width;                                          \
            T *restrict out = dest + i * k;                                                \
            T r = (T)1 / zr[k];                                                            \
            for (Py_ssize_t a = 0; a < k; a++) out[a] = zr[a] * r;                         \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    static int any_sign_bit_##SUFFIX(const BITS *restrict bits, Py_ssize_t size)           \
    {                                                                                      \
        BITS acc[LANES] = {0};                                                             \
        Py_ssize_t t = 0;                                                                  \
        for (; t + LANES <= size; t += LANES)                                              \
            for (int l = 0; l < LANES; l++) acc[l] |= bits[t + l];                         \
        for (; t < size; t++) acc[0] |= bits[t];                                           \
        BITS all = 0;                                                                      \
        for (int l = 0; l < LANES; l++) all |= acc[l];                                     \
        return (int)(all >> (8 * sizeof(BITS) - 1));                                       \
    }                                                                                      \
                                                                                           \
    static double min_or_nan_##SUFFIX(T *restrict a, Py_ssize_t size, int clip, double tol) \
    {                                                                                      \
        T low[LANES], bad[LANES]; /* bad: sums of x * 0, NaN once an x is NaN or inf */     \
        for (int l = 0; l < LANES; l++) { low[l] = (T)INFINITY; bad[l] = 0; }              \
        Py_ssize_t t = 0;                                                                  \
        for (; t + LANES <= size; t += LANES)                                              \
            for (int l = 0; l < LANES; l++) {                                              \
                T x = a[t + l];                                                            \
                low[l] = x < low[l] ? x : low[l];                                          \
                bad[l] += x * 0;                                                           \
            }                                                                              \
        for (; t < size; t++) {                                                            \
            T x = a[t];                                                                    \
            low[0] = x < low[0] ? x : low[0];                                              \
            bad[0] += x * 0;                                                               \
        }                                                                                  \
        T least = low[0], sum = bad[0];                                                    \
        for (int l = 1; l < LANES; l++) {                                                  \
            least = low[l] < least ? low[l] : least;                                       \
            sum += bad[l];                                                                 \
        }                                                                                  \
        if (sum != sum) return NAN;                                                        \
        if (clip && least < 0 && least >= -tol)                                            \
            for (t = 0; t < size; t++) a[t] = a[t] <= 0 ? 0 : a[t]; /* -0.0 too */      \
        return (double)least;                                                              \
    }

DEFINE_KERNELS(f32, float, uint32_t)
DEFINE_KERNELS(f64, double, uint64_t)

/* 4 for float32, 8 for float64, 0 for anything else. */
static int
kind_of(const Py_buffer *b)
{
    const char *f = b->format ? b->format : "B";
    if (f[0] == '=' || f[0] == '<' || f[0] == '@') f++;
    if (strcmp(f, "f") == 0 && b->itemsize == 4) return 4;
    if (strcmp(f, "d") == 0 && b->itemsize == 8) return 8;
    return 0;
}

/* A C-contiguous float32 or float64 buffer of obj; its kind, or 0 with an exception set. */
static int
get_array(PyObject *obj, Py_buffer *b, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, b, flags) < 0) return 0;
    int kind = kind_of(b);
    if (kind == 0) {
        PyBuffer_Release(b);
        PyErr_Format(PyExc_TypeError, "expost._rowops: %s must be float32 or float64", name);
    }
    return kind;
}

PyDoc_STRVAR(divide_rows_doc,
"divide_rows(z, dest)\n\n"
"dest[i, a] = z[i, a] * (1 / z[i, k]) for a < k, where dest is (n, k) and z (n, w), w > k;\n"
"both C-contiguous, of one dtype (float32 or float64), not overlapping.");

static PyObject *
divide_rows(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *oz, *odest;
    if (!PyArg_ParseTuple(args, "OO:divide_rows", &oz, &odest)) return NULL;
    Py_buffer z, dest;
    int kind = get_array(oz, &z, 0, "z");
    if (!kind) return NULL;
    if (get_array(odest, &dest, 1, "dest") != kind) {
        if (!PyErr_Occurred()) {
            PyBuffer_Release(&dest);
            PyErr_SetString(PyExc_TypeError, "expost._rowops.divide_rows: z and dest must share a dtype");
        }
        PyBuffer_Release(&z);
        return NULL;
    }
    PyObject *result = NULL;
    const char *zb = (const char *)z.buf, *db = (const char *)dest.buf;
    if (z.ndim != 2 || dest.ndim != 2 || z.shape[0] != dest.shape[0] || z.shape[1] <= dest.shape[1])
        PyErr_SetString(PyExc_ValueError,
                        "expost._rowops.divide_rows: expected z (n, w) and dest (n, k) with w > k");
    else if (z.len > 0 && dest.len > 0 && db < zb + z.len && zb < db + dest.len)
        PyErr_SetString(PyExc_ValueError, "expost._rowops.divide_rows: z and dest overlap");
    else {
        Py_ssize_t n = z.shape[0], w = z.shape[1], k = dest.shape[1];
        Py_BEGIN_ALLOW_THREADS
        if (kind == 4) divide_rows_f32((const float *)z.buf, (float *)dest.buf, n, w, k);
        else divide_rows_f64((const double *)z.buf, (double *)dest.buf, n, w, k);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&z);
    PyBuffer_Release(&dest);
    return result;
}

PyDoc_STRVAR(any_sign_bit_doc,
"any_sign_bit(a) -> bool\n\n"
"Whether any entry of a (C-contiguous, float32 or float64) has its sign bit set.");

static PyObject *
any_sign_bit(PyObject *Py_UNUSED(self), PyObject *arg)
{
    Py_buffer a;
    int kind = get_array(arg, &a, 0, "a");
    if (!kind) return NULL;
    int found;
    Py_ssize_t size = a.len / kind;
    Py_BEGIN_ALLOW_THREADS
    found = kind == 4 ? any_sign_bit_f32((const uint32_t *)a.buf, size)
                      : any_sign_bit_f64((const uint64_t *)a.buf, size);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    return PyBool_FromLong(found);
}

PyDoc_STRVAR(min_or_nan_doc,
"min_or_nan(a, clip, tol) -> float\n\n"
"The least entry of a (C-contiguous, float32 or float64; inf if a is empty), or NaN if any\n"
"entry is NaN or infinite. With clip, where the least entry lies in [-tol, 0), every\n"
"negative entry of a (and -0.0) becomes 0 (a must then be writable).");

static PyObject *
min_or_nan(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *oa;
    int clip;
    double tol;
    if (!PyArg_ParseTuple(args, "Opd:min_or_nan", &oa, &clip, &tol)) return NULL;
    Py_buffer a;
    int kind = get_array(oa, &a, clip, "a");
    if (!kind) return NULL;
    double least;
    Py_ssize_t size = a.len / kind;
    Py_BEGIN_ALLOW_THREADS
    least = kind == 4 ? min_or_nan_f32((float *)a.buf, size, clip, tol)
                      : min_or_nan_f64((double *)a.buf, size, clip, tol);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    return PyFloat_FromDouble(least);
}

static PyMethodDef methods[] = {
    {"divide_rows", divide_rows, METH_VARARGS, divide_rows_doc},
    {"any_sign_bit", any_sign_bit, METH_O, any_sign_bit_doc},
    {"min_or_nan", min_or_nan, METH_VARARGS, min_or_nan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "expost._rowops",
    "The row passes of Eq 8 and Eq 26 in compiled code (optional; see expost._decisions).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__rowops(void)
{
    return PyModule_Create(&module);
}
