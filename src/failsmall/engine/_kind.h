/* Reading and writing text in its own kind (one, two or four bytes a character), for the
 * transforms that keep the kind of what they read: a loop written once over `text_read` and
 * `text_write` with `kind` a parameter becomes one loop per kind when it is inlined by
 * `BY_KIND` with `kind` a constant, with no copy of the text to UCS-4 and back. */
#ifndef FAILSMALL_KIND_H
#define FAILSMALL_KIND_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
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

/* The first and the last `width` bytes of `size` (`width` to 2 * `width`) copied, each in one
 * load and one store of a constant width. */
ALWAYS_INLINE void copy_ends(unsigned char *restrict to, const unsigned char *restrict from,
                             size_t size, size_t width) {
    unsigned char first[16], last[16];
    memcpy(first, from, width);
    memcpy(last, from + size - width, width);
    memcpy(to, first, width);
    memcpy(to + size - width, last, width);
}

/* memcpy of `size` bytes that are usually few (a field's name, a key): up to 32 in two
 * overlapping loads and stores of a width chosen by the size, the rest by `memcpy`. A call of
 * the C library's for a dozen bytes costs more than the copy. The two ranges do not overlap. */
ALWAYS_INLINE void copy_bytes(void *restrict to, const void *restrict from, size_t size) {
    unsigned char *t = to;
    const unsigned char *f = from;
    if (size > 32) memcpy(t, f, size);
    else if (size >= 16) copy_ends(t, f, size, 16);
    else if (size >= 8) copy_ends(t, f, size, 8);
    else if (size >= 4) copy_ends(t, f, size, 4);
    else
        for (size_t j = 0; j < size; j++) t[j] = f[j];
}

/* 1 when the strs `a` and `b` hold the same characters, else 0: `PyUnicode_Compare(a, b) == 0`
 * without its call and its character-by-character loop where both are of one kind (two strs
 * of different kinds are compared by it, so a str not in its narrowest kind compares right).
 * The transforms' results are compared so, a value's chains giving the same result more often
 * than not. */
static inline int same_str(PyObject *a, PyObject *b) {
    if (a == b) return 1;
    Py_ssize_t length = PyUnicode_GET_LENGTH(a);
    if (length != PyUnicode_GET_LENGTH(b)) return 0;
    int kind = PyUnicode_KIND(a);
    if (kind != PyUnicode_KIND(b)) return PyUnicode_Compare(a, b) == 0;
    return memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)length * (size_t)kind) == 0;
}

/* `f(kind, ...)` with `kind` a constant in each branch. */
#define BY_KIND(f, kind, ...)                                                                 \
    ((kind) == PyUnicode_1BYTE_KIND   ? f(PyUnicode_1BYTE_KIND, __VA_ARGS__)                  \
     : (kind) == PyUnicode_2BYTE_KIND ? f(PyUnicode_2BYTE_KIND, __VA_ARGS__)                  \
                                      : f(PyUnicode_4BYTE_KIND, __VA_ARGS__))

/* Room for `n` characters of `kind` (and one more), or NULL with MemoryError set: scratch
 * space between two steps of a transform. */
static inline void *text_buffer(int kind, Py_ssize_t n) {
    void *data = PyMem_Malloc(((size_t)n + 1) * (size_t)kind);
    if (data == NULL) PyErr_NoMemory();
    return data;
}

/* A transform's result written in place into a new string of its input's kind. */
typedef struct {
    PyObject *string;
    void *data;
} text_out_t;

/* Room for `n` characters of the kind of `value` (the transform's input) in `t`: its data, or
 * NULL with an exception set. */
static inline void *text_start(text_out_t *t, PyObject *value, Py_ssize_t n) {
    t->string = PyUnicode_New(n, PyUnicode_MAX_CHAR_VALUE(value));
    t->data = t->string != NULL ? PyUnicode_DATA(t->string) : NULL;
    return t->data;
}

static inline void text_drop(text_out_t *t) { Py_CLEAR(t->string); }

/* Whether one of the `k` characters of `kind` at `data` is `floor` or above. When `floor` is the
 * least character the kind holds that the next narrower one does not (0x80 for one byte, 0x100
 * for two, 0x10000 for four: what `text_end` asks), with SSE2, 64 bytes are read at a time and
 * their bits above `floor - 1` looked at once: a result of two bytes a character whose one wide
 * character is at its end (a replacement character for a body cut in a sequence) is read
 * whole for each transform. */
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

ALWAYS_INLINE int text_reaches(int kind, const void *data, Py_ssize_t k, Py_UCS4 floor) {
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    Py_UCS4 first = kind == PyUnicode_1BYTE_KIND   ? 0x80
                    : kind == PyUnicode_2BYTE_KIND ? 0x100
                                                   : 0x10000;
    if (floor == first) {
        __m128i high = kind == PyUnicode_1BYTE_KIND   ? _mm_set1_epi8((char)0x80)
                       : kind == PyUnicode_2BYTE_KIND ? _mm_set1_epi16((short)0xFF00)
                                                      : _mm_set1_epi32((int)0xFFFF0000u);
        const Py_ssize_t lanes = 64 / kind;
        const char *at = data;
        for (; i + lanes <= k; i += lanes, at += 64) {
            __m128i any = _mm_or_si128(
                _mm_or_si128(_mm_loadu_si128((const __m128i *)at),
                             _mm_loadu_si128((const __m128i *)(at + 16))),
                _mm_or_si128(_mm_loadu_si128((const __m128i *)(at + 32)),
                             _mm_loadu_si128((const __m128i *)(at + 48))));
            __m128i wide = _mm_cmpeq_epi8(_mm_and_si128(any, high), _mm_setzero_si128());
            if (_mm_movemask_epi8(wide) != 0xFFFF) return 1;
        }
    }
#endif
    for (; i < k; i++)
        if (text_read(kind, data, i) >= floor) return 1;
    return 0;
}

/* The string of the first `k` characters written into `t` (which is given up): `value` itself
 * when they are its characters; the string cut to `k` when its kind is still the narrowest
 * that holds them (a string must be), else a copy of them in the narrowest kind. */
static inline PyObject *text_end(text_out_t *t, PyObject *value, Py_ssize_t k) {
    int kind = PyUnicode_KIND(value);
    if (k == PyUnicode_GET_LENGTH(value) &&
        memcmp(t->data, PyUnicode_DATA(value), (size_t)k * (size_t)kind) == 0) {
        text_drop(t);
        return Py_NewRef(value);
    }
    Py_UCS4 floor = kind == PyUnicode_4BYTE_KIND   ? 0x10000
                    : kind == PyUnicode_2BYTE_KIND ? 0x100
                    : PyUnicode_IS_ASCII(value)    ? 0
                                                   : 0x80;
    if (floor == 0 || BY_KIND(text_reaches, kind, t->data, k, floor)) {
        PyObject *out = t->string;
        t->string = NULL;
        if (PyUnicode_Resize(&out, k) < 0) {
            Py_XDECREF(out);
            return NULL;
        }
        return out;
    }
    PyObject *out = PyUnicode_FromKindAndData(kind, t->data, k);
    text_drop(t);
    return out;
}

#endif
