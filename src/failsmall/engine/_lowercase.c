/* `transforms.lowercase` (`str.lower()`) in C on text of two or four bytes a character.
 *
 * What `str.lower()` makes of each code point is read from Python itself when the module
 * loads (`fs_lowercase_tables`): the code points are lowered 4,096 at a time, and one by one
 * in a block whose result is not one character each. A code point is *special* when its
 * lowercase is not one character (`İ` gives two), when it depends on the text around it (`Σ`
 * is `ς` at the end of a word: Python's Final_Sigma rule), or when it would not fit the text's
 * kind (a character of two bytes lowering to one of four). Text holding a special code point
 * is left to Python; any other is lowered one character at a time, which is then `str.lower()`
 * by construction. */
#include "_transforms.h"

#include <stdint.h>

#include "_kind.h"

#define BLOCK 256
#define BLOCKS (0x110000 / BLOCK)
#define SPECIAL INT32_MIN

/* The lowercase of c is c + LOWER[STAGE[c / BLOCK]][c % BLOCK], or c is SPECIAL. Block 0 is
 * the one where every code point is its own lowercase. */
static uint16_t STAGE[BLOCKS];
static int32_t (*LOWER)[BLOCK];

/* The per-code-point lowercase of points [from, from + count) into `out`: their `str.lower()`
 * one at a time, SPECIAL where that is not one character. */
static int lower_each(Py_UCS4 from, Py_ssize_t count, int32_t *out) {
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_UCS4 c = from + (Py_UCS4)i;
        PyObject *one = PyUnicode_FromOrdinal((int)c);
        if (one == NULL) return -1;
        PyObject *lower = PyObject_CallMethod(one, "lower", NULL);
        Py_DECREF(one);
        if (lower == NULL) return -1;
        if (PyUnicode_GET_LENGTH(lower) == 1)
            out[i] = (int32_t)PyUnicode_READ_CHAR(lower, 0) - (int32_t)c;
        else
            out[i] = SPECIAL;
        Py_DECREF(lower);
    }
    return 0;
}

/* The lowercase of points [from, from + count) into `out`, with one `str.lower()` of them all
 * when it gives one character each (it then gives each one's own lowercase: only `Σ` depends
 * on its neighbours, and it is special anyway). */
static int lower_block(Py_UCS4 from, Py_ssize_t count, int32_t *out) {
    Py_UCS4 points[4096];
    for (Py_ssize_t i = 0; i < count; i++) points[i] = from + (Py_UCS4)i;
    PyObject *text = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, points, count);
    if (text == NULL) return -1;
    PyObject *lower = PyObject_CallMethod(text, "lower", NULL);
    Py_DECREF(text);
    if (lower == NULL) return -1;
    int status = 0;
    if (PyUnicode_GET_LENGTH(lower) == count) {
        int kind = PyUnicode_KIND(lower);
        const void *data = PyUnicode_DATA(lower);
        for (Py_ssize_t i = 0; i < count; i++)
            out[i] = (int32_t)PyUnicode_READ(kind, data, i) - (int32_t)(from + (Py_UCS4)i);
    } else {
        status = lower_each(from, count, out);
    }
    Py_DECREF(lower);
    return status;
}

int fs_lowercase_tables(void) {
    static int32_t all[4096];
    Py_ssize_t used = 1;
    int32_t (*blocks)[BLOCK] = PyMem_Calloc(1, sizeof(*blocks));
    if (blocks == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_UCS4 from = 0; from < 0x110000; from += 4096) {
        if (lower_block(from, 4096, all) < 0) goto error;
        for (Py_UCS4 i = 0; i < 4096; i++) {
            Py_UCS4 c = from + i;
            if (c == 0x3A3) all[i] = SPECIAL; /* Σ: Final_Sigma */
            else if (all[i] != SPECIAL && c < 0x10000 && (int64_t)c + all[i] >= 0x10000)
                all[i] = SPECIAL;
        }
        for (Py_UCS4 b = 0; b < 4096 / BLOCK; b++) {
            const int32_t *block = all + b * BLOCK;
            int identity = 1;
            for (int i = 0; i < BLOCK && identity; i++) identity = block[i] == 0;
            if (identity) {
                STAGE[(from / BLOCK) + b] = 0;
                continue;
            }
            int32_t(*more)[BLOCK] = PyMem_Realloc(blocks, (size_t)(used + 1) * sizeof(*blocks));
            if (more == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            blocks = more;
            memcpy(blocks[used], block, sizeof(*blocks));
            STAGE[(from / BLOCK) + b] = (uint16_t)used++;
        }
    }
    LOWER = blocks;
    return 0;
error:
    PyMem_Free(blocks);
    return -1;
}

/* Lower `s[:n]` into `o`; 0, or -1 at the first special code point. */
ALWAYS_INLINE int lower_into(int kind, const void *s, Py_ssize_t n, void *o) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = text_read(kind, s, i);
        int32_t delta = LOWER[STAGE[c / BLOCK]][c % BLOCK];
        if (delta == SPECIAL) return -1;
        text_write(kind, o, i, (Py_UCS4)((int32_t)c + delta));
    }
    return 0;
}

PyObject *fs_lowercase(PyObject *value, int *special) {
    int kind = PyUnicode_KIND(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    *special = 0;
    text_out_t t;
    void *o = text_start(&t, value, n);
    if (o == NULL) return NULL;
    if (BY_KIND(lower_into, kind, PyUnicode_DATA(value), n, o) < 0) {
        text_drop(&t);
        *special = 1;
        return NULL;
    }
    return text_end(&t, value, n);
}
