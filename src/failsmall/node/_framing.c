/* The node's per-request framing in C: one call per head instead of a few dozen Python steps.
 *
 * `response_head` and `request_head` build, byte for byte, what the readable reference
 * (`failsmall.node.framing`) builds; `latin1_headers` decodes a request's headers the way the
 * exchange hands them to the engine. A property test holds each to its reference on random
 * and hostile input (CR, LF, NUL, obs-fold, many headers). Nothing here checks or rewrites a
 * value: like the reference, it copies what the parsers accepted.
 *
 * `whole_request` and `whole_response` read, in one call, a client's request or an origin's
 * response that arrived whole in one read and is as plain as most are (a Content-Length or no
 * body, no hop-by-hop surprises); anything else is left to llhttp, which property tests hold
 * them to. A header field they read that came before, byte for byte, is handed out as the
 * same immutable pairs (see "header fields seen before").
 *
 * `bind` (called once by `failsmall.node.compiled_framing`) hands over what the reference
 * defines, so that each fact has one source: the ResponseHead type and the BodyFraming members
 * it returns, the status lines by code, and the Via and upgrade header values.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_header_names.h"

static PyObject *RESPONSE_HEAD; /* framing.ResponseHead, a tuple subclass */
static PyObject *AS_SENT, *CHUNKED, *CLOSE; /* framing.BodyFraming's members */
static PyObject *STATUS_LINES; /* wire's status lines by code (dict[int, bytes]) */
static PyObject *VIA, *UPGRADE_HEADERS; /* bytes */

/* ---- an output buffer ---------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t length, capacity;
    char inline_[2048];
} buffer_t;

static void buffer_init(buffer_t *b) {
    b->data = b->inline_;
    b->length = 0;
    b->capacity = (Py_ssize_t)sizeof b->inline_;
}

static void buffer_free(buffer_t *b) {
    if (b->data != b->inline_) PyMem_Free(b->data);
}

static int put(buffer_t *b, const char *data, Py_ssize_t length) {
    if (length > PY_SSIZE_T_MAX - b->length) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t needed = b->length + length;
    if (needed > b->capacity) {
        Py_ssize_t capacity = b->capacity;
        while (capacity < needed) capacity = capacity > PY_SSIZE_T_MAX / 2 ? needed : capacity * 2;
        char *grown = PyMem_Malloc((size_t)capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(grown, b->data, (size_t)b->length);
        buffer_free(b);
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, data, (size_t)length);
    b->length = needed;
    return 0;
}

#define PUT_LITERAL(b, text) put((b), (text), (Py_ssize_t)(sizeof(text) - 1))

static int put_bytes(buffer_t *b, PyObject *bytes) {
    return put(b, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
}

static PyObject *buffer_bytes(buffer_t *b) {
    PyObject *out = PyBytes_FromStringAndSize(b->data, b->length);
    buffer_free(b);
    return out;
}

/* ---- headers --------------------------------------------------------------------------- */

static PyObject *want_bytes(PyObject *value, const char *what) {
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what,
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    return value;
}

/* Header `index` of `headers` (a list or tuple of (name, value) pairs of bytes); borrowed. */
static int header_at(PyObject *headers, Py_ssize_t index, PyObject **name, PyObject **value) {
    PyObject *pair = PySequence_Fast_GET_ITEM(headers, index);
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "each header must be a (name, value) tuple of bytes");
        return -1;
    }
    *name = PyTuple_GET_ITEM(pair, 0);
    *value = PyTuple_GET_ITEM(pair, 1);
    if (!PyBytes_Check(*name) || !PyBytes_Check(*value)) {
        PyErr_SetString(PyExc_TypeError, "each header must be a (name, value) tuple of bytes");
        return -1;
    }
    return 0;
}

static int put_header(buffer_t *b, PyObject *name, PyObject *value) {
    return put_bytes(b, name) || PUT_LITERAL(b, ": ") || put_bytes(b, value) ||
                   PUT_LITERAL(b, "\r\n")
               ? -1
               : 0;
}

static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* Whether `data` is `word` (lowercase ASCII) in any case, as bytes.lower() compares. */
static int equals_lower(const char *data, Py_ssize_t length, const char *word, Py_ssize_t size) {
    if (length != size) return 0;
    for (Py_ssize_t i = 0; i < length; i++)
        if (lower((unsigned char)data[i]) != (unsigned char)word[i]) return 0;
    return 1;
}

#define IS(name, n, word) equals_lower((name), (n), (word), (Py_ssize_t)(sizeof(word) - 1))

/* What the proxy does with a response header, by its name: `wire.header_kind`. */
typedef enum { K_FORWARD, K_CONTENT_LENGTH, K_TRANSFER_ENCODING, K_CONNECTION, K_DROP } kind_t;

static kind_t header_kind(PyObject *name) {
    const char *s = PyBytes_AS_STRING(name);
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    if (IS(s, n, "content-length")) return K_CONTENT_LENGTH;
    if (IS(s, n, "transfer-encoding")) return K_TRANSFER_ENCODING;
    if (IS(s, n, "connection")) return K_CONNECTION;
    if (IS(s, n, "keep-alive") || IS(s, n, "te") || IS(s, n, "trailer") || IS(s, n, "upgrade"))
        return K_DROP;
    if (n >= 6 && equals_lower(s, 6, "proxy-", 6)) return K_DROP;
    return K_FORWARD;
}

/* Whether a Connection value is one that names no other header (`PLAIN_CONNECTION_VALUES`). */
static int plain_connection_value(PyObject *value) {
    const char *s = PyBytes_AS_STRING(value);
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    return (n == 10 && (!memcmp(s, "keep-alive", 10) || !memcmp(s, "Keep-Alive", 10))) ||
           (n == 5 && (!memcmp(s, "close", 5) || !memcmp(s, "Close", 5)));
}

/* bytes.strip()'s whitespace. */
static int strip_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

/* The lowercase copy of `data`, as bytes.lower() makes it. */
static PyObject *lowered(const char *data, Py_ssize_t length) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, length);
    if (out == NULL) return NULL;
    char *into = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < length; i++) into[i] = (char)lower((unsigned char)data[i]);
    return out;
}

/* Add to `tokens` the comma-separated tokens of a Connection header's `value`, each stripped
 * and lowercased: `wire.connection_tokens`. -1 on error. */
static int add_tokens(PyObject *tokens, PyObject *value) {
    const char *s = PyBytes_AS_STRING(value);
    Py_ssize_t length = PyBytes_GET_SIZE(value), start = 0;
    while (start <= length) {
        Py_ssize_t end = start;
        while (end < length && s[end] != ',') end++;
        Py_ssize_t a = start, z = end;
        while (a < z && strip_space((unsigned char)s[a])) a++;
        while (z > a && strip_space((unsigned char)s[z - 1])) z--;
        if (z > a) {
            PyObject *token = lowered(s + a, z - a);
            if (token == NULL) return -1;
            int err = PySet_Add(tokens, token);
            Py_DECREF(token);
            if (err < 0) return -1;
        }
        start = end + 1;
    }
    return 0;
}

/* Whether `name`, lowercased, is in `tokens`; -1 on error. */
static int listed_in(PyObject *tokens, PyObject *name) {
    PyObject *key = lowered(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
    if (key == NULL) return -1;
    int found = PySet_Contains(tokens, key);
    Py_DECREF(key);
    return found;
}

static int is_true(PyObject *flag) { return PyObject_IsTrue(flag); }

static int bound(void) {
    if (RESPONSE_HEAD == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "failsmall.node._framing is not bound: import "
                        "failsmall.node.compiled_framing instead");
        return 0;
    }
    return 1;
}

/* ---- response_head ------------------------------------------------------------------- */

static PyObject *response_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "response_head(status, headers, head_request, http10, keep_alive, "
                        "request_id, bundle_tag) takes 7 positional arguments");
        return NULL;
    }
    if (!bound()) return NULL;
    long status = PyLong_AsLong(args[0]);
    if (status == -1 && PyErr_Occurred()) return NULL;
    int head_request = is_true(args[2]), http10 = is_true(args[3]), keep_alive = is_true(args[4]);
    if (head_request < 0 || http10 < 0 || keep_alive < 0) return NULL;
    PyObject *request_id = want_bytes(args[5], "request_id");
    PyObject *bundle_tag = request_id ? want_bytes(args[6], "bundle_tag") : NULL;
    if (bundle_tag == NULL) return NULL;
    PyObject *headers = PySequence_Fast(args[1], "headers must be a sequence of (name, value)");
    if (headers == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(headers);

    buffer_t out;
    buffer_init(&out);
    PyObject *length = NULL; /* borrowed: the last Content-Length value */
    PyObject *tokens = NULL; /* what Connection headers list, when one lists other names */
    int chunked = 0;
    PyObject *name, *value;
    /* First pass: framing headers, and whether a Connection header lists other headers. */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (header_at(headers, i, &name, &value) < 0) goto error;
        switch (header_kind(name)) {
        case K_CONTENT_LENGTH: length = value; break;
        case K_TRANSFER_ENCODING: chunked = 1; break;
        case K_CONNECTION:
            if (plain_connection_value(value)) break;
            if (tokens == NULL && (tokens = PySet_New(NULL)) == NULL) goto error;
            if (add_tokens(tokens, value) < 0) goto error;
            break;
        case K_FORWARD:
        case K_DROP: break;
        }
    }
    PyObject *line = PyDict_GetItemWithError(STATUS_LINES, args[0]);
    if (line != NULL) {
        if (want_bytes(line, "a status line") == NULL || put_bytes(&out, line) < 0) goto error;
    } else {
        if (PyErr_Occurred()) goto error;
        char text[64];
        int n = PyOS_snprintf(text, sizeof text, "HTTP/1.1 %ld Unknown\r\n", status);
        if (put(&out, text, n) < 0) goto error;
    }
    /* Second pass: the end-to-end headers, less those a Connection header lists. */
    for (Py_ssize_t i = 0; i < count; i++) {
        header_at(headers, i, &name, &value);
        if (header_kind(name) != K_FORWARD) continue;
        int dropped = tokens != NULL ? listed_in(tokens, name) : 0;
        if (dropped < 0 || (!dropped && put_header(&out, name, value) < 0)) goto error;
    }
    PyObject *framing = AS_SENT;
    int until_eof = 0;
    int bodiless = head_request || status == 204 || status == 304;
    if (chunked && !bodiless) {
        framing = http10 ? CLOSE : CHUNKED;
    } else if (length != NULL && PyBytes_GET_SIZE(length) > 0) {
        if (PUT_LITERAL(&out, "Content-Length: ") || put_bytes(&out, length) ||
            PUT_LITERAL(&out, "\r\n"))
            goto error;
    } else if (!bodiless) {
        until_eof = 1; /* no length and not chunked: the origin ends the body by closing */
        framing = http10 ? CLOSE : CHUNKED;
    }
    if (framing == CHUNKED) {
        if (PUT_LITERAL(&out, "Transfer-Encoding: chunked\r\n")) goto error;
    } else if (framing == CLOSE) {
        keep_alive = 0;
    }
    if (PUT_LITERAL(&out, "Via: ") || put_bytes(&out, VIA) ||
        PUT_LITERAL(&out, "\r\nX-Request-Id: ") || put_bytes(&out, request_id) ||
        PUT_LITERAL(&out, "\r\n"))
        goto error;
    if (PyBytes_GET_SIZE(bundle_tag) > 0 &&
        (PUT_LITERAL(&out, "X-Failsmall-Bundle: ") || put_bytes(&out, bundle_tag) ||
         PUT_LITERAL(&out, "\r\n")))
        goto error;
    if (!keep_alive) {
        if (PUT_LITERAL(&out, "Connection: close\r\n")) goto error;
    } else if (http10) {
        if (PUT_LITERAL(&out, "Connection: keep-alive\r\n")) goto error;
    }
    if (PUT_LITERAL(&out, "\r\n")) goto error;
    Py_XDECREF(tokens);
    Py_DECREF(headers);
    PyObject *head = buffer_bytes(&out);
    if (head == NULL) return NULL;
    /* A ResponseHead made the way tuple.__new__ makes an instance of a subclass. */
    PyTypeObject *type = (PyTypeObject *)RESPONSE_HEAD;
    PyObject *result = type->tp_alloc(type, 4);
    if (result == NULL) {
        Py_DECREF(head);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, head);
    PyTuple_SET_ITEM(result, 1, Py_NewRef(framing));
    PyTuple_SET_ITEM(result, 2, Py_NewRef(until_eof ? Py_True : Py_False));
    PyTuple_SET_ITEM(result, 3, Py_NewRef(keep_alive ? Py_True : Py_False));
    return result;
error:
    buffer_free(&out);
    Py_XDECREF(tokens);
    Py_DECREF(headers);
    return NULL;
}

/* ---- request_head -------------------------------------------------------------------- */

static PyObject *request_head(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "request_head(method, url, host, authority, forward, xff, client_ip, "
                        "request_id, websocket, chunked, content_length) takes 11 positional "
                        "arguments");
        return NULL;
    }
    if (!bound()) return NULL;
    static const char *const names[] = {"method", "url", "host", "authority"};
    for (int i = 0; i < 4; i++)
        if (want_bytes(args[i], names[i]) == NULL) return NULL;
    PyObject *method = args[0], *url = args[1], *host = args[2], *authority = args[3];
    PyObject *xff = want_bytes(args[5], "xff");
    PyObject *client_ip = xff ? want_bytes(args[6], "client_ip") : NULL;
    PyObject *request_id = client_ip ? want_bytes(args[7], "request_id") : NULL;
    if (request_id == NULL) return NULL;
    int websocket = is_true(args[8]), chunked = is_true(args[9]);
    if (websocket < 0 || chunked < 0) return NULL;
    long long content_length = PyLong_AsLongLong(args[10]);
    if (content_length == -1 && PyErr_Occurred()) return NULL;
    PyObject *forward = PySequence_Fast(args[4], "forward must be a sequence of (name, value)");
    if (forward == NULL) return NULL;

    buffer_t out;
    buffer_init(&out);
    if (put_bytes(&out, method) || PUT_LITERAL(&out, " ") || put_bytes(&out, url) ||
        PUT_LITERAL(&out, " HTTP/1.1\r\n"))
        goto error;
    if (PyBytes_GET_SIZE(host) == 0 &&
        (PUT_LITERAL(&out, "Host: ") || put_bytes(&out, authority) || PUT_LITERAL(&out, "\r\n")))
        goto error;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(forward);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name, *value;
        if (header_at(forward, i, &name, &value) < 0 || put_header(&out, name, value) < 0)
            goto error;
    }
    if (PUT_LITERAL(&out, "X-Forwarded-For: ")) goto error;
    if (PyBytes_GET_SIZE(xff) > 0 && (put_bytes(&out, xff) || PUT_LITERAL(&out, ", "))) goto error;
    if (put_bytes(&out, client_ip) ||
        PUT_LITERAL(&out, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ") ||
        put_bytes(&out, host) || PUT_LITERAL(&out, "\r\nX-Request-Id: ") ||
        put_bytes(&out, request_id) || PUT_LITERAL(&out, "\r\nVia: ") || put_bytes(&out, VIA) ||
        PUT_LITERAL(&out, "\r\n"))
        goto error;
    if (websocket && put_bytes(&out, UPGRADE_HEADERS) < 0) goto error;
    if (chunked) {
        if (PUT_LITERAL(&out, "Transfer-Encoding: chunked\r\n\r\n")) goto error;
    } else if (content_length >= 0) {
        char text[64];
        int n = PyOS_snprintf(text, sizeof text, "Content-Length: %lld\r\n\r\n", content_length);
        if (put(&out, text, n) < 0) goto error;
    } else if (PUT_LITERAL(&out, "\r\n")) {
        goto error;
    }
    Py_DECREF(forward);
    return buffer_bytes(&out);
error:
    buffer_free(&out);
    Py_DECREF(forward);
    return NULL;
}

/* The common header names (`_header_names.h`) as received, listed and lowercase spellings. */
static header_spellings_t SPELLINGS;
static PyObject *NAME_BYTES[2 * COMMON_HEADER_COUNT], *NAME_TEXT[2 * COMMON_HEADER_COUNT];

static int make_common_names(void) {
    header_spellings(&SPELLINGS, 0);
    for (int k = 0; k < SPELLINGS.count; k++) {
        NAME_BYTES[k] = PyBytes_FromStringAndSize(SPELLINGS.text[k], SPELLINGS.length[k]);
        NAME_TEXT[k] = PyUnicode_FromStringAndSize(SPELLINGS.text[k], SPELLINGS.length[k]);
        if (NAME_BYTES[k] == NULL || NAME_TEXT[k] == NULL) return -1;
        PyUnicode_InternInPlace(&NAME_TEXT[k]);
    }
    return 0;
}

/* A header name as bytes: the common name's object, or a new one. New reference. */
static PyObject *name_bytes(const char *name, Py_ssize_t length) {
    int k = header_spelling(&SPELLINGS, name, length);
    return k >= 0 ? Py_NewRef(NAME_BYTES[k]) : PyBytes_FromStringAndSize(name, length);
}

/* A header name decoded as latin-1: the common name's str, or a new one. New reference. */
static PyObject *name_text(const char *name, Py_ssize_t length) {
    int k = header_spelling(&SPELLINGS, name, length);
    return k >= 0 ? Py_NewRef(NAME_TEXT[k]) : PyUnicode_DecodeLatin1(name, length, NULL);
}

/* ---- latin1_headers ------------------------------------------------------------------ */

/* A (name, value) pair of bytes decoded as latin-1: a new (str, str) tuple. */
static PyObject *latin1_pair(PyObject *pair) {
    PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
    PyObject *out = PyTuple_New(2);
    if (out == NULL) return NULL;
    PyObject *text = name_text(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
    if (text == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, text);
    text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
    if (text == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 1, text);
    return out;
}

static PyObject *latin1_headers(PyObject *module, PyObject *headers) {
    PyObject *items = PySequence_Fast(headers, "headers must be a sequence of (name, value)");
    if (items == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    PyObject *out = PyTuple_New(count);
    if (out == NULL) goto error;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name, *value;
        if (header_at(items, i, &name, &value) < 0) goto error;
        PyObject *pair = latin1_pair(PySequence_Fast_GET_ITEM(items, i));
        if (pair == NULL) goto error;
        PyTuple_SET_ITEM(out, i, pair);
    }
    Py_DECREF(items);
    return out;
error:
    Py_XDECREF(out);
    Py_DECREF(items);
    return NULL;
}

/* ---- whole_response ------------------------------------------------------------------ */

#define MAX_WHOLE_HEAD (64 * 1024)

static int tchar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A character of a field value or reason phrase: VCHAR, obs-text, SP or HTAB. */
static int field_char(unsigned char c) { return (c >= 0x20 && c != 0x7f) || c == '\t'; }

/* The header line of a plain head at `*at` (before `limit`), read past: 1 with its name and
 * value (the value without leading, with trailing whitespace, as llhttp gives it), 0 at the
 * blank line that ends the head, -1 when the line is not a token, a colon and field
 * characters ended by CRLF. */
static int plain_header(const unsigned char *s, Py_ssize_t limit, Py_ssize_t *at,
                        const char **name, Py_ssize_t *name_length, const char **value,
                        Py_ssize_t *value_length) {
    Py_ssize_t i = *at;
    if (i + 1 >= limit) return -1;
    if (s[i] == '\r') {
        if (s[i + 1] != '\n') return -1;
        *at = i + 2;
        return 0;
    }
    Py_ssize_t start = i;
    while (i < limit && tchar(s[i])) i++;
    if (i == start || i >= limit || s[i] != ':') return -1;
    *name = (const char *)s + start;
    *name_length = i - start;
    i++;
    while (i < limit && (s[i] == ' ' || s[i] == '\t')) i++;
    start = i;
    while (i < limit && field_char(s[i])) i++;
    if (i + 1 >= limit || s[i] != '\r' || s[i + 1] != '\n') return -1;
    *value = (const char *)s + start;
    *value_length = i - start;
    *at = i + 2;
    return 1;
}

/* (name, value) as a new tuple of two bytes objects: what Py_BuildValue("(y#y#)") makes, without
 * reading a format string for every header. */
static PyObject *bytes_pair(const char *name, Py_ssize_t name_length, const char *value,
                            Py_ssize_t value_length) {
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) return NULL;
    PyObject *item = name_bytes(name, name_length);
    if (item == NULL) {
        Py_DECREF(pair);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, item);
    item = PyBytes_FromStringAndSize(value, value_length);
    if (item == NULL) {
        Py_DECREF(pair);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 1, item);
    return pair;
}

/* ---- header fields seen before ------------------------------------------------------- */

/* Most header fields come again and again, byte for byte: a browser's Host, User-Agent and
 * Accept, an origin's Server and Content-Type. The pairs made for a field are kept in a table
 * of FIELD_SLOTS, at a slot chosen by a hash of its bytes, and handed out again while the
 * field keeps its slot: the bytes pair, and the latin-1 pair the engine reads once a request
 * asked for it. They are immutable and equal to pairs made anew, so no reader can tell them
 * apart; they cost no allocation, and the engine finds their str hashes already computed. A
 * field not in its slot (a new value, or one whose slot another field took since) is made
 * anew and takes the slot: it costs the hash more than before, whatever an attacker sends. */
#define FIELD_SLOTS 1024     /* a power of two */
#define FIELD_MAX_BYTES 512 /* a longer field (name and value) is never kept */

typedef struct {
    PyObject *raw;  /* (name, value) as bytes; NULL while the slot is empty */
    PyObject *text; /* the same decoded as latin-1, once asked for; else NULL */
} field_slot_t;

static field_slot_t FIELDS[FIELD_SLOTS];

/* The slot of a field: a multiply-rotate hash over its name, then its value, eight bytes at a
 * step (FxHash's step). Only where a field is kept depends on it: a slot's pairs are compared
 * with the field's bytes before they are handed out. */
static uint64_t mix_bytes(uint64_t h, const char *data, Py_ssize_t length) {
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t word;
        memcpy(&word, data + i, 8);
        h = (((h << 5) | (h >> 59)) ^ word) * k;
    }
    uint64_t tail = (uint64_t)(length - i);
    for (; i < length; i++) tail = (tail << 8) | (unsigned char)data[i];
    return (((h << 5) | (h >> 59)) ^ tail) * k;
}

static size_t field_slot(const char *n, Py_ssize_t n_len, const char *v, Py_ssize_t v_len) {
    uint64_t h = mix_bytes(mix_bytes((uint64_t)n_len, n, n_len), v, v_len);
    return (size_t)(h >> 40) & (FIELD_SLOTS - 1);
}

static int same_bytes(PyObject *bytes, const char *data, Py_ssize_t length) {
    return PyBytes_GET_SIZE(bytes) == length &&
           memcmp(PyBytes_AS_STRING(bytes), data, (size_t)length) == 0;
}

/* A field's (name, value) as a tuple of two bytes objects (`bytes_pair`) and, when `text` is
 * given, as a tuple of two str decoded as latin-1 (`latin1_pair`) into `*text`: the pairs
 * kept for the field, or new ones. New references; NULL on error (and `*text` unset). */
static PyObject *field_pair(const char *n, Py_ssize_t n_len, const char *v, Py_ssize_t v_len,
                            PyObject **text) {
    if (n_len + v_len > FIELD_MAX_BYTES) {
        PyObject *raw = bytes_pair(n, n_len, v, v_len);
        if (raw != NULL && text != NULL && (*text = latin1_pair(raw)) == NULL) Py_CLEAR(raw);
        return raw;
    }
    field_slot_t *slot = &FIELDS[field_slot(n, n_len, v, v_len)];
    if (slot->raw == NULL || !same_bytes(PyTuple_GET_ITEM(slot->raw, 0), n, n_len) ||
        !same_bytes(PyTuple_GET_ITEM(slot->raw, 1), v, v_len)) {
        PyObject *raw = bytes_pair(n, n_len, v, v_len);
        if (raw == NULL) return NULL;
        Py_XSETREF(slot->raw, raw);
        Py_CLEAR(slot->text);
    }
    if (text != NULL) {
        if (slot->text == NULL && (slot->text = latin1_pair(slot->raw)) == NULL) return NULL;
        *text = Py_NewRef(slot->text);
    }
    return Py_NewRef(slot->raw);
}

/* A plain Content-Length value: 1 to 18 digits. 0 with the length, -1 for anything else. */
static int plain_length(const char *v, Py_ssize_t v_len, long long *length) {
    if (v_len == 0 || v_len > 18) return -1;
    long long read = 0;
    for (Py_ssize_t i = 0; i < v_len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        read = read * 10 + (v[i] - '0');
    }
    *length = read;
    return 0;
}

/* A plain message's Connection header: at most one, of `close` or `keep-alive` in any case.
 * Sets `*connection` (0 before any, 1 close, 2 keep-alive); -1 for a second Connection header
 * or any other value, which llhttp reads instead (both readers share this rule). */
static int plain_connection(const char *v, Py_ssize_t v_len, int *connection) {
    if (*connection != 0) return -1;
    if (IS(v, v_len, "close"))
        *connection = 1;
    else if (IS(v, v_len, "keep-alive"))
        *connection = 2;
    else
        return -1;
    return 0;
}

/* Put `item`, a new reference, at `index` of the new `tuple`: -1 when it is NULL (the exception
 * set by what made it), the tuple's other items left for its own deallocation to release. */
static int set_new(PyObject *tuple, Py_ssize_t index, PyObject *item) {
    if (item == NULL) return -1;
    PyTuple_SET_ITEM(tuple, index, item);
    return 0;
}

/* The response in `data` when it is one whole plain response and nothing more: an HTTP/1.1
 * status line with a final status other than 204 and 304, header lines of a token, a colon
 * and visible characters, exactly one Content-Length of digits, no Transfer-Encoding, Upgrade
 * or Proxy-Connection, at most one Connection header, only of `close` or `keep-alive`, and as
 * many body bytes as declared. Returns (status, headers, keep_alive, body), or None for anything else
 * (which is then llhttp's to read, or to refuse). */
static PyObject *whole_response(PyObject *module, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "whole_response: data must be bytes");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    Py_ssize_t limit = size < MAX_WHOLE_HEAD ? size : MAX_WHOLE_HEAD;
    if (limit < 14 || memcmp(s, "HTTP/1.1 ", 9) != 0) Py_RETURN_NONE;
    long status = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9') Py_RETURN_NONE;
        status = status * 10 + (s[i] - '0');
    }
    if (status < 200 || status == 204 || status == 304) Py_RETURN_NONE;
    Py_ssize_t at = 12;
    if (s[at] == ' ') /* a reason phrase, maybe empty */
        for (at++; at < limit && field_char(s[at]); at++) {
        }
    if (at + 1 >= limit || s[at] != '\r' || s[at + 1] != '\n') Py_RETURN_NONE;
    at += 2;
    PyObject *headers = PyList_New(0);
    if (headers == NULL) return NULL;
    long long length = -1;
    int connection = 0; /* 0 none, 1 close, 2 keep-alive */
    for (;;) {
        const char *n, *v;
        Py_ssize_t n_len, v_len;
        int line = plain_header(s, limit, &at, &n, &n_len, &v, &v_len);
        if (line < 0) goto plain_not;
        if (line == 0) break;
        if (IS(n, n_len, "content-length")) {
            if (length >= 0 || plain_length(v, v_len, &length) < 0) goto plain_not;
        } else if (IS(n, n_len, "connection")) {
            if (plain_connection(v, v_len, &connection) < 0) goto plain_not;
        } else if (IS(n, n_len, "transfer-encoding") || IS(n, n_len, "upgrade") ||
                   IS(n, n_len, "proxy-connection")) {
            goto plain_not;
        }
        PyObject *pair = field_pair(n, n_len, v, v_len, NULL);
        if (pair == NULL) goto error;
        int err = PyList_Append(headers, pair);
        Py_DECREF(pair);
        if (err < 0) goto error;
    }
    if (length < 0 || size - at != length) goto plain_not;
    PyObject *whole = PyTuple_New(4); /* what Py_BuildValue("(lNOy#)") makes */
    if (whole == NULL) goto error;
    PyTuple_SET_ITEM(whole, 1, headers);
    PyTuple_SET_ITEM(whole, 2, Py_NewRef(connection != 1 ? Py_True : Py_False));
    if (set_new(whole, 0, PyLong_FromLong(status)) < 0 ||
        set_new(whole, 3, PyBytes_FromStringAndSize((const char *)s + at, (Py_ssize_t)length)) <
            0) {
        Py_DECREF(whole);
        return NULL;
    }
    return whole;
plain_not:
    Py_DECREF(headers);
    Py_RETURN_NONE;
error:
    Py_DECREF(headers);
    return NULL;
}

/* ---- whole_request ------------------------------------------------------------------- */

static PyObject *EMPTY_BYTES; /* b"" */

/* What the proxy does with a request header of a plain request (no Transfer-Encoding or
 * Upgrade; Connection and Content-Length read already), by its name: `_read_headers`. */
typedef enum { R_FORWARD, R_HOST, R_FORWARDED_FOR, R_REQUEST_ID, R_EXPECT, R_DROP } request_kind_t;

static request_kind_t request_header(const char *n, Py_ssize_t length) {
    if (IS(n, length, "host")) return R_HOST;
    if (IS(n, length, "x-forwarded-for")) return R_FORWARDED_FOR;
    if (IS(n, length, "x-request-id")) return R_REQUEST_ID;
    if (IS(n, length, "expect")) return R_EXPECT;
    if (IS(n, length, "connection") || IS(n, length, "keep-alive") || IS(n, length, "te") ||
        IS(n, length, "trailer") || IS(n, length, "transfer-encoding") ||
        IS(n, length, "upgrade") || IS(n, length, "content-length") ||
        IS(n, length, "x-forwarded-proto") || IS(n, length, "x-forwarded-host") ||
        IS(n, length, "via") || (length >= 6 && equals_lower(n, 6, "proxy-", 6)))
        return R_DROP;
    return R_FORWARD;
}

/* A character of an origin-form request target the plain path takes: unreserved, sub-delims,
 * ":", "@", "/", "?" and "%" (anything else, a fragment, a space, a control, is llhttp's). */
static int target_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("-._~!$&'()*+,;=:@/?%", c) != NULL);
}

static const char *const PLAIN_METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                            "PATCH"};

/* The request in `data` when it is one whole plain request and nothing more: a request line of
 * a common method, an origin-form target and HTTP/1.1 or HTTP/1.0; header lines of a token, a
 * colon and visible characters; at most one Content-Length of digits and as many body bytes;
 * no Transfer-Encoding, Upgrade or Proxy-Connection; at most one Connection header, only of
 * `close` or `keep-alive`. Returns (method, url, headers, http10, keep_alive, body, head_bytes,
 * noted, path, query, text_headers), with head_bytes counted as the node counts them (name, value and 4 per
 * header), `noted` what `ClientConnection._read_headers` notes of them: (forward, host, hosts,
 * content_length, x_forwarded_for, request_id, expects_continue), the target's path and
 * query as `ClientConnection._read_target` reads them (str), and the headers as
 * `latin1_headers` decodes them for the engine; or None for anything else (which is then
 * llhttp's to read, or to refuse). */
static PyObject *whole_request(PyObject *module, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "whole_request: data must be bytes");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    Py_ssize_t limit = size < MAX_WHOLE_HEAD ? size : MAX_WHOLE_HEAD;
    Py_ssize_t at = 0;
    while (at < limit && s[at] >= 'A' && s[at] <= 'Z') at++;
    Py_ssize_t method_length = at;
    int known = 0;
    for (size_t i = 0; i < sizeof PLAIN_METHODS / sizeof *PLAIN_METHODS && !known; i++)
        known = (Py_ssize_t)strlen(PLAIN_METHODS[i]) == method_length &&
                memcmp(s, PLAIN_METHODS[i], (size_t)method_length) == 0;
    if (!known || at + 2 >= limit || s[at] != ' ' || s[at + 1] != '/') Py_RETURN_NONE;
    Py_ssize_t url = ++at;
    while (at < limit && target_char(s[at])) at++;
    Py_ssize_t url_end = at;
    if (limit - at < 11 || memcmp(s + at, " HTTP/1.", 8) != 0 ||
        (s[at + 8] != '1' && s[at + 8] != '0') || s[at + 9] != '\r' || s[at + 10] != '\n')
        Py_RETURN_NONE;
    int http10 = s[at + 8] == '0';
    at += 11;
    PyObject *headers = PyList_New(0);
    if (headers == NULL) return NULL;
    long long length = -1, head_bytes = 0;
    int connection = 0; /* 0 none, 1 close, 2 keep-alive */
    /* What the proxy notes of the headers (`ClientConnection._read_headers`). */
    PyObject *forward = PyList_New(0);
    PyObject *texts = PyList_New(0); /* the headers decoded as the engine reads them */
    PyObject *host = NULL, *request_id = NULL; /* borrowed from `headers`' pairs */
    long hosts = 0;
    int expects_continue = 0;
    buffer_t xff;
    buffer_init(&xff);
    if (forward == NULL || texts == NULL) goto error;
    for (;;) {
        const char *n, *v;
        Py_ssize_t n_len, v_len;
        int line = plain_header(s, limit, &at, &n, &n_len, &v, &v_len);
        if (line < 0) goto plain_not;
        if (line == 0) break;
        if (IS(n, n_len, "content-length")) {
            if (length >= 0 || plain_length(v, v_len, &length) < 0) goto plain_not;
        } else if (IS(n, n_len, "connection")) {
            if (plain_connection(v, v_len, &connection) < 0) goto plain_not;
        } else if (IS(n, n_len, "transfer-encoding") || IS(n, n_len, "upgrade") ||
                   IS(n, n_len, "proxy-connection")) {
            goto plain_not;
        }
        head_bytes += n_len + v_len + 4;
        PyObject *text;
        PyObject *pair = field_pair(n, n_len, v, v_len, &text);
        if (pair == NULL) goto error;
        int err = PyList_Append(headers, pair);
        Py_DECREF(pair);
        if (err < 0) {
            Py_DECREF(text);
            goto error;
        }
        PyObject *kept = PyTuple_GET_ITEM(pair, 1); /* the pair lives on in `headers` */
        err = PyList_Append(texts, text);
        Py_DECREF(text);
        if (err < 0) goto error;
        switch (request_header(n, n_len)) {
        case R_FORWARD: err = PyList_Append(forward, pair); break;
        case R_HOST:
            hosts++;
            host = kept;
            err = PyList_Append(forward, pair);
            break;
        case R_FORWARDED_FOR:
            err = ((xff.length > 0 && PUT_LITERAL(&xff, ", ")) || put(&xff, v, v_len)) ? -1 : 0;
            break;
        case R_REQUEST_ID: request_id = kept; break;
        case R_EXPECT: expects_continue = IS(v, v_len, "100-continue"); break;
        case R_DROP: break;
        }
        if (err < 0) goto error;
    }
    if (size - at != (length < 0 ? 0 : length)) goto plain_not;
    if (connection == 1) {
        /* `Connection: close` lists "close", which is not a header the proxy notes: a header
         * of that name is dropped, as `_read_headers` drops the headers a Connection lists. */
        PyObject *kept = PyList_New(0);
        if (kept == NULL) goto error;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(forward); i++) {
            PyObject *pair = PyList_GET_ITEM(forward, i), *name = PyTuple_GET_ITEM(pair, 0);
            if (!IS(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), "close") &&
                PyList_Append(kept, pair) < 0) {
                Py_DECREF(kept);
                goto error;
            }
        }
        Py_SETREF(forward, kept);
    }
    int keep_alive = http10 ? connection == 2 : connection != 1;
    PyObject *joined = PyBytes_FromStringAndSize(xff.data, xff.length);
    buffer_free(&xff);
    buffer_init(&xff);
    if (joined == NULL) goto error;
    PyObject *noted = PyTuple_New(7);
    if (noted == NULL) {
        Py_DECREF(joined);
        goto error;
    }
    /* what Py_BuildValue("(NOlLNOO)") makes, without parsing its format for each request */
    PyTuple_SET_ITEM(noted, 0, forward);
    forward = NULL;
    PyTuple_SET_ITEM(noted, 1, Py_NewRef(host ? host : EMPTY_BYTES));
    PyTuple_SET_ITEM(noted, 4, joined);
    PyTuple_SET_ITEM(noted, 5, Py_NewRef(request_id ? request_id : EMPTY_BYTES));
    PyTuple_SET_ITEM(noted, 6, Py_NewRef(expects_continue ? Py_True : Py_False));
    if (set_new(noted, 2, PyLong_FromLong(hosts)) < 0 ||
        set_new(noted, 3, PyLong_FromLongLong(length)) < 0) {
        Py_DECREF(noted);
        goto error;
    }
    /* The target's path and query, split at its first "?" as `_read_target` splits it (the
     * target is ASCII: `target_char`, so its UTF-8 and Latin-1 decodings are the same). */
    Py_ssize_t mark = url;
    while (mark < url_end && s[mark] != '?') mark++;
    Py_ssize_t query = mark < url_end ? mark + 1 : url_end;
    PyObject *text_headers = PyList_AsTuple(texts);
    Py_DECREF(texts);
    PyObject *whole = text_headers == NULL ? NULL : PyTuple_New(11);
    if (whole == NULL) {
        Py_XDECREF(text_headers);
        Py_DECREF(noted);
        Py_DECREF(headers);
        return NULL;
    }
    /* what Py_BuildValue("(y#y#NOOy#LNs#s#N)") makes, without parsing its format */
    PyTuple_SET_ITEM(whole, 2, headers);
    PyTuple_SET_ITEM(whole, 3, Py_NewRef(http10 ? Py_True : Py_False));
    PyTuple_SET_ITEM(whole, 4, Py_NewRef(keep_alive ? Py_True : Py_False));
    PyTuple_SET_ITEM(whole, 7, noted);
    PyTuple_SET_ITEM(whole, 10, text_headers);
    const char *c = (const char *)s;
    if (set_new(whole, 0, PyBytes_FromStringAndSize(c, method_length)) < 0 ||
        set_new(whole, 1, PyBytes_FromStringAndSize(c + url, url_end - url)) < 0 ||
        set_new(whole, 5, PyBytes_FromStringAndSize(c + at, size - at)) < 0 ||
        set_new(whole, 6, PyLong_FromLongLong(head_bytes)) < 0 ||
        set_new(whole, 8, PyUnicode_FromStringAndSize(c + url, mark - url)) < 0 ||
        set_new(whole, 9, PyUnicode_FromStringAndSize(c + query, url_end - query)) < 0) {
        Py_DECREF(whole);
        return NULL;
    }
    return whole;
plain_not:
    buffer_free(&xff);
    Py_XDECREF(forward);
    Py_XDECREF(texts);
    Py_DECREF(headers);
    Py_RETURN_NONE;
error:
    buffer_free(&xff);
    Py_XDECREF(forward);
    Py_XDECREF(texts);
    Py_DECREF(headers);
    return NULL;
}

/* ---- bind ---------------------------------------------------------------------------- */

static PyObject *bind(PyObject *module, PyObject *args) {
    PyObject *type, *as_sent, *chunked, *close, *lines, *via, *upgrade;
    if (!PyArg_ParseTuple(args, "O!OOOO!SS:bind", &PyType_Type, &type, &as_sent, &chunked, &close,
                          &PyDict_Type, &lines, &via, &upgrade))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "bind: the response head type must be a tuple type");
        return NULL;
    }
    Py_XSETREF(RESPONSE_HEAD, Py_NewRef(type));
    Py_XSETREF(AS_SENT, Py_NewRef(as_sent));
    Py_XSETREF(CHUNKED, Py_NewRef(chunked));
    Py_XSETREF(CLOSE, Py_NewRef(close));
    Py_XSETREF(STATUS_LINES, Py_NewRef(lines));
    Py_XSETREF(VIA, Py_NewRef(via));
    Py_XSETREF(UPGRADE_HEADERS, Py_NewRef(upgrade));
    Py_RETURN_NONE;
}

static PyMethodDef framing_methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(ResponseHead, AS_SENT, CHUNKED, CLOSE, status_lines, via, upgrade_headers): what "
     "the reference defines, used by the functions below."},
    {"response_head", (PyCFunction)(void (*)(void))response_head, METH_FASTCALL,
     "response_head(status, headers, head_request, http10, keep_alive, request_id, bundle_tag) "
     "-> ResponseHead: `failsmall.node.framing.response_head`."},
    {"request_head", (PyCFunction)(void (*)(void))request_head, METH_FASTCALL,
     "request_head(method, url, host, authority, forward, xff, client_ip, request_id, "
     "websocket, chunked, content_length) -> bytes: `failsmall.node.framing.request_head`, "
     "joined."},
    {"whole_response", whole_response, METH_O,
     "whole_response(data) -> (status, headers, keep_alive, body) | None: one whole plain "
     "response, read as llhttp reads it; None when `data` is anything else."},
    {"whole_request", whole_request, METH_O,
     "whole_request(data) -> (method, url, headers, http10, keep_alive, body, head_bytes, "
     "noted, path, query, text_headers) | None: one whole plain request, read as llhttp reads "
     "it, what the proxy notes of its headers, its target's path and query, and its headers "
     "as `latin1_headers` decodes them; None when `data` is anything else."},
    {"latin1_headers", latin1_headers, METH_O,
     "latin1_headers(headers) -> tuple: each (name, value) pair of bytes decoded as latin-1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef framing_module = {
    PyModuleDef_HEAD_INIT, "failsmall.node._framing",
    "The node's per-request framing in C; see failsmall.node.compiled_framing.", -1,
    framing_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__framing(void) {
    if (EMPTY_BYTES == NULL && (EMPTY_BYTES = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return NULL;
    if (NAME_BYTES[0] == NULL && make_common_names() < 0) return NULL;
    return PyModule_Create(&framing_module);
}
