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

/* Writing one character without a branch on its length (a binary body's text mixes ASCII and
 * Latin-1, or ASCII and replacement characters, at random, which defeats branch prediction):
 * its bytes are looked up as one word, first byte lowest, which is stored whole (the buffer has
 * room for a whole word after every character's bytes), and its length read from the word. */
static inline void utf8_store(unsigned char *o, uint32_t word) {
#if PY_LITTLE_ENDIAN
    memcpy(o, &word, 4);
#else
    for (size_t j = 0; j < 4; j++) o[j] = (unsigned char)(word >> (8 * j));
#endif
}

static inline int utf8_is_surrogate(Py_UCS4 c) { return (c - 0xD800u) < 0x800u; }

static inline uint32_t utf8_two(Py_UCS4 c) {
    return (0xC0u | (c >> 6)) | (0x80u | (c & 0x3Fu)) << 8;
}

static inline uint32_t utf8_three(Py_UCS4 c) {
    return (0xE0u | (c >> 12)) | (0x80u | ((c >> 6) & 0x3Fu)) << 8 | (0x80u | (c & 0x3Fu)) << 16;
}

static inline uint32_t utf8_four(Py_UCS4 c) {
    return (0xF0u | (c >> 18)) | (0x80u | ((c >> 12) & 0x3Fu)) << 8 |
           (0x80u | ((c >> 6) & 0x3Fu)) << 16 | (0x80u | (c & 0x3Fu)) << 24;
}

/* The UTF-8 of each character of the Basic Multilingual Plane as a word: its bytes in the three
 * low bytes and its length in the high byte, which the next character's bytes overwrite (a
 * surrogate is `?`). Computing each length's bytes and picking one without a branch costs
 * several times this lookup. Filled by `utf8_tables` when the module loads, read-only after. */
static uint32_t UTF8_BMP[0x10000];

static inline Py_ssize_t utf8_put_bmp(unsigned char *o, Py_UCS4 c) {
    uint32_t word = UTF8_BMP[c];
    utf8_store(o, word);
    return (Py_ssize_t)(word >> 24);
}

/* A character of any kind: the branch is on those past the BMP, which are rare. */
static inline Py_ssize_t utf8_put(unsigned char *o, Py_UCS4 c) {
    if (c < 0x10000) return utf8_put_bmp(o, c);
    utf8_store(o, utf8_four(c));
    return 4;
}

/* ASCII runs, sixteen bytes at a time (SSE2, which every x86-64 has): a kind's characters are
 * loaded, narrowed to bytes and stored at `o` whatever they are, and the count of leading ASCII
 * characters among them returned (all of them when the block is ASCII), so that only those are
 * kept and the first character that is not ASCII is written by the general path. Without SSE2
 * each of these returns 0 and the general path writes every character. Each reads the `UTF8_RUN`
 * characters at `s` and may store `UTF8_RUN` bytes at `o`: the callers leave room for both. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define UTF8_RUN 16

static inline Py_ssize_t utf8_leading_ascii(unsigned wide_mask) {
    /* `wide_mask`: one bit a byte of the sixteen, set where it is not ASCII. */
    return wide_mask == 0 ? UTF8_RUN : (Py_ssize_t)__builtin_ctz(wide_mask);
}

static inline Py_ssize_t utf8_run_ucs1(unsigned char *o, const Py_UCS1 *s) {
    __m128i v = _mm_loadu_si128((const __m128i *)s);
    _mm_storeu_si128((__m128i *)o, v);
    return utf8_leading_ascii((unsigned)_mm_movemask_epi8(v));
}

/* Sixteen characters of two bytes as two vectors: packed to bytes (a lane above 0xFF saturates,
 * and is not kept), and a lane with a bit of 0xFF80 set marked as not ASCII. */
static inline Py_ssize_t utf8_run_ucs2(unsigned char *o, const Py_UCS2 *s) {
    __m128i a = _mm_loadu_si128((const __m128i *)s);
    __m128i b = _mm_loadu_si128((const __m128i *)(s + 8));
    __m128i high = _mm_set1_epi16((short)0xFF80);
    __m128i wide = _mm_packs_epi16(_mm_cmpeq_epi16(_mm_and_si128(a, high), _mm_setzero_si128()),
                                   _mm_cmpeq_epi16(_mm_and_si128(b, high), _mm_setzero_si128()));
    _mm_storeu_si128((__m128i *)o, _mm_packus_epi16(a, b));
    return utf8_leading_ascii((unsigned)_mm_movemask_epi8(wide) ^ 0xFFFFu);
}

static inline Py_ssize_t utf8_run_ucs4(unsigned char *o, const Py_UCS4 *s) {
    __m128i high = _mm_set1_epi32((int)0xFFFFFF80u);
    __m128i zero = _mm_setzero_si128();
    __m128i v[4], ascii[4];
    for (int j = 0; j < 4; j++) {
        /* Packed with saturation as for two bytes (code points stay below 2**31). */
        v[j] = _mm_loadu_si128((const __m128i *)(s + 4 * j));
        ascii[j] = _mm_cmpeq_epi32(_mm_and_si128(v[j], high), zero);
    }
    __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(v[0], v[1]), _mm_packs_epi32(v[2], v[3]));
    __m128i marks = _mm_packs_epi16(_mm_packs_epi32(ascii[0], ascii[1]),
                                    _mm_packs_epi32(ascii[2], ascii[3]));
    _mm_storeu_si128((__m128i *)o, bytes);
    return utf8_leading_ascii((unsigned)_mm_movemask_epi8(marks) ^ 0xFFFFu);
}
#else
#define UTF8_RUN 16
static inline Py_ssize_t utf8_run_ucs1(unsigned char *o, const Py_UCS1 *s) { return 0; }
static inline Py_ssize_t utf8_run_ucs2(unsigned char *o, const Py_UCS2 *s) { return 0; }
static inline Py_ssize_t utf8_run_ucs4(unsigned char *o, const Py_UCS4 *s) { return 0; }
#endif

/* Write the UTF-8 of the `n` characters of one kind at `s1`, `s2` or `s4` (the other two NULL)
 * at `o`, which has room for every byte the kind's characters may need plus `UTF8_RUN`; the
 * length. Once this is inlined with two of the pointers NULL each kind gets its own loop: a
 * block's leading ASCII characters are copied at once, the rest of it written one by one. */
static inline Py_ssize_t utf8_put_kind(unsigned char *o, const Py_UCS1 *s1, const Py_UCS2 *s2,
                                       const Py_UCS4 *s4, Py_ssize_t n) {
    Py_ssize_t k = 0, i = 0;
    for (; i + UTF8_RUN <= n; i += UTF8_RUN) {
        Py_ssize_t ascii = s1   ? utf8_run_ucs1(o + k, s1 + i)
                           : s2 ? utf8_run_ucs2(o + k, s2 + i)
                                : utf8_run_ucs4(o + k, s4 + i);
        k += ascii;
        for (Py_ssize_t j = i + ascii; j < i + UTF8_RUN; j++) {
            k += s1 ? utf8_put_bmp(o + k, s1[j]) : s2 ? utf8_put_bmp(o + k, s2[j])
                                                       : utf8_put(o + k, s4[j]);
        }
    }
    for (; i < n; i++) {
        k += s1 ? utf8_put_bmp(o + k, s1[i]) : s2 ? utf8_put_bmp(o + k, s2[i])
                                                   : utf8_put(o + k, s4[i]);
    }
    return k;
}

/* Text of one or two bytes a character whose characters mostly take one or two bytes of UTF-8
 * (ASCII mixed with Latin-1 at random, as a binary body's decoded text is), eight characters at
 * a time with SSSE3, when the processor has it (looked up once when the module loads). Each of
 * the eight, below U+0800, is made both ways in its 16-bit lane: as itself (ASCII) and as its
 * two bytes; the lane keeps the right one, and a shuffle picked by which lanes are ASCII packs
 * the lanes' bytes together (one byte of an ASCII lane, two of any other). Eight characters of
 * which one is U+0800 or above (three bytes, or a surrogate) are written one by one. */
#if defined(__SSE2__) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <tmmintrin.h>
#define UTF8_EIGHT 1

/* For each set of ASCII lanes (bit j: lane j), the shuffle that keeps byte 0 of every lane and
 * byte 1 of the others, in order, and the count of bytes kept. Filled by `utf8_eight_tables`
 * when the module loads, read-only after. */
static struct {
    unsigned char shuffle[16];
    Py_ssize_t length;
} UTF8_PACK[256];
static int UTF8_HAS_SSSE3;

static void utf8_eight_tables(void) {
    for (unsigned int m = 0; m < 256; m++) {
        unsigned int k = 0;
        memset(UTF8_PACK[m].shuffle, 0x80, 16); /* a byte past the kept ones: zero */
        for (unsigned int j = 0; j < 8; j++) {
            UTF8_PACK[m].shuffle[k++] = (unsigned char)(2 * j);
            if (!((m >> j) & 1)) UTF8_PACK[m].shuffle[k++] = (unsigned char)(2 * j + 1);
        }
        UTF8_PACK[m].length = (Py_ssize_t)k;
    }
    UTF8_HAS_SSSE3 = __builtin_cpu_supports("ssse3") ? 1 : 0;
}

/* The UTF-8 of eight characters below U+0800 in the 16-bit lanes of `v`, stored at `o` (16 bytes
 * are stored); the count of bytes that are theirs. */
__attribute__((target("ssse3"))) static inline Py_ssize_t utf8_eight(unsigned char *o, __m128i v) {
    __m128i ascii = _mm_cmpeq_epi16(_mm_and_si128(v, _mm_set1_epi16((short)0xFF80)),
                                    _mm_setzero_si128());
    unsigned int m = (unsigned int)_mm_movemask_epi8(_mm_packs_epi16(ascii, _mm_setzero_si128()));
    __m128i lead = _mm_or_si128(_mm_srli_epi16(v, 6), _mm_set1_epi16(0xC0));
    __m128i trail = _mm_or_si128(_mm_and_si128(v, _mm_set1_epi16(0x3F)), _mm_set1_epi16(0x80));
    __m128i two = _mm_or_si128(lead, _mm_slli_epi16(trail, 8));
    __m128i word = _mm_or_si128(_mm_and_si128(ascii, v), _mm_andnot_si128(ascii, two));
    __m128i shuffle = _mm_loadu_si128((const __m128i *)UTF8_PACK[m].shuffle);
    _mm_storeu_si128((__m128i *)o, _mm_shuffle_epi8(word, shuffle));
    return UTF8_PACK[m].length;
}

/* Whether a lane of `v` (eight characters of two bytes) is U+0800 or above. */
static inline int utf8_eight_has_three(__m128i v) {
    __m128i above = _mm_and_si128(v, _mm_set1_epi16((short)0xF800));
    return _mm_movemask_epi8(_mm_cmpeq_epi16(above, _mm_setzero_si128())) != 0xFFFF;
}

/* `utf8_put_kind` of text of one byte (`s1`) or two (`s2`, the other NULL), sixteen characters
 * at a time: copied when they are ASCII, else each half by `utf8_eight` (by `utf8_put_bmp`
 * when it holds a character of three bytes). Room at `o` as for `utf8_put_kind`: a half
 * stores 16 bytes where its eight characters' bytes start, at most the kind's most bytes a
 * character (2 or 3) times the characters before them, and at least eight more follow. */
__attribute__((target("ssse3"))) static Py_ssize_t utf8_put_narrow(unsigned char *o,
                                                                  const Py_UCS1 *s1,
                                                                  const Py_UCS2 *s2,
                                                                  Py_ssize_t n) {
    Py_ssize_t k = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i half[2];
        if (s1 != NULL) {
            __m128i v = _mm_loadu_si128((const __m128i *)(s1 + i));
            if (_mm_movemask_epi8(v) == 0) {
                _mm_storeu_si128((__m128i *)(o + k), v);
                k += 16;
                continue;
            }
            half[0] = _mm_unpacklo_epi8(v, _mm_setzero_si128());
            half[1] = _mm_unpackhi_epi8(v, _mm_setzero_si128());
        } else {
            half[0] = _mm_loadu_si128((const __m128i *)(s2 + i));
            half[1] = _mm_loadu_si128((const __m128i *)(s2 + i + 8));
            __m128i high = _mm_set1_epi16((short)0xFF80);
            __m128i wide = _mm_or_si128(_mm_and_si128(half[0], high), _mm_and_si128(half[1], high));
            if (_mm_movemask_epi8(_mm_cmpeq_epi16(wide, _mm_setzero_si128())) == 0xFFFF) {
                _mm_storeu_si128((__m128i *)(o + k), _mm_packus_epi16(half[0], half[1]));
                k += 16;
                continue;
            }
        }
        for (int h = 0; h < 2; h++) {
            if (s2 != NULL && utf8_eight_has_three(half[h])) {
                for (Py_ssize_t j = i + 8 * h; j < i + 8 * h + 8; j++) k += utf8_put_bmp(o + k, s2[j]);
            } else {
                k += utf8_eight(o + k, half[h]);
            }
        }
    }
    for (; i < n; i++) k += utf8_put_bmp(o + k, s1 != NULL ? s1[i] : s2[i]);
    return k;
}
#endif

/* Fills the tables above when the module loads. */
static void utf8_tables(void) {
    for (uint32_t c = 0; c < 0x10000; c++) {
        uint32_t d = utf8_is_surrogate(c) ? (uint32_t)'?' : c;
        UTF8_BMP[c] = d < 0x80    ? d | 1u << 24
                      : d < 0x800 ? utf8_two(d) | 2u << 24
                                  : utf8_three(d) | 3u << 24;
    }
#ifdef UTF8_EIGHT
    utf8_eight_tables();
#endif
}

/* Encode `text` into `b` (an ASCII string's data is its UTF-8 already: scanners use that); the
 * length, or -1 with MemoryError set. */
static inline Py_ssize_t utf8_encode(utf8_buffer_t *b, PyObject *text) {
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    /* At most 2 bytes a character of one byte, 3 of two, 4 of four; and a block's spare bytes
     * (which also hold the whole word stored for the last character). */
    Py_ssize_t most = kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4;
    if (n > PY_SSIZE_T_MAX / 4 - 128) {
        PyErr_NoMemory();
        return -1;
    }
    if (n * most + UTF8_RUN > b->capacity) {
        Py_ssize_t capacity = n * most + UTF8_RUN + 64;
        char *more = PyMem_Realloc(b->data, (size_t)capacity);
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = more;
        b->capacity = capacity;
    }
    unsigned char *o = (unsigned char *)b->data;
#ifdef UTF8_EIGHT
    if (UTF8_HAS_SSSE3 && kind != PyUnicode_4BYTE_KIND)
        return kind == PyUnicode_1BYTE_KIND ? utf8_put_narrow(o, (const Py_UCS1 *)data, NULL, n)
                                            : utf8_put_narrow(o, NULL, (const Py_UCS2 *)data, n);
#endif
    if (kind == PyUnicode_1BYTE_KIND) return utf8_put_kind(o, (const Py_UCS1 *)data, NULL, NULL, n);
    if (kind == PyUnicode_2BYTE_KIND) return utf8_put_kind(o, NULL, (const Py_UCS2 *)data, NULL, n);
    return utf8_put_kind(o, NULL, NULL, (const Py_UCS4 *)data, n);
}

#endif
