/* The hot-pixel scan of reduce/_hotscan.c, registered by reduce/_kernels.c. */
#ifndef MEGARA_DARK_HOTSCAN_H
#define MEGARA_DARK_HOTSCAN_H

#include <Python.h>

extern const char scan_excess_doc[];
PyObject *scan_excess(PyObject *self, PyObject *args);

#endif
