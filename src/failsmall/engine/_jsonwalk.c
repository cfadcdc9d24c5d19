/* A JSON body's fields in one pass: from the body's bytes straight to its (dotted path, value)
 * pairs, without building the Python document first. The walk (`json_walk`, `_jsonwalk.h`)
 * gives each field to a sink: `json_fields` makes them Python pairs, `_jsonscan.c` scans them
 * without a string each.
 *
 * `json_fields(body, max_values, max_depth, max_name_chars) -> (fields, status)` gives what
 * `json.loads(body)` followed by `failsmall.engine.body.flatten_json_reference` gives: the same
 * fields in the same order, the same limit, and INVALID exactly where `json.loads` raises
 * ValueError. It accepts and rejects as CPython's `_json` scanner does (strict strings, the
 * same number grammar, NaN/Infinity/-Infinity, only ' \t\n\r' as whitespace), decodes the body
 * as `json.loads` does (`json.detect_encoding`, then `surrogatepass`), unescapes strings the
 * same way (a `\ud800` without its pair stays a lone surrogate), and writes numbers as
 * `json.dumps` writes what `json.loads` made of them (an int's digits, a float's repr).
 *
 * One kind of document is left to the caller (status UNDECIDED): a valid one with a repeated
 * key in an object nested less than `max_depth` deep (a dict keeps the last value at the first
 * key's place, which a single pass cannot emit in order); past such a key the walk adds no
 * field and only checks the rest is JSON, so an invalid body is INVALID wherever its repeated
 * keys are. An integer Python refuses (more digits than `sys.get_int_max_str_digits()`) is
 * INVALID, as json.loads's ValueError makes it.
 *
 * Nesting has no limit of its own: a body is INVALID exactly when `json.loads` with an
 * unlimited recursion would reject it, at any depth, and otherwise TOO_DEEP when it nests
 * `max_depth` containers or more (a function of the bytes, never of how deep the caller's
 * stack is, which decides where `json.loads` raises RecursionError).
 *
 * The walk keeps its own stack of open containers (no C recursion): a frame for each of the
 * first WALK_FRAMES levels, past them one bit per level (object or array), so the stack grows
 * by at most a bit for each character of the body. Its work is linear in the body: each
 * character is read once (an ASCII body's bytes in place, any other after decoding), an
 * object's keys are compared one by one while it has few and hashed once each (keyed) into a
 * table once it has more, and the paths made stop at `max_name_chars` characters in all.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_jsonwalk.h"
#include "_memo.h"
#include "_kind.h"

/* Levels with a frame of their own; deeper ones are a bit each. Past the bundle's depth limit
 * (at most 256) a level adds no field and needs no keys, so only its kind is kept. */
#define WALK_FRAMES 512

/* One key of an open object, for finding a repeated key: its characters in `keys`, and their
 * hash once the object has a table. */
typedef struct {
    uint64_t hash;
    Py_ssize_t start, len;
} key_entry;

/* An open container. An object's keys are the entries from `entries_start` on (and their
 * characters in `keys` from `keys_start` on), looked up one by one while it has few, through
 * `table` (entry indexes + 1, open addressing) once it has more. */
typedef struct {
    int is_object;
    Py_ssize_t path_len; /* the container's own path, a prefix of `path` */
    Py_ssize_t index_chars; /* the digits of an array's current element's index, 0 before it */
    Py_ssize_t keys_start, entries_start;
    Py_ssize_t *table;
    Py_ssize_t table_size;
    uint64_t key_bits; /* a bit for each key compared one by one so far (`key_bit`) */
} frame;

#define FEW_KEYS 16

/* The keys of the open objects, or the current path: characters of the walk's `name_kind`,
 * one byte each while every key so far is Latin-1 (an ASCII body's keys are its bytes), four
 * from the first key that is not. */
typedef struct {
    char *data;
    Py_ssize_t length, capacity; /* in characters */
} names_t;

typedef struct {
    PyObject *text; /* the decoded body, or NULL when an ASCII body's bytes are read in place */
    const void *data;
    int kind;
    Py_ssize_t n;
    names_t path, keys;
    int name_kind; /* of `path` and `keys` */
    ucs4_t scratch;
    key_entry *entries;
    Py_ssize_t entries_len, entries_cap;
    uint8_t *deep; /* bit (top - WALK_FRAMES) set: that level is an object */
    Py_ssize_t deep_cap; /* bytes of `deep` */
    Py_ssize_t top;      /* the innermost open container's level, -1 when none is open */
    json_sink_t sink; /* is given each field */
    void *context;
    Py_ssize_t count; /* fields given */
    Py_ssize_t max_values;
    int max_depth;
    Py_ssize_t max_name_chars, name_chars; /* the paths' characters, in all */
    int stopped; /* WALK_COMPLETE while fields are still being added, else the limit reached */
    /* Last, and not cleared when a walk starts (28 KiB, more than a core's L1 cache holds): a
     * frame is written whole when its container opens, and read only while it is open. */
    frame stack[WALK_FRAMES];
} walk_t;

/* The character at `j` of the text, whose kind is `kind`: each function reading the text is
 * given its kind, and the walk is inlined once for each kind (`walk`), so every read is a plain
 * load of a constant width rather than a choice among three made per character. */
#define AT(w, j) PyUnicode_READ(kind, (w)->data, (j))

/* Room for `more` characters of `kind` after those of `b`; -1 with MemoryError set when there
 * is none. */
static inline int names_reserve(names_t *b, int kind, Py_ssize_t more) {
    if (b->length + more <= b->capacity) return 0;
    return array_reserve((void **)&b->data, &b->capacity, b->length + more, (size_t)kind);
}

/* The one-byte characters of `b` made four bytes each. */
static int names_widen(names_t *b) {
    Py_UCS4 *wide = PyMem_Malloc((size_t)(b->capacity + 1) * sizeof(Py_UCS4));
    if (wide == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t j = 0; j < b->length; j++) wide[j] = (Py_UCS1)b->data[j];
    PyMem_Free(b->data);
    b->data = (char *)wide;
    return 0;
}

/* The character `c` after those of the path. */
static inline void path_put(walk_t *w, Py_UCS4 c) {
    PyUnicode_WRITE(w->name_kind, w->path.data, w->path.length, c);
    w->path.length++;
}

ALWAYS_INLINE Py_ssize_t skip_space(const walk_t *w, int kind, Py_ssize_t i) {
    while (i < w->n) {
        Py_UCS4 c = AT(w, i);
        /* past ' ' nothing is whitespace: most bodies have none between their tokens */
        if (c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r')) break;
        i++;
    }
    return i;
}

static inline int hex_digit(Py_UCS4 c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* Four hex digits at `i` (all before `n`), or -1. */
ALWAYS_INLINE long hex4(const walk_t *w, int kind, Py_ssize_t i) {
    if (i + 4 > w->n) return -1;
    long c = 0;
    for (int k = 0; k < 4; k++) {
        int d = hex_digit(AT(w, i + k));
        if (d < 0) return -1;
        c = (c << 4) | d;
    }
    return c;
}

/* The string whose opening quote is at `i - 1`. Without escapes it is the span [*start, *end)
 * of the text and *escaped is 0; with escapes, its characters are in `w->scratch`. Returns the
 * index after the closing quote, -1 when the string is invalid, -2 on a memory error. */
ALWAYS_INLINE Py_ssize_t scan_string(walk_t *w, int kind, Py_ssize_t i, Py_ssize_t *start,
                                  Py_ssize_t *end, int *escaped) {
    Py_ssize_t n = w->n;
    *start = *end = i;
    *escaped = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *s = w->data;
#if defined(__SSE2__)
        /* 16 characters at a time while 16 are left, then one by one */
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'),
                      control = _mm_set1_epi8(0x1f);
        for (; i + 16 <= n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
            __m128i stop = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                _mm_cmpeq_epi8(_mm_max_epu8(v, control), control)); /* v <= 0x1f */
            int mask = _mm_movemask_epi8(stop);
            if (mask) {
                i += __builtin_ctz((unsigned int)mask);
                break;
            }
        }
#endif
        while (i < n && s[i] != '"' && s[i] != '\\' && s[i] > 0x1f) i++;
    } else {
        while (i < n) {
            Py_UCS4 c = AT(w, i);
            if (c == '"' || c == '\\' || c <= 0x1f) break;
            i++;
        }
    }
    if (i >= n) return -1;
    Py_UCS4 c = AT(w, i);
    if (c == '"') {
        *end = i;
        return i + 1;
    }
    if (c != '\\') return -1; /* a control character */
    *escaped = 1;
    ucs4_t *out = &w->scratch;
    out->length = 0;
    if (ucs4_reserve(out, i - *start) < 0) return -2;
    for (Py_ssize_t j = *start; j < i; j++) out->data[out->length++] = AT(w, j);
    while (1) {
        if (i >= n) return -1;
        c = AT(w, i);
        if (c == '"') return i + 1;
        if (c <= 0x1f) return -1;
        if (c != '\\') {
            i++;
        } else {
            if (i + 1 >= n) return -1;
            Py_UCS4 e = AT(w, i + 1);
            switch (e) {
            case '"': case '\\': case '/': c = e; i += 2; break;
            case 'b': c = '\b'; i += 2; break;
            case 'f': c = '\f'; i += 2; break;
            case 'n': c = '\n'; i += 2; break;
            case 'r': c = '\r'; i += 2; break;
            case 't': c = '\t'; i += 2; break;
            case 'u': {
                long u = hex4(w, kind, i + 2);
                if (u < 0) return -1;
                i += 6;
                c = (Py_UCS4)u;
                if (Py_UNICODE_IS_HIGH_SURROGATE(c) && i + 1 < n && AT(w, i) == '\\' &&
                    AT(w, i + 1) == 'u') {
                    long low = hex4(w, kind, i + 2);
                    if (low < 0) return -1; /* an invalid escape either way */
                    if (Py_UNICODE_IS_LOW_SURROGATE((Py_UCS4)low)) {
                        c = Py_UNICODE_JOIN_SURROGATES(c, (Py_UCS4)low);
                        i += 6;
                    }
                }
                break;
            }
            default:
                return -1;
            }
        }
        if (ucs4_reserve(out, 1) < 0) return -2;
        out->data[out->length++] = c;
    }
}

/* ---- fields -------------------------------------------------------------------------- */

/* Whether a field may still be added at the current path; past `max_values` fields, or past
 * `max_name_chars` characters of paths in all (a long key over a long array would repeat in
 * every path), the walk stops adding (TOO_MANY, TOO_LONG). */
static inline int room(walk_t *w) {
    if (w->stopped != WALK_COMPLETE) return 0;
    if (w->count >= w->max_values) {
        w->stopped = WALK_TOO_MANY;
        return 0;
    }
    if (w->name_chars + w->path.length > w->max_name_chars) {
        w->stopped = WALK_TOO_LONG;
        return 0;
    }
    return 1;
}

/* Give the sink (path, value). */
static int add_field(walk_t *w, json_text_t value) {
    w->name_chars += w->path.length;
    w->count++;
    return w->sink(w->context, w->name_kind, w->path.data, w->path.length, &value);
}

/* The characters [start, end) of the body's text, in place. */
ALWAYS_INLINE json_text_t span(const walk_t *w, int kind, Py_ssize_t start, Py_ssize_t end) {
    return (json_text_t){kind, (const char *)w->data + start * kind, end - start,
                         w->text == NULL ? start : NOT_IN_BODY};
}

/* Give the sink (path, the string `value`); -1 when `value` is NULL or on error. */
static int add_object(walk_t *w, PyObject *value) {
    if (value == NULL) return -1;
    int err = add_field(w, (json_text_t){PyUnicode_KIND(value), PyUnicode_DATA(value),
                                         PyUnicode_GET_LENGTH(value), NOT_IN_BODY});
    Py_DECREF(value);
    return err;
}

/* The float, or the int of more than 18 digits, at [start, end) (the grammar already checked)
 * as json.dumps writes what json.loads makes of it. An int too long for Python (ValueError in
 * json.loads) is INVALID: *invalid is set and NULL returned without an exception. */
static PyObject *number_text(const walk_t *w, Py_ssize_t start, Py_ssize_t end, int is_float,
                             int *invalid) {
    Py_ssize_t length = end - start;
    int kind = w->kind;
    char small[64];
    char *buf = length < (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)length + 1);
    if (buf == NULL) return PyErr_NoMemory();
    for (Py_ssize_t j = 0; j < length; j++) buf[j] = (char)AT(w, start + j);
    buf[length] = '\0';
    PyObject *out = NULL;
    if (is_float) {
        double d = PyOS_string_to_double(buf, NULL, NULL);
        if (!(d == -1.0 && PyErr_Occurred())) {
            if (d == Py_HUGE_VAL) {
                out = PyUnicode_FromString("Infinity");
            } else if (d == -Py_HUGE_VAL) {
                out = PyUnicode_FromString("-Infinity");
            } else {
                char *repr = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
                if (repr != NULL) {
                    out = PyUnicode_FromString(repr);
                    PyMem_Free(repr);
                }
            }
        }
    } else {
        PyObject *value = PyLong_FromString(buf, NULL, 10);
        if (value == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                *invalid = 1;
            }
        } else {
            out = PyObject_Str(value);
            Py_DECREF(value);
        }
    }
    if (buf != small) PyMem_Free(buf);
    return out;
}

/* ---- repeated keys ------------------------------------------------------------------- */

/* A key's hash: the memo's keyed hash (`memo_text_hash`) of its characters. An object of
 * keys chosen to share a slot of an unkeyed hash would make each key's probe walk all the
 * keys before it: 8,000 such keys of FNV-1a (this table's hash before) took 29 ms to walk
 * against 0.8 for 8,000 others. */
static uint64_t key_hash(const walk_t *w, Py_ssize_t start, Py_ssize_t n) {
    int kind = w->name_kind;
    return (uint64_t)memo_text_hash(kind, w->keys.data + start * kind, n);
}

/* Whether the entry `e` is the key at [start, start + len) of `keys`. */
static inline int same_text(const walk_t *w, const key_entry *e, Py_ssize_t start,
                            Py_ssize_t len) {
    int kind = w->name_kind;
    return e->len == len && memcmp(w->keys.data + e->start * kind, w->keys.data + start * kind,
                                   (size_t)(len * kind)) == 0;
}

/* Index every key of `f` in a table of `size` slots (a power of two, over twice the keys).
 * The keys of an object without a table yet are hashed now: a small object's keys never are. */
static int build_table(walk_t *w, frame *f, Py_ssize_t size) {
    Py_ssize_t *table = PyMem_Calloc((size_t)size, sizeof(Py_ssize_t));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (f->table == NULL)
        for (Py_ssize_t j = f->entries_start; j < w->entries_len; j++)
            w->entries[j].hash = key_hash(w, w->entries[j].start, w->entries[j].len);
    for (Py_ssize_t j = f->entries_start; j < w->entries_len; j++) {
        Py_ssize_t k = (Py_ssize_t)(w->entries[j].hash & (uint64_t)(size - 1));
        while (table[k]) k = (k + 1) & (size - 1);
        table[k] = j + 1;
    }
    PyMem_Free(f->table);
    f->table = table;
    f->table_size = size;
    return 0;
}

/* The bit of a key among an object's first few: of its length and its first and last
 * characters. A key whose bit no earlier key set is new without comparing it with any (of
 * an order's items' 14 keys, most are). */
static inline uint64_t key_bit(const walk_t *w, Py_ssize_t start, Py_ssize_t len) {
    int kind = w->name_kind;
    const void *s = w->keys.data;
    uint64_t ends =
        len ? (uint64_t)PyUnicode_READ(kind, s, start) * 31 + PyUnicode_READ(kind, s, start + len - 1)
            : 0;
    return (uint64_t)1 << (((uint64_t)len * 7 + ends) & 63);
}

/* Add the key at [start, start + len) of `keys` to the open object `f`: 1 when it already has
 * it, 0 when new, -1 on a memory error. */
static int repeated_key(walk_t *w, frame *f, Py_ssize_t start, Py_ssize_t len) {
    uint64_t hash = 0; /* unused while the object has no table */
    Py_ssize_t count = w->entries_len - f->entries_start;
    if (f->table == NULL && count < FEW_KEYS) {
        uint64_t bit = key_bit(w, start, len);
        if (f->key_bits & bit) {
            for (Py_ssize_t j = f->entries_start; j < w->entries_len; j++)
                if (same_text(w, &w->entries[j], start, len)) return 1;
        }
        f->key_bits |= bit;
    } else {
        if (2 * (count + 1) > f->table_size) {
            Py_ssize_t size = 64;
            while (size < 4 * (count + 1)) size *= 2;
            if (build_table(w, f, size) < 0) return -1;
        }
        hash = key_hash(w, start, len);
        Py_ssize_t mask = f->table_size - 1, k = (Py_ssize_t)(hash & (uint64_t)mask);
        for (; f->table[k]; k = (k + 1) & mask) {
            const key_entry *e = &w->entries[f->table[k] - 1];
            if (e->hash == hash && same_text(w, e, start, len)) return 1;
        }
        f->table[k] = w->entries_len + 1;
    }
    if (w->entries_len == w->entries_cap) {
        Py_ssize_t cap = w->entries_cap ? 2 * w->entries_cap : 64;
        key_entry *entries = PyMem_Realloc(w->entries, (size_t)cap * sizeof(key_entry));
        if (entries == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->entries = entries;
        w->entries_cap = cap;
    }
    w->entries[w->entries_len++] = (key_entry){hash, start, len};
    return 0;
}

/* Whether the innermost open container is an object. */
static inline int in_object(const walk_t *w) {
    if (w->top < WALK_FRAMES) return w->stack[w->top].is_object;
    Py_ssize_t bit = w->top - WALK_FRAMES;
    return (w->deep[bit >> 3] >> (bit & 7)) & 1;
}

/* Open a container one level deeper: a frame, or past WALK_FRAMES levels a bit. */
static int open_container(walk_t *w, int is_object) {
    Py_ssize_t level = ++w->top;
    if (level < WALK_FRAMES) {
        w->stack[level] =
            (frame){is_object, w->path.length, 0, w->keys.length, w->entries_len, NULL, 0, 0};
        return 0;
    }
    Py_ssize_t bit = level - WALK_FRAMES;
    if ((bit >> 3) >= w->deep_cap) {
        Py_ssize_t cap = w->deep_cap ? 2 * w->deep_cap : 64;
        uint8_t *deep = PyMem_Realloc(w->deep, (size_t)cap);
        if (deep == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->deep = deep;
        w->deep_cap = cap;
    }
    if (is_object)
        w->deep[bit >> 3] |= (uint8_t)(1u << (bit & 7));
    else
        w->deep[bit >> 3] &= (uint8_t)~(1u << (bit & 7));
    return 0;
}

/* Close the innermost container: an object forgets its keys. */
static void close_container(walk_t *w) {
    if (w->top >= WALK_FRAMES) {
        w->top--;
        return;
    }
    frame *f = &w->stack[w->top--];
    if (!f->is_object) return;
    PyMem_Free(f->table);
    f->table = NULL;
    w->entries_len = f->entries_start;
    w->keys.length = f->keys_start;
}

/* From a key that is not Latin-1 on, the keys and the path four bytes a character. An open
 * object's table is rebuilt: its keys' hashes were of their one-byte form. */
static int widen_names(walk_t *w) {
    if (names_widen(&w->keys) < 0 || names_widen(&w->path) < 0) return -1;
    w->name_kind = PyUnicode_4BYTE_KIND;
    for (Py_ssize_t level = 0; level <= w->top && level < WALK_FRAMES; level++) {
        frame *f = &w->stack[level];
        if (f->table == NULL) continue;
        PyMem_Free(f->table);
        f->table = NULL;
        if (build_table(w, f, f->table_size) < 0) return -1;
    }
    return 0;
}

/* ---- the walk ------------------------------------------------------------------------ */

/* The child's path: the container's path, a dot when that is not empty, and the key at
 * [start, start + len) of `keys`. */
static int child_path(walk_t *w, const frame *f, Py_ssize_t start, Py_ssize_t len) {
    int kind = w->name_kind;
    w->path.length = f->path_len;
    if (names_reserve(&w->path, kind, len + 1) < 0) return -1;
    if (f->path_len) path_put(w, '.');
    copy_bytes(w->path.data + w->path.length * kind, w->keys.data + start * kind,
               (size_t)(len * kind));
    w->path.length += len;
    return 0;
}

/* The path of the array `f`'s next element (its first when it has had none). An element's
 * fields write only after its path, so the last element's index is still there to count up
 * by one in place (while the walk adds fields, every element's path is written). */
static int index_path(walk_t *w, frame *f) {
    if (w->stopped != WALK_COMPLETE) return 0; /* no more fields: no more paths */
    int kind = w->name_kind;
    if (f->index_chars == 0) {
        f->index_chars = 1;
        w->path.length = f->path_len;
        if (names_reserve(&w->path, kind, 2) < 0) return -1;
        if (f->path_len) path_put(w, '.');
        path_put(w, '0');
        return 0;
    }
    Py_ssize_t first = f->path_len + (f->path_len != 0), end = first + f->index_chars;
    void *digits = w->path.data;
    w->path.length = end;
    Py_ssize_t j = end - 1;
    for (; j >= first && PyUnicode_READ(kind, digits, j) == '9'; j--)
        PyUnicode_WRITE(kind, digits, j, '0');
    if (j >= first) {
        PyUnicode_WRITE(kind, digits, j, PyUnicode_READ(kind, digits, j) + 1);
        return 0;
    }
    /* all nines: one digit more, a 1 and as many zeros */
    if (names_reserve(&w->path, kind, 1) < 0) return -1;
    PyUnicode_WRITE(kind, w->path.data, first, '1');
    path_put(w, '0');
    f->index_chars++;
    return 0;
}

/* The status of walking the whole text, of kind `kind`; each field is given to the sink as it
 * comes. */
ALWAYS_INLINE int walk_kind(walk_t *w, const int kind) {
    frame *stack = w->stack;
#define top (w->top)
    Py_ssize_t n = w->n, i = skip_space(w, kind, 0);
    const char *word;
    int is_float;

value:
    if (i >= n) return WALK_INVALID;
    switch (AT(w, i)) {
    case '"': {
        Py_ssize_t start, end;
        int escaped;
        Py_ssize_t next = scan_string(w, kind, i + 1, &start, &end, &escaped);
        if (next == -2) return WALK_ERROR;
        if (next < 0) return WALK_INVALID;
        if (room(w)) {
            json_text_t text = escaped ? (json_text_t){PyUnicode_4BYTE_KIND, w->scratch.data,
                                                       w->scratch.length, NOT_IN_BODY}
                                       : span(w, kind, start, end);
            if (add_field(w, text) < 0) return WALK_ERROR;
        }
        i = next;
        goto after_value;
    }
    case '{':
    case '[': {
        int is_object = AT(w, i) == '{';
        if (top >= 0 && in_object(w) && room(w)) {
            if (add_field(w, (json_text_t){PyUnicode_1BYTE_KIND, "", 0, NOT_IN_BODY}) < 0) return WALK_ERROR;
        }
        if (open_container(w, is_object) < 0) return WALK_ERROR;
        if (top >= w->max_depth && w->stopped == WALK_COMPLETE) w->stopped = WALK_TOO_DEEP;
        i = skip_space(w, kind, i + 1);
        if (i < n && AT(w, i) == (is_object ? '}' : ']')) {
            i++;
            close_container(w);
            goto after_value;
        }
        if (is_object) goto key;
        if (top < w->max_depth && index_path(w, &stack[top]) < 0) return WALK_ERROR;
        goto value;
    }
    case 'n': word = "null"; goto constant;
    case 't': word = "true"; goto constant;
    case 'f': word = "false"; goto constant;
    case 'N': word = "NaN"; goto constant;
    case 'I': word = "Infinity"; goto constant;
    case '-':
        if (i + 1 < n && AT(w, i + 1) == 'I') {
            word = "-Infinity";
            goto constant;
        }
        goto number;
    default:
        goto number;
    }

constant: {
    Py_ssize_t length = (Py_ssize_t)strlen(word);
    if (i + length > n) return WALK_INVALID;
    for (Py_ssize_t k = 0; k < length; k++)
        if (AT(w, i + k) != (Py_UCS4)(unsigned char)word[k]) return WALK_INVALID;
    if (room(w) && add_field(w, (json_text_t){PyUnicode_1BYTE_KIND, word, length, NOT_IN_BODY}) < 0)
        return WALK_ERROR;
    i += length;
    goto after_value;
}

number: {
    Py_ssize_t start = i;
    is_float = 0;
    if (AT(w, i) == '-') i++;
    if (i >= n) return WALK_INVALID;
    Py_UCS4 c = AT(w, i);
    if (c == '0') {
        i++;
    } else if (c >= '1' && c <= '9') {
        i++;
        while (i < n && AT(w, i) >= '0' && AT(w, i) <= '9') i++;
    } else {
        return WALK_INVALID;
    }
    if (i + 1 < n && AT(w, i) == '.' && AT(w, i + 1) >= '0' && AT(w, i + 1) <= '9') {
        is_float = 1;
        i += 2;
        while (i < n && AT(w, i) >= '0' && AT(w, i) <= '9') i++;
    }
    if (i < n && (AT(w, i) == 'e' || AT(w, i) == 'E')) {
        Py_ssize_t e = i + 1;
        if (e < n && (AT(w, e) == '+' || AT(w, e) == '-')) e++;
        Py_ssize_t digits = e;
        while (e < n && AT(w, e) >= '0' && AT(w, e) <= '9') e++;
        if (e > digits) {
            is_float = 1;
            i = e;
        }
    }
    /* An int Python refuses (more digits than sys.get_int_max_str_digits()) is a ValueError
     * from json.loads wherever it is, so long ints are converted even past a limit. */
    int long_int = !is_float && i - start - (AT(w, start) == '-') > 18;
    if (!is_float && !long_int) {
        /* An int's digits as written, but -0 is 0. */
        int minus_zero = i - start == 2 && AT(w, start) == '-' && AT(w, start + 1) == '0';
        json_text_t text = minus_zero ? (json_text_t){PyUnicode_1BYTE_KIND, "0", 1, NOT_IN_BODY}
                                      : span(w, kind, start, i);
        if (room(w) && add_field(w, text) < 0) return WALK_ERROR;
    } else if (room(w) || long_int) {
        int invalid = 0;
        PyObject *text = number_text(w, start, i, is_float, &invalid);
        if (invalid) return WALK_INVALID;
        if (text == NULL) return WALK_ERROR;
        if (room(w)) {
            if (add_object(w, text) < 0) return WALK_ERROR;
        } else {
            Py_DECREF(text);
        }
    }
    goto after_value;
}

after_value:
    if (top < 0) return skip_space(w, kind, i) == n ? w->stopped : WALK_INVALID;
    i = skip_space(w, kind, i);
    if (i >= n) return WALK_INVALID;
    if (AT(w, i) == (in_object(w) ? '}' : ']')) {
        i++;
        close_container(w);
        goto after_value;
    }
    if (AT(w, i) != ',') return WALK_INVALID;
    i = skip_space(w, kind, i + 1);
    if (in_object(w)) goto key;
    if (top < w->max_depth) { /* deeper, no element is a field */
        if (index_path(w, &stack[top]) < 0) return WALK_ERROR;
    }
    goto value;

key: {
    if (i >= n || AT(w, i) != '"') return WALK_INVALID;
    Py_ssize_t start, end;
    int escaped;
    Py_ssize_t next = scan_string(w, kind, i + 1, &start, &end, &escaped);
    if (next == -2) return WALK_ERROR;
    if (next < 0) return WALK_INVALID;
    if (top >= w->max_depth || w->stopped == WALK_UNDECIDED) {
        /* The keys of an object nested `max_depth` deep or more are never fields (nor its
         * values), so a repeated one there changes nothing; past a repeated key the walk only
         * checks the rest is JSON. */
        i = skip_space(w, kind, next);
        if (i >= n || AT(w, i) != ':') return WALK_INVALID;
        i = skip_space(w, kind, i + 1);
        goto value;
    }
    Py_ssize_t len = escaped ? w->scratch.length : end - start, at = w->keys.length;
    const int key_kind = escaped ? PyUnicode_4BYTE_KIND : kind;
    const char *key = escaped ? (const char *)w->scratch.data
                              : (const char *)w->data + start * kind;
    if (w->name_kind == PyUnicode_1BYTE_KIND && key_kind != PyUnicode_1BYTE_KIND &&
        BY_KIND(text_reaches, key_kind, key, len, 0x100) && widen_names(w) < 0)
        return WALK_ERROR;
    const int name_kind = w->name_kind;
    if (names_reserve(&w->keys, name_kind, len) < 0) return WALK_ERROR;
    char *copy = w->keys.data + at * name_kind;
    if (key_kind == name_kind) {
        copy_bytes(copy, key, (size_t)(len * name_kind));
    } else {
        for (Py_ssize_t j = 0; j < len; j++)
            PyUnicode_WRITE(name_kind, copy, j, PyUnicode_READ(key_kind, key, j));
    }
    w->keys.length += len;
    int repeated = repeated_key(w, &stack[top], at, len);
    if (repeated < 0) return WALK_ERROR;
    if (repeated) w->stopped = WALK_UNDECIDED; /* no more fields: see whether it is JSON */
    if (w->stopped == WALK_COMPLETE && child_path(w, &stack[top], at, len) < 0)
        return WALK_ERROR;
    i = skip_space(w, kind, next);
    if (i >= n || AT(w, i) != ':') return WALK_INVALID;
    i = skip_space(w, kind, i + 1);
    goto value;
}
#undef top
}

/* `walk_kind` for the text's kind. */
static int walk(walk_t *w) {
    switch (w->kind) {
    case PyUnicode_1BYTE_KIND:
        return walk_kind(w, PyUnicode_1BYTE_KIND);
    case PyUnicode_2BYTE_KIND:
        return walk_kind(w, PyUnicode_2BYTE_KIND);
    default:
        return walk_kind(w, PyUnicode_4BYTE_KIND);
    }
}

/* json.detect_encoding: the codec json.loads decodes bytes with. */
static const char *detect_encoding(const unsigned char *b, Py_ssize_t n) {
    if (n >= 4 && ((b[0] == 0 && b[1] == 0 && b[2] == 0xFE && b[3] == 0xFF) ||
                   (b[0] == 0xFF && b[1] == 0xFE && b[2] == 0 && b[3] == 0)))
        return "utf-32";
    if (n >= 2 && ((b[0] == 0xFE && b[1] == 0xFF) || (b[0] == 0xFF && b[1] == 0xFE)))
        return "utf-16";
    if (n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF) return "utf-8-sig";
    if (n >= 4) {
        if (!b[0]) return b[1] ? "utf-16-be" : "utf-32-be";
        if (!b[1]) return (b[2] || b[3]) ? "utf-16-le" : "utf-32-le";
    } else if (n == 2) {
        if (!b[0]) return "utf-16-be";
        if (!b[1]) return "utf-16-le";
    }
    return "utf-8";
}

int json_walk(const char *bytes, Py_ssize_t length, Py_ssize_t max_values, int max_depth,
              Py_ssize_t max_name_chars, json_sink_t sink, void *context) {
    walk_t w;
    memset(&w, 0, offsetof(walk_t, stack));
    w.top = -1;
    w.sink = sink;
    w.context = context;
    w.max_values = max_values;
    w.max_depth = max_depth;
    w.max_name_chars = max_name_chars;
    int status = WALK_ERROR;
    if (max_depth > WALK_FRAMES) {
        PyErr_Format(PyExc_ValueError, "the JSON walk's max_depth is at most %d, not %d",
                     WALK_FRAMES, max_depth);
        return WALK_ERROR;
    }
    /* Buffers are never NULL, so an empty key or path is an empty copy from a real buffer. */
    w.name_kind = PyUnicode_1BYTE_KIND;
    if (names_reserve(&w.path, w.name_kind, 1) < 0 || names_reserve(&w.keys, w.name_kind, 1) < 0 ||
        ucs4_reserve(&w.scratch, 1) < 0)
        goto done;
    const char *encoding = detect_encoding((const unsigned char *)bytes, length);
    if (strcmp(encoding, "utf-8") == 0 &&
        !text_reaches(PyUnicode_1BYTE_KIND, bytes, length, 0x80)) {
        /* ASCII: the bytes are already the text json.loads would decode, of one-byte kind */
        w.data = bytes;
        w.kind = PyUnicode_1BYTE_KIND;
        w.n = length;
    } else {
        w.text = PyUnicode_Decode(bytes, length, encoding, "surrogatepass");
        if (w.text == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                status = WALK_INVALID;
            }
            goto done;
        }
        w.data = PyUnicode_DATA(w.text);
        w.kind = PyUnicode_KIND(w.text);
        w.n = PyUnicode_GET_LENGTH(w.text);
    }
    status = walk(&w);
done:
    Py_XDECREF(w.text);
    PyMem_Free(w.path.data);
    PyMem_Free(w.keys.data);
    PyMem_Free(w.scratch.data);
    while (w.top >= 0) close_container(&w);
    PyMem_Free(w.entries);
    PyMem_Free(w.deep);
    return status;
}

/* The sink of `json_fields`: each (path, value) as a pair of strings in a list. */
static int append_pair(void *context, int path_kind, const void *path, Py_ssize_t path_length,
                       const json_text_t *value) {
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) return -1;
    PyObject *name = PyUnicode_FromKindAndData(path_kind, path, path_length);
    PyObject *text = PyUnicode_FromKindAndData(value->kind, value->data, value->length);
    if (name == NULL || text == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(text);
        Py_DECREF(pair);
        return -1;
    }
    PyTuple_SET_ITEM(pair, 0, name);
    PyTuple_SET_ITEM(pair, 1, text);
    PyObject_GC_UnTrack(pair); /* two strings: never part of a cycle */
    int err = PyList_Append(context, pair);
    Py_DECREF(pair);
    return err;
}

/* json_fields(body, max_values, max_depth, max_name_chars) -> (fields, status) */
static PyObject *native_json_fields(PyObject *module, PyObject *args) {
    Py_buffer body;
    Py_ssize_t max_values, max_name_chars;
    int max_depth;
    if (!PyArg_ParseTuple(args, "y*nin:json_fields", &body, &max_values, &max_depth,
                          &max_name_chars))
        return NULL;
    PyObject *result = NULL, *fields = PyList_New(0);
    if (fields != NULL) {
        int status = json_walk(body.buf, body.len, max_values, max_depth, max_name_chars,
                               append_pair, fields);
        if (status == WALK_INVALID || status == WALK_UNDECIDED) Py_SETREF(fields, PyList_New(0));
        if (status != WALK_ERROR && fields != NULL)
            result = Py_BuildValue("(Oi)", fields, status);
    }
    PyBuffer_Release(&body);
    Py_XDECREF(fields);
    return result;
}

/* json_pruned(body, max_depth) -> str: the text of a JSON body (one the walk found valid) with
 * every container nested `max_depth` deep or more emptied: what the flattening reads of the
 * document (it stops at such a container, whatever is inside), nested at most max_depth + 1
 * levels, so `json.loads` reads it with little recursion. */
static PyObject *native_json_pruned(PyObject *module, PyObject *args) {
    Py_buffer body;
    int max_depth;
    if (!PyArg_ParseTuple(args, "y*i:json_pruned", &body, &max_depth)) return NULL;
    PyObject *text = PyUnicode_Decode(body.buf, body.len,
                                      detect_encoding(body.buf, body.len), "surrogatepass");
    PyBuffer_Release(&body);
    if (text == NULL) return NULL;
    const void *data = PyUnicode_DATA(text);
    int kind = PyUnicode_KIND(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), open = 0, i = 0;
    ucs4_t out = {NULL, 0, 0};
    while (i < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        Py_ssize_t end = i + 1;
        if (c == '"') { /* the whole string, escapes and all */
            while (end < n && PyUnicode_READ(kind, data, end) != '"')
                end += PyUnicode_READ(kind, data, end) == '\\' ? 2 : 1;
            end = end < n ? end + 1 : n;
        } else if (c == ']' || c == '}') {
            open--; /* a closer is as deep as its opener */
        }
        if (open <= max_depth) {
            if (ucs4_reserve(&out, end - i) < 0) goto fail;
            for (Py_ssize_t j = i; j < end; j++)
                out.data[out.length++] = PyUnicode_READ(kind, data, j);
        }
        if (c == '[' || c == '{') open++;
        i = end;
    }
    Py_DECREF(text);
    return ucs4_finish(&out);
fail:
    Py_DECREF(text);
    PyMem_Free(out.data);
    return NULL;
}

PyMethodDef jsonwalk_methods[] = {
    {"json_fields", native_json_fields, METH_VARARGS,
     "json_fields(body, max_values, max_depth, max_name_chars) -> (fields, status): what "
     "json.loads and flatten_json_reference make of a JSON body, in one pass: status 0, or 1 "
     "past max_values, 2 past max_depth, 3 past max_name_chars characters of paths in all, 4 "
     "not JSON (json.loads with unlimited recursion raises ValueError), at any depth, 5 JSON "
     "with a repeated key, left to the caller."},
    {"json_pruned", native_json_pruned, METH_VARARGS,
     "json_pruned(body, max_depth) -> str: the text of a valid JSON body with every container "
     "nested max_depth deep or more emptied (what flattening to max_depth reads of it)."},
    {NULL, NULL, 0, NULL},
};
