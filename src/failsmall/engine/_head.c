/* The request head walk in C: `ValueScanner.scan_head`, one call per request.
 *
 * It walks the values of the head targets the way the readable reference
 * (`failsmall.engine.signatures.reference.scan_head`) does, with the same memo keys and the
 * same work counted: the path, the URI, the query and the method as values; each raw
 * `name=value` part of the query; each header's (name, value) pair, a Cookie header's raw
 * `;`-separated parts within it. A part seen before costs one memo lookup; a part not seen
 * before is split and decoded here (percent escapes by `urllib.parse.unquote`, which the
 * reference uses too), its values looked up or scanned, and the part remembered when short.
 * Each value and part is charged to the room left before its hits count: the first that does
 * not fit stops the walk, and the walk says which limit stopped it.
 */
#include "_head.h"
#include "_kind.h"
#include "../_header_names.h"

/* Target bits: the same values as `failsmall.engine.signatures.targets.TARGET_BIT` (the module
 * exports them as HEAD_TARGET_BITS and the scanner checks them on import). */
enum {
    B_PATH = 1 << 0,
    B_URI = 1 << 1,
    B_QUERY = 1 << 2,
    B_ARG_NAMES = 1 << 3,
    B_ARG_VALUES = 1 << 4,
    B_HEADER_NAMES = 1 << 8,
    B_HEADER_VALUES = 1 << 9,
    B_USER_AGENT = 1 << 10,
    B_REFERER = 1 << 11,
    B_COOKIE_NAMES = 1 << 12,
    B_COOKIE_VALUES = 1 << 13,
    B_METHOD = 1 << 14,
};
#define B_FROM_HEADERS (B_HEADER_NAMES | B_HEADER_VALUES | B_USER_AGENT | B_REFERER)

static PyObject *unquote;      /* urllib.parse.unquote */
static PyObject *UTF8, *REPLACE, *AMPERSAND, *SEMICOLON, *PLUS, *SPACE, *QUESTION, *EMPTY;
static PyObject *NO_HITS;      /* frozenset() */

/* The common header names (`_header_names.h`) in lowercase, as `lower` returns them. */
static header_spellings_t LOWERCASE_NAMES;
static PyObject *LOWERCASE_TEXT[2 * COMMON_HEADER_COUNT];

int head_init(PyObject *module) {
    header_spellings(&LOWERCASE_NAMES, 1);
    for (int k = 0; k < LOWERCASE_NAMES.count; k++) {
        LOWERCASE_TEXT[k] =
            PyUnicode_FromStringAndSize(LOWERCASE_NAMES.text[k], LOWERCASE_NAMES.length[k]);
        if (LOWERCASE_TEXT[k] == NULL) return -1;
        PyUnicode_InternInPlace(&LOWERCASE_TEXT[k]);
    }
    PyObject *bits = Py_BuildValue(
        "{sisisisisisisisisisisisi}", "PATH", B_PATH, "URI", B_URI, "QUERY", B_QUERY, "ARG_NAMES",
        B_ARG_NAMES, "ARG_VALUES", B_ARG_VALUES, "HEADER_NAMES", B_HEADER_NAMES, "HEADER_VALUES",
        B_HEADER_VALUES, "USER_AGENT", B_USER_AGENT, "REFERER", B_REFERER, "COOKIE_NAMES",
        B_COOKIE_NAMES, "COOKIE_VALUES", B_COOKIE_VALUES, "METHOD", B_METHOD);
    if (bits == NULL) return -1;
    int err = PyModule_AddObjectRef(module, "HEAD_TARGET_BITS", bits);
    Py_DECREF(bits);
    if (err < 0) return -1;
    PyObject *parse = PyImport_ImportModule("urllib.parse");
    if (parse == NULL) return -1;
    unquote = PyObject_GetAttrString(parse, "unquote");
    Py_DECREF(parse);
    if (unquote == NULL || (UTF8 = PyUnicode_InternFromString("utf-8")) == NULL ||
        (REPLACE = PyUnicode_InternFromString("replace")) == NULL ||
        (AMPERSAND = PyUnicode_InternFromString("&")) == NULL ||
        (SEMICOLON = PyUnicode_InternFromString(";")) == NULL ||
        (PLUS = PyUnicode_InternFromString("+")) == NULL ||
        (SPACE = PyUnicode_InternFromString(" ")) == NULL ||
        (QUESTION = PyUnicode_InternFromString("?")) == NULL ||
        (EMPTY = PyUnicode_InternFromString("")) == NULL ||
        (NO_HITS = PyFrozenSet_New(NULL)) == NULL)
        return -1;
    return 0;
}

static inline void nothing(known_t *k) { *k = (known_t){Py_NewRef(NO_HITS), 0, 0}; }

/* `a` becomes the hits and cost of `a` and `b` together (`_plus`); `b` is released. */
static int plus(known_t *a, known_t *b) {
    if (b->values == 0) {
        Py_CLEAR(b->hits);
        return 0;
    }
    if (a->values == 0) {
        Py_SETREF(a->hits, b->hits);
        b->hits = NULL;
    } else {
        if (PySet_GET_SIZE(b->hits)) {
            if (PySet_GET_SIZE(a->hits)) {
                PyObject *both = PyNumber_Or(a->hits, b->hits);
                if (both == NULL) {
                    Py_CLEAR(b->hits);
                    return -1;
                }
                Py_SETREF(a->hits, both);
            } else {
                Py_SETREF(a->hits, Py_NewRef(b->hits));
            }
        }
        Py_CLEAR(b->hits);
    }
    a->values += b->values;
    a->chars += b->chars;
    return 0;
}

static void from_entry(memo_entry *e, known_t *out) {
    *out = (known_t){Py_NewRef(e->hits), e->values, e->chars};
}

int value_found(ValueScanner *self, Memo *memo, PyObject *value, long long targets,
                known_t *out, int *fresh) {
    *fresh = 0;
    if (PyUnicode_GET_LENGTH(value) == 0) {
        nothing(out);
        return 0;
    }
    memo_entry *e = memo_find(memo, value, targets);
    if (e != NULL) {
        from_entry(e, out);
        return 0;
    }
    if (PyErr_Occurred() || fresh_value(self, value, targets, out) < 0) return -1;
    *fresh = 1;
    return 0;
}

int value_known(ValueScanner *self, Memo *memo, PyObject *value, long long targets,
                known_t *out) {
    int fresh;
    if (value_found(self, memo, value, targets, out, &fresh) < 0) return -1;
    Py_ssize_t length = PyUnicode_GET_LENGTH(value);
    if (fresh && length <= MEMO_MAX_VALUE &&
        memo_put(memo, value, targets, out->hits, 1, out->chars, length) < 0) {
        Py_CLEAR(out->hits);
        return -1;
    }
    return 0;
}

/* `found` plus the hits and cost of `value` as a value of `targets`. */
static int add_value(ValueScanner *self, Memo *memo, PyObject *value, long long targets,
                     known_t *found) {
    known_t more;
    if (value_known(self, memo, value, targets, &more) < 0) return -1;
    return plus(found, &more);
}

/* Ask the CPU to load the memo bucket a lookup of (`value`, `kind`) reads first (see
 * `memo_prefetch`); nothing for an empty value, which is not looked up. -1 on error. */
static int ask_bucket(Memo *memo, PyObject *value, long long kind) {
    if (PyUnicode_GET_LENGTH(value) == 0) return 0;
    memo_text_t text = memo_text_of(value);
    memo_prefetch(memo, text.hash, kind, 0);
    return 0;
}

/* `forms._form_decode`: `+` as a space, then percent escapes by `unquote`. New reference. */
static PyObject *form_decode(PyObject *text) {
    Py_INCREF(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (PyUnicode_FindChar(text, '+', 0, n, 1) >= 0)
        Py_SETREF(text, PyUnicode_Replace(text, PLUS, SPACE, -1));
    if (text != NULL && PyUnicode_FindChar(text, '%', 0, n, 1) >= 0)
        Py_SETREF(text, PyObject_CallFunctionObjArgs(unquote, text, UTF8, REPLACE, NULL));
    return text;
}

/* The hits of the name and value of one raw `name=value` part of the query. */
static int arg_part(ValueScanner *self, Memo *memo, long mask, PyObject *part, known_t *found) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(part);
    Py_ssize_t eq = PyUnicode_FindChar(part, '=', 0, n, 1);
    if (eq == -2) return -1;
    PyObject *raw_name = eq < 0 ? Py_NewRef(part) : PyUnicode_Substring(part, 0, eq);
    PyObject *raw_value = eq < 0 ? Py_NewRef(EMPTY) : PyUnicode_Substring(part, eq + 1, n);
    PyObject *name = raw_name ? form_decode(raw_name) : NULL;
    PyObject *value = raw_value ? form_decode(raw_value) : NULL;
    Py_XDECREF(raw_name);
    Py_XDECREF(raw_value);
    int err = name == NULL || value == NULL ? -1 : 0;
    /* both lookups' buckets asked for at once, so their reads overlap */
    if (!err && (mask & B_ARG_NAMES)) err = ask_bucket(memo, name, B_ARG_NAMES);
    if (!err && (mask & B_ARG_VALUES)) err = ask_bucket(memo, value, B_ARG_VALUES);
    nothing(found);
    if (!err && (mask & B_ARG_NAMES)) err = add_value(self, memo, name, B_ARG_NAMES, found);
    if (!err && (mask & B_ARG_VALUES)) err = add_value(self, memo, value, B_ARG_VALUES, found);
    Py_XDECREF(name);
    Py_XDECREF(value);
    if (!err && n <= MEMO_MAX_VALUE)
        err = memo_put(memo, part, MEMO_ARG_PART, found->hits, found->values, found->chars, n);
    if (err) Py_CLEAR(found->hits);
    return err;
}

/* The hits of one raw `;`-separated part of a Cookie header (`forms.cookie_pair`: stripped of
 * white space, a cookie when it has an `=` after a name). */
static int cookie_part(ValueScanner *self, Memo *memo, long mask, PyObject *part,
                       known_t *found) {
    memo_entry *e = memo_find(memo, part, MEMO_COOKIE_PART);
    if (e != NULL) {
        from_entry(e, found);
        return 0;
    }
    if (PyErr_Occurred()) return -1;
    nothing(found);
    Py_ssize_t n = PyUnicode_GET_LENGTH(part), a = 0, b = n;
    int kind = PyUnicode_KIND(part);
    const void *data = PyUnicode_DATA(part);
    while (a < b && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, a))) a++;
    while (b > a && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, b - 1))) b--;
    Py_ssize_t eq = a < b ? PyUnicode_FindChar(part, '=', a, b, 1) : -1;
    if (eq == -2) goto error;
    if (eq > a) {
        PyObject *name = PyUnicode_Substring(part, a, eq);
        PyObject *value = PyUnicode_Substring(part, eq + 1, b);
        int err = name == NULL || value == NULL ? -1 : 0;
        if (!err && (mask & B_COOKIE_NAMES)) err = ask_bucket(memo, name, B_COOKIE_NAMES);
        if (!err && (mask & B_COOKIE_VALUES)) err = ask_bucket(memo, value, B_COOKIE_VALUES);
        if (!err && (mask & B_COOKIE_NAMES))
            err = add_value(self, memo, name, B_COOKIE_NAMES, found);
        if (!err && (mask & B_COOKIE_VALUES))
            err = add_value(self, memo, value, B_COOKIE_VALUES, found);
        Py_XDECREF(name);
        Py_XDECREF(value);
        if (err) goto error;
    }
    if (n <= MEMO_MAX_VALUE &&
        memo_put(memo, part, MEMO_COOKIE_PART, found->hits, found->values, found->chars, n) < 0)
        goto error;
    return 0;
error:
    Py_CLEAR(found->hits);
    return -1;
}

/* Whether `pair` is a header as the engine takes them: a (name, value) tuple of two str. */
static int is_str_pair(PyObject *pair) {
    return PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2 &&
           PyUnicode_Check(PyTuple_GET_ITEM(pair, 0)) && PyUnicode_Check(PyTuple_GET_ITEM(pair, 1));
}

/* `name` lowercased as `str.lower` does. New reference. */
static PyObject *lower(PyObject *name) {
    if (!PyUnicode_IS_ASCII(name)) return PyObject_CallMethod(name, "lower", NULL);
    const unsigned char *s = PyUnicode_1BYTE_DATA(name);
    Py_ssize_t n = PyUnicode_GET_LENGTH(name), i = 0;
    while (i < n && !(s[i] >= 'A' && s[i] <= 'Z')) i++;
    if (i == n) return Py_NewRef(name);
    if (n <= LONGEST_COMMON_HEADER) { /* a common name's lowercase str, made once */
        char low[LONGEST_COMMON_HEADER];
        for (i = 0; i < n; i++) low[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : (char)s[i];
        int k = header_spelling(&LOWERCASE_NAMES, low, n);
        if (k >= 0) return Py_NewRef(LOWERCASE_TEXT[k]);
    }
    PyObject *out = PyUnicode_New(n, 127);
    if (out == NULL) return NULL;
    unsigned char *o = PyUnicode_1BYTE_DATA(out);
    for (i = 0; i < n; i++) o[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (unsigned char)(s[i] + 32) : s[i];
    return out;
}

static int is(PyObject *text, const char *ascii) {
    size_t n = strlen(ascii);
    return PyUnicode_IS_ASCII(text) && (size_t)PyUnicode_GET_LENGTH(text) == n &&
           memcmp(PyUnicode_1BYTE_DATA(text), ascii, n) == 0;
}

/* The hits of one header (`pair`, of hash `hash`): its lowercase name, and its value for the
 * header value, user agent and referer targets, or for a Cookie header, its cookies' names and
 * values. A Cookie header whose cookies pass `room_values` is walked no further (the walk stops
 * at it whatever the rest holds) and is not remembered. */
static int header(ValueScanner *self, Memo *memo, long mask, PyObject *pair, Py_hash_t hash,
                  Py_ssize_t room_values, known_t *found) {
    PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
    PyObject *lowered = lower(name);
    if (lowered == NULL) return -1;
    int err = 0, past_room = 0;
    nothing(found);
    if (mask & B_HEADER_NAMES) err = add_value(self, memo, lowered, B_HEADER_NAMES, found);
    if (err) {
    } else if (is(lowered, "cookie")) {
        if (mask & (B_COOKIE_NAMES | B_COOKIE_VALUES)) {
            PyObject *parts = PyUnicode_Split(value, SEMICOLON, -1);
            if (parts == NULL) err = -1;
            for (Py_ssize_t i = 0; !err && i < PyList_GET_SIZE(parts); i++) {
                known_t more;
                err = cookie_part(self, memo, mask, PyList_GET_ITEM(parts, i), &more);
                if (!err) err = plus(found, &more);
                if (found->values > room_values) {
                    past_room = 1;
                    break;
                }
            }
            Py_XDECREF(parts);
        }
    } else {
        long bits = mask & B_HEADER_VALUES;
        if (is(lowered, "user-agent")) bits |= mask & B_USER_AGENT;
        else if (is(lowered, "referer")) bits |= mask & B_REFERER;
        if (bits) err = add_value(self, memo, value, bits, found);
    }
    Py_DECREF(lowered);
    Py_ssize_t size = PyUnicode_GET_LENGTH(name) + PyUnicode_GET_LENGTH(value);
    if (!err && !past_room && size <= MEMO_MAX_VALUE)
        err = memo_put_object(memo, pair, hash, MEMO_HEADER, found->hits, found->values,
                              found->chars, size);
    if (err) Py_CLEAR(found->hits);
    return err;
}

int work_charge(work_t *w, known_t *found) {
    int out = 1;
    if (w->values + found->values > w->room_values) {
        w->stop = STOP_VALUES;
        out = 0;
    } else if (w->chars + found->chars > w->room_chars) {
        w->stop = STOP_CHARS;
        out = 0;
    } else {
        w->values += found->values;
        w->chars += found->chars;
        if (PySet_GET_SIZE(found->hits)) {
            PyObject *hits = PyNumber_InPlaceOr(w->hits, found->hits);
            if (hits == NULL) out = -1;
            Py_XDECREF(hits);
        }
    }
    Py_CLEAR(found->hits);
    return out;
}

struct later_value {
    PyObject *value;
    Py_hash_t hash;
    long long targets;
    PyObject *hits;
    Py_ssize_t chars;
};

int remembered_later_add(remembered_later_t *later, PyObject *value, Py_hash_t hash,
                         long long targets, PyObject *hits, Py_ssize_t chars) {
    if (array_reserve((void **)&later->items, &later->capacity, later->count + 1,
                      sizeof(struct later_value)) < 0)
        return -1;
    later->items[later->count++] =
        (struct later_value){Py_NewRef(value), hash, targets, Py_NewRef(hits), chars};
    return 0;
}

int remembered_later_put(remembered_later_t *later, Memo *memo) {
    for (Py_ssize_t i = 0; i < later->count; i++) {
        struct later_value *v = &later->items[i];
        Py_ssize_t length = PyUnicode_GET_LENGTH(v->value);
        memo_text_t text = {PyUnicode_KIND(v->value), PyUnicode_DATA(v->value), length, v->hash};
        if (memo_put_text(memo, text, v->targets, v->hits, 1, v->chars, length) < 0) return -1;
    }
    return 0;
}

void remembered_later_free(remembered_later_t *later) {
    for (Py_ssize_t i = 0; i < later->count; i++) {
        Py_DECREF(later->items[i].value);
        Py_DECREF(later->items[i].hits);
    }
    PyMem_Free(later->items);
    *later = (remembered_later_t){0};
}

/* The most parts of a head whose memo entries are asked for before the walk (`ask_memo`). */
#define HEAD_PREFETCH 48

/* Ask the memo for the entries of the head's whole values, query parts and headers before the
 * walk looks them up (`memo_prefetch`, each stage for every part in turn): the memory reads of
 * a dozen lookups, each likely to miss the caches in a memo of megabytes, then overlap instead
 * of coming one after another. Only the first HEAD_PREFETCH parts are asked for; what a part
 * finds does not depend on it. The hashes of the headers asked for go to `header_hashes`
 * (room for HEAD_PREFETCH), their count to `*hashed`: the walk looks the headers up and
 * remembers them by these. -1 on error (a key that cannot be hashed). */
static int ask_memo(Memo *memo, long mask, PyObject *const *whole, const long *bits,
                    PyObject *parts, PyObject *headers, Py_hash_t *header_hashes,
                    Py_ssize_t *hashed) {
    Py_hash_t hashes[HEAD_PREFETCH];
    long long kinds[HEAD_PREFETCH];
    int n = 0;
    *hashed = 0;
    for (int i = 0; i < 4 && n < HEAD_PREFETCH; i++) {
        if (!bits[i] || PyUnicode_GET_LENGTH(whole[i]) == 0) continue;
        memo_text_t text = memo_text_of(whole[i]);
        hashes[n] = text.hash;
        kinds[n++] = bits[i];
    }
    for (Py_ssize_t i = 0; parts != NULL && i < PyList_GET_SIZE(parts) && n < HEAD_PREFETCH; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (PyUnicode_GET_LENGTH(part) == 0) continue;
        memo_text_t text = memo_text_of(part);
        hashes[n] = text.hash;
        kinds[n++] = MEMO_ARG_PART;
    }
    if (mask & (B_FROM_HEADERS | B_COOKIE_NAMES | B_COOKIE_VALUES)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(headers) && n < HEAD_PREFETCH; i++) {
            Py_hash_t hash = PyObject_Hash(PyTuple_GET_ITEM(headers, i));
            if (hash == -1) return -1;
            header_hashes[(*hashed)++] = hash;
            hashes[n] = hash;
            kinds[n++] = MEMO_HEADER;
        }
    }
    for (int stage = 0; stage < 3; stage++)
        for (int i = 0; i < n; i++) memo_prefetch(memo, hashes[i], kinds[i], stage);
    return 0;
}

/* `a`, the ASCII character `sep`, then `b`: a new str. */
static PyObject *joined(PyObject *a, char sep, PyObject *b) {
    Py_ssize_t na = PyUnicode_GET_LENGTH(a), nb = PyUnicode_GET_LENGTH(b);
    Py_UCS4 widest = PyUnicode_MAX_CHAR_VALUE(a) > PyUnicode_MAX_CHAR_VALUE(b)
                         ? PyUnicode_MAX_CHAR_VALUE(a)
                         : PyUnicode_MAX_CHAR_VALUE(b);
    PyObject *out = PyUnicode_New(na + 1 + nb, widest);
    if (out == NULL) return NULL;
    PyUnicode_WRITE(PyUnicode_KIND(out), PyUnicode_DATA(out), na, (Py_UCS4)sep);
    if (PyUnicode_CopyCharacters(out, 0, a, 0, na) < 0 ||
        PyUnicode_CopyCharacters(out, na + 1, b, 0, nb) < 0)
        Py_CLEAR(out);
    return out;
}

/* scan_head(hits, memo, mask, method, path, query, headers, room_values, room_chars)
 *   -> (values, chars, stop) */
PyObject *scan_head_impl(ValueScanner *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9 || !PySet_CheckExact(args[0]) || !PyObject_TypeCheck(args[1], &MemoType) ||
        !PyUnicode_Check(args[3]) || !PyUnicode_Check(args[4]) || !PyUnicode_Check(args[5]) ||
        !PyTuple_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_head(hits: set, memo: Memo, mask: int, method: str, path: str, "
                        "query: str, headers: tuple[tuple[str, str], ...], room_values: int, "
                        "room_chars: int)");
        return NULL;
    }
    Memo *memo = (Memo *)args[1];
    long mask = PyLong_AsLong(args[2]);
    PyObject *method = args[3], *path = args[4], *query = args[5], *headers = args[6];
    work_t w = {args[0], PyLong_AsSsize_t(args[7]), PyLong_AsSsize_t(args[8]), 0, 0, STOP_NONE};
    if (PyErr_Occurred()) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(headers); i++) {
        PyObject *pair = PyTuple_GET_ITEM(headers, i);
        if (!is_str_pair(pair)) {
            PyErr_SetString(PyExc_TypeError, "scan_head: each header is a (name, value) of str");
            return NULL;
        }
    }
    known_t found;
    int fit = 1;
    PyObject *out = NULL, *uri = NULL, *parts = NULL;
    Py_ssize_t query_length = PyUnicode_GET_LENGTH(query);
    /* The URI is path?query, or the path without a query (which stands in when the URI is not
     * walked). */
    uri = query_length && (mask & B_URI) ? joined(path, '?', query) : Py_NewRef(path);
    if (uri == NULL) return NULL;
    if (query_length && (mask & (B_ARG_NAMES | B_ARG_VALUES))) {
        parts = PyUnicode_Split(query, AMPERSAND, -1);
        if (parts == NULL) goto done;
    }
    PyObject *const whole[4] = {path, uri, query, method};
    const long bits[4] = {mask & B_PATH, mask & B_URI, mask & B_QUERY, mask & B_METHOD};
    Py_hash_t header_hashes[HEAD_PREFETCH];
    Py_ssize_t hashed;
    if (ask_memo(memo, mask, whole, bits, parts, headers, header_hashes, &hashed) < 0)
        goto done;
    for (int i = 0; fit == 1 && i < 4; i++) {
        if (!bits[i]) continue;
        if (value_known(self, memo, whole[i], bits[i], &found) < 0) goto done;
        fit = work_charge(&w, &found);
    }
    for (Py_ssize_t i = 0; fit == 1 && parts != NULL && i < PyList_GET_SIZE(parts); i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (PyUnicode_GET_LENGTH(part) == 0) continue;
        memo_entry *e = memo_find(memo, part, MEMO_ARG_PART);
        if (e != NULL) from_entry(e, &found);
        else if (PyErr_Occurred() || arg_part(self, memo, mask, part, &found) < 0) goto done;
        fit = work_charge(&w, &found);
    }
    if (fit == 1 && (mask & (B_FROM_HEADERS | B_COOKIE_NAMES | B_COOKIE_VALUES))) {
        for (Py_ssize_t i = 0; fit == 1 && i < PyTuple_GET_SIZE(headers); i++) {
            PyObject *pair = PyTuple_GET_ITEM(headers, i);
            /* hashed once: asked for, looked up and remembered by the same hash */
            Py_hash_t hash = i < hashed ? header_hashes[i] : PyObject_Hash(pair);
            if (hash == -1) goto done;
            memo_entry *e = memo_find_object(memo, pair, hash, MEMO_HEADER);
            if (e != NULL) from_entry(e, &found);
            else if (PyErr_Occurred() ||
                     header(self, memo, mask, pair, hash, w.room_values - w.values, &found) < 0)
                goto done;
            fit = work_charge(&w, &found);
        }
    }
    if (fit >= 0) out = Py_BuildValue("(nni)", w.values, w.chars, (int)w.stop);
done:
    Py_XDECREF(parts);
    Py_XDECREF(uri);
    return out;
}

/* Whether the ASCII `name` equals the ASCII `lowercase` (lowercase, of `length` bytes) once
 * lowercased. */
static int ascii_lower_equals(PyObject *name, const unsigned char *lowercase, Py_ssize_t length) {
    if (PyUnicode_GET_LENGTH(name) != length) return 0;
    const unsigned char *s = PyUnicode_1BYTE_DATA(name);
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (s[i] >= 'A' && s[i] <= 'Z') ? (unsigned char)(s[i] + 32) : s[i];
        if (c != lowercase[i]) return 0;
    }
    return 1;
}

/* has_header(headers, name) -> bool: whether a header's lowercase name is `name`, as
 * `name in index_headers(headers)[0]`, without indexing them. */
PyObject *has_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyTuple_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError,
                        "has_header(headers: tuple[tuple[str, str], ...], name: str)");
        return NULL;
    }
    PyObject *headers = args[0], *wanted = args[1];
    /* An ASCII lowercase `wanted` is compared byte by byte with each ASCII name; anything else
     * by `str.lower`, as `index_headers` lowercases. */
    int fast = PyUnicode_IS_ASCII(wanted);
    const unsigned char *w = fast ? PyUnicode_1BYTE_DATA(wanted) : NULL;
    Py_ssize_t length = PyUnicode_GET_LENGTH(wanted);
    for (Py_ssize_t i = 0; fast && i < length; i++) fast = !(w[i] >= 'A' && w[i] <= 'Z');
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(headers); i++) {
        PyObject *pair = PyTuple_GET_ITEM(headers, i);
        if (!is_str_pair(pair)) {
            PyErr_SetString(PyExc_TypeError, "has_header: each header is a (name, value) of str");
            return NULL;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0);
        if (fast && PyUnicode_IS_ASCII(name)) {
            if (ascii_lower_equals(name, w, length)) Py_RETURN_TRUE;
            continue;
        }
        PyObject *lowered = lower(name);
        if (lowered == NULL) return NULL;
        int equal = same_str(lowered, wanted);
        Py_DECREF(lowered);
        if (equal) Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* index_headers(headers) -> (by_name, names): each header's values by its lowercase name, in
 * order, and the lowercase names in the order received, repeats included. */
PyObject *index_headers(PyObject *module, PyObject *headers) {
    if (!PyTuple_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "index_headers(headers: tuple[tuple[str, str], ...])");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(headers);
    PyObject *by_name = PyDict_New(), *names = PyList_New(n);
    if (by_name == NULL || names == NULL) goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(headers, i);
        if (!is_str_pair(pair)) {
            PyErr_SetString(PyExc_TypeError,
                            "index_headers: each header is a (name, value) of str");
            goto error;
        }
        PyObject *name = lower(PyTuple_GET_ITEM(pair, 0)), *value = PyTuple_GET_ITEM(pair, 1);
        if (name == NULL) goto error;
        PyList_SET_ITEM(names, i, name); /* steals the reference */
        PyObject *values = PyDict_GetItemWithError(by_name, name); /* borrowed */
        if (values != NULL) {
            if (PyList_Append(values, value) < 0) goto error;
            continue;
        }
        if (PyErr_Occurred() || (values = PyList_New(1)) == NULL) goto error;
        PyList_SET_ITEM(values, 0, Py_NewRef(value));
        int err = PyDict_SetItem(by_name, name, values);
        Py_DECREF(values);
        if (err < 0) goto error;
    }
    return Py_BuildValue("(NN)", by_name, names);
error:
    Py_XDECREF(by_name);
    Py_XDECREF(names);
    return NULL;
}
