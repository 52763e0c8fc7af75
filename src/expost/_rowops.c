/* expost._rowops: the row passes of Eq 5, Eq 8 and Eq 26 in compiled code (optional).
 *
 * numpy has no fast way to scale each short row of a matrix by its own number: at 15
 * classes that step costs a third to a half of the matrix product before it, and the
 * simplex check's pass over q's bits costs another fifth. This module does those passes
 * over a block while it is in cache, as plain loops over contiguous memory:
 *
 *   divide_rows(z, dest[, clip, tol])
 *                         dest[i, a] = z[i, a] * (1 / z[i, k]) for a < k = dest's width:
 *                         the reciprocal rounded once in the dtype, then the product,
 *                         rounded once: what numpy computes, entry for entry. With clip
 *                         (Eq 26), then min_or_nan(dest, clip, tol) over the block.
 *   any_sign_bit(a)       whether any entry of a has its sign bit set (the check's pass).
 *   argmax_rows(z, out, k)  out[i] = the lowest a < k at which row i of z attains its maximum
 *                         over its first k entries (Eq 5's tie rule: the lowest action).
 *   min_or_nan(a, clip, tol)
 *                         the least entry of a, or NaN where an entry is NaN or infinite;
 *                         with clip, the entries in [-tol, 0) become 0 (Eq 26's
 *                         rounding-level negatives).
 *   value_range(v)        (least, greatest) entry of a 1-D v of any stride (a column of a
 *                         product: the row sums that the simplex check tests), (NaN, NaN)
 *                         where an entry is NaN.
 *
 * Arrays are float32 or float64, C-contiguous but for value_range's (the callers check,
 * and fall back to numpy for anything else; the checks here are a second line). Only
 * the buffer protocol is used, no numpy headers. The GIL is released while the loops run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
/* EXPOST_NO_SIMD: the portable loops only (what other machines run; a test builds it). */
#if !defined(EXPOST_NO_SIMD) && \
    (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#include <emmintrin.h>
#define HAVE_SSE2 1
#endif

/* The passes below are compiled twice with GCC on x86-64 Linux, for AVX2 and for the
 * baseline, and the loader picks one for the machine (target_clones): AVX2's 8 lanes
 * of float32 halve min_or_nan's time (2.0 against 4.0 ms per million 15-wide rows). */
#if !defined(EXPOST_NO_SIMD) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef MULTIVERSION
#define MULTIVERSION
#endif

/* Lanes of the reductions: independent accumulators that the compiler can keep in
 * vector registers, so no loop-carried chain runs through every element (a float
 * minimum or sum waits about 4 cycles on the one before; 32 lanes keep 8 SSE
 * registers of float32 busy). */
#define LANES 32

/* Entries per chunk of min_or_nan: 8 KB of float32, in L1 while it is clipped. */
#define MIN_CHUNK 2048

#define DEFINE_KERNELS(SUFFIX, T, BITS)                                                    \
    MULTIVERSION                                                                           \
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
    MULTIVERSION                                                                           \
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
    /* Chunk by chunk (in L1), so that clipping a chunk follows its minimum there. */      \
    MULTIVERSION                                                                           \
    static double min_or_nan_##SUFFIX(T *restrict a, Py_ssize_t size, int clip, double tol) \
    {                                                                                      \
        T low[LANES], bad[LANES]; /* bad: sums of x * 0, NaN once an x is NaN or inf */     \
        const T floor = (T)-tol;                                                           \
        for (int l = 0; l < LANES; l++) { low[l] = (T)INFINITY; bad[l] = 0; }              \
        for (Py_ssize_t c0 = 0; c0 < size; c0 += MIN_CHUNK) {                              \
            Py_ssize_t end = size - c0 < MIN_CHUNK ? size : c0 + MIN_CHUNK, t = c0;        \
            T chunk[LANES];                                                                \
            for (int l = 0; l < LANES; l++) chunk[l] = (T)INFINITY;                        \
            for (; t + LANES <= end; t += LANES)                                           \
                for (int l = 0; l < LANES; l++) {                                          \
                    T x = a[t + l];                                                        \
                    chunk[l] = x < chunk[l] ? x : chunk[l];                                \
                    bad[l] += x * 0;                                                       \
                }                                                                          \
            for (; t < end; t++) {                                                         \
                T x = a[t];                                                                \
                chunk[0] = x < chunk[0] ? x : chunk[0];                                    \
                bad[0] += x * 0;                                                           \
            }                                                                              \
            T least = chunk[0];                                                            \
            for (int l = 0; l < LANES; l++) {                                              \
                least = chunk[l] < least ? chunk[l] : least;                               \
                low[l] = chunk[l] < low[l] ? chunk[l] : low[l];                            \
            }                                                                              \
            if (clip && least < 0)                                                         \
                for (t = c0; t < end; t++) a[t] = a[t] < 0 && a[t] >= floor ? 0 : a[t];    \
        }                                                                                  \
        T least = low[0], sum = bad[0];                                                    \
        for (int l = 1; l < LANES; l++) {                                                  \
            least = low[l] < least ? low[l] : least;                                       \
            sum += bad[l];                                                                 \
        }                                                                                  \
        return sum != sum ? NAN : (double)least;                                           \
    }                                                                                      \
                                                                                           \
    /* divide_rows, then min_or_nan with clip over what it wrote (still in cache): two      \
     * passes, cheaper here than one that tracks the minimum, or clips, while it writes. */ \
    static double divide_rows_clip_##SUFFIX(const T *restrict z, T *restrict dest,         \
                                            Py_ssize_t n, Py_ssize_t width, Py_ssize_t k,  \
                                            double tol)                                    \
    {                                                                                      \
        divide_rows_##SUFFIX(z, dest, n, width, k);                                        \
        return min_or_nan_##SUFFIX(dest, n * k, 1, tol);                                   \
    }

DEFINE_KERNELS(f32, float, uint32_t)
DEFINE_KERNELS(f64, double, uint64_t)

/* value_range over n entries `stride` bytes apart: 4 lanes of minimum and maximum (a
 * chain through every entry would wait on each comparison); the entries are strided,
 * so there is nothing to vectorise. x != x only for NaN. */
#define RANGE_LANES 4
#define DEFINE_RANGE(SUFFIX, T)                                                            \
    static void value_range_##SUFFIX(const char *p, Py_ssize_t n, Py_ssize_t stride,      \
                                     double *least, double *greatest)                      \
    {                                                                                      \
        T lo[RANGE_LANES], hi[RANGE_LANES];                                                \
        int nan = 0;                                                                       \
        for (int l = 0; l < RANGE_LANES; l++) { lo[l] = (T)INFINITY; hi[l] = (T)-INFINITY; } \
        Py_ssize_t i = 0;                                                                  \
        for (; i + RANGE_LANES <= n; i += RANGE_LANES)                                     \
            for (int l = 0; l < RANGE_LANES; l++) {                                        \
                T x = *(const T *)(p + (i + l) * stride);                                  \
                lo[l] = x < lo[l] ? x : lo[l];                                             \
                hi[l] = x > hi[l] ? x : hi[l];                                             \
                nan |= x != x;                                                             \
            }                                                                              \
        for (; i < n; i++) {                                                               \
            T x = *(const T *)(p + i * stride);                                            \
            lo[0] = x < lo[0] ? x : lo[0];                                                 \
            hi[0] = x > hi[0] ? x : hi[0];                                                 \
            nan |= x != x;                                                                 \
        }                                                                                  \
        for (int l = 1; l < RANGE_LANES; l++) {                                            \
            lo[0] = lo[l] < lo[0] ? lo[l] : lo[0];                                         \
            hi[0] = hi[l] > hi[0] ? hi[l] : hi[0];                                         \
        }                                                                                  \
        *least = nan ? NAN : (double)lo[0];                                                \
        *greatest = nan ? NAN : (double)hi[0];                                             \
    }

DEFINE_RANGE(f32, float)
DEFINE_RANGE(f64, double)

/* argmax_rows: each row's maximum, then the lowest entry equal to it. The portable loop
 * keeps the first strictly greater entry. With SSE2 (every x86-64): the maximum over 4
 * (or 2) lanes at a time and across the lanes, then, for rows of at most 64 entries, one
 * comparison of the row with it, whose bits (one per entry, the entries past k masked
 * off) give the lowest index that attains it, with no branch that depends on the data;
 * for longer rows, the first group of lanes that attains it. The
 * rows hold no NaN (the simplex check has run before): a NaN never wins the portable
 * loop, and where the SIMD maximum is not attained the row gets 0. */
#define DEFINE_ARGMAX_PORTABLE(SUFFIX, T)                                                  \
    static void argmax_rows_portable_##SUFFIX(const T *z, int64_t *out, Py_ssize_t n,      \
                                              Py_ssize_t w, Py_ssize_t k)                  \
    {                                                                                      \
        for (Py_ssize_t i = 0; i < n; i++) {                                               \
            const T *r = z + i * w;                                                        \
            T best = r[0];                                                                 \
            int64_t at = 0;                                                                \
            for (Py_ssize_t a = 1; a < k; a++)                                             \
                if (r[a] > best) { best = r[a]; at = a; }                                  \
            out[i] = at;                                                                   \
        }                                                                                  \
    }

DEFINE_ARGMAX_PORTABLE(f32, float)
DEFINE_ARGMAX_PORTABLE(f64, double)

static int
lowest_bit(uint64_t bits)
{
    int at = 0;
    if (bits == 0) return 0;
#if defined(__GNUC__) || defined(__clang__)
    at = __builtin_ctzll(bits);
#else
    while (!(bits & 1)) { bits >>= 1; at++; }
#endif
    return at;
}

#ifdef HAVE_SSE2
/* Per dtype: the vector of one group (4 float32 or 2 float64), its intrinsics, the
 * maximum across its lanes, and the last, partial group of a row (its first `rem`
 * entries, -inf in the other lanes; never read past the row). */
static __m128
hmax_ps(__m128 m)
{
    m = _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_max_ps(m, _mm_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
}

static __m128
tail_ps(const float *r, Py_ssize_t rem)
{
    const float lo = -INFINITY;
    switch (rem) {  /* the same case for every row: predicted */
    case 1: return _mm_setr_ps(r[0], lo, lo, lo);
    case 2: return _mm_setr_ps(r[0], r[1], lo, lo);
    case 3: return _mm_setr_ps(r[0], r[1], r[2], lo);
    default: return _mm_set1_ps(lo);
    }
}

static __m128d
hmax_pd(__m128d m)
{
    return _mm_max_pd(m, _mm_shuffle_pd(m, m, 1));
}

static __m128d
tail_pd(const double *r, Py_ssize_t rem)
{
    return rem ? _mm_setr_pd(r[0], -INFINITY) : _mm_set1_pd(-INFINITY);
}

/* argmax_rows_sse_f32 and _f64. Rows of more than 64 entries: the lowest index in the
 * first group (then the tail) that holds the maximum (0 where none does: a NaN). */
#define DEFINE_ARGMAX_SSE(SUFFIX, T, V, W, SX)                                              \
    static void argmax_rows_sse_##SUFFIX(const T *z, int64_t *out, Py_ssize_t n,          \
                                         Py_ssize_t w, Py_ssize_t k)                      \
    {                                                                                     \
        Py_ssize_t groups = k / W, rem = k % W;                                           \
        uint64_t valid = k >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1);               \
        for (Py_ssize_t i = 0; i < n; i++) {                                              \
            const T *r = z + i * w;                                                       \
            V tail = tail_##SX(r + W * groups, rem), m = tail;                            \
            for (Py_ssize_t g = 0; g < groups; g++) m = _mm_max_##SX(m, _mm_loadu_##SX(r + W * g)); \
            m = hmax_##SX(m);                                                             \
            if (k > 64) {                                                                 \
                int64_t at = -1;                                                          \
                for (Py_ssize_t g = 0; g < groups && at < 0; g++) {                       \
                    int mask = _mm_movemask_##SX(_mm_cmpeq_##SX(_mm_loadu_##SX(r + W * g), m)); \
                    if (mask) at = W * g + lowest_bit((uint64_t)mask);                    \
                }                                                                         \
                if (at < 0) {                                                             \
                    int mask = _mm_movemask_##SX(_mm_cmpeq_##SX(tail, m));                \
                    at = mask ? W * groups + lowest_bit((uint64_t)mask) : 0;              \
                }                                                                         \
                out[i] = at;                                                              \
                continue;                                                                 \
            }                                                                             \
            uint64_t bits = 0;                                                            \
            for (Py_ssize_t g = 0; g < groups; g++)                                       \
                bits |= (uint64_t)_mm_movemask_##SX(                                      \
                            _mm_cmpeq_##SX(_mm_loadu_##SX(r + W * g), m)) << (W * g);      \
            if (rem) bits |= (uint64_t)_mm_movemask_##SX(_mm_cmpeq_##SX(tail, m)) << (W * groups); \
            out[i] = lowest_bit(bits & valid);                                            \
        }                                                                                 \
    }

DEFINE_ARGMAX_SSE(f32, float, __m128, 4, ps)
DEFINE_ARGMAX_SSE(f64, double, __m128d, 2, pd)
#endif

#ifdef HAVE_SSE2
#define ARGMAX_SIMD(SUFFIX) { argmax_rows_sse_##SUFFIX(z, out, n, w, k); return; }
#else
#define ARGMAX_SIMD(SUFFIX)
#endif

/* argmax_rows_f32 and _f64: the SIMD pass where it applies, the portable loop otherwise. */
#define DEFINE_ARGMAX(SUFFIX, T)                                                           \
    static void argmax_rows_##SUFFIX(const T *z, int64_t *out, Py_ssize_t n, Py_ssize_t w, \
                                     Py_ssize_t k)                                         \
    {                                                                                      \
        ARGMAX_SIMD(SUFFIX)                                                                \
        argmax_rows_portable_##SUFFIX(z, out, n, w, k);                                    \
    }

DEFINE_ARGMAX(f32, float)
DEFINE_ARGMAX(f64, double)

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
"divide_rows(z, dest, clip=False, tol=0.0) -> float or None\n\n"
"dest[i, a] = z[i, a] * (1 / z[i, k]) for a < k, where dest is (n, k) and z (n, w), w > k;\n"
"both C-contiguous, of one dtype (float32 or float64), not overlapping. With clip, then\n"
"min_or_nan(dest, True, tol): returns the least entry written (NaN if one is NaN or\n"
"infinite), and those in [-tol, 0) become 0.");

static PyObject *
divide_rows(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *oz, *odest;
    int clip = 0;
    double tol = 0.0;
    if (!PyArg_ParseTuple(args, "OO|pd:divide_rows", &oz, &odest, &clip, &tol)) return NULL;
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
    /* addresses as integers: comparing pointers into different objects is undefined */
    uintptr_t zb = (uintptr_t)z.buf, db = (uintptr_t)dest.buf;
    if (z.ndim != 2 || dest.ndim != 2 || z.shape[0] != dest.shape[0] || z.shape[1] <= dest.shape[1])
        PyErr_SetString(PyExc_ValueError,
                        "expost._rowops.divide_rows: expected z (n, w) and dest (n, k) with w > k");
    else if (z.len > 0 && dest.len > 0 && db < zb + (uintptr_t)z.len && zb < db + (uintptr_t)dest.len)
        PyErr_SetString(PyExc_ValueError, "expost._rowops.divide_rows: z and dest overlap");
    else {
        Py_ssize_t n = z.shape[0], w = z.shape[1], k = dest.shape[1];
        double least = 0.0;
        Py_BEGIN_ALLOW_THREADS
        if (clip && kind == 4)
            least = divide_rows_clip_f32((const float *)z.buf, (float *)dest.buf, n, w, k, tol);
        else if (clip)
            least = divide_rows_clip_f64((const double *)z.buf, (double *)dest.buf, n, w, k, tol);
        else if (kind == 4)
            divide_rows_f32((const float *)z.buf, (float *)dest.buf, n, w, k);
        else
            divide_rows_f64((const double *)z.buf, (double *)dest.buf, n, w, k);
        Py_END_ALLOW_THREADS
        result = clip ? PyFloat_FromDouble(least) : Py_NewRef(Py_None);
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
"entry is NaN or infinite (the least before clipping). With clip, the entries in [-tol, 0)\n"
"become 0 (a must then be writable).");

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

PyDoc_STRVAR(value_range_doc,
"value_range(v) -> (float, float)\n\n"
"(least, greatest) entry of v (1-D, float32 or float64, any stride; (inf, -inf) if v is\n"
"empty), or (nan, nan) if any entry is NaN.");

static PyObject *
value_range(PyObject *Py_UNUSED(self), PyObject *arg)
{
    Py_buffer v;
    if (PyObject_GetBuffer(arg, &v, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    int kind = kind_of(&v);
    PyObject *result = NULL;
    if (kind == 0)
        PyErr_SetString(PyExc_TypeError, "expost._rowops.value_range: v must be float32 or float64");
    else if (v.ndim != 1)
        PyErr_SetString(PyExc_ValueError, "expost._rowops.value_range: v must be 1-D");
    else {
        double least, greatest;
        Py_ssize_t n = v.shape[0], stride = v.strides[0];
        Py_BEGIN_ALLOW_THREADS
        if (kind == 4) value_range_f32((const char *)v.buf, n, stride, &least, &greatest);
        else value_range_f64((const char *)v.buf, n, stride, &least, &greatest);
        Py_END_ALLOW_THREADS
        result = Py_BuildValue("(dd)", least, greatest);
    }
    PyBuffer_Release(&v);
    return result;
}

PyDoc_STRVAR(argmax_rows_doc,
"argmax_rows(z, out, k)\n\n"
"out[i] = the lowest a < k at which row i of z (n, w), w >= k >= 1, attains its maximum over\n"
"its first k entries. z: C-contiguous, float32 or float64, with no NaN in those entries;\n"
"out: (n,), int64, C-contiguous.");

static PyObject *
argmax_rows(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *oz, *oout;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "OOn:argmax_rows", &oz, &oout, &k)) return NULL;
    Py_buffer z, out;
    int kind = get_array(oz, &z, 0, "z");
    if (!kind) return NULL;
    if (PyObject_GetBuffer(oout, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&z);
        return NULL;
    }
    PyObject *result = NULL;
    const char *f = out.format ? out.format : "B";
    if (f[0] == '=' || f[0] == '<' || f[0] == '@') f++;
    if (out.itemsize != 8 || !(strcmp(f, "l") == 0 || strcmp(f, "q") == 0))
        PyErr_SetString(PyExc_TypeError, "expost._rowops.argmax_rows: out must be int64");
    else if (z.ndim != 2 || out.ndim != 1 || out.shape[0] != z.shape[0] || k < 1 || k > z.shape[1])
        PyErr_SetString(PyExc_ValueError,
                        "expost._rowops.argmax_rows: expected z (n, w), out (n,) and 1 <= k <= w");
    else {
        Py_ssize_t n = z.shape[0], w = z.shape[1];
        Py_BEGIN_ALLOW_THREADS
        if (kind == 4) argmax_rows_f32((const float *)z.buf, (int64_t *)out.buf, n, w, k);
        else argmax_rows_f64((const double *)z.buf, (int64_t *)out.buf, n, w, k);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&z);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"argmax_rows", argmax_rows, METH_VARARGS, argmax_rows_doc},
    {"divide_rows", divide_rows, METH_VARARGS, divide_rows_doc},
    {"any_sign_bit", any_sign_bit, METH_O, any_sign_bit_doc},
    {"min_or_nan", min_or_nan, METH_VARARGS, min_or_nan_doc},
    {"value_range", value_range, METH_O, value_range_doc},
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
