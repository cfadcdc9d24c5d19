/* The WAF's per-value work in C: JSON documents to fields, and for the signature scanner,
 * features, transform chains and hyperscan scans.
 *
 * `ValueScanner.scan_value(value, targets)` does what the readable Python reference
 * (`failsmall.engine.signatures.reference.ReferenceValueScanner`) does, with the same results:
 * compute the value's trigger features, run the transform chains they trigger (sharing the work
 * of common prefixes, and passing over a step whose triggers the text it is given lacks: it
 * would give that text back), scan each distinct result once with libhs, and keep a pattern's
 * hit only when the value came from one of its match's targets and the result is what its chain
 * made of the value. It returns the keys hit and the characters scanned. The fresh values of a request
 * part are scanned together (`batch_add`, `batch_scan`): one scan of all their results with a
 * candidate database, then the exact scan of each result it flags.
 *
 * Features of Latin-1 values and the transforms (lowercase, whitespace, NULs, comments, command
 * lines, paths, the decoders) run here or in the files they name; so does each decoding
 * transform's check that it has nothing to do. What is left (the features of wider text, the
 * lowercase of text holding `İ` or `Σ`) is handed, value by value, to the reference function
 * of that transform or of the features, so both paths give one answer by construction there;
 * tests check the rest on random inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <hs/hs.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "_head.h"
#include "_kind.h"
#include "_nfkc.h"
#include "_transforms.h"
#include "_utf8.h"
#include "_writer.h"

/* Feature bits: the same values as `failsmall.engine.signatures.transforms`. */
enum {
    F_PERCENT = 1 << 0,
    F_AMPERSAND = 1 << 1,
    F_BACKSLASH = 1 << 2,
    F_NUL = 1 << 3,
    F_SPACE = 1 << 4,
    F_ODD_WHITESPACE = 1 << 5,
    F_UPPER_OR_WIDE = 1 << 6,
    F_PATH_DOTS = 1 << 7,
    F_BASE64_SHAPE = 1 << 8,
    F_COMMENT = 1 << 9,
    F_SHELL_PUNCTUATION = 1 << 10,
};

typedef enum {
    T_URL_DECODE,
    T_URL_DECODE_UNI,
    T_HTML_ENTITY_DECODE,
    T_LOWERCASE,
    T_COMPRESS_WHITESPACE,
    T_REMOVE_WHITESPACE,
    T_REMOVE_NULLS,
    T_NORMALIZE_PATH,
    T_BASE64_DECODE,
    T_REMOVE_COMMENTS,
    T_CMD_LINE,
    T_JS_DECODE,
    T_COUNT
} transform_id;

static const char *const TRANSFORM_NAMES[T_COUNT] = {
    "url_decode",     "url_decode_uni",  "html_entity_decode", "lowercase",
    "compress_whitespace", "remove_whitespace", "remove_nulls", "normalize_path",
    "base64_decode",  "remove_comments", "cmd_line",           "js_decode",
};

#define MAX_CHAINS 64
#define MAX_STEPS 32

static PyObject *CompileError;

/* ---- ASCII helpers ------------------------------------------------------------------- */

/* str.isspace() and str.isprintable() of the first 256 code points, filled from Python's own
 * predicates when the module loads and read-only after: Latin-1 text (a binary body) asks them
 * of every character, and a table costs less than Python's call for each. */
static unsigned char LATIN1_SPACE[256], LATIN1_PRINTABLE[256];

/* Python's str.isspace() for an ASCII character: \t \n \v \f \r, \x1c-\x1f and the space. */
static inline int is_space(unsigned char c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

static inline int is_printable(unsigned char c) { return c >= 0x20 && c < 0x7f; }

static inline int is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline int is_b64(unsigned char c) {
    return is_alnum(c) || c == '+' || c == '/' || c == '_' || c == '-';
}

/* The high bit of each byte of `v` that is zero (exactly: no carry crosses a byte). */
static inline uint64_t zero_bytes(uint64_t v) {
    const uint64_t lows = 0x7F7F7F7F7F7F7F7Fu;
    return ~(((v & lows) + lows) | v | lows);
}

/* Whether `a` followed by `b` is in the `n` bytes at `s`, eight places at a time. */
static int pair_in_words(const unsigned char *s, Py_ssize_t n, char a, char b) {
    const uint64_t ones = 0x0101010101010101u;
    const uint64_t as = ones * (unsigned char)a, bs = ones * (unsigned char)b;
    Py_ssize_t i = 0;
    for (; i + 9 <= n; i += 8) {
        uint64_t here, next;
        memcpy(&here, s + i, 8);
        memcpy(&next, s + i + 1, 8);
        if (zero_bytes(here ^ as) & zero_bytes(next ^ bs)) return 1;
    }
    for (; i + 1 < n; i++)
        if (s[i] == (unsigned char)a && s[i + 1] == (unsigned char)b) return 1;
    return 0;
}

/* `memchr` finds a rare `a` fastest; after this many of them without `b` next (spaces in
 * JSON or prose), the rest is searched eight places at a time. */
#define PAIR_MEMCHR_HITS 16

static int has_pair(const unsigned char *s, Py_ssize_t n, char a, char b) {
    const unsigned char *p = s, *end = s + n;
    for (int hits = 0; p + 1 < end; hits++) {
        if (hits == PAIR_MEMCHR_HITS) return pair_in_words(p, end - p, a, b);
        p = memchr(p, a, (size_t)(end - p - 1));
        if (p == NULL) return 0;
        if (p[1] == (unsigned char)b) return 1;
        p++;
    }
    return 0;
}

static inline int has_char(const unsigned char *s, Py_ssize_t n, char c) {
    return n > 0 && memchr(s, c, (size_t)n) != NULL;
}

/* `_base64_shaped` of Latin-1 text: the stripped value without trailing `=` is alphanumeric,
 * or the value is `\s*[A-Za-z0-9+/_-]+={0,2}\s*` (whitespace is str.isspace()). */
static int base64_shaped(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t a = 0, b = n;
    while (a < b && LATIN1_SPACE[s[a]]) a++;
    while (b > a && LATIN1_SPACE[s[b - 1]]) b--;
    Py_ssize_t c = b;
    while (c > a && s[c - 1] == '=') c--;
    if (c > a) {
        int alnum = 1;
        for (Py_ssize_t i = a; i < c; i++) {
            if (!is_alnum(s[i])) { alnum = 0; break; }
        }
        if (alnum) return 1;
    }
    Py_ssize_t i = 0;
    while (i < n && LATIN1_SPACE[s[i]]) i++;
    Py_ssize_t start = i;
    while (i < n && is_b64(s[i])) i++;
    if (i == start) return 0;
    int eq = 0;
    while (i < n && s[i] == '=' && eq < 2) { i++; eq++; }
    while (i < n && LATIN1_SPACE[s[i]]) i++;
    return i == n;
}

/* ---- features of Latin-1 text ---------------------------------------------------------- */

/* What each character says, alone and as the first of a pair with the next one, in one walk
 * of the text. Past the feature bits, two facts `F_AMPERSAND` needs both of (or a legacy
 * reference, checked at the end): an `&` is there, a `;` is there. The tables are filled when
 * the module loads and read-only after. */
enum { SEEN_AMPERSAND = 1 << 11, SEEN_SEMICOLON = 1 << 12 };

/* The pairs the features look for: two spaces (whitespace), a slash then a dot or a slash
 * (paths), a slash and a star either way round or two dashes (comments), a space then a slash
 * or a parenthesis (shell). No pair ends with a NUL: the character after the last one reads as
 * a NUL. */
static const struct {
    char first, second;
    uint16_t feature;
} FEATURE_PAIRS[] = {
    {' ', ' ', F_ODD_WHITESPACE}, {'/', '.', F_PATH_DOTS},   {'/', '/', F_PATH_DOTS},
    {'/', '*', F_COMMENT},        {'*', '/', F_COMMENT},     {'-', '-', F_COMMENT},
    {' ', '/', F_SHELL_PUNCTUATION}, {' ', '(', F_SHELL_PUNCTUATION},
};
#define FEATURE_PAIR_COUNT (sizeof FEATURE_PAIRS / sizeof FEATURE_PAIRS[0])

static uint16_t CHAR_FEATURES[256];
/* The row of PAIR_FEATURES for a character that starts a pair, 0 (no pair) for the rest. */
static uint8_t PAIR_ROW[256];
static uint16_t PAIR_FEATURES[FEATURE_PAIR_COUNT + 1][256];

/* Whether Latin-1 `c` is unprintable by the ranges the SSE2 walk tests: the C0 controls, DEL
 * to U+00A0 and the soft hyphen. */
static int unprintable_by_range(unsigned int c) {
    return c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad;
}

static void splat_table(void);

static int feature_tables(void) {
    static const char shell[] = "\"'^,";
    for (unsigned int c = 0; c < 256; c++) {
        if (unprintable_by_range(c) != !LATIN1_PRINTABLE[c]) {
            PyErr_Format(PyExc_ImportError,
                         "str.isprintable() of U+%04X is not what the features' SSE2 walk tests",
                         c);
            return -1;
        }
        uint16_t f = 0;
        if (!LATIN1_PRINTABLE[c]) f |= F_ODD_WHITESPACE;
        if ((c >= 'A' && c <= 'Z') || c >= 0x80) f |= F_UPPER_OR_WIDE;
        if (c != 0 && memchr(shell, (int)c, sizeof shell - 1) != NULL) f |= F_SHELL_PUNCTUATION;
        CHAR_FEATURES[c] = f;
    }
    CHAR_FEATURES['%'] |= F_PERCENT;
    CHAR_FEATURES['&'] |= SEEN_AMPERSAND;
    CHAR_FEATURES[';'] |= SEEN_SEMICOLON;
    CHAR_FEATURES['\\'] |= F_BACKSLASH;
    CHAR_FEATURES[0] |= F_NUL;
    CHAR_FEATURES[' '] |= F_SPACE;
    CHAR_FEATURES['#'] |= F_COMMENT;
    uint8_t rows = 0;
    for (size_t k = 0; k < FEATURE_PAIR_COUNT; k++) {
        unsigned char a = (unsigned char)FEATURE_PAIRS[k].first;
        if (PAIR_ROW[a] == 0) PAIR_ROW[a] = ++rows;
        PAIR_FEATURES[PAIR_ROW[a]][(unsigned char)FEATURE_PAIRS[k].second] |=
            FEATURE_PAIRS[k].feature;
    }
    splat_table();
    return 0;
}

/* What the character at `i` says, with the one after it. */
ALWAYS_INLINE long char_features(const unsigned char *s, Py_ssize_t i) {
    return CHAR_FEATURES[s[i]] | PAIR_FEATURES[PAIR_ROW[s[i]]][s[i + 1]];
}

/* What the characters from `from` to `to` say, each with the one after it: two at a time,
 * into two sums that do not wait for each other, and the text's last character alone (no
 * pair starts there: no pair ends with a NUL). */
static long features_between(const unsigned char *s, Py_ssize_t n, Py_ssize_t from,
                             Py_ssize_t to) {
    long found = 0, found_odd = 0;
    Py_ssize_t paired = to < n ? to : n - 1; /* each character before it has one after it */
    Py_ssize_t i = from;
    for (; i + 1 < paired; i += 2) {
        found |= char_features(s, i);
        found_odd |= char_features(s, i + 1);
    }
    if (i < paired) found |= char_features(s, i++);
    if (i < to) found |= CHAR_FEATURES[s[i]];
    return found | found_odd;
}

/* `found` with `F_AMPERSAND` once both an `&` and a `;` are seen. */
static long with_ampersand(long found) {
    const long both = SEEN_AMPERSAND | SEEN_SEMICOLON;
    return (found & both) == both ? found | F_AMPERSAND : found;
}

#if defined(__SSE2__)
/* The characters and pairs whose presence would add to what is found, among the features
 * still open: every place the walk must look at, and no other (so a block that holds one
 * always adds to what is found, which happens a few times per value). */
typedef struct {
    int singles, pairs, unprintable, upper;
    __m128i single[12], first[FEATURE_PAIR_COUNT], second[FEATURE_PAIR_COUNT];
} lookout_t;

/* Each byte value in every byte of a vector (filled when the module loads, read-only after). */
static __m128i SPLAT[256];

static void splat_table(void) {
    for (int c = 0; c < 256; c++) SPLAT[c] = _mm_set1_epi8((char)c);
}

static void lookout_for(lookout_t *w, long open, long found) {
    static const struct {
        long feature;
        unsigned char c;
    } singles[] = {
        {F_PERCENT, '%'}, {F_BACKSLASH, '\\'}, {F_SPACE, ' '},
        {F_COMMENT, '#'}, {F_SHELL_PUNCTUATION, '"'}, {F_SHELL_PUNCTUATION, '\''},
        {F_SHELL_PUNCTUATION, '^'}, {F_SHELL_PUNCTUATION, ','},
    };
    w->singles = w->pairs = 0;
    for (size_t k = 0; k < sizeof singles / sizeof singles[0]; k++)
        if (open & singles[k].feature) w->single[w->singles++] = SPLAT[singles[k].c];
    if ((open & F_AMPERSAND) && !(found & SEEN_AMPERSAND))
        w->single[w->singles++] = SPLAT['&'];
    if ((open & F_AMPERSAND) && !(found & SEEN_SEMICOLON))
        w->single[w->singles++] = SPLAT[';'];
    /* A NUL is unprintable: while that is looked for, it finds the NUL too. */
    w->unprintable = (open & F_ODD_WHITESPACE) != 0;
    if ((open & F_NUL) && !w->unprintable) w->single[w->singles++] = SPLAT[0];
    w->upper = (open & F_UPPER_OR_WIDE) != 0;
    for (size_t k = 0; k < FEATURE_PAIR_COUNT; k++) {
        if (!(open & FEATURE_PAIRS[k].feature)) continue;
        w->first[w->pairs] = SPLAT[(unsigned char)FEATURE_PAIRS[k].first];
        w->second[w->pairs++] = SPLAT[(unsigned char)FEATURE_PAIRS[k].second];
    }
}

/* Each byte of `v` that is an unsigned value from `lo` to `lo + span`. */
static inline __m128i bytes_within(__m128i v, char lo, char span) {
    __m128i d = _mm_sub_epi8(v, _mm_set1_epi8(lo));
    return _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(span)), d);
}

/* Where the `width` 16-byte blocks at `s` hold a place `w` looks for (the byte after the last
 * block is read too: the second of a pair that starts there). Each needle is tested on every
 * block of the span while it is in a register. */
ALWAYS_INLINE __m128i lookout_hits(const lookout_t *w, const unsigned char *s, int width) {
    __m128i v[4], after[4], hit = _mm_setzero_si128();
    for (int b = 0; b < width; b++) {
        v[b] = _mm_loadu_si128((const __m128i *)(s + 16 * b));
        after[b] = _mm_loadu_si128((const __m128i *)(s + 16 * b + 1));
    }
    for (int k = 0; k < w->singles; k++)
        for (int b = 0; b < width; b++)
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v[b], w->single[k]));
    for (int k = 0; k < w->pairs; k++)
        for (int b = 0; b < width; b++)
            hit = _mm_or_si128(hit, _mm_and_si128(_mm_cmpeq_epi8(v[b], w->first[k]),
                                                  _mm_cmpeq_epi8(after[b], w->second[k])));
    if (w->unprintable)
        for (int b = 0; b < width; b++) {
            __m128i odd = _mm_or_si128(bytes_within(v[b], 0x00, 0x1f),
                                       bytes_within(v[b], 0x7f, 0xa0 - 0x7f));
            odd = _mm_or_si128(odd, _mm_cmpeq_epi8(v[b], _mm_set1_epi8((char)0xad)));
            hit = _mm_or_si128(hit, odd);
        }
    if (w->upper)
        for (int b = 0; b < width; b++) {
            __m128i wide = _mm_cmplt_epi8(v[b], _mm_setzero_si128());
            hit = _mm_or_si128(hit, _mm_or_si128(wide, bytes_within(v[b], 'A', 'Z' - 'A')));
        }
    return hit;
}

/* Whether the `width` blocks at `s` hold a place `w` looks for. */
ALWAYS_INLINE int blocks_have_lookout(const lookout_t *w, const unsigned char *s, int width) {
    return _mm_movemask_epi8(lookout_hits(w, s, width)) != 0;
}

/* Values of up to this many characters, and the last this many of longer ones, are read
 * character by character: in JSON or a form, most features are found in their first blocks,
 * and the lookout would be redrawn after each. */
#define FEATURE_VECTOR_MIN 64

/* The first block from `i` on that holds a place `w` looks for, or else the tail: its start,
 * and its end in `*stop`. Four blocks are passed over at a time while they hold none (the byte
 * after them is inside the text), then the four that do are read one at a time. */
static Py_ssize_t block_to_read(const lookout_t *w, const unsigned char *s, Py_ssize_t n,
                                Py_ssize_t i, Py_ssize_t *stop) {
    while (n - i > FEATURE_VECTOR_MIN) {
        if (blocks_have_lookout(w, s + i, 4)) {
            for (int b = 0; b < 3 && !blocks_have_lookout(w, s + i, 1); b++) i += 16;
            *stop = i + 16;
            return i;
        }
        i += 16 * 4;
    }
    *stop = n;
    return i;
}
#else
static void splat_table(void) {}
#endif

/* Features of a value of Latin-1 characters (ASCII or not: every needle is ASCII, and a
 * character past ASCII makes the value wide). The text is walked once: a block of 16 that may
 * add a feature still open is read character by character, the others are passed over 16 bytes
 * at a time (SSE2), the tail is read character by character, and the walk stops when no wanted
 * feature is open (without SSE2, every character is read, 256 between two such checks). */
static long latin1_features(const unsigned char *s, Py_ssize_t n, long wanted) {
    long found = n > 0 && s[0] == '.' ? F_PATH_DOTS : 0;
    long open = wanted & ~F_BASE64_SHAPE & ~found;
    Py_ssize_t i = 0;
    while (i < n && open != 0) {
        Py_ssize_t stop = n;
#if defined(__SSE2__)
        if (n - i > FEATURE_VECTOR_MIN) {
            lookout_t w;
            lookout_for(&w, open, found);
            i = block_to_read(&w, s, n, i, &stop);
        }
#else
        if (n - i > 256) stop = i + 256;
#endif
        found = with_ampersand(found | features_between(s, n, i, stop));
        open &= ~found;
        i = stop;
    }
    if ((open & F_AMPERSAND) && (found & SEEN_AMPERSAND) && fs_legacy_reference_in(s, n))
        found |= F_AMPERSAND;
    if ((wanted & F_BASE64_SHAPE) && n >= 4 && base64_shaped(s, n)) found |= F_BASE64_SHAPE;
    return found & wanted;
}

static long wide_features(PyObject *value, long wanted, int *undecided);

/* The features of `value` among `wanted`: in C, or by `reference` for wider text with an `&`
 * but no `;` (whether it starts a legacy reference is left to the reference's regex). */
static long value_features(PyObject *value, long wanted, PyObject *reference) {
    if (PyUnicode_KIND(value) == PyUnicode_1BYTE_KIND)
        return latin1_features(PyUnicode_1BYTE_DATA(value), PyUnicode_GET_LENGTH(value), wanted);
    int undecided = 0;
    long found = wide_features(value, wanted, &undecided);
    if (!undecided) return found;
    PyObject *result = PyObject_CallFunction(reference, "Ol", value, wanted);
    if (result == NULL) return -1;
    found = PyLong_AsLong(result);
    Py_DECREF(result);
    return found;
}

/* ---- transforms on ASCII text ------------------------------------------------------- */

static PyObject *new_ascii(Py_ssize_t n, unsigned char **out) {
    PyObject *s = PyUnicode_New(n, 127);
    if (s != NULL) *out = PyUnicode_1BYTE_DATA(s);
    return s;
}

static PyObject *shrink(PyObject *s, Py_ssize_t n) {
    /* A fresh ASCII string cut to its first n characters. */
    if (n == PyUnicode_GET_LENGTH(s)) return s;
    PyObject *cut = PyUnicode_Substring(s, 0, n);
    Py_DECREF(s);
    return cut;
}

static PyObject *ascii_lowercase(PyObject *value) {
    const unsigned char *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), i = 0;
    while (i < n && !(s[i] >= 'A' && s[i] <= 'Z')) i++;
    if (i == n) return Py_NewRef(value);
    unsigned char *o;
    PyObject *out = new_ascii(n, &o);
    if (out == NULL) return NULL;
    for (i = 0; i < n; i++) o[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (unsigned char)(s[i] + 32) : s[i];
    return out;
}

static PyObject *ascii_remove_nulls(PyObject *value) {
    const unsigned char *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), k = 0;
    if (!has_char(s, n, '\0')) return Py_NewRef(value);
    unsigned char *o;
    PyObject *out = new_ascii(n, &o);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i]) o[k++] = s[i];
    return shrink(out, k);
}

/* Every run of whitespace becomes one space (`_compress`, which is " ".join(split()) with a
 * space kept at either end where the value had whitespace). */
static Py_ssize_t compress_into(const unsigned char *s, Py_ssize_t n, unsigned char *o) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n;) {
        if (is_space(s[i])) {
            o[k++] = ' ';
            while (i < n && is_space(s[i])) i++;
        } else {
            o[k++] = s[i++];
        }
    }
    return k;
}

static int all_printable(const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (!is_printable(s[i])) return 0;
    return 1;
}

static PyObject *ascii_compress_whitespace(PyObject *value) {
    const unsigned char *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (!has_pair(s, n, ' ', ' ') && all_printable(s, n)) return Py_NewRef(value);
    unsigned char *o;
    PyObject *out = new_ascii(n, &o);
    if (out == NULL) return NULL;
    return shrink(out, compress_into(s, n, o));
}

static PyObject *ascii_remove_whitespace(PyObject *value) {
    const unsigned char *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), k = 0;
    if (!has_char(s, n, ' ') && all_printable(s, n)) return Py_NewRef(value);
    unsigned char *o;
    PyObject *out = new_ascii(n, &o);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!is_space(s[i])) o[k++] = s[i];
    return shrink(out, k);
}

/* `cmd_line`: delete \ " ' ^, `,` to a space, compress whitespace, then " /" to "/" and
 * " (" to "(" (two passes, as the reference's two str.replace calls). */
static PyObject *ascii_cmd_line(PyObject *value) {
    const unsigned char *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), k = 0;
    unsigned char *a = PyMem_Malloc((size_t)n + 1), *b = PyMem_Malloc((size_t)n + 1);
    if (a == NULL || b == NULL) {
        PyMem_Free(a);
        PyMem_Free(b);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '\\' || c == '"' || c == '\'' || c == '^') continue;
        a[k++] = c == ',' ? ' ' : c;
    }
    k = compress_into(a, k, b);
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (b[i] == ' ' && i + 1 < k && b[i + 1] == '/') continue;
        a[m++] = b[i];
    }
    k = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (a[i] == ' ' && i + 1 < m && a[i + 1] == '(') continue;
        b[k++] = a[i];
    }
    PyObject *out = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, b, k);
    PyMem_Free(a);
    PyMem_Free(b);
    return out;
}

static Py_ssize_t find2(const unsigned char *s, Py_ssize_t n, Py_ssize_t from, char a, char b) {
    for (Py_ssize_t i = from; i + 1 < n; i++)
        if (s[i] == (unsigned char)a && s[i + 1] == (unsigned char)b) return i;
    return -1;
}

/* `remove_comments`: block comments to a space (MySQL `/ *!NNNNN` keeps its content, an
 * unterminated one comments out the rest, a stray `*` `/` becomes a space), then `--` and `#`
 * to the end of the line. */
static PyObject *ascii_remove_comments(PyObject *value) {
    const unsigned char *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    int block = has_pair(s, n, '/', '*') || has_pair(s, n, '*', '/');
    if (!block && !has_pair(s, n, '-', '-') && !has_char(s, n, '#')) return Py_NewRef(value);
    unsigned char *a = PyMem_Malloc((size_t)n + 1), *b = PyMem_Malloc((size_t)n + 1);
    if (a == NULL || b == NULL) {
        PyMem_Free(a);
        PyMem_Free(b);
        return PyErr_NoMemory();
    }
    Py_ssize_t k = 0;
    if (block) {
        Py_ssize_t position = 0;
        for (;;) {
            Py_ssize_t start = find2(s, n, position, '/', '*');
            if (start < 0) {
                memcpy(a + k, s + position, (size_t)(n - position));
                k += n - position;
                break;
            }
            memcpy(a + k, s + position, (size_t)(start - position));
            k += start - position;
            a[k++] = ' ';
            if (start + 2 < n && s[start + 2] == '!') {
                position = start + 3;
                while (position < n && position - start < 9 && s[position] >= '0' &&
                       s[position] <= '9')
                    position++;
                continue;
            }
            Py_ssize_t end = find2(s, n, start + 2, '*', '/');
            if (end < 0) {
                position = n;
                continue;
            }
            position = end + 2;
        }
        /* .replace("*" "/", " ") */
        Py_ssize_t m = 0;
        for (Py_ssize_t i = 0; i < k;) {
            if (a[i] == '*' && i + 1 < k && a[i + 1] == '/') {
                b[m++] = ' ';
                i += 2;
            } else {
                b[m++] = a[i++];
            }
        }
        memcpy(a, b, (size_t)m);
        k = m;
    } else {
        memcpy(a, s, (size_t)n);
        k = n;
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < k;) {
        if (a[i] == '#' || (a[i] == '-' && i + 1 < k && a[i + 1] == '-')) {
            while (i < k && a[i] != '\n') i++;
        } else {
            b[m++] = a[i++];
        }
    }
    PyObject *out = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, b, m);
    PyMem_Free(a);
    PyMem_Free(b);
    return out;
}

/* ---- searching text of any kind ---------------------------------------------------- */

/* The first `c` in characters `from` to `n` of text of `kind`, or -1. Latin-1 text is searched
 * with memchr; wider text sixteen bytes at a time with SSE2 (eight characters of two bytes or
 * four of four, one helper for both: `k_equal` compares a vector of either width): the first
 * vector, then four vectors with one answer, then the vector that holds it. A character the
 * kind cannot hold is in no text of it. (PyUnicode_FindChar costs a call for each search, which
 * text with a backslash every few characters pays thousands of times, and compares characters
 * one by one for NUL.) */
#if defined(__SSE2__)
#define FIND_VECTORS 4

ALWAYS_INLINE __m128i k_equal(int kind, const void *at, __m128i needle) {
    __m128i v = _mm_loadu_si128((const __m128i *)at);
    return kind == PyUnicode_2BYTE_KIND ? _mm_cmpeq_epi16(v, needle) : _mm_cmpeq_epi32(v, needle);
}

ALWAYS_INLINE Py_ssize_t k_find(int kind, const void *s, Py_ssize_t n, Py_ssize_t from,
                                Py_UCS4 c) {
    if (from >= n || c > (kind == PyUnicode_1BYTE_KIND   ? 0xFFu
                          : kind == PyUnicode_2BYTE_KIND ? 0xFFFFu
                                                         : 0x10FFFFu))
        return -1;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *t = s, *at = memchr(t + from, (int)c, (size_t)(n - from));
        return at == NULL ? -1 : at - t;
    }
    const char *t = s;
    const Py_ssize_t lanes = 16 / kind;
    __m128i needle = kind == PyUnicode_2BYTE_KIND ? _mm_set1_epi16((short)c)
                                                  : _mm_set1_epi32((int)c);
    Py_ssize_t i = from;
    if (i + lanes <= n) { /* the first vector on its own: in escaped text the next is near */
        int mask = _mm_movemask_epi8(k_equal(kind, t + i * kind, needle));
        if (mask) return i + __builtin_ctz((unsigned int)mask) / kind;
        i += lanes;
    }
    for (; i + FIND_VECTORS * lanes <= n; i += FIND_VECTORS * lanes) {
        const char *at = t + i * kind;
        __m128i any = _mm_or_si128(
            _mm_or_si128(k_equal(kind, at, needle), k_equal(kind, at + 16, needle)),
            _mm_or_si128(k_equal(kind, at + 32, needle), k_equal(kind, at + 48, needle)));
        if (_mm_movemask_epi8(any)) break;
    }
    for (; i + lanes <= n; i += lanes) {
        int mask = _mm_movemask_epi8(k_equal(kind, t + i * kind, needle));
        if (mask) return i + __builtin_ctz((unsigned int)mask) / kind;
    }
    for (; i < n; i++)
        if (text_read(kind, s, i) == c) return i;
    return -1;
}
#else
ALWAYS_INLINE Py_ssize_t k_find(int kind, const void *s, Py_ssize_t n, Py_ssize_t from,
                                Py_UCS4 c) {
    for (Py_ssize_t i = from; i < n; i++)
        if (text_read(kind, s, i) == c) return i;
    return -1;
}
#endif

ALWAYS_INLINE int k_has(int kind, const void *s, Py_ssize_t n, Py_UCS4 c) {
    return k_find(kind, s, n, 0, c) >= 0;
}

/* The first `c` in `value[from:to]` (a str), or -1. */
static Py_ssize_t text_find(PyObject *value, Py_UCS4 c, Py_ssize_t from, Py_ssize_t to) {
    int kind = PyUnicode_KIND(value);
    return BY_KIND(k_find, kind, PyUnicode_DATA(value), to, from, c);
}

/* Whether `value` (a str) holds `c`. */
static int text_has(PyObject *value, Py_UCS4 c) {
    return text_find(value, c, 0, PyUnicode_GET_LENGTH(value)) >= 0;
}

/* The first `a` followed by `b` from `from` on, or -1. */
ALWAYS_INLINE Py_ssize_t k_find2(int kind, const void *s, Py_ssize_t n, Py_ssize_t from,
                                 Py_UCS4 a, Py_UCS4 b) {
    for (Py_ssize_t i = from; (i = k_find(kind, s, n - 1, i, a)) >= 0; i++)
        if (text_read(kind, s, i + 1) == b) return i;
    return -1;
}

/* ---- decoding transforms on any text ---------------------------------------------- */

/* The decoders below write their result in the kind of their input (`_writer.h`), with the
 * text between escapes copied as it is. */

static inline int hex_value(Py_UCS4 c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* The number written by the `digits` hexadecimal digits at `data[i]`, or -1. */
static inline long hex_number(int kind, const void *data, Py_ssize_t i, int digits) {
    long number = 0;
    for (int d = 0; d < digits; d++) {
        int h = hex_value(PyUnicode_READ(kind, data, i + d));
        if (h < 0) return -1;
        number = number << 4 | h;
    }
    return number;
}

/* `js_decode`: `\\` is a backslash; `\uXXXX`, `\xHH`, octal `\OOO` (& 0xFF) their character;
 * `\n \r \t \b \f \v` their control; any other escaped character itself; a backslash ending
 * the value stays. (The reference pairs backslashes with str.split first: the same.) */
ALWAYS_INLINE PyObject *k_js_decode(int kind, PyObject *value, const void *data, Py_ssize_t n) {
    writer_t w;
    if (writer_start(&w, value) < 0) return NULL;
    for (Py_ssize_t i = 0; i < n;) {
        /* The text up to the next backslash, as it is. */
        Py_ssize_t at = k_find(kind, data, n, i, '\\');
        Py_ssize_t stop = at < 0 ? n : at;
        if (writer_copy(&w, kind, data, i, stop) < 0) goto error;
        i = stop;
        if (i == n) break;
        if (i + 1 == n) {
            if (writer_put(&w, '\\') < 0) goto error;
            break;
        }
        /* Every escape is two or more characters decoded to one. */
        w.changed = 1;
        Py_UCS4 e = text_read(kind, data, i + 1);
        long number;
        if (e == 'u' && i + 6 <= n && (number = hex_number(kind, data, i + 2, 4)) >= 0) {
            i += 6;
        } else if (e == 'x' && i + 4 <= n && (number = hex_number(kind, data, i + 2, 2)) >= 0) {
            i += 4;
        } else if (e >= '0' && e <= '7') {
            Py_ssize_t j = i + 1;
            number = 0;
            while (j < n && j < i + 4) {
                Py_UCS4 d = text_read(kind, data, j);
                if (d < '0' || d > '7') break;
                number = number * 8 + (long)(d - '0');
                j++;
            }
            number &= 0xFF;
            i = j;
        } else {
            switch (e) {
            case 'n': e = '\n'; break;
            case 'r': e = '\r'; break;
            case 't': e = '\t'; break;
            case 'b': e = '\b'; break;
            case 'f': e = '\f'; break;
            case 'v': e = '\v'; break;
            default: break;
            }
            number = (long)e;
            i += 2;
        }
        if (writer_put(&w, (Py_UCS4)number) < 0) goto error;
    }
    return writer_finish(&w, value);
error:
    writer_drop(&w);
    return NULL;
}

/* One loop for each kind, with the search for backslashes and each read inlined: text with a
 * backslash every few characters (escaped JSON in a binary body) runs them at every one. */
static PyObject *js_decode(PyObject *value) {
    int kind = PyUnicode_KIND(value);
    return BY_KIND(k_js_decode, kind, value, PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value));
}

/* Write the UTF-8 bytes `bytes[:k]` decoded with replacement characters. */
static int put_utf8(writer_t *w, const char *bytes, Py_ssize_t k) {
    int ascii = 1;
    for (Py_ssize_t j = 0; j < k && ascii; j++) ascii = (unsigned char)bytes[j] < 0x80;
    if (ascii) {
        if (writer_reserve(w, k, 0x7F) < 0) return -1;
        for (Py_ssize_t j = 0; j < k; j++) text_write(w->kind, w->data, w->length + j, (Py_UCS1)bytes[j]);
        w->length += k;
        return 0;
    }
    PyObject *decoded = fs_utf8_replace(bytes, k);
    if (decoded == NULL) return -1;
    int kind = PyUnicode_KIND(decoded);
    const void *data = PyUnicode_DATA(decoded);
    Py_ssize_t m = PyUnicode_GET_LENGTH(decoded);
    int failed = writer_reserve(w, m, PyUnicode_MAX_CHAR_VALUE(decoded));
    if (!failed) failed = writer_copy(w, kind, data, 0, m);
    Py_DECREF(decoded);
    return failed;
}

/* `percent_decode`: each run of `%XX` escapes becomes its bytes decoded as UTF-8 with
 * replacement characters; everything else stays. */
static PyObject *percent_decode(PyObject *value) {
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    writer_t w;
    char *bytes = PyMem_Malloc((size_t)n / 3 + 1);
    if (bytes == NULL) return PyErr_NoMemory();
    if (writer_start(&w, value) < 0) {
        PyMem_Free(bytes);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n;) {
        /* The text up to the next `%`, as it is. */
        Py_ssize_t at = text_find(value, '%', i, n);
        Py_ssize_t stop = at < 0 ? n : at;
        if (writer_copy(&w, kind, data, i, stop) < 0) goto error;
        i = stop;
        if (i == n) break;
        Py_ssize_t k = 0;
        long byte;
        while (i + 2 < n && PyUnicode_READ(kind, data, i) == '%' &&
               (byte = hex_number(kind, data, i + 1, 2)) >= 0) {
            bytes[k++] = (char)byte;
            i += 3;
        }
        if (k == 0) {
            if (writer_put(&w, '%') < 0) goto error;
            i++;
            continue;
        }
        w.changed = 1;
        if (put_utf8(&w, bytes, k) < 0) goto error;
    }
    PyMem_Free(bytes);
    return writer_finish(&w, value);
error:
    writer_drop(&w);
    PyMem_Free(bytes);
    return NULL;
}

#define URL_DECODE_ROUNDS 3

/* Whether `value` holds a `%XX` escape: then, and only then, `percent_decode` changes it (an
 * escape's three characters become one). */
static int has_escape(PyObject *value) {
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    for (Py_ssize_t i = 0; i + 2 < n;) {
        Py_ssize_t at = text_find(value, '%', i, n - 2);
        if (at < 0) return 0;
        if (hex_number(kind, data, at + 1, 2) >= 0) return 1;
        i = at + 1;
    }
    return 0;
}

/* `url_decode`: percent-decode until stable, at most three rounds. A round that would change
 * nothing is not run. */
static PyObject *url_decode(PyObject *value) {
    PyObject *current = Py_NewRef(value);
    for (int round = 0; round < URL_DECODE_ROUNDS; round++) {
        if (!has_escape(current)) break;
        PyObject *decoded = percent_decode(current);
        if (decoded == NULL) {
            Py_DECREF(current);
            return NULL;
        }
        Py_SETREF(current, decoded);
    }
    return current;
}

/* `url_decode_uni`: `%uXXXX` (or `%UXXXX`) to its character, then `url_decode`. */
static PyObject *url_decode_uni(PyObject *value) {
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    int has_u = 0;
    for (Py_ssize_t at = 0; !has_u && at + 1 < n; at++) {
        at = text_find(value, '%', at, n - 1);
        if (at < 0) break;
        Py_UCS4 u = PyUnicode_READ(kind, data, at + 1);
        has_u = u == 'u' || u == 'U';
    }
    if (!has_u) return url_decode(value);
    writer_t w;
    if (writer_start(&w, value) < 0) return NULL;
    for (Py_ssize_t i = 0; i < n;) {
        Py_ssize_t at = text_find(value, '%', i, n);
        Py_ssize_t stop = at < 0 ? n - 1 : at;
        if (writer_copy(&w, kind, data, i, stop) < 0) goto error;
        i = stop;
        if (i >= n - 1) { /* no `%`, or one ending the text: the rest as it is */
            if (writer_copy(&w, kind, data, i, n) < 0) goto error;
            break;
        }
        Py_UCS4 u = PyUnicode_READ(kind, data, i + 1);
        long number;
        if ((u == 'u' || u == 'U') && i + 6 <= n &&
            (number = hex_number(kind, data, i + 2, 4)) >= 0) {
            w.changed = 1;
            if (writer_put(&w, (Py_UCS4)number) < 0) goto error;
            i += 6;
        } else if (u == 'U') { /* the reference turns every `%U` into `%u` first */
            w.changed = 1;
            if (writer_put(&w, '%') < 0 || writer_put(&w, 'u') < 0) goto error;
            i += 2;
        } else {
            if (writer_put(&w, '%') < 0) goto error;
            i++;
        }
    }
    PyObject *replaced = writer_finish(&w, value);
    if (replaced == NULL) return NULL;
    PyObject *out = url_decode(replaced);
    Py_DECREF(replaced);
    return out;
error:
    writer_drop(&w);
    return NULL;
}

/* ---- the whitespace, NUL, comment and command-line transforms on any text ---------- */

/* The same as their ASCII versions above, over code points: whitespace is str.isspace(),
 * printable str.isprintable(), a digit str.isdigit(). */


/* Past Latin-1, str.isspace() holds only between these (checked when the module loads): the
 * replacement characters and the wide letters that fill decoded binary text are told apart
 * without a call. */
#define WIDE_SPACE_FIRST 0x1680
#define WIDE_SPACE_LAST 0x3000

/* And str.lower() of each: one Latin-1 character each (checked when the table is filled). */
static Py_UCS1 LATIN1_LOWER[256];

static int latin1_tables(void) {
    for (Py_UCS4 c = 0; c < 256; c++) {
        LATIN1_SPACE[c] = Py_UNICODE_ISSPACE(c) ? 1 : 0;
        LATIN1_PRINTABLE[c] = Py_UNICODE_ISPRINTABLE(c) ? 1 : 0;
        PyObject *character = PyUnicode_FromOrdinal((int)c);
        if (character == NULL) return -1;
        PyObject *lower = PyObject_CallMethod(character, "lower", NULL);
        Py_DECREF(character);
        if (lower == NULL) return -1;
        Py_UCS4 l = PyUnicode_GET_LENGTH(lower) == 1 ? PyUnicode_READ_CHAR(lower, 0) : 0x110000;
        Py_DECREF(lower);
        if (l >= 256) {
            PyErr_Format(PyExc_ImportError, "str.lower() of U+%04X is not one Latin-1 character",
                         (unsigned int)c);
            return -1;
        }
        LATIN1_LOWER[c] = (Py_UCS1)l;
    }
    for (Py_UCS4 c = 256; c <= 0x10FFFF; c++) {
        if (Py_UNICODE_ISSPACE(c) && (c < WIDE_SPACE_FIRST || c > WIDE_SPACE_LAST)) {
            PyErr_Format(PyExc_ImportError, "str.isspace() holds for U+%04X, outside U+%04X-U+%04X",
                         (unsigned int)c, WIDE_SPACE_FIRST, WIDE_SPACE_LAST);
            return -1;
        }
    }
    return 0;
}

/* `lowercase` of Latin-1 text: str.lower() one character at a time. */
static PyObject *latin1_lowercase(PyObject *value) {
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    text_out_t t;
    Py_UCS1 *o = text_start(&t, value, n);
    if (o == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) o[i] = LATIN1_LOWER[s[i]];
    return text_end(&t, value, n);
}

/* str.isspace() of any character: a table look-up, with a branch only on the characters
 * between WIDE_SPACE_FIRST and WIDE_SPACE_LAST (few in text of any kind), not on Latin-1 or
 * not, which decoded binary text mixes at random. */
static inline int u_space(Py_UCS4 c) {
    if (c - WIDE_SPACE_FIRST <= WIDE_SPACE_LAST - WIDE_SPACE_FIRST) return Py_UNICODE_ISSPACE(c);
    return LATIN1_SPACE[c & 0xFF] & (c < 256);
}

static inline int u_isprintable(Py_UCS4 c) {
    return c < 256 ? LATIN1_PRINTABLE[c] : Py_UNICODE_ISPRINTABLE(c);
}

/* Runs of characters that a whitespace transform keeps as they are, found sixteen bytes at a
 * time (SSE2): `k_plain_run` copies the `PLAIN_LANES(kind)` characters (one or two bytes each)
 * at `s[i]` to `o[k]` whatever they are, and returns how many of them lead that are certainly
 * none of whitespace (any character up to a space, U+0085, U+00A0, or one between
 * WIDE_SPACE_FIRST and WIDE_SPACE_LAST) nor, when `cmd` is set, of what `cmd_line` deletes or
 * reads as whitespace (`\ " ' ^ ,`): those are kept, the rest is written again by the loop
 * that reads one character at a time, which also takes the characters counted out here that
 * are not whitespace after all. `o` has room for the block: the caller's `k` is at most `i`
 * and `i + PLAIN_LANES(kind)` at most the text's length. Text of four bytes has no runs
 * (PLAIN_LANES is 0). */
#if defined(__SSE2__)
#define PLAIN_LANES(kind) ((kind) == PyUnicode_4BYTE_KIND ? 0 : 16 / (kind))

/* Each lane of `v` (of `kind`'s width) that is the character `c`: all ones, else zero. */
ALWAYS_INLINE __m128i k_lanes_equal(int kind, __m128i v, int c) {
    return kind == PyUnicode_1BYTE_KIND ? _mm_cmpeq_epi8(v, _mm_set1_epi8((char)c))
                                        : _mm_cmpeq_epi16(v, _mm_set1_epi16((short)c));
}

ALWAYS_INLINE Py_ssize_t k_plain_run(int kind, const void *s, Py_ssize_t i, int cmd, void *o,
                                     Py_ssize_t k) {
    __m128i v = _mm_loadu_si128((const __m128i *)((const char *)s + i * kind));
    __m128i low = kind == PyUnicode_1BYTE_KIND
                      ? _mm_cmpeq_epi8(_mm_subs_epu8(v, _mm_set1_epi8(0x20)), _mm_setzero_si128())
                      : _mm_cmpeq_epi16(_mm_subs_epu16(v, _mm_set1_epi16(0x20)),
                                        _mm_setzero_si128());
    __m128i hit = _mm_or_si128(low, _mm_or_si128(k_lanes_equal(kind, v, 0x85),
                                                 k_lanes_equal(kind, v, 0xA0)));
    if (kind == PyUnicode_2BYTE_KIND)
        hit = _mm_or_si128(
            hit, _mm_cmpeq_epi16(
                     _mm_subs_epu16(_mm_sub_epi16(v, _mm_set1_epi16(WIDE_SPACE_FIRST)),
                                    _mm_set1_epi16(WIDE_SPACE_LAST - WIDE_SPACE_FIRST)),
                     _mm_setzero_si128()));
    if (cmd)
        hit = _mm_or_si128(
            hit, _mm_or_si128(
                     _mm_or_si128(k_lanes_equal(kind, v, '\\'), k_lanes_equal(kind, v, '"')),
                     _mm_or_si128(_mm_or_si128(k_lanes_equal(kind, v, '\''),
                                               k_lanes_equal(kind, v, '^')),
                                  k_lanes_equal(kind, v, ','))));
    _mm_storeu_si128((__m128i *)((char *)o + k * kind), v);
    unsigned int stops = (unsigned int)_mm_movemask_epi8(hit);
    return stops == 0 ? 16 / kind : (Py_ssize_t)__builtin_ctz(stops) / kind;
}
#else
#define PLAIN_LANES(kind) 0
ALWAYS_INLINE Py_ssize_t k_plain_run(int kind, const void *s, Py_ssize_t i, int cmd, void *o,
                                     Py_ssize_t k) {
    return 0;
}
#endif

/* The loops of the transforms below on text of one kind, read and written in that kind (see
 * `_kind.h`); each writes into `o` (room for n characters, and `a` the same) and returns the
 * length written. `remove_nulls` and `cmd_line` write each character where the next kept one
 * goes and count it only when it is kept, without a branch on it: which characters of a
 * binary body's text they keep is as random as the body. */

ALWAYS_INLINE int k_printable(int kind, const void *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (!u_isprintable(text_read(kind, s, i))) return 0;
    return 1;
}

ALWAYS_INLINE Py_ssize_t k_remove_nulls(int kind, const void *s, Py_ssize_t n, void *o) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = text_read(kind, s, i);
        text_write(kind, o, k, c);
        k += c != 0;
    }
    return k;
}

ALWAYS_INLINE Py_ssize_t k_compress(int kind, const void *s, Py_ssize_t n, void *o) {
    const Py_ssize_t lanes = PLAIN_LANES(kind);
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n;) {
        if (lanes && i + lanes <= n) {
            Py_ssize_t run = k_plain_run(kind, s, i, 0, o, k);
            k += run;
            i += run;
            if (run == lanes) continue;
        }
        Py_UCS4 c = text_read(kind, s, i);
        if (u_space(c)) {
            text_write(kind, o, k++, ' ');
            while (i < n && u_space(text_read(kind, s, i))) i++;
        } else {
            text_write(kind, o, k++, c);
            i++;
        }
    }
    return k;
}

ALWAYS_INLINE Py_ssize_t k_remove_whitespace(int kind, const void *s, Py_ssize_t n, void *o) {
    const Py_ssize_t lanes = PLAIN_LANES(kind);
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n;) {
        if (lanes && i + lanes <= n) {
            Py_ssize_t run = k_plain_run(kind, s, i, 0, o, k);
            k += run;
            i += run;
            if (run == lanes) continue;
        }
        Py_UCS4 c = text_read(kind, s, i++);
        if (!u_space(c)) text_write(kind, o, k++, c);
    }
    return k;
}

/* What `cmd_line` does with each Latin-1 character: delete it, read it as whitespace, or
 * write it and, when it is `/` or `(`, not the space owed before it. Filled when the module
 * loads, read-only after. */
enum { CMD_DELETED = 1, CMD_WHITE = 2, CMD_NO_SPACE_BEFORE = 4 };
static unsigned char CMD_CLASS[256];

static void cmd_line_table(void) {
    for (int c = 0; c < 256; c++) CMD_CLASS[c] = LATIN1_SPACE[c] ? CMD_WHITE : 0;
    CMD_CLASS['\\'] = CMD_CLASS['"'] = CMD_CLASS['\''] = CMD_CLASS['^'] = CMD_DELETED;
    CMD_CLASS[','] = CMD_WHITE;
    CMD_CLASS['/'] = CMD_CLASS['('] = CMD_NO_SPACE_BEFORE;
}

/* One pass for the reference's four: the deleted characters are skipped, a run of whitespace
 * (`,` counts) across them is one space, written when the character after it is not `/` or
 * `(` (the space before either goes; compressed text has no two spaces in a row, so removing
 * " /" makes no new " ("), or when the text ends. Each character is written where it would go
 * and counted when kept; a space is owed for whitespace already read and not written, so
 * what is written stays at or before the character read. */
ALWAYS_INLINE Py_ssize_t k_cmd_line(int kind, const void *s, Py_ssize_t n, void *o) {
    const Py_ssize_t lanes = PLAIN_LANES(kind);
    Py_ssize_t k = 0;
    unsigned int space = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = text_read(kind, s, i);
        /* With no space owed, from a character that looks kept (its low byte's class: in text
         * dense with what `cmd_line` reads, no run is looked for between two of those), the
         * characters kept as they are up to the next one it reads are copied at once. */
        if (lanes && !space && i + lanes <= n &&
            !(CMD_CLASS[c & 0xFF] & (CMD_DELETED | CMD_WHITE))) {
            Py_ssize_t run = k_plain_run(kind, s, i, 1, o, k);
            k += run;
            i += run;
            if (i >= n) break;
            c = text_read(kind, s, i);
        }
        unsigned int role = CMD_CLASS[c & 0xFF] & (0u - (c < 256));
        if (__builtin_expect(c - WIDE_SPACE_FIRST <= WIDE_SPACE_LAST - WIDE_SPACE_FIRST, 0))
            role = Py_UNICODE_ISSPACE(c) ? CMD_WHITE : 0;
        unsigned int kept = (role & (CMD_DELETED | CMD_WHITE)) == 0;
        unsigned int owed = kept & space & !(role & CMD_NO_SPACE_BEFORE);
        text_write(kind, o, k, ' ');
        k += owed;
        text_write(kind, o, k, c);
        k += kept;
        space = (role & CMD_WHITE) >> 1 | (space & role);
    }
    if (space) text_write(kind, o, k++, ' ');
    return k;
}

/* The block comments of `s` each become a space (into `a`, then `*` `/` left over into `o`). */
ALWAYS_INLINE Py_ssize_t k_block_comments(int kind, const void *s, Py_ssize_t n, void *a,
                                          void *o) {
    Py_ssize_t m = 0, position = 0;
    for (;;) {
        Py_ssize_t start = k_find2(kind, s, n, position, '/', '*');
        Py_ssize_t stop = start < 0 ? n : start;
        for (Py_ssize_t i = position; i < stop; i++) text_write(kind, a, m++, text_read(kind, s, i));
        if (start < 0) break;
        text_write(kind, a, m++, ' ');
        if (start + 2 < n && text_read(kind, s, start + 2) == '!') {
            position = start + 3;
            while (position < n && position - start < 9 &&
                   Py_UNICODE_ISDIGIT(text_read(kind, s, position)))
                position++;
            continue;
        }
        Py_ssize_t end = k_find2(kind, s, n, start + 2, '*', '/');
        position = end < 0 ? n : end + 2;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < m;) {
        Py_UCS4 c = text_read(kind, a, i);
        if (c == '*' && i + 1 < m && text_read(kind, a, i + 1) == '/') {
            text_write(kind, o, k++, ' ');
            i += 2;
        } else {
            text_write(kind, o, k++, c);
            i++;
        }
    }
    return k;
}

/* The line comments (`#` or `--` to the end of the line) of `s` removed. */
ALWAYS_INLINE Py_ssize_t k_line_comments(int kind, const void *s, Py_ssize_t n, void *o) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n;) {
        Py_UCS4 c = text_read(kind, s, i);
        if (c == '#' || (c == '-' && i + 1 < n && text_read(kind, s, i + 1) == '-')) {
            while (i < n && text_read(kind, s, i) != '\n') i++;
        } else {
            text_write(kind, o, k++, c);
            i++;
        }
    }
    return k;
}

ALWAYS_INLINE int k_alnum(int kind, const void *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (!Py_UNICODE_ISALNUM(text_read(kind, s, i))) return 0;
    return n > 0;
}

static inline int ascii_b64(Py_UCS4 c) { return c < 0x80 && is_b64((unsigned char)c); }

/* `base64_shaped` of text of any kind (whitespace is str.isspace()). */
ALWAYS_INLINE int k_base64_shaped(int kind, const void *s, Py_ssize_t n) {
    Py_ssize_t a = 0, b = n;
    while (a < b && u_space(text_read(kind, s, a))) a++;
    while (b > a && u_space(text_read(kind, s, b - 1))) b--;
    Py_ssize_t c = b;
    while (c > a && text_read(kind, s, c - 1) == '=') c--;
    if (c > a) {
        int alnum = 1;
        for (Py_ssize_t i = a; i < c && alnum; i++) {
            Py_UCS4 x = text_read(kind, s, i);
            alnum = x < 0x80 && is_alnum((unsigned char)x);
        }
        if (alnum) return 1;
    }
    Py_ssize_t i = 0;
    while (i < n && u_space(text_read(kind, s, i))) i++;
    Py_ssize_t start = i;
    while (i < n && ascii_b64(text_read(kind, s, i))) i++;
    if (i == start) return 0;
    int eq = 0;
    while (i < n && text_read(kind, s, i) == '=' && eq < 2) {
        i++;
        eq++;
    }
    while (i < n && u_space(text_read(kind, s, i))) i++;
    return i == n;
}

/* What one pass over a text finds for its features: each ASCII character it holds (index 128
 * stands for every other character), and each ASCII character found right after a space, `/`,
 * `*` or `-` (the first characters of the pairs the features look for). */
enum { AFTER_OTHER, AFTER_SPACE, AFTER_SLASH, AFTER_STAR, AFTER_DASH, AFTER_COUNT };

typedef struct {
    unsigned char seen[129];
    unsigned char after[AFTER_COUNT][129];
} text_profile_t;

static unsigned char AFTER_CLASS[129];

ALWAYS_INLINE void k_profile(int kind, const void *s, Py_ssize_t n, text_profile_t *p) {
    memset(p, 0, sizeof *p);
    unsigned int before = AFTER_OTHER;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = text_read(kind, s, i);
        unsigned int at = c < 128 ? (unsigned int)c : 128u;
        p->seen[at] = 1;
        p->after[before][at] = 1;
        before = AFTER_CLASS[at];
    }
}

static void profile_tables(void) {
    AFTER_CLASS[' '] = AFTER_SPACE;
    AFTER_CLASS['/'] = AFTER_SLASH;
    AFTER_CLASS['*'] = AFTER_STAR;
    AFTER_CLASS['-'] = AFTER_DASH;
}

/* `features` of text of two or four bytes a character (so never ASCII, and wide), as the
 * reference finds them; `*undecided` set when it has an `&` but no `;` and AMPERSAND is
 * wanted. */
static long wide_features(PyObject *value, long wanted, int *undecided) {
    int kind = PyUnicode_KIND(value);
    const void *s = PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (BY_KIND(k_alnum, kind, s, n)) return F_UPPER_OR_WIDE & wanted;
    text_profile_t profile;
    BY_KIND(k_profile, kind, s, n, &profile);
#define HAS(c) (profile.seen[(c)] != 0)
#define PAIR(a, b) (profile.after[AFTER_CLASS[(a)]][(b)] != 0)
    long found = F_UPPER_OR_WIDE;
    int has_space = HAS(' '), has_slash = HAS('/');
    if ((wanted & F_PERCENT) && HAS('%')) found |= F_PERCENT;
    if ((wanted & F_AMPERSAND) && HAS('&')) {
        if (HAS(';')) found |= F_AMPERSAND;
        else *undecided = 1;
    }
    if ((wanted & F_BACKSLASH) && HAS('\\')) found |= F_BACKSLASH;
    if ((wanted & F_NUL) && HAS('\0')) found |= F_NUL;
    if ((wanted & F_SPACE) && has_space) found |= F_SPACE;
    if ((wanted & F_ODD_WHITESPACE) &&
        ((has_space && PAIR(' ', ' ')) || !BY_KIND(k_printable, kind, s, n)))
        found |= F_ODD_WHITESPACE;
    if ((wanted & F_PATH_DOTS) &&
        ((n > 0 && text_read(kind, s, 0) == '.') ||
         (has_slash && (PAIR('/', '.') || PAIR('/', '/')))))
        found |= F_PATH_DOTS;
    if ((wanted & F_BASE64_SHAPE) && n >= 4 && BY_KIND(k_base64_shaped, kind, s, n))
        found |= F_BASE64_SHAPE;
    if ((wanted & F_COMMENT) &&
        (HAS('#') || (has_slash && (PAIR('/', '*') || PAIR('*', '/'))) || PAIR('-', '-')))
        found |= F_COMMENT;
    if ((wanted & F_SHELL_PUNCTUATION) &&
        (HAS('"') || HAS('\'') || HAS('^') || HAS(',') ||
         (has_space && (PAIR(' ', '/') || PAIR(' ', '(')))))
        found |= F_SHELL_PUNCTUATION;
#undef HAS
#undef PAIR
    return found & wanted;
}

/* Run transform `id` (one of those above) on text of any kind, in its kind: a new reference,
 * `value` itself when nothing changes. */
static PyObject *any_text(int id, PyObject *value) {
    int kind = PyUnicode_KIND(value);
    const void *s = PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), k = 0;
    int block = 0;
    switch ((transform_id)id) {
    case T_COMPRESS_WHITESPACE:
        if (BY_KIND(k_find2, kind, s, n, 0, ' ', ' ') < 0 && BY_KIND(k_printable, kind, s, n))
            return Py_NewRef(value);
        break;
    case T_REMOVE_WHITESPACE:
        if (!BY_KIND(k_has, kind, s, n, ' ') && BY_KIND(k_printable, kind, s, n))
            return Py_NewRef(value);
        break;
    case T_REMOVE_COMMENTS:
        block = BY_KIND(k_find2, kind, s, n, 0, '/', '*') >= 0 ||
                BY_KIND(k_find2, kind, s, n, 0, '*', '/') >= 0;
        if (!block && BY_KIND(k_find2, kind, s, n, 0, '-', '-') < 0 &&
            !BY_KIND(k_has, kind, s, n, '#'))
            return Py_NewRef(value);
        break;
    default:
        break;
    }
    text_out_t t;
    void *o = text_start(&t, value, n);
    if (o == NULL) return NULL;
    switch ((transform_id)id) {
    case T_REMOVE_NULLS:
        k = BY_KIND(k_remove_nulls, kind, s, n, o);
        break;
    case T_COMPRESS_WHITESPACE:
        k = BY_KIND(k_compress, kind, s, n, o);
        break;
    case T_REMOVE_WHITESPACE:
        k = BY_KIND(k_remove_whitespace, kind, s, n, o);
        break;
    case T_CMD_LINE:
        k = BY_KIND(k_cmd_line, kind, s, n, o);
        break;
    case T_REMOVE_COMMENTS: {
        if (!block) {
            k = BY_KIND(k_line_comments, kind, s, n, o);
            break;
        }
        /* Block comments from `s` into `b` (by way of `a`), then line comments into `o`. */
        void *a = text_buffer(kind, n), *b = text_buffer(kind, n);
        if (a == NULL || b == NULL) {
            PyMem_Free(a);
            PyMem_Free(b);
            text_drop(&t);
            return NULL;
        }
        Py_ssize_t m = BY_KIND(k_block_comments, kind, s, n, a, b);
        k = BY_KIND(k_line_comments, kind, b, m, o);
        PyMem_Free(a);
        PyMem_Free(b);
        break;
    }
    default:
        text_drop(&t);
        PyErr_SetString(PyExc_SystemError, "no version of this transform for text of any kind");
        return NULL;
    }
    return text_end(&t, value, k);
}

/* Apply transform `id` to `value` (a new reference): in C where it is decided here, else by
 * calling `reference`, the readable implementation. */
static PyObject *apply_transform(int id, PyObject *value, PyObject *reference) {
    int ascii = PyUnicode_IS_ASCII(value);
    switch ((transform_id)id) {
    case T_URL_DECODE:
        if (!text_has(value, '%')) return Py_NewRef(value);
        return url_decode(value);
    case T_URL_DECODE_UNI:
        if (!text_has(value, '%')) return Py_NewRef(value);
        return url_decode_uni(value);
    case T_HTML_ENTITY_DECODE:
        return fs_html_entity_decode(value);
    case T_JS_DECODE:
        if (!text_has(value, '\\')) return Py_NewRef(value);
        return js_decode(value);
    case T_REMOVE_NULLS:
        if (!text_has(value, 0)) return Py_NewRef(value);
        if (ascii) return ascii_remove_nulls(value);
        return any_text(id, value);
    case T_BASE64_DECODE:
        return fs_base64_decode(value);
    case T_NORMALIZE_PATH:
        return fs_normalize_path(value);
    case T_LOWERCASE: {
        if (ascii) return ascii_lowercase(value);
        if (PyUnicode_KIND(value) == PyUnicode_1BYTE_KIND) return latin1_lowercase(value);
        int special;
        PyObject *lowered = fs_lowercase(value, &special);
        if (lowered != NULL || !special) return lowered;
        break;
    }
    case T_COMPRESS_WHITESPACE:
        if (ascii) return ascii_compress_whitespace(value);
        return any_text(id, value);
    case T_REMOVE_WHITESPACE:
        if (ascii) return ascii_remove_whitespace(value);
        return any_text(id, value);
    case T_REMOVE_COMMENTS:
        if (ascii) return ascii_remove_comments(value);
        return any_text(id, value);
    case T_CMD_LINE:
        if (ascii) return ascii_cmd_line(value);
        return any_text(id, value);
    default:
        break;
    }
    PyObject *out = PyObject_CallOneArg(reference, value);
    if (out != NULL && !PyUnicode_Check(out)) {
        PyErr_Format(PyExc_TypeError, "transform %s returned %s, not str", TRANSFORM_NAMES[id],
                     Py_TYPE(out)->tp_name);
        Py_CLEAR(out);
    }
    return out;
}

static int transform_by_name(PyObject *name) {
    const char *text = PyUnicode_AsUTF8(name);
    if (text == NULL) return -1;
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(text, TRANSFORM_NAMES[i]) == 0) return i;
    PyErr_Format(PyExc_ValueError, "unknown transform %R", name);
    return -1;
}

/* ---- the value scanner -------------------------------------------------------------- */

typedef struct {
    int prefix;
    int transform;
    long triggers;
    PyObject *reference; /* borrowed from the scanner's `references` tuple */
} step_t;

typedef struct {
    uint64_t bit;
    uint64_t targets;
    long triggers;
    int nsteps;
    step_t steps[MAX_STEPS];
} chain_t;

#define MAX_SUBSETS 64

/* A database of the patterns of some targets and some chains: a result of a value of those
 * targets only, made by those chains only, is scanned with it, which costs much less than
 * the database of every pattern. */
typedef struct {
    uint64_t targets;
    uint64_t chains;
    Py_ssize_t size; /* its patterns */
    hs_database_t *database;
    hs_database_t *candidate; /* its candidate form (see `candidate_expression`), or NULL */
} subset_t;

struct ValueScanner {
    PyObject_HEAD
    hs_database_t *database;
    int nsubsets;
    subset_t subsets[MAX_SUBSETS];
    hs_scratch_t *scratch;
    Py_ssize_t npatterns;
    PyObject *owners;     /* tuple of str: each pattern id's key */
    uint64_t *targets;    /* each pattern id's target mask */
    uint64_t *chains;     /* each pattern id's chain bits */
    unsigned int *matched;
    Py_ssize_t nmatched;
    int nchains;
    chain_t *chain;
    int nprefixes;
    PyObject **done; /* per prefix id: its result for the value being scanned, else NULL */
    long *done_features; /* per prefix id in `done`: the features of its result */
    int *done_set;   /* the prefix ids `done` holds a result for, in the order set */
    PyObject *references; /* keeps the reference transform functions alive */
    PyObject *features;   /* the reference features function */
    PyObject *empty;      /* frozenset() */
    int busy; /* a scan is under way: the scratch space and `done` are in use */
    utf8_buffer_t utf8; /* the UTF-8 form of the result being scanned */
    /* Every pattern, made to find a superset of its matches in many results at once (see
     * `candidate_expression`); NULL when libhs refuses one, and then every result scanned with
     * `database` is scanned on its own. */
    hs_database_t *candidate;
    merge_table_t merge; /* `scan_json`'s, kept from one body to the next */
};

merge_table_t *scanner_merge_table(ValueScanner *self) { return &self->merge; }

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *context) {
    ValueScanner *self = context;
    (void)from;
    (void)to;
    (void)flags;
    if (self->nmatched < self->npatterns) self->matched[self->nmatched++] = id;
    return 0;
}

static int scan_bytes(ValueScanner *self, const char *data, Py_ssize_t size, uint64_t targets,
                      uint64_t chains, PyObject **hits);

/* The first subset that holds every pattern of `targets` and `chains` (its database costs less
 * than the one of every pattern), or -1 for none. */
static int subset_for(ValueScanner *self, uint64_t targets, uint64_t chains) {
    for (int i = 0; i < self->nsubsets; i++)
        if (!(targets & ~self->subsets[i].targets) && !(chains & ~self->subsets[i].chains))
            return i;
    return -1;
}

/* Scan one result for patterns of `targets` and `chains`, adding their keys to the set `*hits`
 * (created on the first hit). Returns -1 on error. */
static int scan_result(ValueScanner *self, PyObject *result, uint64_t targets, uint64_t chains,
                       PyObject **hits) {
    const char *data;
    Py_ssize_t size;
    if (PyUnicode_IS_ASCII(result)) {
        data = (const char *)PyUnicode_1BYTE_DATA(result);
        size = PyUnicode_GET_LENGTH(result);
    } else {
        size = utf8_encode(&self->utf8, result);
        if (size < 0) return -1;
        data = self->utf8.data;
    }
    return scan_bytes(self, data, size, targets, chains, hits);
}

/* Scan `data` with `database`, adding the keys of the patterns of `targets` and `chains` it
 * matches to `*hits`. */
static int scan_with(ValueScanner *self, hs_database_t *database, const char *data,
                     Py_ssize_t size, uint64_t targets, uint64_t chains, PyObject **hits) {
    self->nmatched = 0;
    hs_error_t err = hs_scan(database, data, (unsigned int)size, 0, self->scratch, on_match,
                             self);
    if (err != HS_SUCCESS) {
        PyErr_Format(PyExc_RuntimeError, "hs_scan failed with error %d", (int)err);
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->nmatched; i++) {
        unsigned int id = self->matched[i];
        if (!(self->targets[id] & targets) || !(self->chains[id] & chains)) continue;
        if (*hits == NULL && (*hits = PySet_New(NULL)) == NULL) return -1;
        if (PySet_Add(*hits, PyTuple_GET_ITEM(self->owners, id)) < 0) return -1;
    }
    return 0;
}

/* A result of at least this many bytes made by several chains that no one subset holds is
 * scanned once with each chain's subset when they hold fewer patterns together than the
 * database of every pattern: a database's cost grows with its patterns, and on a long result
 * several scans with small ones cost less than one with every pattern. */
#define SPLIT_SCAN_MIN 1024

/* The distinct subsets of the chains of `chains` with `targets`, into `by_chain` (room for
 * MAX_CHAINS), and their count; 0 when a chain has none or they hold as many patterns as every pattern. */
static int split_subsets(ValueScanner *self, uint64_t targets, uint64_t chains, int *by_chain) {
    int count = 0;
    Py_ssize_t patterns = 0;
    for (uint64_t rest = chains; rest != 0; rest &= rest - 1) {
        int subset = subset_for(self, targets, rest & (~rest + 1)), seen = 0;
        if (subset < 0) return 0;
        for (int i = 0; i < count; i++) seen |= by_chain[i] == subset;
        if (seen) continue;
        patterns += self->subsets[subset].size;
        by_chain[count++] = subset;
    }
    return patterns < self->npatterns ? count : 0;
}

/* Scan the UTF-8 `data` of a result as `scan_result` does: with the smallest subset that holds
 * every pattern of `targets` and `chains`, else, for a long result, with each chain's subset
 * (see SPLIT_SCAN_MIN), else with the database of every pattern. Each pattern the result needs
 * is in the one database scanned, or in the subset of its chain; the patterns kept are those of
 * `targets` and `chains`, so each way finds the same keys. */
static int scan_bytes(ValueScanner *self, const char *data, Py_ssize_t size, uint64_t targets,
                      uint64_t chains, PyObject **hits) {
    if (size == 0) return 0;
    if ((uint64_t)size > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a value of 4 GiB or more cannot be scanned");
        return -1;
    }
    int subset = subset_for(self, targets, chains);
    if (subset >= 0)
        return scan_with(self, self->subsets[subset].database, data, size, targets, chains,
                         hits);
    int by_chain[MAX_CHAINS];
    int count = size >= SPLIT_SCAN_MIN ? split_subsets(self, targets, chains, by_chain) : 0;
    if (count == 0) return scan_with(self, self->database, data, size, targets, chains, hits);
    for (int i = 0; i < count; i++)
        if (scan_with(self, self->subsets[by_chain[i]].database, data, size, targets, chains,
                      hits) < 0)
            return -1;
    return 0;
}

static void ValueScanner_dealloc(ValueScanner *self) {
    if (self->scratch) hs_free_scratch(self->scratch);
    if (self->database) hs_free_database(self->database);
    if (self->candidate) hs_free_database(self->candidate);
    for (int i = 0; i < self->nsubsets; i++) {
        hs_free_database(self->subsets[i].database);
        if (self->subsets[i].candidate) hs_free_database(self->subsets[i].candidate);
    }
    PyMem_Free(self->targets);
    PyMem_Free(self->chains);
    PyMem_Free(self->matched);
    PyMem_Free(self->chain);
    PyMem_Free(self->done);
    PyMem_Free(self->done_features);
    PyMem_Free(self->done_set);
    merge_table_free(&self->merge);
    PyMem_Free(self->utf8.data);
    Py_XDECREF(self->owners);
    Py_XDECREF(self->references);
    Py_XDECREF(self->features);
    Py_XDECREF(self->empty);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static uint64_t as_u64(PyObject *o) {
    return (uint64_t)PyLong_AsUnsignedLongLong(o);
}

/* One database to compile: `n` patterns (pointers into bytes objects only the caller holds)
 * with their flags and their ids, exact or in candidate form, and what libhs made of them.
 * A candidate job owns its `forms` and `cflags` (see `candidate_expression`). */
typedef struct {
    const char *const *patterns;
    const unsigned int *flags;
    const unsigned int *ids;
    unsigned int n;
    int candidate;
    char **forms;
    unsigned int *cflags;
    int owns_arrays; /* a subset's exact job: its arrays are freed with it */
    hs_database_t **database; /* where the database goes; NULL until compiled */
    int compiled;             /* 0 when skipped: an earlier exact job failed */
    hs_error_t status;
    hs_compile_error_t *error;
} compile_job_t;

/* The jobs of one scanner, in the order a serial build compiles them, shared by the threads
 * that compile them: each takes the next of `order` (most patterns first, so the long compiles
 * start first and the short ones fill in) until none is left. A job after the first exact job
 * known to have failed is skipped: its database would be thrown away. */
typedef struct {
    compile_job_t *jobs;
    int njobs;
    const int *order;
    int next;
    int failed; /* the index of the first exact job that failed so far, or `njobs` */
    pthread_mutex_t lock;
} compile_pool_t;

static void *compile_jobs(void *arg) {
    compile_pool_t *pool = arg;
    for (;;) {
        int j = -1;
        pthread_mutex_lock(&pool->lock);
        while (j < 0 && pool->next < pool->njobs) {
            int k = pool->order[pool->next++];
            if (k < pool->failed) j = k;
        }
        pthread_mutex_unlock(&pool->lock);
        if (j < 0) return NULL;
        compile_job_t *job = &pool->jobs[j];
        const char *const *patterns = job->candidate ? (const char *const *)job->forms
                                                     : job->patterns;
        const unsigned int *flags = job->candidate ? job->cflags : job->flags;
        job->status = hs_compile_ext_multi(patterns, flags, job->ids, NULL, job->n,
                                           HS_MODE_BLOCK, NULL, job->database, &job->error);
        job->compiled = 1;
        if (job->status != HS_SUCCESS) {
            *job->database = NULL;
            if (!job->candidate) {
                pthread_mutex_lock(&pool->lock);
                if (j < pool->failed) pool->failed = j;
                pthread_mutex_unlock(&pool->lock);
            }
        }
    }
}

/* The size of the threads that compile: libhs's compiler recurses deeply on large patterns, so
 * they get the main thread's usual 8 MiB whatever the default of this process. */
#define COMPILE_STACK (8u << 20)
#define MAX_COMPILE_JOBS (2 * MAX_SUBSETS + 2)

/* Compile `jobs` (in serial order) on `workers` threads at most, this one among them, with the
 * interpreter released: compiling takes seconds for a large ruleset, and other threads (a
 * node's event loop while a bundle loads in a worker thread) run meanwhile. Every thread is
 * joined before this returns. The databases are those a serial build makes, whatever the
 * schedule: each job is compiled on its own by one thread. A thread that cannot be started
 * leaves its share to the others. Returns 0, or -1 with `CompileError` set for the first exact
 * job in serial order that libhs refused (its message and the id of the pattern it names):
 * the error does not depend on which job finished first. A candidate job libhs refuses leaves
 * its database NULL. On error no database is left. */
static int compile_all(compile_job_t *jobs, int njobs, int workers) {
    int order[MAX_COMPILE_JOBS];
    for (int i = 0; i < njobs; i++) order[i] = i;
    for (int i = 1; i < njobs; i++) /* insertion sort, stable: most patterns first */
        for (int k = i; k > 0 && jobs[order[k]].n > jobs[order[k - 1]].n; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    compile_pool_t pool = {.jobs = jobs, .njobs = njobs, .order = order, .failed = njobs};
    pthread_t threads[MAX_COMPILE_JOBS];
    int started = 0;
    if (workers > njobs) workers = njobs;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_init(&pool.lock, NULL);
    pthread_attr_t attr;
    int have_attr = pthread_attr_init(&attr) == 0;
    if (have_attr) pthread_attr_setstacksize(&attr, COMPILE_STACK);
    for (int t = 1; t < workers; t++) {
        if (pthread_create(&threads[started], have_attr ? &attr : NULL, compile_jobs, &pool) != 0)
            break;
        started++;
    }
    compile_jobs(&pool);
    for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
    if (have_attr) pthread_attr_destroy(&attr);
    pthread_mutex_destroy(&pool.lock);
    Py_END_ALLOW_THREADS
    int failed = -1;
    for (int j = 0; j < njobs && failed < 0; j++)
        if (!jobs[j].candidate && jobs[j].compiled && jobs[j].status != HS_SUCCESS) failed = j;
    if (failed >= 0) {
        compile_job_t *job = &jobs[failed];
        hs_compile_error_t *error = job->error;
        /* The expression index is that of the job's patterns, kept in pattern id order. */
        PyObject *exc = Py_BuildValue(
            "(si)", error ? error->message : "compile failed",
            error ? (int)job->ids[error->expression < 0 ? 0 : error->expression] : -1);
        if (exc != NULL) {
            PyErr_SetObject(CompileError, exc);
            Py_DECREF(exc);
        }
    }
    for (int j = 0; j < njobs; j++) {
        if (jobs[j].error != NULL) hs_free_compile_error(jobs[j].error);
        jobs[j].error = NULL;
        if (failed >= 0 && *jobs[j].database != NULL) {
            hs_free_database(*jobs[j].database);
            *jobs[j].database = NULL;
        }
    }
    return failed >= 0 ? -1 : 0;
}

/* The candidate form of `expression`, written to `out` (room for CANDIDATE_GROWTH times its
 * bytes, and a NUL): the escapes `\A` to `^`, `\z` and `\Z` to `$`, and no class matching
 * `\n`, outside `\Q...\E` quotes. Compiled with HS_FLAG_MULTILINE and without HS_FLAG_DOTALL or
 * HS_FLAG_SINGLEMATCH (`candidate_flags`), it reports, in results written one after another
 * with `\n` after each (none holding a `\n`), a match ending inside each result (or at its end)
 * that the pattern matches on its own: `^` and `$` match at the separators as at the ends of a
 * lone result, `.` matches what it matches in a result with no `\n`, `\b` and `\B` see a
 * non-word character at either end as before, and every match is reported, not only the first.
 *
 * A class matches in a result what it matched (a result holds no `\n`), but never a separator:
 * `\s`, `\W` and `\D` become `[^\S\n]`, `[^\w\n]` and `[^\d\n]` (as they are under
 * HS_FLAG_UCP too), a negated class gets `\n` among what it excludes, and a class drops a `\n`
 * it lists (unless it lists nothing else, or the `\n` ends a range). Otherwise a pattern that
 * starts with such a class (`[;&|\n]`, `\s*`, `[^`]`) starts a match at every separator, which
 * made the candidate scan of the managed ruleset's every pattern a sixth slower. */
#define CANDIDATE_GROWTH 4
static void candidate_expression(const char *expression, char *out) {
    const char *p = expression;
    char *o = out;
    int in_class = 0, negated = 0;
    char *class_items = NULL; /* where the open class's items start in `out` */
    while (*p) {
        if (p[0] == '\\' && p[1] == 'Q') { /* a quote: copied up to its \E, as written */
            const char *end = strstr(p + 2, "\\E");
            size_t n = end ? (size_t)(end + 2 - p) : strlen(p);
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        if (p[0] == '\\' && p[1]) {
            const char *widened = NULL; /* a class escape's form outside a class */
            if (!in_class) {
                switch (p[1]) {
                case 's': widened = "[^\\S\\n]"; break;
                case 'W': widened = "[^\\w\\n]"; break;
                case 'D': widened = "[^\\d\\n]"; break;
                default: break;
                }
            }
            if (!in_class && p[1] == 'A') *o++ = '^';
            else if (!in_class && (p[1] == 'z' || p[1] == 'Z')) *o++ = '$';
            else if (widened != NULL) {
                memcpy(o, widened, strlen(widened));
                o += strlen(widened);
            } else if (in_class && !negated && p[1] == 'n' && o > class_items && o[-1] != '-' &&
                       p[2] != '-') {
                /* a listed `\n`, not in a range, after another item: dropped */
            } else {
                *o++ = p[0];
                *o++ = p[1];
            }
            p += 2;
            continue;
        }
        if (in_class) {
            if (p[0] == '[' && p[1] == ':') { /* a POSIX class: copied up to its :] */
                const char *end = strstr(p + 2, ":]");
                size_t n = end ? (size_t)(end + 2 - p) : 1;
                memcpy(o, p, n);
                o += n;
                p += n;
                continue;
            }
            if (*p == ']') {
                in_class = 0;
                if (negated) {
                    *o++ = '\\';
                    *o++ = 'n';
                }
            }
            *o++ = *p++;
            continue;
        }
        if (*p == '[') {
            in_class = 1;
            *o++ = *p++;
            negated = *p == '^';
            if (negated) *o++ = *p++;
            class_items = o;
            if (*p == ']') *o++ = *p++; /* a `]` first in a class is itself */
            continue;
        }
        *o++ = *p++;
    }
    *o = '\0';
}

static unsigned int candidate_flags(unsigned int flags) {
    return (flags & ~(unsigned int)(HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL)) | HS_FLAG_MULTILINE;
}

/* The job of the exact database of the `n` patterns. */
static compile_job_t exact_job(const char *const *patterns, const unsigned int *flags,
                               const unsigned int *ids, unsigned int n,
                               hs_database_t **database) {
    *database = NULL;
    return (compile_job_t){.patterns = patterns, .flags = flags, .ids = ids, .n = n,
                           .database = database};
}

/* The job of the candidate database of the `n` patterns, its forms written; -1 on error (no
 * memory). A candidate database libhs refuses is left NULL, with no error. */
static int candidate_job(const char *const *patterns, const unsigned int *flags,
                         const unsigned int *ids, unsigned int n, hs_database_t **candidate,
                         compile_job_t *job) {
    *job = exact_job(patterns, flags, ids, n, candidate);
    job->candidate = 1;
    job->forms = PyMem_Calloc(n, sizeof(char *));
    job->cflags = PyMem_Calloc(n, sizeof(unsigned int));
    if (job->forms == NULL || job->cflags == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (unsigned int i = 0; i < n; i++) {
        if ((job->forms[i] = PyMem_Malloc(CANDIDATE_GROWTH * strlen(patterns[i]) + 1)) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        candidate_expression(patterns[i], job->forms[i]);
        job->cflags[i] = candidate_flags(flags[i]);
    }
    return 0;
}

/* Frees what a job owns: the candidate forms, and the pattern, flag and id arrays of a
 * subset's exact job (`owns_arrays`), which its candidate job shares. */
static void free_job(compile_job_t *job) {
    if (job->forms != NULL)
        for (unsigned int i = 0; i < job->n; i++) PyMem_Free(job->forms[i]);
    PyMem_Free(job->forms);
    PyMem_Free(job->cflags);
    if (job->owns_arrays) {
        PyMem_Free((void *)job->patterns);
        PyMem_Free((void *)job->flags);
        PyMem_Free((void *)job->ids);
    }
}

/* ValueScanner(expressions, flags, owners, targets, chains, chain_table, features, subsets)
 *   expressions: list[bytes]; flags, targets, chains: list[int]; owners: list[str];
 *   chain_table: list of (bit, targets, triggers, steps), steps a list of
 *   (prefix id, transform name, reference function, trigger features);
 *   features: the reference `features(value, wanted)`;
 *   subsets: list of (target mask, chain mask, every pattern id of those targets and chains,
 *   ascending), the first that holds what a scan needs is used;
 *   workers: how many threads at most compile the databases (see `compile_all`). */
static int ValueScanner_init(ValueScanner *self, PyObject *args, PyObject *kwargs) {
    PyObject *expressions, *flags, *owners, *targets, *chains, *table, *features, *subsets;
    static char *kwlist[] = {"expressions", "flags", "owners", "targets", "chains",
                             "chain_table", "features", "subsets", "workers", NULL};
    int workers = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!O!O!O!OO!|$i:ValueScanner", kwlist,
                                     &PyList_Type, &expressions, &PyList_Type, &flags,
                                     &PyList_Type, &owners, &PyList_Type, &targets, &PyList_Type,
                                     &chains, &PyList_Type, &table, &features, &PyList_Type,
                                     &subsets, &workers))
        return -1;
    if (workers < 1) {
        PyErr_Format(PyExc_ValueError, "workers must be at least 1, not %d", workers);
        return -1;
    }
    if (PyList_GET_SIZE(subsets) > MAX_SUBSETS) {
        PyErr_Format(PyExc_ValueError, "at most %d subsets", MAX_SUBSETS);
        return -1;
    }
    if (self->database != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ValueScanner is already initialised");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(expressions);
    if (n == 0 || PyList_GET_SIZE(flags) != n || PyList_GET_SIZE(owners) != n ||
        PyList_GET_SIZE(targets) != n || PyList_GET_SIZE(chains) != n) {
        PyErr_SetString(PyExc_ValueError,
                        "expressions, flags, owners, targets and chains must be non-empty lists "
                        "of one length");
        return -1;
    }
    if (PyList_GET_SIZE(table) > MAX_CHAINS) {
        PyErr_Format(PyExc_ValueError, "%zd transform chains: at most %d are supported",
                     PyList_GET_SIZE(table), MAX_CHAINS);
        return -1;
    }
    /* The databases, in the order a serial build compiles them: every pattern's, each
     * subset's and its candidate form, every pattern's candidate form. */
    compile_job_t jobs[MAX_COMPILE_JOBS];
    int njobs = 0;
    memset(jobs, 0, sizeof jobs);
    const char **patterns = PyMem_Calloc((size_t)n, sizeof(char *));
    unsigned int *pflags = PyMem_Calloc((size_t)n, sizeof(unsigned int));
    unsigned int *ids = PyMem_Calloc((size_t)n, sizeof(unsigned int));
    self->targets = PyMem_Calloc((size_t)n, sizeof(uint64_t));
    self->chains = PyMem_Calloc((size_t)n, sizeof(uint64_t));
    self->matched = PyMem_Calloc((size_t)n, sizeof(unsigned int));
    self->chain = PyMem_Calloc(MAX_CHAINS, sizeof(chain_t));
    int ok = 0;
    if (!patterns || !pflags || !ids || !self->targets || !self->chains || !self->matched ||
        !self->chain) {
        PyErr_NoMemory();
        goto done;
    }
    self->npatterns = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(expressions, i);
        if (!PyBytes_Check(e)) {
            PyErr_SetString(PyExc_TypeError, "expressions must be bytes");
            goto done;
        }
        patterns[i] = PyBytes_AS_STRING(e);
        pflags[i] = (unsigned int)PyLong_AsUnsignedLong(PyList_GET_ITEM(flags, i));
        ids[i] = (unsigned int)i;
        self->targets[i] = as_u64(PyList_GET_ITEM(targets, i));
        self->chains[i] = as_u64(PyList_GET_ITEM(chains, i));
        if (!PyUnicode_Check(PyList_GET_ITEM(owners, i))) {
            PyErr_SetString(PyExc_TypeError, "owners must be str");
            goto done;
        }
    }
    if (PyErr_Occurred()) goto done;
    self->owners = PyList_AsTuple(owners);
    self->references = PyList_New(0);
    if (self->owners == NULL || self->references == NULL) goto done;
    self->nchains = (int)PyList_GET_SIZE(table);
    int nprefixes = 0;
    for (int c = 0; c < self->nchains; c++) {
        PyObject *row = PyList_GET_ITEM(table, c), *steps;
        chain_t *chain = &self->chain[c];
        unsigned long long bit, ctargets;
        if (!PyArg_ParseTuple(row, "KKlO!", &bit, &ctargets, &chain->triggers, &PyList_Type,
                              &steps))
            goto done;
        chain->bit = bit;
        chain->targets = ctargets;
        if (PyList_GET_SIZE(steps) > MAX_STEPS) {
            PyErr_Format(PyExc_ValueError, "a transform chain of %zd steps: at most %d",
                         PyList_GET_SIZE(steps), MAX_STEPS);
            goto done;
        }
        chain->nsteps = (int)PyList_GET_SIZE(steps);
        long step_triggers = 0;
        for (int s = 0; s < chain->nsteps; s++) {
            step_t *step = &chain->steps[s];
            PyObject *name, *reference;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(steps, s), "iUOl", &step->prefix, &name,
                                  &reference, &step->triggers))
                goto done;
            if ((step->transform = transform_by_name(name)) < 0) goto done;
            if (!PyCallable_Check(reference)) {
                PyErr_SetString(PyExc_TypeError, "a step's reference transform is not callable");
                goto done;
            }
            if (PyList_Append(self->references, reference) < 0) goto done;
            step->reference = reference;
            if (step->prefix < 0) {
                PyErr_SetString(PyExc_ValueError, "negative prefix id");
                goto done;
            }
            if (step->prefix >= nprefixes) nprefixes = step->prefix + 1;
            step_triggers |= step->triggers;
        }
        /* A scan runs a triggered chain from its first step with a present trigger. */
        if (chain->triggers & ~step_triggers) {
            PyErr_SetString(PyExc_ValueError,
                            "a transform chain's triggers must be those of its steps");
            goto done;
        }
    }
    self->nprefixes = nprefixes;
    self->done = PyMem_Calloc((size_t)nprefixes + 1, sizeof(PyObject *));
    self->done_features = PyMem_Calloc((size_t)nprefixes + 1, sizeof(long));
    self->done_set = PyMem_Calloc((size_t)nprefixes + 1, sizeof(int));
    if (self->done == NULL || self->done_features == NULL || self->done_set == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    self->features = Py_NewRef(features);
    if ((self->empty = PyFrozenSet_New(NULL)) == NULL) goto done;
    jobs[njobs++] = exact_job(patterns, pflags, ids, (unsigned int)n, &self->database);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(subsets); i++) {
        unsigned long long mask, chain_mask;
        PyObject *members;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(subsets, i), "KKO!", &mask, &chain_mask,
                              &PyList_Type, &members))
            goto done;
        Py_ssize_t m = PyList_GET_SIZE(members);
        if (m == 0 || m > n) {
            PyErr_SetString(PyExc_ValueError, "a subset holds between 1 and every pattern");
            goto done;
        }
        const char **sub_patterns = PyMem_Calloc((size_t)m, sizeof(char *));
        unsigned int *sub_flags = PyMem_Calloc((size_t)m, sizeof(unsigned int));
        unsigned int *sub_ids = PyMem_Calloc((size_t)m, sizeof(unsigned int));
        subset_t *subset = &self->subsets[i];
        compile_job_t *exact = &jobs[njobs++];
        *exact = exact_job(sub_patterns, sub_flags, sub_ids, (unsigned int)m, &subset->database);
        exact->owns_arrays = 1;
        if (!sub_patterns || !sub_flags || !sub_ids) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t j = 0; j < m; j++) {
            Py_ssize_t id = PyLong_AsSsize_t(PyList_GET_ITEM(members, j));
            if (id < 0 || id >= n) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "a subset's pattern id is out of range");
                goto done;
            }
            if (!(self->targets[id] & mask) || !(self->chains[id] & chain_mask)) {
                PyErr_SetString(PyExc_ValueError,
                                "a subset holds a pattern of other targets or chains");
                goto done;
            }
            sub_patterns[j] = patterns[id];
            sub_flags[j] = pflags[id];
            sub_ids[j] = (unsigned int)id;
        }
        /* Every pattern of the subset's targets must be in it, or a hit would be lost. */
        Py_ssize_t expected = 0;
        for (Py_ssize_t id = 0; id < n; id++)
            if ((self->targets[id] & mask) && (self->chains[id] & chain_mask)) expected++;
        if (expected != m) {
            PyErr_SetString(PyExc_ValueError,
                            "a subset leaves out patterns of its targets and chains");
            goto done;
        }
        subset->targets = mask;
        subset->chains = chain_mask;
        subset->size = m;
        if (candidate_job(sub_patterns, sub_flags, sub_ids, (unsigned int)m, &subset->candidate,
                          &jobs[njobs++]) < 0)
            goto done;
    }
    if (candidate_job(patterns, pflags, ids, (unsigned int)n, &self->candidate,
                      &jobs[njobs++]) < 0)
        goto done;
    if (compile_all(jobs, njobs, workers) < 0) goto done;
    self->nsubsets = (int)PyList_GET_SIZE(subsets);
    /* One scratch serves every database: it grows to fit each. */
    for (int j = 0; j < njobs; j++) {
        hs_database_t *database = *jobs[j].database;
        if (database != NULL && hs_alloc_scratch(database, &self->scratch) != HS_SUCCESS) {
            PyErr_SetString(PyExc_MemoryError, "hs_alloc_scratch failed");
            goto done;
        }
    }
    ok = 1;
done:
    PyMem_Free(patterns);
    PyMem_Free(pflags);
    PyMem_Free(ids);
    for (int j = 0; j < njobs; j++) free_job(&jobs[j]);
    return ok ? 0 : -1;
}

typedef struct {
    PyObject *result;
    uint64_t chains;
} found_t;

typedef struct {
    int transform;
    PyObject *input;
    PyObject *output;
} applied_t;

/* A long value's chains often reach one transform with equal inputs by different prefixes:
 * above this many characters each transform runs once per distinct input. */
#define SHARED_TRANSFORM_MIN 1024

/* Features of what transform `transform` made of `in` (of features `before`), among `wanted`:
 * a superset, so that a step after it is skipped only when it would give its text back.
 * Lowercasing Latin-1 text turns letters into letters and adds no character or pair any
 * feature looks for; only a legacy reference without its `;` may appear (`&AMP` is one, `&Amp`
 * is not), so an `&` keeps the steps it triggers. After any other change every step runs. */
static long features_after(int transform, PyObject *in, long before, long wanted) {
    if (transform == T_LOWERCASE && PyUnicode_KIND(in) == PyUnicode_1BYTE_KIND) {
        int ampersand = memchr(PyUnicode_1BYTE_DATA(in), '&', (size_t)PyUnicode_GET_LENGTH(in)) !=
                        NULL;
        return before | (ampersand ? F_AMPERSAND & wanted : 0);
    }
    return wanted;
}

/* The distinct results of `value` as a value of `targets`, each with the chains that made it:
 * the value as written for the chains not triggered, and what each triggered chain makes of
 * it. `results` (room for MAX_CHAINS + 1) receives new references, `*nresults` their count
 * (also on error, when the caller releases them). -1 on error. */
static int value_results(ValueScanner *self, PyObject *value, uint64_t targets, found_t *results,
                         int *nresults) {
    *nresults = 0;
    long wanted = 0;
    for (int c = 0; c < self->nchains; c++)
        if (self->chain[c].targets & targets) wanted |= self->chain[c].triggers;
    long present = value_features(value, wanted, self->features);
    if (present == -1 && PyErr_Occurred()) return -1;
    uint64_t unchanged = 0;
    int triggered = 0;
    for (int c = 0; c < self->nchains; c++) {
        chain_t *chain = &self->chain[c];
        if (!(chain->targets & targets)) continue;
        if (chain->triggers & present) triggered = 1;
        else unchanged |= chain->bit;
    }
    int ndone = 0, err = -1; /* `done` holds no result between calls: each set is cleared */
    applied_t *applied = NULL;
    int napplied = 0;
    if (unchanged) results[(*nresults)++] = (found_t){Py_NewRef(value), unchanged};
    if (triggered) {
        if (PyUnicode_GET_LENGTH(value) > SHARED_TRANSFORM_MIN) {
            applied = PyMem_Calloc(MAX_CHAINS * MAX_STEPS, sizeof(applied_t));
            if (applied == NULL) {
                PyErr_NoMemory();
                goto error;
            }
        }
        for (int c = 0; c < self->nchains; c++) {
            chain_t *chain = &self->chain[c];
            if (!(chain->targets & targets) || !(chain->triggers & present)) continue;
            int first = 0;
            while (!(chain->steps[first].triggers & present)) first++;
            PyObject *current = Py_NewRef(value);
            long features = present; /* of `current`, among `wanted` */
            for (int s = first; s < chain->nsteps; s++) {
                step_t *step = &chain->steps[s];
                PyObject *known = self->done[step->prefix];
                if (known != NULL) {
                    Py_SETREF(current, Py_NewRef(known));
                    features = self->done_features[step->prefix];
                    continue;
                }
                /* none of its triggers in the text it is given: it would give it back */
                if (!(step->triggers & features)) continue;
                PyObject *next = NULL;
                if (applied != NULL) {
                    for (int a = 0; a < napplied; a++) {
                        if (applied[a].transform != step->transform) continue;
                        if (same_str(applied[a].input, current)) {
                            next = Py_NewRef(applied[a].output);
                            break;
                        }
                    }
                }
                if (next == NULL) {
                    next = apply_transform(step->transform, current, step->reference);
                    if (next == NULL) goto chain_error;
                    if (applied != NULL && napplied < MAX_CHAINS * MAX_STEPS) {
                        applied[napplied++] = (applied_t){step->transform, Py_NewRef(current),
                                                          Py_NewRef(next)};
                    }
                }
                if (next != current) features = features_after(step->transform, current, features,
                                                               wanted);
                Py_SETREF(current, next);
                self->done[step->prefix] = Py_NewRef(current);
                self->done_features[step->prefix] = features;
                self->done_set[ndone++] = step->prefix;
            }
            int r = 0;
            while (r < *nresults && !same_str(results[r].result, current)) r++;
            if (r == *nresults) {
                results[(*nresults)++] = (found_t){current, chain->bit};
            } else {
                results[r].chains |= chain->bit;
                Py_DECREF(current);
            }
            continue;
        chain_error:
            Py_DECREF(current);
            goto error;
        }
    }
    err = 0;
error:
    for (int d = 0; d < ndone; d++) Py_CLEAR(self->done[self->done_set[d]]);
    if (applied != NULL) {
        for (int a = 0; a < napplied; a++) {
            Py_DECREF(applied[a].input);
            Py_DECREF(applied[a].output);
        }
        PyMem_Free(applied);
    }
    return err;
}

/* Add the hits of `value` as a value of `targets` to the set `*hits` (created on the first hit)
 * and the characters of its results to `*chars`. -1 on error. */
static int scan_value_into(ValueScanner *self, PyObject *value, uint64_t targets,
                           PyObject **hits, Py_ssize_t *chars) {
    found_t results[MAX_CHAINS + 1];
    int nresults, err = value_results(self, value, targets, results, &nresults);
    for (int r = 0; r < nresults; r++) {
        *chars += PyUnicode_GET_LENGTH(results[r].result);
        if (err == 0) err = scan_result(self, results[r].result, targets, results[r].chains, hits);
        Py_DECREF(results[r].result);
    }
    return err;
}

/* The hits gathered in `hits` (a set, or NULL for none) as a new frozenset. */
static PyObject *frozen_hits(ValueScanner *self, PyObject *hits) {
    return hits == NULL ? Py_NewRef(self->empty) : PyFrozenSet_New(hits);
}

static PyObject *scan_value_impl(ValueScanner *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan_value(value: str, targets: int)");
        return NULL;
    }
    uint64_t targets = as_u64(args[1]);
    if (targets == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    PyObject *hits = NULL, *out = NULL;
    Py_ssize_t chars = 0;
    if (scan_value_into(self, args[0], targets, &hits, &chars) == 0) {
        PyObject *frozen = frozen_hits(self, hits);
        if (frozen != NULL) out = Py_BuildValue("(Nn)", frozen, chars);
    }
    Py_XDECREF(hits);
    return out;
}

static PyObject *nfkc_normalize; /* unicodedata.normalize */
static PyObject *NFKC;

int fresh_value(ValueScanner *self, PyObject *value, long long targets, known_t *out) {
    PyObject *hits = NULL;
    Py_ssize_t chars = 0;
    int err = scan_value_into(self, value, (uint64_t)targets, &hits, &chars);
    if (err == 0 && !PyUnicode_IS_ASCII(value)) {
        PyObject *folded = fs_nfkc(value, nfkc_normalize, NFKC);
        if (folded == NULL) {
            err = -1;
        } else {
            if (!same_str(folded, value))
                err = scan_value_into(self, folded, (uint64_t)targets, &hits, &chars);
            Py_DECREF(folded);
        }
    }
    if (err == 0) {
        *out = (known_t){frozen_hits(self, hits), 1, chars};
        if (out->hits == NULL) err = -1;
    }
    Py_XDECREF(hits);
    return err;
}

/* ---- fresh values scanned together ------------------------------------------------- */

/* One result in a batch: its UTF-8 at `start` in its group's buffer, `size` bytes followed by
 * `\n`, the targets of its value and the chains that made it, its value's index, and whether
 * the candidate scan found a pattern of those targets and chains ending in it. */
struct batch_result {
    Py_ssize_t start, size;
    uint64_t targets, chains;
    Py_ssize_t value;
    int flagged;
};

/* The results one database would scan on their own (a subset's, or the one of every pattern),
 * scanned together with its candidate form. */
struct batch_group {
    char *buffer;
    Py_ssize_t length, capacity;
    struct batch_result *results;
    Py_ssize_t count, capacity_results;
};

/* A result longer than this is scanned on its own: a long result costs its bytes more than one
 * call, and is likelier to be flagged, so scanned twice. */
#define BATCH_LONG_RESULT 512
/* With fewer results than this, a candidate scan costs about what it saves. */
#define BATCH_MIN_RESULTS 8
/* The most bytes one candidate scan reads; past it, results are scanned on their own. */
#define BATCH_MAX_BUFFER ((Py_ssize_t)1 << 30)
/* A candidate scan stops after this many matches per byte of its buffer (plus
 * BATCH_MATCHES_MIN): a pattern that matches nearly everywhere is cheaper to verify result by
 * result than to report at every byte. Every result of the scan is then scanned on its own. */
#define BATCH_MATCHES_PER_BYTE 1
#define BATCH_MATCHES_MIN 4096

/* Add one result of value `index` to the group of the database that would scan it, or scan it
 * now when it does not go in one. */
static int batch_push(ValueScanner *self, scan_batch_t *b, PyObject *result, uint64_t targets,
                      uint64_t chains, Py_ssize_t index) {
    const char *data;
    Py_ssize_t size;
    if (PyUnicode_IS_ASCII(result)) {
        data = (const char *)PyUnicode_1BYTE_DATA(result);
        size = PyUnicode_GET_LENGTH(result);
    } else {
        size = utf8_encode(&self->utf8, result);
        if (size < 0) return -1;
        data = self->utf8.data;
    }
    if (size == 0) return 0;
    int subset = subset_for(self, targets, chains);
    hs_database_t *candidate = subset < 0 ? self->candidate : self->subsets[subset].candidate;
    int at = subset < 0 ? self->nsubsets : subset;
    if (candidate == NULL || size > BATCH_LONG_RESULT ||
        memchr(data, '\n', (size_t)size) != NULL ||
        (b->groups != NULL && b->groups[at].length + size + 1 > BATCH_MAX_BUFFER))
        return scan_bytes(self, data, size, targets, chains, &b->hits[index]);
    if (b->groups == NULL &&
        (b->groups = PyMem_Calloc(MAX_SUBSETS + 1, sizeof(struct batch_group))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    struct batch_group *g = &b->groups[at];
    if (array_reserve((void **)&g->buffer, &g->capacity, g->length + size + 1, 1) < 0 ||
        array_reserve((void **)&g->results, &g->capacity_results, g->count + 1,
                   sizeof(struct batch_result)) < 0)
        return -1;
    memcpy(g->buffer + g->length, data, (size_t)size);
    g->buffer[g->length + size] = '\n';
    g->results[g->count++] = (struct batch_result){g->length, size, targets, chains, index, 0};
    g->length += size + 1;
    return 0;
}

/* Add the results of `value` as a value of value `index` of `targets`; `*chars` grows by
 * their characters. */
static int batch_push_value(ValueScanner *self, scan_batch_t *b, PyObject *value,
                            uint64_t targets, Py_ssize_t index, Py_ssize_t *chars) {
    found_t results[MAX_CHAINS + 1];
    int nresults, err = value_results(self, value, targets, results, &nresults);
    for (int r = 0; r < nresults; r++) {
        *chars += PyUnicode_GET_LENGTH(results[r].result);
        if (err == 0) err = batch_push(self, b, results[r].result, targets, results[r].chains,
                                       index);
        Py_DECREF(results[r].result);
    }
    return err;
}

Py_ssize_t batch_add(ValueScanner *self, scan_batch_t *b, PyObject *value, long long targets,
                     Py_ssize_t *chars) {
    if (array_reserve((void **)&b->hits, &b->hits_capacity, b->nvalues + 1, sizeof(PyObject *)) <
        0)
        return -1;
    Py_ssize_t index = b->nvalues++;
    b->hits[index] = NULL;
    *chars = 0;
    if (batch_push_value(self, b, value, (uint64_t)targets, index, chars) < 0) return -1;
    if (PyUnicode_IS_ASCII(value)) return index;
    /* as `fresh_value`: the NFKC form too, when it differs */
    PyObject *folded = fs_nfkc(value, nfkc_normalize, NFKC);
    if (folded == NULL) return -1;
    int err = same_str(folded, value)
                  ? 0
                  : batch_push_value(self, b, folded, (uint64_t)targets, index, chars);
    Py_DECREF(folded);
    return err < 0 ? -1 : index;
}

typedef struct {
    ValueScanner *self;
    struct batch_result *results;
    Py_ssize_t count, cursor;
    unsigned long long matches, most;
} candidate_scan_t;

static int on_candidate(unsigned int id, unsigned long long from, unsigned long long to,
                        unsigned int flags, void *context) {
    candidate_scan_t *c = context;
    (void)from;
    (void)flags;
    if (++c->matches > c->most) return 1;
    /* The result whose span [start, start + size] holds `to`: the last one starting at or
     * before it (matches come mostly in order, so the last one found is tried first). */
    Py_ssize_t at = c->cursor;
    if (!((unsigned long long)c->results[at].start <= to &&
          (at + 1 == c->count || to < (unsigned long long)c->results[at + 1].start))) {
        Py_ssize_t lo = 0, hi = c->count - 1;
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo + 1) / 2;
            if ((unsigned long long)c->results[mid].start <= to) lo = mid;
            else hi = mid - 1;
        }
        at = c->cursor = lo;
    }
    struct batch_result *r = &c->results[at];
    if (r->flagged || to > (unsigned long long)(r->start + r->size)) return 0;
    if ((c->self->targets[id] & r->targets) && (c->self->chains[id] & r->chains)) r->flagged = 1;
    return 0;
}

/* Scan group `at` of `b`: with its candidate database, then each result flagged (every one
 * when there are few, or when the candidate scan passed its bound) exactly. */
static int batch_scan_group(ValueScanner *self, scan_batch_t *b, int at) {
    struct batch_group *g = &b->groups[at];
    int every = g->count < BATCH_MIN_RESULTS;
    if (!every) {
        hs_database_t *candidate =
            at == self->nsubsets ? self->candidate : self->subsets[at].candidate;
        candidate_scan_t c = {self, g->results, g->count, 0, 0,
                              (unsigned long long)g->length * BATCH_MATCHES_PER_BYTE +
                                  BATCH_MATCHES_MIN};
        hs_error_t err = hs_scan(candidate, g->buffer, (unsigned int)g->length, 0,
                                 self->scratch, on_candidate, &c);
        if (err == HS_SCAN_TERMINATED) {
            every = 1;
        } else if (err != HS_SUCCESS) {
            PyErr_Format(PyExc_RuntimeError, "hs_scan failed with error %d", (int)err);
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < g->count; i++) {
        struct batch_result *r = &g->results[i];
        if ((every || r->flagged) && scan_bytes(self, g->buffer + r->start, r->size, r->targets,
                                                r->chains, &b->hits[r->value]) < 0)
            return -1;
    }
    g->count = 0;
    g->length = 0;
    return 0;
}

int batch_scan(ValueScanner *self, scan_batch_t *b) {
    if (b->groups == NULL) return 0;
    for (int at = 0; at <= self->nsubsets; at++)
        if (b->groups[at].count && batch_scan_group(self, b, at) < 0) return -1;
    return 0;
}

PyObject *batch_hits(ValueScanner *self, scan_batch_t *b, Py_ssize_t index) {
    if (b->hits[index] == NULL) return Py_NewRef(self->empty);
    return PyFrozenSet_New(b->hits[index]);
}

void batch_free(scan_batch_t *b) {
    for (Py_ssize_t i = 0; i < b->nvalues; i++) Py_XDECREF(b->hits[i]);
    PyMem_Free(b->hits);
    if (b->groups != NULL) {
        for (int at = 0; at <= MAX_SUBSETS; at++) {
            PyMem_Free(b->groups[at].buffer);
            PyMem_Free(b->groups[at].results);
        }
    }
    PyMem_Free(b->groups);
    *b = (scan_batch_t){0};
}

/* scan_sources(sources, memo, room_values, room_chars) -> (hits, values, chars, stop)
 * Each (value, targets) of `sources` in order: its hits, values and characters remembered in
 * `memo` (a `Memo`), or scanned as a fresh value (the fresh values together, `scan_walk_t`). Stops before the first value whose work does
 * not fit the room left; `stop` says which limit it would pass (a `stop_t`: none, values,
 * characters). The short fresh values are remembered after the walk, not during it: a body
 * with more distinct values than the memo holds then finds the values remembered from the
 * last time (a memo filled as it is read would push out each value just before it is read). */
static PyObject *scan_sources_impl(ValueScanner *self, PyObject *const *args,
                                   Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_Check(args[0]) || !PyObject_TypeCheck(args[1], &MemoType)) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_sources(sources: dict, memo: Memo, room_values, room_chars)");
        return NULL;
    }
    PyObject *sources = args[0];
    Memo *memo = (Memo *)args[1];
    Py_ssize_t room_values = PyLong_AsSsize_t(args[2]), room_chars = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) return NULL;
    PyObject *hits = PySet_New(NULL), *out = NULL;
    if (hits == NULL) return NULL;
    work_t w = {hits, room_values, room_chars, 0, 0, STOP_NONE};
    scan_walk_t walk = {.room_values = room_values, .room_chars = room_chars};
    Py_ssize_t position = 0;
    PyObject *value, *targets;
    int more = 1;
    while (more == 1 && PyDict_Next(sources, &position, &value, &targets)) {
        if (!PyUnicode_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "sources must map str to int");
            goto done;
        }
        if (PyUnicode_GET_LENGTH(value) == 0) continue;
        long long bits = PyLong_AsLongLong(targets);
        if (bits == -1 && PyErr_Occurred()) goto done;
        if (bits <= 0) {
            PyErr_SetString(PyExc_ValueError, "sources: each target mask must be above 0");
            goto done;
        }
        memo_text_t text = memo_text_of(value);
        memo_entry *e = memo_find_text(memo, text, bits);
        if (e != NULL) {
            known_t found = {Py_NewRef(e->hits), e->values, e->chars};
            more = walk_known(&walk, &found);
        } else {
            more = walk_fresh(self, &walk, value, text.hash, bits);
        }
        if (more < 0) goto done;
    }
    if (walk_finish(self, &walk, memo, &w) < 0) goto done;
    out = Py_BuildValue("(Onni)", hits, w.values, w.chars, (int)w.stop);
done:
    walk_free(&walk);
    Py_DECREF(hits);
    return out;
}

/* The scratch space, the matched ids and `done` belong to the scan under way: a second scan
 * entering meanwhile (another thread, while a Python transform runs) is refused. */
static int enter(ValueScanner *self) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a ValueScanner scans one thing at a time: give each thread its own");
        return -1;
    }
    self->busy = 1;
    return 0;
}

static PyObject *ValueScanner_scan_value(ValueScanner *self, PyObject *const *args,
                                         Py_ssize_t nargs) {
    if (enter(self) < 0) return NULL;
    PyObject *out = scan_value_impl(self, args, nargs);
    self->busy = 0;
    return out;
}

static PyObject *ValueScanner_scan_sources(ValueScanner *self, PyObject *const *args,
                                           Py_ssize_t nargs) {
    if (enter(self) < 0) return NULL;
    PyObject *out = scan_sources_impl(self, args, nargs);
    self->busy = 0;
    return out;
}

static PyObject *ValueScanner_scan_head(ValueScanner *self, PyObject *const *args,
                                        Py_ssize_t nargs) {
    if (enter(self) < 0) return NULL;
    PyObject *out = scan_head_impl(self, args, nargs);
    self->busy = 0;
    return out;
}

static PyObject *ValueScanner_scan_json(ValueScanner *self, PyObject *const *args,
                                        Py_ssize_t nargs) {
    if (enter(self) < 0) return NULL;
    PyObject *out = scan_json_impl(self, args, nargs);
    self->busy = 0;
    return out;
}

static PyObject *ValueScanner_scan(ValueScanner *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "scan(result: str, targets: int, chains: int)");
        return NULL;
    }
    uint64_t targets = as_u64(args[1]), chains = as_u64(args[2]);
    if (PyErr_Occurred()) return NULL;
    PyObject *hits = NULL;
    if (enter(self) < 0) return NULL;
    int err = scan_result(self, args[0], targets, chains, &hits);
    self->busy = 0;
    if (err < 0) {
        Py_XDECREF(hits);
        return NULL;
    }
    if (hits == NULL) return Py_NewRef(self->empty);
    PyObject *frozen = PyFrozenSet_New(hits);
    Py_DECREF(hits);
    return frozen;
}

static PyMethodDef ValueScanner_methods[] = {
    {"scan_value", (PyCFunction)(void (*)(void))ValueScanner_scan_value, METH_FASTCALL,
     "scan_value(value, targets) -> (hits, chars): the keys hit by `value` as a value of "
     "`targets`, and the characters scanned."},
    {"scan_sources", (PyCFunction)(void (*)(void))ValueScanner_scan_sources, METH_FASTCALL,
     "scan_sources(sources, memo, room_values, room_chars) -> (hits, values, chars, stop): the "
     "values of `sources` in order, remembered in `memo` or scanned (and remembered), within "
     "the room left; `stop` is 0, or 1 or 2 when the values or characters limit stopped it."},
    {"scan_head", (PyCFunction)(void (*)(void))ValueScanner_scan_head, METH_FASTCALL,
     "scan_head(hits, memo, mask, method, path, query, headers, room_values, room_chars) -> "
     "(values, chars, stop): add the hits of the head targets in `mask` to `hits`, its parts "
     "remembered in `memo` or scanned (and remembered), within the room left."},
    {"scan_json", (PyCFunction)(void (*)(void))ValueScanner_scan_json, METH_FASTCALL,
     "scan_json(hits, memo, body, text, text_bits, names_bit, values_bit, max_values, "
     "max_depth, max_name_chars, room_values, room_chars) -> (status, values, chars, stop): "
     "walk a JSON body (as json_fields) and add the hits of `text` and its fields' names and "
     "values to `hits` as scan_sources would, within the room left; nothing is scanned when "
     "status is 4 (not JSON) or 5 (left to json.loads)."},
    {"scan", (PyCFunction)(void (*)(void))ValueScanner_scan, METH_FASTCALL,
     "scan(result, targets, chains) -> hits: the keys of the patterns of `targets` and `chains` "
     "matching `result` as it is."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ValueScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "failsmall.engine._native.ValueScanner",
    .tp_basicsize = sizeof(ValueScanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Signature patterns compiled with libhs, with the transform chains of their "
              "matches: scans values the way the reference value scanner does.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ValueScanner_init,
    .tp_dealloc = (destructor)ValueScanner_dealloc,
    .tp_methods = ValueScanner_methods,
};

/* ---- module functions (the same code the scanner runs, for tests) ---------------------- */

static PyObject *native_features(PyObject *module, PyObject *args) {
    PyObject *value, *reference;
    long wanted;
    if (!PyArg_ParseTuple(args, "UlO:features", &value, &wanted, &reference)) return NULL;
    long found = value_features(value, wanted, reference);
    if (found == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(found);
}

static PyObject *native_transform(PyObject *module, PyObject *args) {
    PyObject *name, *value, *reference;
    if (!PyArg_ParseTuple(args, "UUO:transform", &name, &value, &reference)) return NULL;
    int id = transform_by_name(name);
    if (id < 0) return NULL;
    return apply_transform(id, value, reference);
}

static PyObject *native_utf8_replace(PyObject *module, PyObject *data) {
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "utf8_replace(data: bytes)");
        return NULL;
    }
    return fs_utf8_replace(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
}

static PyObject *native_nfkc(PyObject *module, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "nfkc(text: str)");
        return NULL;
    }
    return fs_nfkc(text, nfkc_normalize, NFKC);
}

static PyObject *native_utf8(PyObject *module, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "utf8(text: str)");
        return NULL;
    }
    utf8_buffer_t b = {NULL, 0};
    Py_ssize_t size = utf8_encode(&b, text);
    PyObject *out = size < 0 ? NULL : PyBytes_FromStringAndSize(b.data ? b.data : "", size);
    PyMem_Free(b.data);
    return out;
}

/* ---- JSON documents to fields ----------------------------------------------------- */

typedef enum {
    FLAT_OK = 0,
    FLAT_TOO_MANY = 1,
    FLAT_TOO_DEEP = 2,
    FLAT_TOO_LONG = 3,
    FLAT_ERROR = -1
} flat_status;

typedef struct {
    PyObject *out;    /* list of (path, value) */
    Py_ssize_t max_values;
    int max_depth;
    Py_ssize_t max_name_chars, name_chars; /* the paths' characters, in all */
    PyObject *dumps;  /* json.dumps, for a scalar of a type json.loads does not make */
    PyObject *dot;
    PyObject *empty;
} flat_t;

static PyObject *json_scalar(flat_t *f, PyObject *value) {
    if (PyUnicode_Check(value)) return Py_NewRef(value);
    if (value == Py_True) return PyUnicode_FromString("true");
    if (value == Py_False) return PyUnicode_FromString("false");
    if (value == Py_None) return PyUnicode_FromString("null");
    if (PyLong_CheckExact(value)) return PyLong_Type.tp_repr(value);
    if (PyFloat_CheckExact(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        if (d != d) return PyUnicode_FromString("NaN");
        if (d == Py_HUGE_VAL) return PyUnicode_FromString("Infinity");
        if (d == -Py_HUGE_VAL) return PyUnicode_FromString("-Infinity");
        return PyFloat_Type.tp_repr(value);
    }
    return PyObject_CallOneArg(f->dumps, value);
}

static flat_status flat_append(flat_t *f, PyObject *path, PyObject *value) {
    if (PyList_GET_SIZE(f->out) >= f->max_values) return FLAT_TOO_MANY;
    if (f->name_chars + PyUnicode_GET_LENGTH(path) > f->max_name_chars) return FLAT_TOO_LONG;
    f->name_chars += PyUnicode_GET_LENGTH(path);
    PyObject *pair = PyTuple_Pack(2, path, value);
    if (pair == NULL) return FLAT_ERROR;
    int err = PyList_Append(f->out, pair);
    Py_DECREF(pair);
    return err < 0 ? FLAT_ERROR : FLAT_OK;
}

static flat_status flatten(flat_t *f, PyObject *node, PyObject *path, int depth);

static flat_status flatten_child(flat_t *f, int in_dict, PyObject *path, PyObject *key,
                                 PyObject *value, int depth) {
    PyObject *child;
    if (PyUnicode_GET_LENGTH(path)) {
        PyObject *head = PyUnicode_Concat(path, f->dot);
        if (head == NULL) return FLAT_ERROR;
        PyObject *text = PyObject_Str(key);
        if (text == NULL) {
            Py_DECREF(head);
            return FLAT_ERROR;
        }
        child = PyUnicode_Concat(head, text);
        Py_DECREF(head);
        Py_DECREF(text);
    } else {
        child = PyObject_Str(key);
    }
    if (child == NULL) return FLAT_ERROR;
    flat_status status;
    if (PyDict_Check(value) || PyList_Check(value)) {
        status = in_dict ? flat_append(f, child, f->empty) : FLAT_OK;
        /* Each level is a C stack frame: a document nested deeper than Python allows (built
         * in Python, or with a large max_depth) raises RecursionError, as the reference does,
         * rather than overflowing the stack. */
        if (status == FLAT_OK) {
            if (Py_EnterRecursiveCall(" while flattening a JSON document")) {
                status = FLAT_ERROR;
            } else {
                status = flatten(f, value, child, depth + 1);
                Py_LeaveRecursiveCall();
            }
        }
    } else {
        PyObject *scalar = json_scalar(f, value);
        if (scalar == NULL) {
            status = FLAT_ERROR;
        } else {
            if (!PyUnicode_Check(scalar)) {
                PyErr_SetString(PyExc_TypeError, "json.dumps returned something else than str");
                status = FLAT_ERROR;
            } else {
                status = flat_append(f, child, scalar);
            }
            Py_DECREF(scalar);
        }
    }
    Py_DECREF(child);
    return status;
}

static flat_status flatten(flat_t *f, PyObject *node, PyObject *path, int depth) {
    if (PyDict_Check(node)) {
        if (depth >= f->max_depth) return FLAT_TOO_DEEP;
        PyObject *key, *value;
        Py_ssize_t position = 0;
        while (PyDict_Next(node, &position, &key, &value)) {
            Py_INCREF(key);
            Py_INCREF(value);
            flat_status status = flatten_child(f, 1, path, key, value, depth);
            Py_DECREF(key);
            Py_DECREF(value);
            if (status != FLAT_OK) return status;
        }
        return FLAT_OK;
    }
    if (PyList_Check(node)) {
        if (depth >= f->max_depth) return FLAT_TOO_DEEP;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(node); i++) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL) return FLAT_ERROR;
            PyObject *value = Py_NewRef(PyList_GET_ITEM(node, i));
            flat_status status = flatten_child(f, 0, path, index, value, depth);
            Py_DECREF(index);
            Py_DECREF(value);
            if (status != FLAT_OK) return status;
        }
        return FLAT_OK;
    }
    PyObject *scalar = json_scalar(f, node);
    if (scalar == NULL) return FLAT_ERROR;
    flat_status status = flat_append(f, path, scalar);
    Py_DECREF(scalar);
    return status;
}

static PyObject *native_flatten_json(PyObject *module, PyObject *args) {
    PyObject *document, *dumps;
    Py_ssize_t max_values, max_name_chars;
    int max_depth;
    if (!PyArg_ParseTuple(args, "OninO:flatten_json", &document, &max_values, &max_depth,
                          &max_name_chars, &dumps))
        return NULL;
    flat_t f = {PyList_New(0),
                max_values,
                max_depth,
                max_name_chars,
                0,
                dumps,
                PyUnicode_FromString("."),
                PyUnicode_FromString("")};
    PyObject *result = NULL;
    if (f.out != NULL && f.dot != NULL && f.empty != NULL) {
        flat_status status = flatten(&f, document, f.empty, 0);
        if (status != FLAT_ERROR) result = Py_BuildValue("(Oi)", f.out, (int)status);
    }
    Py_XDECREF(f.out);
    Py_XDECREF(f.dot);
    Py_XDECREF(f.empty);
    return result;
}

/* add_fields(sources, fields, names, values): for each (name, value) of `fields` in order,
 * `sources[name] |= names` and `sources[value] |= values` (a new key starts at 0). */
static PyObject *native_add_fields(PyObject *module, PyObject *args) {
    PyObject *sources, *fields, *names, *values;
    if (!PyArg_ParseTuple(args, "O!OO!O!:add_fields", &PyDict_Type, &sources, &fields,
                          &PyLong_Type, &names, &PyLong_Type, &values))
        return NULL;
    PyObject *sequence = PySequence_Fast(fields, "fields must be a sequence of pairs");
    if (sequence == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i];
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "fields must be a sequence of (name, value) pairs");
            goto error;
        }
        for (int side = 0; side < 2; side++) {
            /* One lookup for a new key (most names are), a second only to widen a mask. */
            PyObject *key = PyTuple_GET_ITEM(pair, side), *bit = side ? values : names;
            PyObject *old = PyDict_SetDefault(sources, key, bit); /* borrowed */
            if (old == NULL) goto error;
            if (old == bit) continue;
            PyObject *mask = PyNumber_Or(old, bit);
            if (mask == NULL) goto error;
            int err = PyObject_RichCompareBool(mask, old, Py_EQ);
            if (err == 0) err = PyDict_SetItem(sources, key, mask);
            Py_DECREF(mask);
            if (err < 0) goto error;
        }
    }
    Py_DECREF(sequence);
    Py_RETURN_NONE;
error:
    Py_DECREF(sequence);
    return NULL;
}

/* tuple_of(cls, *items): an instance of `cls`, a subclass of tuple (a NamedTuple), holding
   `items`, made in one allocation. `tuple.__new__(cls, items)` makes a tuple of the items
   first, then copies it into the instance. */
static PyObject *tuple_of(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || !PyType_Check(args[0]) ||
        !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "tuple_of(cls, *items): cls must be a subclass of tuple");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    PyObject *made = type->tp_alloc(type, nargs - 1);
    if (made == NULL) return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(made, i - 1, args[i]);
    }
    return made;
}

/* text_hash(text) -> int: the memo's hash of a str (`memo_text_hash`). */
static PyObject *native_text_hash(PyObject *Py_UNUSED(module), PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "text_hash(text: str), not %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    return PyLong_FromSsize_t(memo_text_of(text).hash);
}

static PyMethodDef native_methods[] = {
    {"index_headers", index_headers, METH_O,
     "index_headers(headers) -> (by_name, names): each header's values by its lowercase name, "
     "in order, and the lowercase names in the order received."},
    {"has_header", (PyCFunction)(void (*)(void))has_header, METH_FASTCALL,
     "has_header(headers, name) -> bool: whether a header's lowercase name is `name` "
     "(`name in index_headers(headers)[0]`), without indexing them."},
    {"tuple_of", (PyCFunction)(void (*)(void))tuple_of, METH_FASTCALL,
     "tuple_of(cls, *items) -> cls: an instance of `cls`, a subclass of tuple, holding `items`, "
     "made in one allocation."},
    {"features", native_features, METH_VARARGS,
     "features(value, wanted, reference) -> int: the trigger features of `value` among "
     "`wanted`, asking `reference` where C does not decide."},
    {"add_fields", native_add_fields, METH_VARARGS,
     "add_fields(sources, fields, names, values): or each field's name and value into "
     "`sources` with the bit of names or of values, in order."},
    {"flatten_json", native_flatten_json, METH_VARARGS,
     "flatten_json(document, max_values, max_depth, max_name_chars, dumps) -> (fields, status): "
     "the leaves of a parsed JSON document (and each object key, with an empty value) as dotted "
     "paths, depth first in document order; status 0, or 1 past max_values, 2 past max_depth, "
     "3 past max_name_chars characters of paths in all."},
    {"nfkc", native_nfkc, METH_O,
     "nfkc(text) -> str: unicodedata.normalize('NFKC', text), as the scanner computes it."},
    {"utf8", native_utf8, METH_O,
     "utf8(text) -> bytes: `text` encoded as the scanner hands it to libhs, "
     "text.encode('utf-8', 'replace')."},
    {"utf8_replace", native_utf8_replace, METH_O,
     "utf8_replace(data) -> str: data.decode('utf-8', 'replace'), as the decoding transforms "
     "compute it."},
    {"text_hash", native_text_hash, METH_O,
     "text_hash(text) -> int: the memo's hash of `text` (0 or more), keyed by MEMO_TEXT_KEY; "
     "`signatures.reference.text_hash` in Python."},
    {"transform", native_transform, METH_VARARGS,
     "transform(name, value, reference) -> str: the transform `name` of `value`, calling "
     "`reference` where C does not decide."},
    {NULL, NULL, 0, NULL},
};

/* json_fields, in _jsonwalk.c */
extern PyMethodDef jsonwalk_methods[];
/* cache_headers, in _cache_headers.c */
extern PyMethodDef cache_headers_methods[];
int cache_headers_init(void);

/* `MEMO_TEXT_KEY`: the memo's text hash key, for `signatures.reference.text_hash`. */
static int add_text_key(PyObject *module) {
    PyObject *key = Py_BuildValue("(KK)", (unsigned long long)memo_text_key[0],
                                  (unsigned long long)memo_text_key[1]);
    if (key == NULL) return -1;
    int out = PyModule_AddObjectRef(module, "MEMO_TEXT_KEY", key);
    Py_DECREF(key);
    return out;
}

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "_native",
    "The WAF's per-value work in C (JSON fields, libhs scans, features, transforms).", -1,
    native_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&ValueScannerType) < 0 || PyType_Ready(&MemoType) < 0)
        return NULL;
    profile_tables();
    utf8_tables();
    fs_nfkc_tables();
    if (latin1_tables() < 0 || feature_tables() < 0 || fs_lowercase_tables() < 0 ||
        memo_key_init() < 0)
        return NULL;
    cmd_line_table();
    PyObject *unicodedata = PyImport_ImportModule("unicodedata");
    if (unicodedata == NULL) return NULL;
    nfkc_normalize = PyObject_GetAttrString(unicodedata, "normalize");
    Py_DECREF(unicodedata);
    if (nfkc_normalize == NULL || (NFKC = PyUnicode_InternFromString("NFKC")) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) return NULL;
    if (cache_headers_init() < 0 || PyModule_AddFunctions(module, jsonwalk_methods) < 0 ||
        PyModule_AddFunctions(module, cache_headers_methods) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    CompileError = PyErr_NewException("failsmall.engine._native.CompileError",
                                      PyExc_ValueError, NULL);
    if (CompileError == NULL || PyModule_AddObjectRef(module, "CompileError", CompileError) < 0 ||
        PyModule_AddObjectRef(module, "ValueScanner", (PyObject *)&ValueScannerType) < 0 ||
        PyModule_AddObjectRef(module, "Memo", (PyObject *)&MemoType) < 0 || head_init(module) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_ARG_PART", MEMO_ARG_PART) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_COOKIE_PART", MEMO_COOKIE_PART) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_HEADER", MEMO_HEADER) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_BODY", MEMO_BODY) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_MAX_VALUE", MEMO_MAX_VALUE) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_ENTRY_OVERHEAD", MEMO_ENTRY_OVERHEAD) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_BYTES_PER_SIGHTING", MEMO_BYTES_PER_SIGHTING) < 0 ||
        PyModule_AddIntConstant(module, "MEMO_MIN_SIGHTINGS", MEMO_MIN_SIGHTINGS) < 0 ||
        add_text_key(module) < 0 ||
        PyModule_AddStringConstant(module, "HS_VERSION", hs_version()) < 0 ||
        PyModule_AddIntConstant(module, "HS_FLAG_CASELESS", HS_FLAG_CASELESS) < 0 ||
        PyModule_AddIntConstant(module, "HS_FLAG_DOTALL", HS_FLAG_DOTALL) < 0 ||
        PyModule_AddIntConstant(module, "HS_FLAG_SINGLEMATCH", HS_FLAG_SINGLEMATCH) < 0 ||
        PyModule_AddIntConstant(module, "HS_FLAG_UTF8", HS_FLAG_UTF8) < 0 ||
        PyModule_AddIntConstant(module, "HS_FLAG_UCP", HS_FLAG_UCP) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
