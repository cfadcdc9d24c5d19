/* A string's UTF-8 form as `str.encode("utf-8", "replace")` makes it (a lone surrogate becomes
 * `?`), written into a buffer that is kept and reused: what a value scanner hands to libhs, one
 * result after another, without a bytes object per result. */
#ifndef FAILSMALL_UTF8_H
#define FAILSMALL_UTF8_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t capacity;
} utf8_buffer_t;

/* Writing one character without a branch that depends on it (binary bodies mix the lengths
 * at random, which defeats branch prediction): a character of `1 + extra` bytes starts with
 * UTF8_LEAD[extra] and the bits of `c >> UTF8_SHIFT[extra][0]`, and continues with the six
 * bits at each later shift. Every byte a character of its kind may need is stored (the buffer
 * has room for them) and the length returned. A surrogate becomes `?`. */
static const unsigned char UTF8_LEAD[4] = {0x00, 0xC0, 0xE0, 0xF0};
static const unsigned char UTF8_SHIFT[4][4] = {{0, 0, 0, 0}, {6, 0, 0, 0}, {12, 6, 0, 0},
                                               {18, 12, 6, 0}};

static inline Py_UCS4 utf8_unsurrogate(Py_UCS4 c) {
    Py_UCS4 surrogate = (c - 0xD800u) < 0x800u;
    return c ^ ((c ^ (Py_UCS4)'?') & (0u - surrogate));
}

static inline Py_ssize_t utf8_put_ucs4(unsigned char *o, Py_UCS4 c) {
    c = utf8_unsurrogate(c);
    unsigned extra = (unsigned)(c >= 0x80) + (unsigned)(c >= 0x800) + (unsigned)(c >= 0x10000);
    const unsigned char *shift = UTF8_SHIFT[extra];
    o[0] = (unsigned char)(UTF8_LEAD[extra] | (c >> shift[0]));
    o[1] = (unsigned char)(0x80 | ((c >> shift[1]) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((c >> shift[2]) & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 1 + (Py_ssize_t)extra;
}

static inline Py_ssize_t utf8_put_ucs2(unsigned char *o, Py_UCS4 c) {
    c = utf8_unsurrogate(c);
    unsigned extra = (unsigned)(c >= 0x80) + (unsigned)(c >= 0x800);
    const unsigned char *shift = UTF8_SHIFT[extra];
    o[0] = (unsigned char)(UTF8_LEAD[extra] | (c >> shift[0]));
    o[1] = (unsigned char)(0x80 | ((c >> shift[1]) & 0x3F));
    o[2] = (unsigned char)(0x80 | (c & 0x3F));
    return 1 + (Py_ssize_t)extra;
}

static inline Py_ssize_t utf8_put_ucs1(unsigned char *o, Py_UCS1 c) {
    unsigned extra = c >> 7;
    o[0] = (unsigned char)(UTF8_LEAD[extra] | (c >> UTF8_SHIFT[extra][0]));
    o[1] = (unsigned char)(0x80 | (c & 0x3F));
    return 1 + (Py_ssize_t)extra;
}

/* Write the UTF-8 of `n` characters of two bytes (`s2`) or four (`s4`) at `o` (room for three
 * bytes a character of two bytes, four of four); the length. Each kind gets its own loop once this is
 * inlined with the other pointer NULL. */
static inline Py_ssize_t utf8_put_wide(unsigned char *o, const Py_UCS2 *s2, const Py_UCS4 *s4,
                                       Py_ssize_t n) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s2 != NULL && i + 4 <= n) {
            /* Four characters at a time: copied when all are ASCII (most of a binary body's
             * are), else each written without a branch. */
            uint64_t four;
            memcpy(&four, s2 + i, sizeof four);
            if (!(four & 0xFF80FF80FF80FF80u)) {
                o[k] = (unsigned char)s2[i];
                o[k + 1] = (unsigned char)s2[i + 1];
                o[k + 2] = (unsigned char)s2[i + 2];
                o[k + 3] = (unsigned char)s2[i + 3];
                k += 4;
            } else {
                for (int j = 0; j < 4; j++) k += utf8_put_ucs2(o + k, s2[i + j]);
            }
            i += 3;
            continue;
        }
        if (s2 != NULL) {
            k += utf8_put_ucs2(o + k, s2[i]);
            continue;
        }
        k += utf8_put_ucs4(o + k, s4[i]);
    }
    return k;
}

/* Encode `text` into `b` (an ASCII string's data is its UTF-8 already: scanners use that); the
 * length, or -1 with MemoryError set. */
static inline Py_ssize_t utf8_encode(utf8_buffer_t *b, PyObject *text) {
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    /* At most 2 bytes a character of one byte, 3 of two, 4 of four. */
    Py_ssize_t most = kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4;
    if (n > PY_SSIZE_T_MAX / 4 - 1) {
        PyErr_NoMemory();
        return -1;
    }
    if (n * most > b->capacity) {
        Py_ssize_t capacity = n * most + 64;
        char *more = PyMem_Realloc(b->data, (size_t)capacity);
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = more;
        b->capacity = capacity;
    }
    unsigned char *o = (unsigned char *)b->data;
    Py_ssize_t k = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *s = data;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i + 8 <= n) {
                /* Eight characters at a time: copied when all are ASCII, else each written
                 * without a branch. */
                uint64_t eight;
                memcpy(&eight, s + i, sizeof eight);
                if (!(eight & 0x8080808080808080u)) {
                    memcpy(o + k, s + i, sizeof eight);
                    k += 8;
                } else {
                    for (int j = 0; j < 8; j++) k += utf8_put_ucs1(o + k, s[i + j]);
                }
                i += 7;
                continue;
            }
            k += utf8_put_ucs1(o + k, s[i]);
        }
        return k;
    }
    if (kind == PyUnicode_2BYTE_KIND) return utf8_put_wide(o, (const Py_UCS2 *)data, NULL, n);
    return utf8_put_wide(o, NULL, (const Py_UCS4 *)data, n);
}

#endif
