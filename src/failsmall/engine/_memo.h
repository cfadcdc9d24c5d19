/* The signature scanner's memo (`_memo.c`), shared by the value scanner's C functions. */
#ifndef FAILSMALL_MEMO_H
#define FAILSMALL_MEMO_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* The kinds of key besides a value's (whose kind is its target mask, > 0). */
#define MEMO_ARG_PART 0     /* a raw `name=value` part of the query */
#define MEMO_COOKIE_PART -1 /* a raw `;`-separated part of a Cookie header */
#define MEMO_HEADER -2      /* a header's (name, value) pair */
#define MEMO_BODY -3        /* a whole body, with what reading it depends on */
/* Values and head parts up to this many characters are remembered. */
#define MEMO_MAX_VALUE 512
/* The memo's filter of keys offered once has a bit per this many of its bytes (about sixteen
 * per entry it holds), rounded up to a power of two, and at least MEMO_MIN_SIGHTINGS bits. */
#define MEMO_BYTES_PER_SIGHTING 8
#define MEMO_MIN_SIGHTINGS 8192
/* The fixed cost of one entry, in the rough bytes the memo is bounded by. */
#define MEMO_ENTRY_OVERHEAD 128

/* One entry, in one allocation. What a lookup reads comes first: the chain's link, the hash,
 * the kind, what the key found and cost, and a str key's characters (in the narrowest kind
 * that holds them, as the str holds them), so a lookup of a short value reads the entry's
 * first two cache lines, both asked for ahead (`memo_prefetch`). What only storing and
 * forgetting read (`memo_cold`, in `_memo.c`) follows the characters. Neither a lookup nor
 * forgetting an entry reads a str. */
typedef struct memo_entry {
    struct memo_entry *next_in_bucket;
    Py_hash_t hash;
    long long kind;
    PyObject *hits; /* frozenset of keys */
    Py_ssize_t values;
    Py_ssize_t chars;
    int32_t text_kind;   /* the str key's PyUnicode kind; 0 for a key held as an object */
    int32_t text_length; /* its characters */
    char text[];         /* its `text_length * text_kind` bytes (8-byte aligned) */
} memo_entry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_bytes;
    Py_ssize_t size;
    Py_ssize_t count;
    Py_ssize_t offered; /* keys not held ever offered to be stored (`Memo.offered`) */
    size_t mask; /* buckets - 1, a power of two minus one */
    /* The keys offered and not stored, as a Bloom filter: two bits each (picked by the low and
     * the high half of its mixed hash), emptied when it has noted an offer per eight bits. A
     * key is stored when offered with both its bits set. */
    uint64_t *sightings;
    size_t sighting_mask;     /* bits - 1 */
    Py_ssize_t sightings_noted; /* offers noted since the filter was last emptied */
    memo_entry **buckets;
    memo_entry *oldest;
    memo_entry *newest;
} Memo;

extern PyTypeObject MemoType;

/* The entry of (key, kind), borrowed, or NULL (with an exception set when the key could not be
 * hashed or compared). */
memo_entry *memo_find(Memo *memo, PyObject *key, long long kind);
/* A string's characters in the narrowest kind that holds them (as a str made of them would
 * hold them), with their hash (`memo_text_hash`). */
typedef struct {
    int kind;
    const void *data;
    Py_ssize_t length;
    Py_hash_t hash;
} memo_text_t;

/* The key of the memo's text hash: 128 bits drawn from the system's random source when the
 * module is loaded (`memo_key_init`), so which texts share a slot of a memo, of a body's merge
 * or of an object's keys cannot be found from outside the process. */
extern uint64_t memo_text_key[2];
/* Draw `memo_text_key`; -1 with an exception set when the system gives no random bytes. */
int memo_key_init(void);

/* The 128-bit product of `a` and `b`, its halves xored. */
static inline uint64_t memo_fold(uint64_t a, uint64_t b) {
    __uint128_t p = (__uint128_t)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
}

/* The little-endian word of the 8 bytes at `at`, and of the 4. */
static inline uint64_t memo_word(const unsigned char *at) {
    uint64_t word;
    memcpy(&word, at, 8);
    return word;
}

static inline uint64_t memo_half_word(const unsigned char *at) {
    uint32_t word;
    memcpy(&word, at, 4);
    return word;
}

/* The memo's hash of the `length` characters of the narrowest `kind` at `data` (as a str of
 * them holds them): a keyed multiply-and-fold hash of their bytes, 16 at a time (64 at a time
 * in four lanes while more than 64 are left), with the size folded in first; 0 or more, and 0
 * for no characters. `text_hash` in `signatures/reference.py` is the same in Python. A short
 * value takes two loads and two multiplications, where CPython's str hash (SipHash-1-3, this
 * hash before) took a round of it per 8 bytes and four more: the engine's instructions for a
 * distinct JSON order fell by 4% with the change (`docs/benchmarks-history.md`). */
static inline Py_hash_t memo_text_hash(int kind, const void *data, Py_ssize_t length) {
    size_t size = (size_t)length * (size_t)kind;
    if (size == 0) return 0;
    const unsigned char *in = data;
    const uint64_t k0 = memo_text_key[0], k1 = memo_text_key[1];
    uint64_t seed = k0 ^ (uint64_t)size * 0x9E3779B97F4A7C15ULL;
    uint64_t a, b; /* the last 16 bytes, or all of fewer (read from both ends, overlapping) */
    if (size <= 16) {
        if (size >= 8) {
            a = memo_word(in);
            b = memo_word(in + size - 8);
        } else if (size >= 4) {
            a = memo_half_word(in);
            b = memo_half_word(in + size - 4);
        } else {
            a = (uint64_t)in[0] << 16 | (uint64_t)in[size / 2] << 8 | in[size - 1];
            b = 0;
        }
    } else {
        const unsigned char *at = in;
        size_t rest = size;
        if (rest > 64) { /* four lanes of 16 bytes, whose products do not wait for each other */
            uint64_t lane[4] = {seed, seed ^ 0x243F6A8885A308D3ULL, seed ^ 0x13198A2E03707344ULL,
                                seed ^ 0xA4093822299F31D0ULL};
            for (; rest > 64; rest -= 64, at += 64)
                for (int l = 0; l < 4; l++)
                    lane[l] = memo_fold(memo_word(at + 16 * l) ^ k1,
                                        memo_word(at + 16 * l + 8) ^ lane[l]);
            seed = lane[0] ^ lane[1] ^ lane[2] ^ lane[3];
        }
        for (; rest > 16; rest -= 16, at += 16)
            seed = memo_fold(memo_word(at) ^ k1, memo_word(at + 8) ^ seed);
        a = memo_word(in + size - 16);
        b = memo_word(in + size - 8);
    }
    uint64_t h = memo_fold(a ^ k1, b ^ seed);
    h = memo_fold(h ^ 0xE7037ED1A0B428DBULL, seed ^ k1 ^ 0x8EBC6AF09C88C6E3ULL);
    return (Py_hash_t)(h >> 1);
}

/* 1 when the `size` bytes at `a` and `b` are the same: `memcmp(a, b, size) == 0`, inline. A
 * value's characters are a few words: eight bytes at a time (the last eight read again from
 * the end) is a handful of instructions, where a call to the C library's `memcmp` was a tenth
 * of a large body's lookups. */
static inline int memo_same_bytes(const void *a, const void *b, size_t size) {
    const unsigned char *x = a, *y = b;
    if (size < 8) {
        for (size_t i = 0; i < size; i++)
            if (x[i] != y[i]) return 0;
        return 1;
    }
    uint64_t u, v;
    for (size_t i = 0; i + 8 <= size; i += 8) {
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        if (u != v) return 0;
    }
    memcpy(&u, x + size - 8, 8);
    memcpy(&v, y + size - 8, 8);
    return u == v;
}

/* The entry of (the str of `text`, kind), borrowed, or NULL: `memo_find` without the str. */
memo_entry *memo_find_text(Memo *memo, memo_text_t text, long long kind);
/* The hash an entry of (a key of hash `hash`, kind) is filed by: its bucket is this modulo the
 * table's size. */
static inline Py_hash_t memo_mix(Py_hash_t hash, long long kind) {
    Py_uhash_t mixed = (Py_uhash_t)hash * 1000003u ^ (Py_uhash_t)kind * 0x9E3779B97F4A7C15u;
    return mixed == (Py_uhash_t)-1 ? -2 : (Py_hash_t)mixed;
}
/* `memo_find_text` of a key whose `memo_mix` the caller has: `mixed`. */
memo_entry *memo_find_text_mixed(Memo *memo, memo_text_t text, long long kind, Py_hash_t mixed);
/* Ask the CPU to load what looking up (the str of a text of `text_hash`, kind) reads first:
 * its bucket (stage 0), the bucket's first entry (stage 1, once the bucket is loaded), that
 * entry's second cache line, where a short value's characters end (stage 2). Lookups of many
 * values in a row overlap their memory reads so. */
void memo_prefetch(const Memo *memo, Py_hash_t text_hash, long long kind, int stage);
/* `memo_prefetch` of a key whose `memo_mix` the caller has: `mixed`. */
void memo_prefetch_mixed(const Memo *memo, Py_hash_t mixed, int stage);
/* `memo_prefetch` of a key about to be offered (`memo_put_text`): its first stage also asks for
 * the two words of the filter of sightings the offer reads and writes, which in a memo of
 * megabytes are as far from the caches as its bucket. */
void memo_prefetch_put(const Memo *memo, Py_hash_t text_hash, long long kind, int stage);

/* Offer (key, kind) -> (hits, values, chars) to be remembered at a cost of `size` +
 * MEMO_ENTRY_OVERHEAD: it is stored when offered again while its first offer is still in the
 * filter of sightings, forgetting the oldest entries as needed; nothing when already there,
 * costlier than the whole memo or a str of 2**31 characters or more. Returns -1 with an
 * exception set on error. */
int memo_put(Memo *memo, PyObject *key, long long kind, PyObject *hits, Py_ssize_t values,
             Py_ssize_t chars, Py_ssize_t size);

/* `memo_put` of the str of `text` (whose hash `text.hash` is), without the str. */
int memo_put_text(Memo *memo, memo_text_t text, long long kind, PyObject *hits,
                  Py_ssize_t values, Py_ssize_t chars, Py_ssize_t size);

/* The text of a str, with its hash. */
memo_text_t memo_text_of(PyObject *str);

/* Make room in `*items` (of `*capacity` items of `item` bytes) for `needed` items, doubling
 * from 64. -1 with MemoryError set when there is none. */
int array_reserve(void **items, Py_ssize_t *capacity, Py_ssize_t needed, size_t item);

/* `memo_find` of `key`, not a str, whose hash (`PyObject_Hash`) the caller has: `hash`. */
memo_entry *memo_find_object(Memo *memo, PyObject *key, Py_hash_t hash, long long kind);

/* `memo_put` of `key`, not a str, whose hash (`PyObject_Hash`) the caller has: `hash`. */
int memo_put_object(Memo *memo, PyObject *key, Py_hash_t hash, long long kind, PyObject *hits,
                    Py_ssize_t values, Py_ssize_t chars, Py_ssize_t size);

#endif
