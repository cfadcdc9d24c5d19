/* Reading and writing text in its own kind (one, two or four bytes a character), for the
 * transforms that keep the kind of what they read: a loop written once over `text_read` and
 * `text_write` with `kind` a parameter becomes one loop per kind when it is inlined by
 * `BY_KIND` with `kind` a constant, with no copy of the text to UCS-4 and back. */
#ifndef FAILSMALL_KIND_H
#define FAILSMALL_KIND_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE Py_UCS4 text_read(int kind, const void *data, Py_ssize_t i) {
    if (kind == PyUnicode_1BYTE_KIND) return ((const Py_UCS1 *)data)[i];
    if (kind == PyUnicode_2BYTE_KIND) return ((const Py_UCS2 *)data)[i];
    return ((const Py_UCS4 *)data)[i];
}

ALWAYS_INLINE void text_write(int kind, void *data, Py_ssize_t i, Py_UCS4 c) {
    if (kind == PyUnicode_1BYTE_KIND) ((Py_UCS1 *)data)[i] = (Py_UCS1)c;
    else if (kind == PyUnicode_2BYTE_KIND) ((Py_UCS2 *)data)[i] = (Py_UCS2)c;
    else ((Py_UCS4 *)data)[i] = c;
}

/* `f(kind, ...)` with `kind` a constant in each branch. */
#define BY_KIND(f, kind, ...)                                                                 \
    ((kind) == PyUnicode_1BYTE_KIND   ? f(PyUnicode_1BYTE_KIND, __VA_ARGS__)                  \
     : (kind) == PyUnicode_2BYTE_KIND ? f(PyUnicode_2BYTE_KIND, __VA_ARGS__)                  \
                                      : f(PyUnicode_4BYTE_KIND, __VA_ARGS__))

/* Room for `n` characters of `kind` (and one more), or NULL with MemoryError set. */
static inline void *text_buffer(int kind, Py_ssize_t n) {
    void *data = PyMem_Malloc(((size_t)n + 1) * (size_t)kind);
    if (data == NULL) PyErr_NoMemory();
    return data;
}

/* The string of the `k` characters of `kind` at `out` (freed here): `value` itself when they
 * are its characters, else a new string in the narrowest kind that holds them. */
static inline PyObject *text_finish(PyObject *value, int kind, void *out, Py_ssize_t k) {
    PyObject *result;
    if (k == PyUnicode_GET_LENGTH(value) &&
        memcmp(out, PyUnicode_DATA(value), (size_t)k * (size_t)kind) == 0)
        result = Py_NewRef(value);
    else
        result = PyUnicode_FromKindAndData(kind, out, k);
    PyMem_Free(out);
    return result;
}

#endif
