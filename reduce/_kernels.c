/*
 * The reduction's compiled kernels: the median combination of one band of
 * raw frames in one pass over it (median_raw_band), the FITS checksum's
 * sum of big-endian 32-bit words (ones_complement_words), and the QC's
 * hot-pixel scan (scan_excess, in _hotscan.c).
 *
 * median_raw_band.
 *
 * What reduce/engine.py does with numpy for a band (the fallback path, and
 * the reference these results equal bit for bit), fused so that each raw
 * value is touched once while it is in the L1 cache:
 *
 *   1. stored FITS word -> count: big-endian int16 with BZERO = 32768, so
 *      swap the bytes and flip the top bit;
 *   2. value = float32(double(count) - model[row]): megaradrp's rounding of
 *      the overscan subtraction;
 *   3. the shifted sums of the variance, float32, frame order:
 *      d = x_k - x_0, s1 += d, s2 += d * d (reduce.combine.ShiftedSums);
 *   4. the middle order statistics by the comparator schedule of
 *      reduce.median.median_schedule, run over a block of pixels at a time;
 *   5. the median (numina's even-N mean of the middle values, in float32)
 *      and the variance of the median (reduce.combine.finish_variance).
 *
 * Only comparisons, the same float32 and float64 operations in the same
 * order: build with -ffp-contract=off (no fused multiply-add).
 *
 * The GIL is released while a band is combined: the engine's worker
 * threads run bands on every core. combine_band is compiled twice, for
 * AVX2 and for the baseline, and the loader picks the one the CPU runs
 * (GCC's target_clones); the helpers are inlined into both. For N <= 32 on
 * an AVX2 CPU the schedule also exists written out (reduce/_networks.h):
 * eight pixels go from raw words to median in registers, about a third
 * less time per band. The vector width changes nothing in the results:
 * every lane does the same scalar IEEE operations.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_kernels.h"

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

#define MAX_FRAMES 64 /* reduce.combine.NETWORK_MAX_N */
#define LANES 256     /* pixels per block: n x LANES floats stay in L1 */

typedef struct {
    const uint8_t *raw;    /* (n, rows, raw_cols) stored big-endian words */
    const double *model;   /* (n, rows) overscan model per frame and row */
    const int32_t *steps;  /* (nsteps, 4): a, b, want_min, want_max */
    Py_ssize_t nsteps;
    float *data;           /* (rows, cols) median */
    float *variance;       /* (rows, cols) variance of the median */
    Py_ssize_t n, rows, raw_cols, col0, cols;
    float inv_n;           /* float32(1 / n) */
    float factor;          /* float32(median_variance_factor(n) / (n - 1)) */
} Band;

/* Values and shifted sums of one block of pixels of one row. */
INLINE void load_block(const Band *b, Py_ssize_t row, Py_ssize_t c0, int w,
                       float v[][LANES], float *s1, float *s2)
{
    uint16_t count[LANES];
    for (Py_ssize_t k = 0; k < b->n; k++) {
        const uint8_t *src =
            b->raw + 2 * ((k * b->rows + row) * b->raw_cols + b->col0 + c0);
        const double model = b->model[k * b->rows + row];
        float *restrict x = v[k];
        /* Big-endian word, top bit flipped: the count (BZERO = 32768). */
        for (int j = 0; j < w; j++)
            count[j] = (uint16_t)((src[2 * j] << 8 | src[2 * j + 1]) ^ 0x8000);
        for (int j = 0; j < w; j++)
            x[j] = (float)((double)count[j] - model);
        if (k == 0) {
            for (int j = 0; j < w; j++)
                s1[j] = s2[j] = 0.0f;
            continue;
        }
        const float *restrict first = v[0];
        for (int j = 0; j < w; j++) {
            float d = x[j] - first[j];
            s1[j] += d;
            d *= d;
            s2[j] += d;
        }
    }
}

/* The comparator schedule over a block: the middle values end on planes
 * (n-1)/2 and n/2; dead outputs are not computed. */
INLINE void run_schedule(const Band *b, int w, float v[][LANES])
{
    for (Py_ssize_t s = 0; s < b->nsteps; s++) {
        const int32_t *step = b->steps + 4 * s;
        /* Two different planes (check_steps): no aliasing. */
        float *restrict lo = v[step[0]];
        float *restrict hi = v[step[1]];
        if (step[2] && step[3]) {
            for (int j = 0; j < w; j++) {
                float x = lo[j], y = hi[j];
                float smaller = y < x ? y : x;
                float larger = x < y ? y : x;
                lo[j] = smaller;
                hi[j] = larger;
            }
        } else if (step[2]) {
            for (int j = 0; j < w; j++) {
                float x = lo[j], y = hi[j];
                lo[j] = y < x ? y : x;
            }
        } else if (step[3]) {
            for (int j = 0; j < w; j++) {
                float x = lo[j], y = hi[j];
                hi[j] = x < y ? y : x;
            }
        }
    }
}

INLINE void finish_block(const Band *b, Py_ssize_t row, Py_ssize_t c0, int w,
                         float v[][LANES], float *s1, const float *s2)
{
    const float *lower = v[(b->n - 1) / 2], *upper = v[b->n / 2];
    float *data = b->data + row * b->cols + c0;
    float *variance = b->variance + row * b->cols + c0;
    for (int j = 0; j < w; j++) {
        data[j] = (b->n % 2) ? lower[j] : (lower[j] + upper[j]) * 0.5f;
        float square = s1[j] * s1[j];
        square *= b->inv_n;
        float var = s2[j] - square;
        var = var < 0.0f ? 0.0f : var;
        variance[j] = var * b->factor;
    }
}

CLONES
static void combine_band(const Band *b)
{
    float v[MAX_FRAMES][LANES];
    float s1[LANES], s2[LANES];
    for (Py_ssize_t row = 0; row < b->rows; row++) {
        for (Py_ssize_t c0 = 0; c0 < b->cols; c0 += LANES) {
            int w = (int)(b->cols - c0 < LANES ? b->cols - c0 : LANES);
            load_block(b, row, c0, w, v, s1, s2);
            run_schedule(b, w, v);
            finish_block(b, row, c0, w, v, s1, s2);
        }
    }
}

/* The same band with the schedule written out (reduce/_networks.h, from
 * tools/gen_networks.py): eight pixels at a time, the N values of each
 * pixel in registers from the raw words to the median, no plane stored
 * between comparators. The same operations, in the same order, as
 * load_block, run_schedule and finish_block above, on eight lanes:
 * min(y, x) and max(y, x) are "y < x ? y : x" and "y > x ? y : x", and
 * max(0, v) is "v < 0 ? 0 : v" (a -0.0 stays -0.0). AVX2, x86-64 only;
 * taken when the CPU has AVX2 and the schedule given is the one written. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define REGISTER_NETWORKS 1
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2")))

typedef struct {
    const int32_t *steps;
    Py_ssize_t nsteps;
    void (*band)(const Band *);
} RegisterNetwork;

/* Eight values of frame k at row, columns c..c+7 of the band (load_block). */
AVX2_INLINE __m256 load8(const Band *b, Py_ssize_t k, Py_ssize_t row,
                         Py_ssize_t c)
{
    const uint8_t *src =
        b->raw + 2 * ((k * b->rows + row) * b->raw_cols + b->col0 + c);
    const __m128i swap =
        _mm_set_epi8(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1);
    __m128i words = _mm_loadu_si128((const __m128i *)src);
    words = _mm_xor_si128(_mm_shuffle_epi8(words, swap),
                          _mm_set1_epi16((short)0x8000));
    const __m256i counts = _mm256_cvtepu16_epi32(words);
    const __m256d model = _mm256_set1_pd(b->model[k * b->rows + row]);
    const __m256d low = _mm256_sub_pd(
        _mm256_cvtepi32_pd(_mm256_castsi256_si128(counts)), model);
    const __m256d high = _mm256_sub_pd(
        _mm256_cvtepi32_pd(_mm256_extracti128_si256(counts, 1)), model);
    return _mm256_set_m128(_mm256_cvtpd_ps(high), _mm256_cvtpd_ps(low));
}

/* The median and its variance at eight pixels (finish_block). */
AVX2_INLINE void finish8(const Band *b, Py_ssize_t row, Py_ssize_t c,
                         __m256 lower, __m256 upper, __m256 s1, __m256 s2)
{
    const __m256 median =
        (b->n % 2) ? lower
                   : _mm256_mul_ps(_mm256_add_ps(lower, upper),
                                   _mm256_set1_ps(0.5f));
    __m256 square = _mm256_mul_ps(s1, s1);
    square = _mm256_mul_ps(square, _mm256_set1_ps(b->inv_n));
    __m256 var = _mm256_sub_ps(s2, square);
    var = _mm256_max_ps(_mm256_setzero_ps(), var);
    _mm256_storeu_ps(b->data + row * b->cols + c, median);
    _mm256_storeu_ps(b->variance + row * b->cols + c,
                     _mm256_mul_ps(var, _mm256_set1_ps(b->factor)));
}

#define AVX2_BAND(N)                                                         \
    __attribute__((target("avx2"))) static void band_##N(const Band *b)      \
    {                                                                        \
        for (Py_ssize_t row = 0; row < b->rows; row++) {                     \
            for (Py_ssize_t c = 0; c < b->cols; c += 8) {                    \
                __m256 x[N];                                                 \
                __m256 s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();   \
                x[0] = load8(b, 0, row, c);                                  \
                _Pragma("GCC unroll 64") for (int k = 1; k < N; k++)         \
                {                                                            \
                    x[k] = load8(b, k, row, c);                              \
                    __m256 d = _mm256_sub_ps(x[k], x[0]);                    \
                    s1 = _mm256_add_ps(s1, d);                               \
                    d = _mm256_mul_ps(d, d);                                 \
                    s2 = _mm256_add_ps(s2, d);                               \
                }                                                            \
                network_##N(x);                                              \
                finish8(b, row, c, x[(N - 1) / 2], x[N / 2], s1, s2);        \
            }                                                                \
        }                                                                    \
    }

#include "_networks.h"
#endif

/* The band function for b: the written-out network where it applies, else
 * the schedule run over planes. */
static void (*band_function(const Band *b))(const Band *)
{
#ifdef REGISTER_NETWORKS
    if (b->n <= NETWORK_REGISTER_MAX && b->cols % 8 == 0 &&
        __builtin_cpu_supports("avx2")) {
        const RegisterNetwork *net = &network_table[b->n - 2];
        if (net->nsteps == b->nsteps &&
            memcmp(net->steps, b->steps,
                   (size_t)b->nsteps * 4 * sizeof(int32_t)) == 0)
            return net->band;
    }
#endif
    return combine_band;
}

int check_size(const char *name, Py_buffer *view, Py_ssize_t items,
               Py_ssize_t itemsize)
{
    if (view->len != items * itemsize) {
        PyErr_Format(PyExc_ValueError,
                     "%s: %zd bytes, expected %zd (%zd items of %zd bytes)",
                     name, view->len, items * itemsize, items, itemsize);
        return -1;
    }
    return 0;
}

static int check_steps(const Band *b)
{
    for (Py_ssize_t s = 0; s < b->nsteps; s++) {
        const int32_t *step = b->steps + 4 * s;
        if (step[0] < 0 || step[0] >= b->n || step[1] < 0 || step[1] >= b->n ||
            step[0] == step[1]) {
            PyErr_Format(PyExc_ValueError,
                         "schedule step %zd compares planes %d and %d; expected "
                         "two different planes of 0..%zd",
                         s, step[0], step[1], b->n - 1);
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(median_raw_band_doc,
"median_raw_band(raw, model, steps, data, variance, n, rows, raw_cols, col0,\n"
"                cols, inv_n, factor)\n"
"--\n\n"
"Median and its variance of a band of n raw frames (see the module source).\n"
"raw: (n, rows, raw_cols) stored big-endian 16-bit words; model: (n, rows) float64;\n"
"steps: (m, 4) int32 comparator schedule; data, variance: (rows, cols)\n"
"float32, written. All C-contiguous.");

static PyObject *median_raw_band(PyObject *self, PyObject *args)
{
    Py_buffer raw, model, steps, data, variance;
    Band b;
    double inv_n, factor;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*nnnnndd", &raw, &model, &steps,
                          &data, &variance, &b.n, &b.rows, &b.raw_cols,
                          &b.col0, &b.cols, &inv_n, &factor))
        return NULL;
    PyObject *result = NULL;
    b.nsteps = steps.len / (4 * (Py_ssize_t)sizeof(int32_t));
    if (b.n < 2 || b.n > MAX_FRAMES) {
        PyErr_Format(PyExc_ValueError, "n = %zd frames; expected 2 to %d",
                     b.n, MAX_FRAMES);
        goto done;
    }
    if (b.rows < 0 || b.cols < 0 || b.col0 < 0 || b.col0 + b.cols > b.raw_cols) {
        PyErr_Format(PyExc_ValueError,
                     "columns %zd:%zd of %zd raw columns, %zd rows: not a band",
                     b.col0, b.col0 + b.cols, b.raw_cols, b.rows);
        goto done;
    }
    if (check_size("raw", &raw, b.n * b.rows * b.raw_cols, 2) ||
        check_size("model", &model, b.n * b.rows, 8) ||
        check_size("steps", &steps, b.nsteps * 4, 4) ||
        check_size("data", &data, b.rows * b.cols, 4) ||
        check_size("variance", &variance, b.rows * b.cols, 4))
        goto done;
    b.raw = raw.buf;
    b.model = model.buf;
    b.steps = steps.buf;
    b.data = data.buf;
    b.variance = variance.buf;
    b.inv_n = (float)inv_n;
    b.factor = (float)factor;
    if (check_steps(&b))
        goto done;
    void (*band)(const Band *) = band_function(&b);
    Py_BEGIN_ALLOW_THREADS
    band(&b);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&raw);
    PyBuffer_Release(&model);
    PyBuffer_Release(&steps);
    PyBuffer_Release(&data);
    PyBuffer_Release(&variance);
    return result;
}

/* Sum of big-endian 32-bit words, 64-bit, unfolded: at most 2^32 words
 * (16 GiB) per call cannot overflow it. */
CLONES
static uint64_t sum_words(const uint8_t *p, Py_ssize_t words)
{
    uint64_t total = 0;
    for (Py_ssize_t i = 0; i < words; i++) {
        const uint8_t *w = p + 4 * i;
        total += (uint64_t)((uint32_t)w[0] << 24 | (uint32_t)w[1] << 16 |
                            (uint32_t)w[2] << 8 | (uint32_t)w[3]);
    }
    return total;
}

PyDoc_STRVAR(ones_complement_words_doc,
"ones_complement_words(data)\n"
"--\n\n"
"Sum of the big-endian 32-bit words of data (bytes-like, a multiple of 4\n"
"bytes long), as an int, not folded (reduce.fits.checksum folds it).");

static PyObject *ones_complement_words(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (view.len % 4) {
        PyErr_Format(PyExc_ValueError,
                     "%zd bytes; expected a multiple of 4 (32-bit words)",
                     view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    if (view.len / 4 > ((Py_ssize_t)1 << 32)) {
        PyErr_Format(PyExc_ValueError,
                     "%zd bytes; expected at most 16 GiB per call", view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    uint64_t total;
    Py_BEGIN_ALLOW_THREADS
    total = sum_words(view.buf, view.len / 4);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(total);
}

PyDoc_STRVAR(register_networks_doc,
"register_networks()\n"
"--\n\n"
"The largest N whose median network runs written out in registers on this\n"
"CPU (AVX2), 0 where none does (the schedule then runs over planes).");

static PyObject *register_networks(PyObject *self, PyObject *unused)
{
#ifdef REGISTER_NETWORKS
    if (__builtin_cpu_supports("avx2"))
        return PyLong_FromLong(NETWORK_REGISTER_MAX);
#endif
    return PyLong_FromLong(0);
}

static PyMethodDef methods[] = {
    {"median_raw_band", median_raw_band, METH_VARARGS, median_raw_band_doc},
    {"register_networks", register_networks, METH_NOARGS,
     register_networks_doc},
    {"ones_complement_words", ones_complement_words, METH_O,
     ones_complement_words_doc},
    {"scan_excess", scan_excess, METH_VARARGS, scan_excess_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "reduce._kernels",
    .m_doc = "The reduction's compiled kernels (reduce.compiled loads them "
             "when built; numpy does the same otherwise).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
