/* A decoder's result written in the kind of the text it decodes (one, two or four bytes a
 * character), into the string that becomes the result: the text between escapes is copied as
 * it is, and the string is widened (once or twice at most) only when a decoded character does
 * not fit its kind. A decoder keeps every character of its input that is not part of an escape,
 * so the result's kind is that of the input or wider, and the string is never narrowed.
 *
 * A writer without a string (`writer_discard`) only counts: a decoder run through it finds
 * whether it would change anything without writing. */
#ifndef FAILSMALL_WRITER_H
#define FAILSMALL_WRITER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_kind.h"

typedef struct {
    PyObject *string; /* NULL: count only */
    int kind;
    void *data;
    Py_UCS4 ceiling; /* the largest character the string's kind holds */
    Py_ssize_t length, capacity;
    int changed; /* whether anything was decoded (else the result is the input) */
} writer_t;

/* A writer for the result of decoding `value`, with room for its length (decoders only
 * shrink text, but the writer grows if one does not); -1 with an exception set. */
static inline int writer_start(writer_t *w, PyObject *value) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    w->string = PyUnicode_New(n, PyUnicode_MAX_CHAR_VALUE(value));
    if (w->string == NULL) return -1;
    w->kind = PyUnicode_KIND(w->string);
    w->data = PyUnicode_DATA(w->string);
    w->ceiling = PyUnicode_MAX_CHAR_VALUE(w->string);
    w->length = 0;
    w->capacity = n;
    w->changed = 0;
    return 0;
}

static inline void writer_discard(writer_t *w) {
    *w = (writer_t){NULL, PyUnicode_4BYTE_KIND, NULL, 0x10FFFF, 0, PY_SSIZE_T_MAX, 0};
}

static inline void writer_drop(writer_t *w) { Py_CLEAR(w->string); }

/* Copy `count` characters of `from_kind` at `from` to `to` of `to_kind` (as wide or wider):
 * one loop per pair of kinds, each a plain widening the compiler vectorizes. */
static void widen_copy(int to_kind, void *to, int from_kind, const void *from, Py_ssize_t count) {
#define WIDEN(TO, FROM)                                                                       \
    for (Py_ssize_t i = 0; i < count; i++) ((TO *)to)[i] = ((const FROM *)from)[i];
    if (to_kind == from_kind) memcpy(to, from, (size_t)count * (size_t)to_kind);
    else if (from_kind == PyUnicode_1BYTE_KIND && to_kind == PyUnicode_2BYTE_KIND)
        WIDEN(Py_UCS2, Py_UCS1)
    else if (from_kind == PyUnicode_1BYTE_KIND) WIDEN(Py_UCS4, Py_UCS1)
    else WIDEN(Py_UCS4, Py_UCS2)
#undef WIDEN
}

/* A new string for the writer of room `capacity` holding up to `ceiling`, with the characters
 * written so far copied into its kind; -1 with an exception set (the writer is dropped). */
static int writer_regrow(writer_t *w, Py_ssize_t capacity, Py_UCS4 ceiling) {
    PyObject *string = PyUnicode_New(capacity, ceiling);
    if (string == NULL) {
        writer_drop(w);
        return -1;
    }
    int kind = PyUnicode_KIND(string);
    void *data = PyUnicode_DATA(string);
    widen_copy(kind, data, w->kind, w->data, w->length);
    Py_SETREF(w->string, string);
    w->kind = kind;
    w->data = data;
    w->ceiling = PyUnicode_MAX_CHAR_VALUE(string);
    w->capacity = capacity;
    return 0;
}

/* Room for `more` characters up to `c`; -1 with an exception set. */
static inline int writer_reserve(writer_t *w, Py_ssize_t more, Py_UCS4 c) {
    if (w->string == NULL) return 0;
    if (w->length + more <= w->capacity && c <= w->ceiling) return 0;
    Py_ssize_t capacity = w->capacity;
    if (w->length + more > capacity) {
        if (more > PY_SSIZE_T_MAX / 8 - w->length) {
            writer_drop(w);
            PyErr_NoMemory();
            return -1;
        }
        capacity = (w->length + more) * 2 + 16;
    }
    return writer_regrow(w, capacity, c > w->ceiling ? c : w->ceiling);
}

/* Write a decoded character; -1 with an exception set. */
static inline int writer_put(writer_t *w, Py_UCS4 c) {
    if ((w->length >= w->capacity || c > w->ceiling) && writer_reserve(w, 1, c) < 0) return -1;
    if (w->string != NULL) text_write(w->kind, w->data, w->length, c);
    w->length++;
    return 0;
}

/* A copy this short into a string of its own kind is a loop here, not a call: text with an
 * escape every few characters copies such a run between each two. */
#define WRITER_SHORT_COPY 16

/* Copy `text[from:to]` of the input (text of `kind`, no wider than the writer's); -1 with an
 * exception set. */
static inline int writer_copy(writer_t *w, int kind, const void *text, Py_ssize_t from,
                              Py_ssize_t to) {
    Py_ssize_t count = to - from;
    if (count <= 0) return 0;
    if (writer_reserve(w, count, 0) < 0) return -1;
    if (w->string != NULL && w->kind == kind && count <= WRITER_SHORT_COPY) {
        for (Py_ssize_t j = 0; j < count; j++)
            text_write(kind, w->data, w->length + j, text_read(kind, text, from + j));
    } else if (w->string != NULL) {
        widen_copy(w->kind, (char *)w->data + (size_t)w->length * (size_t)w->kind, kind,
                   (const char *)text + (size_t)from * (size_t)kind, count);
    }
    w->length += count;
    return 0;
}

/* The result: `value` itself when nothing was decoded, else the string cut to its length (a
 * new reference; NULL with an exception set). The writer is given up. */
static inline PyObject *writer_finish(writer_t *w, PyObject *value) {
    if (!w->changed) {
        writer_drop(w);
        return Py_NewRef(value);
    }
    PyObject *out = w->string;
    w->string = NULL;
    if (PyUnicode_Resize(&out, w->length) < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

#endif
