/* What the sources of reduce._kernels share: _kernels.c (the module, the
 * band kernel, the checksum's sum) and _hotscan.c (QC's hot-pixel scan). */
#ifndef MEGARA_DARK_KERNELS_H
#define MEGARA_DARK_KERNELS_H

#include <Python.h>

#if defined(__GNUC__)
#define KERNELS_INTERNAL __attribute__((visibility("hidden")))
#else
#define KERNELS_INTERNAL
#endif

/* 0 if buffer `name` holds `items` items of `itemsize` bytes, else -1 with
 * a ValueError naming it (defined in _kernels.c). */
KERNELS_INTERNAL int check_size(const char *name, Py_buffer *view,
                                Py_ssize_t items, Py_ssize_t itemsize);

/* The hot-pixel scan (defined in _hotscan.c). */
KERNELS_INTERNAL extern const char scan_excess_doc[];
KERNELS_INTERNAL PyObject *scan_excess(PyObject *self, PyObject *args);

#endif
