/* A growing buffer of UCS-4 characters: what NFKC and the JSON walk write their text into
 * before it becomes a Python string. (The decoders write in their input's kind: `_writer.h`.) */
#ifndef FAILSMALL_UCS4_H
#define FAILSMALL_UCS4_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    Py_UCS4 *data;
    Py_ssize_t length, capacity;
} ucs4_t;

/* Room for `more` characters after the current ones; -1 with MemoryError set when there is none. */
static inline int ucs4_reserve(ucs4_t *b, Py_ssize_t more) {
    if (b->length + more <= b->capacity) return 0;
    if (more > PY_SSIZE_T_MAX / 8 - b->length) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t capacity = (b->length + more) * 2 + 16;
    Py_UCS4 *data = PyMem_Realloc(b->data, (size_t)capacity * sizeof(Py_UCS4));
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static inline int ucs4_put(ucs4_t *b, Py_UCS4 c) {
    if (b->length == b->capacity && ucs4_reserve(b, 1) < 0) return -1;
    b->data[b->length++] = c;
    return 0;
}

/* Append `text[from:to]`, text of `kind` at `data`; -1 with MemoryError set when there is no
 * room. */
static inline int ucs4_append(ucs4_t *b, int kind, const void *data, Py_ssize_t from,
                              Py_ssize_t to) {
    Py_ssize_t count = to - from;
    if (count <= 0) return 0;
    if (ucs4_reserve(b, count) < 0) return -1;
    Py_UCS4 *out = b->data + b->length;
    switch (kind) {
    case PyUnicode_1BYTE_KIND:
        for (Py_ssize_t k = 0; k < count; k++) out[k] = ((const Py_UCS1 *)data)[from + k];
        break;
    case PyUnicode_2BYTE_KIND:
        for (Py_ssize_t k = 0; k < count; k++) out[k] = ((const Py_UCS2 *)data)[from + k];
        break;
    default:
        memcpy(out, (const Py_UCS4 *)data + from, (size_t)count * sizeof(Py_UCS4));
        break;
    }
    b->length += count;
    return 0;
}

/* The buffer's characters as a new string (NULL with an exception set); the buffer is freed. */
static inline PyObject *ucs4_finish(ucs4_t *b) {
    Py_UCS4 none = 0;
    PyObject *out =
        PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, b->data ? b->data : &none, b->length);
    PyMem_Free(b->data);
    b->data = NULL;
    return out;
}

#endif
