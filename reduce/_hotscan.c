/*
 * scan_excess: the hot-pixel search's pass over one amplifier of a master
 * dark (reduce.hotpixels._scan), in one pass over the pixels.
 *
 * What the numpy path does chunk by chunk, with the same float32
 * operations in the same order (build with -ffp-contract=off):
 *
 *   background  bg = (hi - lo) * w + lo, float32, from the two block rows
 *               of the column-interpolated grid around the row
 *               (reduce.hotpixels.Background.at_rows);
 *   excess      e = region - bg, float32;
 *   hot         e > cut: the mask's HOT_PIXEL bit (1) is set and the
 *               pixel's index recorded, in row-major order;
 *   segments    per chunk of rows and column, the float32 sum in row order
 *               of e where |e| <= cut (else + 0), over the count of those
 *               pixels (at least 1), divided in double, stored as float32;
 *   hot share   per chunk and column, hot pixels / rows, in double, stored
 *               as float32;
 *   bulk        the sum (double) and count of e where |e| <= clip.
 *
 * Every output is bit-identical to numpy's except the bulk's sum, which
 * numpy adds pairwise: it agrees to rounding (a relative 1e-12).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCAN_CLONES
#endif

typedef struct {
    const float *region;   /* (rows, cols) the amplifier's master, ADU */
    const float *grid;     /* (blocks, cols) background by column */
    Py_ssize_t blocks;
    const intptr_t *i0;    /* (rows,) lower block row of each row */
    const float *w;        /* (rows,) weight of the next block row */
    const intptr_t *edges; /* (chunks + 1,) first row of each chunk */
    Py_ssize_t chunks;
    Py_ssize_t rows, cols;
    float cut, clip;
    uint8_t *mask;         /* (rows, cols) DQ mask, HOT_PIXEL ored in */
    int64_t *found;        /* (capacity,) row * cols + col of hot pixels */
    Py_ssize_t capacity;
    float *segments;       /* (chunks, cols) */
    float *share;          /* (chunks, cols) */
    float *excess;         /* (cols,) scratch: one row's excess */
    float *sums;           /* (cols,) scratch: a chunk's column sums */
    int32_t *near;         /* (cols,) scratch: a chunk's near counts */
    int32_t *hot;          /* (cols,) scratch: a chunk's hot counts */
} Scan;

typedef struct {
    Py_ssize_t hot;   /* hot pixels (all, even past the capacity) */
    double kept_sum;  /* bulk sum */
    int64_t kept;     /* bulk count */
} Totals;

/* The sum (double) and count of one row's excess within the clip: four
 * running sums (no dependency chain of additions), then added. */
static inline void bulk_row(const float *restrict e, Py_ssize_t cols,
                            float clip, double *kept_sum, int64_t *kept)
{
    double t[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t n = 0;
    Py_ssize_t j = 0;
    for (; j + 4 <= cols; j += 4) {
        for (int k = 0; k < 4; k++) {
            int in = fabsf(e[j + k]) <= clip;
            t[k] += in ? (double)e[j + k] : 0.0;
            n += in;
        }
    }
    for (; j < cols; j++) {
        int in = fabsf(e[j]) <= clip;
        t[0] += in ? (double)e[j] : 0.0;
        n += in;
    }
    *kept_sum += (t[0] + t[1]) + (t[2] + t[3]);
    *kept += n;
}

/* One row: its excess, the chunk's column sums and counts, the mask. Returns
 * whether any pixel of the row is hot. */
static inline int scan_row(const Scan *s, Py_ssize_t r, double *kept_sum,
                           int64_t *kept)
{
    const Py_ssize_t cols = s->cols;
    const float *restrict x = s->region + r * cols;
    const float *restrict lo =
        s->grid + (s->blocks > 1 ? s->i0[r] : 0) * cols;
    const float *restrict hi = s->blocks > 1 ? lo + cols : lo;
    const float w = s->blocks > 1 ? s->w[r] : 0.0f;
    const float cut = s->cut;
    float *restrict e = s->excess, *restrict sums = s->sums;
    int32_t *restrict near = s->near, *restrict hot = s->hot;
    uint8_t *restrict m = s->mask + r * cols;
    int any = 0;
    if (s->blocks > 1) {
        for (Py_ssize_t j = 0; j < cols; j++)
            e[j] = x[j] - ((hi[j] - lo[j]) * w + lo[j]);
    } else {
        for (Py_ssize_t j = 0; j < cols; j++)
            e[j] = x[j] - lo[j];
    }
    for (Py_ssize_t j = 0; j < cols; j++) {
        int32_t h = e[j] > cut, nr = fabsf(e[j]) <= cut;
        sums[j] += nr ? e[j] : 0.0f;
        near[j] += nr;
        hot[j] += h;
        any |= h;
    }
    if (any) {
        for (Py_ssize_t j = 0; j < cols; j++)
            m[j] |= (uint8_t)(e[j] > cut);
    }
    bulk_row(e, cols, s->clip, kept_sum, kept);
    return any;
}

SCAN_CLONES
static Totals scan(const Scan *s)
{
    Totals t = {0, 0.0, 0};
    for (Py_ssize_t k = 0; k < s->chunks; k++) {
        Py_ssize_t r0 = s->edges[k], r1 = s->edges[k + 1];
        memset(s->sums, 0, s->cols * sizeof(float));
        memset(s->near, 0, s->cols * sizeof(int32_t));
        memset(s->hot, 0, s->cols * sizeof(int32_t));
        for (Py_ssize_t r = r0; r < r1; r++) {
            if (!scan_row(s, r, &t.kept_sum, &t.kept))
                continue;
            for (Py_ssize_t j = 0; j < s->cols; j++) {
                if (s->excess[j] > s->cut) {
                    if (t.hot < s->capacity)
                        s->found[t.hot] = (int64_t)(r * s->cols + j);
                    t.hot++;
                }
            }
        }
        float *seg = s->segments + k * s->cols, *sh = s->share + k * s->cols;
        double n = (double)(float)(r1 - r0);
        for (Py_ssize_t j = 0; j < s->cols; j++) {
            int32_t c = s->near[j] > 0 ? s->near[j] : 1;
            seg[j] = (float)((double)s->sums[j] / (double)c);
            sh[j] = (float)((double)s->hot[j] / n);
        }
    }
    return t;
}

/* The chunk edges rise from 0 to rows; the block rows stay in the grid. */
static int check_scan(const Scan *s)
{
    if (s->edges[0] != 0 || s->edges[s->chunks] != s->rows) {
        PyErr_SetString(PyExc_ValueError,
                        "edges: expected chunks from row 0 to the last row");
        return -1;
    }
    for (Py_ssize_t k = 0; k < s->chunks; k++) {
        if (s->edges[k + 1] <= s->edges[k]) {
            PyErr_Format(PyExc_ValueError,
                         "edges: chunk %zd is empty; expected rising edges", k);
            return -1;
        }
    }
    for (Py_ssize_t r = 0; s->blocks > 1 && r < s->rows; r++) {
        if (s->i0[r] < 0 || s->i0[r] + 1 >= s->blocks) {
            PyErr_Format(PyExc_ValueError,
                         "i0[%zd] = %zd; expected 0 to %zd", r,
                         (Py_ssize_t)s->i0[r], s->blocks - 2);
            return -1;
        }
    }
    return 0;
}

static PyObject *run_scan(Scan *s)
{
    s->excess = malloc(s->cols * sizeof(float));
    s->sums = malloc(s->cols * sizeof(float));
    s->near = malloc(s->cols * sizeof(int32_t));
    s->hot = malloc(s->cols * sizeof(int32_t));
    PyObject *result = NULL;
    if (!s->excess || !s->sums || !s->near || !s->hot) {
        PyErr_NoMemory();
    } else {
        Totals t;
        Py_BEGIN_ALLOW_THREADS
        t = scan(s);
        Py_END_ALLOW_THREADS
        result = Py_BuildValue("ndL", t.hot, t.kept_sum, (long long)t.kept);
    }
    free(s->excess);
    free(s->sums);
    free(s->near);
    free(s->hot);
    return result;
}

const char scan_excess_doc[] =
"scan_excess(region, grid, i0, w, edges, mask, found, segments, share,\n"
"            rows, cols, cut, clip)\n"
"--\n\n"
"One amplifier's hot-pixel scan (see the source). region, mask: (rows,\n"
"cols) float32 and uint8; grid: (blocks, cols) float32; i0: (rows,) intp\n"
"and w: (rows,) float32; edges: (chunks + 1,) intp; found: int64 room for\n"
"the hot pixels' indices; segments, share: (chunks, cols) float32, written.\n"
"All C-contiguous. Returns (hot pixels, bulk sum, bulk count); indices\n"
"past found's room are counted, not stored.";

PyObject *scan_excess(PyObject *self, PyObject *args)
{
    Py_buffer region, grid, i0, w, edges, mask, found, segments, share;
    Scan s;
    double cut, clip;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*w*w*w*nndd", &region, &grid, &i0,
                          &w, &edges, &mask, &found, &segments, &share, &s.rows,
                          &s.cols, &cut, &clip))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t cells = s.rows * s.cols;
    s.blocks = s.cols > 0 ? grid.len / (Py_ssize_t)sizeof(float) / s.cols : 0;
    s.chunks = edges.len / (Py_ssize_t)sizeof(intptr_t) - 1;
    s.capacity = found.len / (Py_ssize_t)sizeof(int64_t);
    if (s.rows < 1 || s.cols < 1 || s.blocks < 1 || s.chunks < 1) {
        PyErr_Format(PyExc_ValueError,
                     "%zd rows, %zd columns, %zd block rows, %zd chunks; "
                     "expected at least one of each",
                     s.rows, s.cols, s.blocks, s.chunks);
        goto done;
    }
    if (check_size("region", &region, cells, 4) ||
        check_size("mask", &mask, cells, 1) ||
        check_size("grid", &grid, s.blocks * s.cols, 4) ||
        check_size("i0", &i0, s.rows, sizeof(intptr_t)) ||
        check_size("w", &w, s.rows, 4) ||
        check_size("segments", &segments, s.chunks * s.cols, 4) ||
        check_size("share", &share, s.chunks * s.cols, 4))
        goto done;
    s.region = region.buf;
    s.grid = grid.buf;
    s.i0 = i0.buf;
    s.w = w.buf;
    s.edges = edges.buf;
    s.mask = mask.buf;
    s.found = found.buf;
    s.segments = segments.buf;
    s.share = share.buf;
    s.cut = (float)cut;
    s.clip = (float)clip;
    if (check_scan(&s) == 0)
        result = run_scan(&s);
done:
    PyBuffer_Release(&region);
    PyBuffer_Release(&grid);
    PyBuffer_Release(&i0);
    PyBuffer_Release(&w);
    PyBuffer_Release(&edges);
    PyBuffer_Release(&mask);
    PyBuffer_Release(&found);
    PyBuffer_Release(&segments);
    PyBuffer_Release(&share);
    return result;
}
