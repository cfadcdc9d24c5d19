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

/* Write the UTF-8 of `n` characters of two bytes (`s2`) or four (`s4`) at `o`; the length.
 * Each kind gets its own loop once this is inlined with the other pointer NULL. */
static inline Py_ssize_t utf8_put_wide(unsigned char *o, const Py_UCS2 *s2, const Py_UCS4 *s4,
                                       Py_ssize_t n) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s2 != NULL && i + 4 <= n) {
            /* Four ASCII characters at a time (most of a binary body's are). */
            uint64_t four;
            memcpy(&four, s2 + i, sizeof four);
            if (!(four & 0xFF80FF80FF80FF80u)) {
                o[k] = (unsigned char)s2[i];
                o[k + 1] = (unsigned char)s2[i + 1];
                o[k + 2] = (unsigned char)s2[i + 2];
                o[k + 3] = (unsigned char)s2[i + 3];
                k += 4;
                i += 3;
                continue;
            }
        }
        Py_UCS4 c = s2 != NULL ? s2[i] : s4[i];
        if (c < 0x80) {
            o[k++] = (unsigned char)c;
        } else if (c < 0x800) {
            o[k++] = (unsigned char)(0xC0 | (c >> 6));
            o[k++] = (unsigned char)(0x80 | (c & 0x3F));
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            o[k++] = '?';
        } else if (c < 0x10000) {
            o[k++] = (unsigned char)(0xE0 | (c >> 12));
            o[k++] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            o[k++] = (unsigned char)(0x80 | (c & 0x3F));
        } else {
            o[k++] = (unsigned char)(0xF0 | (c >> 18));
            o[k++] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
            o[k++] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            o[k++] = (unsigned char)(0x80 | (c & 0x3F));
        }
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
                /* Eight ASCII characters at a time. */
                uint64_t eight;
                memcpy(&eight, s + i, sizeof eight);
                if (!(eight & 0x8080808080808080u)) {
                    memcpy(o + k, s + i, sizeof eight);
                    k += 8;
                    i += 7;
                    continue;
                }
            }
            Py_UCS1 c = s[i];
            if (c < 0x80) {
                o[k++] = c;
            } else {
                o[k++] = (unsigned char)(0xC0 | (c >> 6));
                o[k++] = (unsigned char)(0x80 | (c & 0x3F));
            }
        }
        return k;
    }
    if (kind == PyUnicode_2BYTE_KIND) return utf8_put_wide(o, (const Py_UCS2 *)data, NULL, n);
    return utf8_put_wide(o, NULL, (const Py_UCS4 *)data, n);
}

#endif
